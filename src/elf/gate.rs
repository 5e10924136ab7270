//! L0 -> L1 -> (L2 || L3): the decision, before L4 signs it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lru::LruCache;

use super::l0::{self, DuplicateWindow, L0Limits};
use super::l1::{self, Compliance, ComplianceWeights};
use super::l2::{Guardrails, KillSwitch};
use super::rules::{Enforcement, RuleHit, RuleMatches, RuleSet};
use super::worker::Worker;
use super::{ActionRequest, FastMap, FastSet, Layer, ReasonCode, Verdict};

/// Gate settings derived from `[elf]`.
#[derive(Debug, Clone)]
pub struct GateSettings {
    pub input_validation: bool,
    pub compliance_threshold: f64,
    pub parallelize_l2_l3: bool,
    pub max_data_age_ms: i64,
    pub max_future_skew_ms: i64,
    pub duplicate_window: usize,
    pub weights: ComplianceWeights,
    pub ess_target: f64,
    pub throttle_max_actions: u32,
    pub throttle_window_ms: i64,
    pub decision_cache: bool,
    pub decision_cache_size: u64,
    pub decision_cache_ttl: Duration,
}

/// The settings that change how fast the gate decides, never what it decides: the L3
/// thread and the decision cache (whose outcome depends on its key alone). They may change
/// at run time (`ElfGate::set_tuning`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateTuning {
    pub parallelize_l2_l3: bool,
    pub enable_decision_cache: bool,
    pub decision_cache_size: u64,
    pub decision_cache_ttl_s: u64,
}

impl GateSettings {
    pub fn tuning(&self) -> GateTuning {
        GateTuning {
            parallelize_l2_l3: self.parallelize_l2_l3,
            enable_decision_cache: self.decision_cache,
            decision_cache_size: self.decision_cache_size,
            decision_cache_ttl_s: self.decision_cache_ttl.as_secs(),
        }
    }
}

/// The gate's verdict on one request, with everything an auditor needs to re-check it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The first layer that refused (or held) the action.
    pub layer: Option<Layer>,
    pub reasons: Vec<ReasonCode>,
    /// Computed unless L0 refused the input.
    pub compliance: Option<Compliance>,
    pub rules_fired: Vec<RuleHit>,
    /// What the candidate rule set would have decided (shadow mode), never enforced.
    pub shadow: Option<ShadowOutcome>,
    /// L1 and L3 came from the decision cache.
    pub cached: bool,
    /// Time spent in L0, L1, L2, L3 (ns), when timing is on.
    pub layer_ns: Option<[u64; 4]>,
}

impl Decision {
    /// The reason codes that refused or held the action; flags on a passed action are not
    /// refusals.
    pub fn refusals(&self) -> &[ReasonCode] {
        if self.layer.is_some() {
            &self.reasons
        } else {
            &[]
        }
    }

    /// Whether L3 came from the decision cache (`Some(true)`), was evaluated
    /// (`Some(false)`), or the cache was not consulted (L0 or L1 stopped the action).
    pub fn cache_hit(&self) -> Option<bool> {
        (self.compliance.is_some() && self.layer != Some(Layer::L1)).then_some(self.cached)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShadowOutcome {
    pub rules_sha256: Arc<str>,
    pub verdict: Verdict,
    pub rules_fired: Vec<RuleHit>,
    /// The candidate's verdict differs from the enforced one.
    pub diverged: bool,
}

/// Everything L3 depends on, bit for bit: the request minus its ID and absolute times (only
/// the data age matters). L0, L1 and L2 (the stateful layers) always run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DecisionKey {
    symbol: Arc<str>,
    action: u8,
    action_numbers: [u64; 2],
    evidence: [u64; 13],
    flags: u8,
    data_age_ms: i64,
}

impl DecisionKey {
    fn of(req: &ActionRequest, symbol: Arc<str>) -> Self {
        let e = &req.evidence;
        let mut action_numbers = [0u64; 2];
        for (slot, (_, v)) in action_numbers.iter_mut().zip(req.action.numbers()) {
            *slot = v.to_bits();
        }
        Self {
            symbol,
            action: req.action.kind() as u8,
            action_numbers,
            evidence: e.numbers().map(f64::to_bits),
            flags: u8::from(req.feed_healthy) | u8::from(e.model_warming_up) << 1,
            data_age_ms: req.decided_at_ms.saturating_sub(req.data_time_ms),
        }
    }
}

fn new_cache(settings: &GateSettings) -> Option<LruCache<DecisionKey, (Arc<RuleOutcome>, i64)>> {
    settings
        .decision_cache
        .then(|| usize::try_from(settings.decision_cache_size).ok())
        .flatten()
        .and_then(std::num::NonZeroUsize::new)
        .map(LruCache::new)
}

fn spawn_l3_worker() -> Option<Worker<L3Job, Option<L3Matches>>> {
    Worker::spawn("elf-l3", L3Job::run)
        .map_err(|e| tracing::warn!(error = %e, "no L3 worker thread; L2 and L3 run in turn"))
        .ok()
}

/// The cacheable part of a decision: the L3 hits of the active and candidate rules.
#[derive(Debug)]
struct RuleOutcome {
    hits: Vec<RuleHit>,
    shadow_hits: Vec<RuleHit>,
}

/// One gate per chain: its L0 duplicate window and L2 state belong to that chain.
pub struct ElfGate {
    settings: GateSettings,
    known_symbols: FastSet<String>,
    ids: DuplicateWindow,
    guardrails: Guardrails,
    rules: Arc<RuleSet>,
    shadow: Option<Arc<RuleSet>>,
    /// Bounded LRU of L3 outcomes with their insertion time on the injected clock
    /// (entries expire after the TTL).
    cache: Option<LruCache<DecisionKey, (Arc<RuleOutcome>, i64)>>,
    /// Interned symbol names for cache keys.
    symbols: FastMap<String, Arc<str>>,
    /// Monotonic nanoseconds, given by the host when it wants layer times.
    timer: Option<fn() -> u64>,
    /// L3 beside L2 on a long-lived thread (`parallelize_l2_l3`).
    l3_worker: Option<Worker<L3Job, Option<L3Matches>>>,
}

/// What the L3 worker evaluates: overwritten in place for each decision; its rule sets are
/// replaced only when the gate's rule sets change.
#[derive(Default)]
struct L3Job {
    rules: Option<Arc<RuleSet>>,
    shadow: Option<Arc<RuleSet>>,
    req: Option<ActionRequest>,
}

impl L3Job {
    fn set(&mut self, rules: &Arc<RuleSet>, shadow: Option<&Arc<RuleSet>>, req: &ActionRequest) {
        let same = |held: &Option<Arc<RuleSet>>, now: Option<&Arc<RuleSet>>| match (held, now) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same(&self.rules, Some(rules)) {
            self.rules = Some(rules.clone());
        }
        if !same(&self.shadow, shadow) {
            self.shadow = shadow.cloned();
        }
        match &mut self.req {
            Some(held) => held.clone_from(req),
            None => self.req = Some(req.clone()),
        }
    }

    /// None when a rule set is too large for `RuleMatches` (the gate then evaluates).
    fn run(&self) -> Option<L3Matches> {
        let (rules, req) = (self.rules.as_ref()?, self.req.as_ref()?);
        let shadow = match &self.shadow {
            Some(s) => Some(s.matches(req)?),
            None => None,
        };
        Some(L3Matches {
            active: rules.matches(req)?,
            shadow,
        })
    }
}

/// The worker's answer: which active and candidate rules fired.
struct L3Matches {
    active: RuleMatches,
    shadow: Option<RuleMatches>,
}

impl ElfGate {
    pub fn new(
        settings: GateSettings,
        known_symbols: HashSet<String>,
        rules: Arc<RuleSet>,
        kill_switch: KillSwitch,
    ) -> Self {
        let guardrails = Guardrails::new(
            settings.throttle_max_actions,
            settings.throttle_window_ms,
            kill_switch,
        );
        let cache = new_cache(&settings);
        let mut gate = Self {
            ids: DuplicateWindow::new(settings.duplicate_window),
            settings,
            known_symbols: known_symbols.into_iter().collect(),
            guardrails,
            rules,
            shadow: None,
            cache,
            symbols: FastMap::default(),
            timer: None,
            l3_worker: None,
        };
        if gate.settings.parallelize_l2_l3 {
            gate.l3_worker = spawn_l3_worker();
        }
        gate
    }

    /// Change the performance settings from the next request: the cache starts empty when
    /// it changes, the L3 thread starts or stops. Decisions stay the same.
    pub fn set_tuning(&mut self, tuning: GateTuning) {
        if tuning == self.settings.tuning() {
            return;
        }
        let s = &mut self.settings;
        let cache_changed = s.decision_cache != tuning.enable_decision_cache
            || s.decision_cache_size != tuning.decision_cache_size;
        s.decision_cache = tuning.enable_decision_cache;
        s.decision_cache_size = tuning.decision_cache_size;
        s.decision_cache_ttl = Duration::from_secs(tuning.decision_cache_ttl_s);
        if cache_changed {
            self.cache = new_cache(&self.settings);
        }
        if self.settings.parallelize_l2_l3 != tuning.parallelize_l2_l3 {
            self.settings.parallelize_l2_l3 = tuning.parallelize_l2_l3;
            // Dropping the worker joins its thread.
            self.l3_worker = if tuning.parallelize_l2_l3 {
                spawn_l3_worker()
            } else {
                None
            };
        }
    }

    pub fn tuning(&self) -> GateTuning {
        self.settings.tuning()
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Swap in a new rule set (run-time reload); cached outcomes of the old one are dropped.
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.rules = rules;
        self.clear_cache();
    }

    /// Evaluate `candidate` beside the active rules without enforcing it (shadow mode).
    pub fn set_shadow_rules(&mut self, candidate: Option<Arc<RuleSet>>) {
        self.shadow = candidate;
        self.clear_cache();
    }

    pub fn shadow_rules(&self) -> Option<&Arc<RuleSet>> {
        self.shadow.as_ref()
    }

    /// Measure each layer's time into `Decision::layer_ns` with `timer` (monotonic
    /// nanoseconds; the host owns the clock), or stop measuring.
    pub fn set_timer(&mut self, timer: Option<fn() -> u64>) {
        self.timer = timer;
    }

    fn clear_cache(&mut self) {
        if let Some(c) = &mut self.cache {
            c.clear();
        }
    }

    /// An operator's trading-state change; it takes effect from the next request.
    pub fn set_trading_state(&mut self, symbol: Option<&str>, state: super::TradingState) {
        self.guardrails.set_state(symbol, state);
    }

    pub fn guardrails(&self) -> &Guardrails {
        &self.guardrails
    }

    /// Decide and, when allowed, apply the action's effect on the gate's state.
    pub fn decide(&mut self, req: &ActionRequest) -> Decision {
        let timer = self.timer;
        let clock = timer.map(|now| now());
        let lap = |since: &mut Option<u64>| -> u64 {
            match (since.as_mut(), timer) {
                (Some(t), Some(now)) => {
                    let now = now();
                    let ns = now.saturating_sub(*t);
                    *t = now;
                    ns
                }
                _ => 0,
            }
        };
        let mut since = clock;
        let mut layer_ns = [0u64; 4];
        let mut reasons = Vec::new();
        // Even a refused ID is remembered, so a replayed request never gets a second chance.
        let seen_before = !self.ids.insert(&req.action_id);
        if self.settings.input_validation {
            let limits = L0Limits {
                known_symbols: &self.known_symbols,
                max_data_age_ms: self.settings.max_data_age_ms,
                max_future_skew_ms: self.settings.max_future_skew_ms,
            };
            l0::validate(req, &limits, seen_before, &mut reasons);
        }
        layer_ns[0] = lap(&mut since);
        if !reasons.is_empty() {
            return Decision {
                verdict: Verdict::Block,
                layer: Some(Layer::L0),
                shadow: self.shadow_of_refusal(),
                reasons,
                compliance: None,
                rules_fired: Vec::new(),
                cached: false,
                layer_ns: clock.map(|_| layer_ns),
            };
        }

        let st = &self.settings;
        let compliance = l1::score(
            req,
            &st.weights,
            st.compliance_threshold,
            st.max_data_age_ms,
            st.ess_target,
        );
        layer_ns[1] = lap(&mut since);
        if !compliance.passes() {
            return Decision {
                verdict: Verdict::Block,
                layer: Some(Layer::L1),
                reasons: vec![ReasonCode::ComplianceBelowThreshold],
                compliance: Some(compliance),
                rules_fired: Vec::new(),
                shadow: self.shadow_of_refusal(),
                cached: false,
                layer_ns: clock.map(|_| layer_ns),
            };
        }

        // L3 from the cache, or evaluated (beside L2 on a second thread when configured).
        let mut l2_reasons = Vec::new();
        let key = if self.cache.is_some() {
            let symbol = self.intern(&req.symbol);
            Some(DecisionKey::of(req, symbol))
        } else {
            None
        };
        // The outcome depends on the key alone, so expiry only bounds how long an entry
        // lives; measured on the injected clock, it reads no system clock.
        let ttl_ms =
            i64::try_from(self.settings.decision_cache_ttl.as_millis()).unwrap_or(i64::MAX);
        let cached_l3 = match (&mut self.cache, &key) {
            (Some(cache), Some(key)) => match cache.get(key) {
                Some((outcome, at_ms)) if req.decided_at_ms.saturating_sub(*at_ms) < ttl_ms => {
                    Some(outcome.clone())
                }
                Some(_) => {
                    cache.pop(key);
                    None
                }
                None => None,
            },
            _ => None,
        };
        let cached = cached_l3.is_some();
        let l3 = match cached_l3 {
            Some(hit) => {
                self.guardrails.check(req, &mut l2_reasons);
                layer_ns[2] = lap(&mut since);
                hit
            }
            None if self.l3_worker.is_some() => {
                let (rules, shadow) = (&self.rules, self.shadow.as_ref());
                let submitted = self
                    .l3_worker
                    .as_ref()
                    .is_some_and(|w| w.submit_with(|job| job.set(rules, shadow, req)));
                let t = timer.map(|now| now());
                self.guardrails.check(req, &mut l2_reasons);
                if let (Some(t), Some(now)) = (t, timer) {
                    layer_ns[2] = now().saturating_sub(t);
                }
                let matches = match (&self.l3_worker, submitted) {
                    (Some(w), true) => w.collect().flatten(),
                    _ => None,
                };
                Arc::new(match matches {
                    Some(m) => {
                        let mut outcome = RuleOutcome {
                            hits: Vec::new(),
                            shadow_hits: Vec::new(),
                        };
                        self.rules.hits_of(&m.active, &mut outcome.hits);
                        if let (Some(s), Some(sm)) = (&self.shadow, &m.shadow) {
                            s.hits_of(sm, &mut outcome.shadow_hits);
                        }
                        outcome
                    }
                    None => evaluate_rules(&self.rules, self.shadow.as_deref(), req),
                })
            }
            None => {
                self.guardrails.check(req, &mut l2_reasons);
                layer_ns[2] = lap(&mut since);
                Arc::new(evaluate_rules(&self.rules, self.shadow.as_deref(), req))
            }
        };
        if let (Some(cache), Some(key), false) = (&mut self.cache, key, cached) {
            cache.put(key, (l3.clone(), req.decided_at_ms));
        }
        layer_ns[3] = lap(&mut since);

        let shadow = self.shadow.as_ref().map(|s| {
            let mut scratch = Vec::new();
            let (verdict, _) = combine(&l2_reasons, &l3.shadow_hits, &mut scratch);
            (s.hash_hex(), verdict)
        });
        let (verdict, layer) = combine(&l2_reasons, &l3.hits, &mut reasons);
        if verdict.allows() {
            self.guardrails.commit(req);
        }
        Decision {
            verdict,
            layer,
            reasons,
            compliance: Some(compliance),
            rules_fired: l3.hits.clone(),
            shadow: shadow.map(|(hash, v)| ShadowOutcome {
                rules_sha256: Arc::from(hash),
                verdict: v,
                rules_fired: l3.shadow_hits.clone(),
                diverged: v != verdict,
            }),
            cached,
            layer_ns: clock.map(|_| layer_ns),
        }
    }

    /// Shadow outcome when L0 or L1 refused: the candidate rules never run, so it agrees.
    fn shadow_of_refusal(&self) -> Option<ShadowOutcome> {
        self.shadow.as_ref().map(|s| ShadowOutcome {
            rules_sha256: Arc::from(s.hash_hex()),
            verdict: Verdict::Block,
            rules_fired: Vec::new(),
            diverged: false,
        })
    }

    fn intern(&mut self, symbol: &str) -> Arc<str> {
        if let Some(s) = self.symbols.get(symbol) {
            return s.clone();
        }
        let s: Arc<str> = Arc::from(symbol);
        // Bounded: only known symbols get here (L0 refuses the rest).
        self.symbols.insert(symbol.to_string(), s.clone());
        s
    }
}

/// L3: the hits of the active and the candidate rule sets.
fn evaluate_rules(rules: &RuleSet, shadow: Option<&RuleSet>, req: &ActionRequest) -> RuleOutcome {
    let mut hits = Vec::new();
    let mut shadow_hits = Vec::new();
    rules.evaluate(req, &mut hits);
    if let Some(c) = shadow {
        c.evaluate(req, &mut shadow_hits);
    }
    RuleOutcome { hits, shadow_hits }
}

/// L2 refusals outrank L3; among rules, block > require_review > allow_with_flag.
fn combine(
    l2: &[ReasonCode],
    hits: &[RuleHit],
    reasons: &mut Vec<ReasonCode>,
) -> (Verdict, Option<Layer>) {
    reasons.extend_from_slice(l2);
    let has = |e: Enforcement| hits.iter().any(|h| h.enforce == e);
    for (e, code) in [
        (Enforcement::Block, ReasonCode::RuleBlock),
        (Enforcement::RequireReview, ReasonCode::RuleReview),
        (Enforcement::AllowWithFlag, ReasonCode::RuleFlag),
    ] {
        if has(e) {
            reasons.push(code);
        }
    }
    if !l2.is_empty() {
        (Verdict::Block, Some(Layer::L2))
    } else if has(Enforcement::Block) {
        (Verdict::Block, Some(Layer::L3))
    } else if has(Enforcement::RequireReview) {
        (Verdict::RequireReview, Some(Layer::L3))
    } else if has(Enforcement::AllowWithFlag) {
        (Verdict::PassFlagged, None)
    } else {
        (Verdict::Pass, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::elf::{Evidence, InputRange};
    use crate::risk::RiskAction;

    fn gate(parallel: bool) -> ElfGate {
        let c = Config::embedded().unwrap();
        let mut s = c.elf.gate_settings();
        s.parallelize_l2_l3 = parallel;
        let rules = RuleSet::parse(
            "version: 1\nrules:\n  - id: wide\n    trigger: [HALT]\n    check: \"var_ci_rel_width > 2\"\n    enforce: block\n",
        )
        .unwrap();
        ElfGate::new(
            s,
            ["BTCUSDT".to_string()].into(),
            Arc::new(rules),
            KillSwitch::default(),
        )
    }

    fn req(id: &str, action: RiskAction) -> ActionRequest {
        ActionRequest {
            action_id: id.into(),
            symbol: "BTCUSDT".into(),
            action,
            data_time_ms: 10_000,
            decided_at_ms: 10_000,
            feed_healthy: true,
            evidence: Evidence {
                level: 0.99,
                var_usd: 60.0,
                es_usd: 70.0,
                limit_usd: 50.0,
                limit_cap_usd: 200.0,
                var_ci_low_usd: 55.0,
                var_ci_high_usd: 65.0,
                position_qty: 2.0,
                price: 60_000.0,
                ess: 150.0,
                mc_z: 0.5,
                exceedances: 1.0,
                expected_exceedances: 1.0,
                model_warming_up: false,
            },
            input: InputRange::default(),
        }
    }

    /// A timer that advances 1 µs per reading: every layer takes time, deterministically.
    fn ticking() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NOW: AtomicU64 = AtomicU64::new(0);
        NOW.fetch_add(1_000, Ordering::Relaxed)
    }

    #[test]
    fn layer_times_come_from_the_hosts_timer() {
        for parallel in [false, true] {
            let mut g = gate(parallel);
            assert_eq!(
                g.decide(&req("a", RiskAction::PublishRiskSnapshot))
                    .layer_ns,
                None
            );
            g.set_timer(Some(ticking));
            let ns = g
                .decide(&req("b", RiskAction::PublishRiskSnapshot))
                .layer_ns
                .unwrap();
            assert!(ns.iter().all(|&n| n >= 1_000), "{ns:?}");
        }
    }

    #[test]
    fn each_layer_blocks_with_its_reason() {
        for parallel in [false, true] {
            let mut g = gate(parallel);
            let d = g.decide(&req("a", RiskAction::Halt));
            assert_eq!(d.verdict, Verdict::Pass, "{d:?}");
            // replayed ID
            let d = g.decide(&req("a", RiskAction::Halt));
            assert_eq!((d.verdict, d.layer), (Verdict::Block, Some(Layer::L0)));
            assert_eq!(d.reasons, vec![ReasonCode::DuplicateActionId]);
            // NaN
            let mut r = req("b", RiskAction::Halt);
            r.evidence.var_usd = f64::NAN;
            assert_eq!(g.decide(&r).reasons, vec![ReasonCode::NonFiniteField]);
            // thin sample -> L1
            let mut r = req("c", RiskAction::Halt);
            r.evidence.ess = 1.0;
            let d = g.decide(&r);
            assert_eq!(
                (d.layer, d.reasons.clone()),
                (Some(Layer::L1), vec![ReasonCode::ComplianceBelowThreshold])
            );
            // halted -> only resume / alerts
            let d = g.decide(&req(
                "d",
                RiskAction::SetLimit {
                    new_limit_usd: 80.0,
                },
            ));
            assert_eq!(
                (d.layer, d.reasons),
                (Some(Layer::L2), vec![ReasonCode::TradingHalted])
            );
            // L3 rule
            let mut r = req("e", RiskAction::Halt);
            r.evidence.var_ci_high_usd = 300.0;
            let d = g.decide(&r);
            assert_eq!((d.verdict, d.layer), (Verdict::Block, Some(Layer::L3)));
            assert_eq!(d.rules_fired.len(), 1);
        }
    }

    fn rules(text: &str) -> Arc<RuleSet> {
        Arc::new(RuleSet::parse(text).unwrap())
    }

    #[test]
    fn cached_outcomes_expire_after_the_ttl_on_the_injected_clock() {
        let c = Config::embedded().unwrap();
        let mut s = c.elf.gate_settings();
        s.decision_cache = true;
        s.decision_cache_ttl = Duration::from_secs(120);
        let mut g = ElfGate::new(
            s,
            ["BTCUSDT".to_string()].into(),
            rules("version: 1\nrules: []\n"),
            KillSwitch::default(),
        );
        let at = |id: &str, ms: i64| {
            let mut r = req(id, RiskAction::PublishRiskSnapshot);
            r.data_time_ms += ms;
            r.decided_at_ms += ms;
            r
        };
        assert!(!g.decide(&at("t0", 0)).cached);
        assert!(g.decide(&at("t1", 119_999)).cached);
        assert!(!g.decide(&at("t2", 120_000)).cached, "expired");
        assert!(g.decide(&at("t3", 120_001)).cached, "refreshed");
    }

    #[test]
    fn cache_hits_decide_the_same_and_a_reload_invalidates_them() {
        let c = Config::embedded().unwrap();
        let mut s = c.elf.gate_settings();
        s.decision_cache = true;
        let mut g = ElfGate::new(
            s,
            ["BTCUSDT".to_string()].into(),
            rules("version: 1\nrules:\n  - id: flag\n    trigger: [LIMIT_BREACH]\n    check: \"var_to_limit > 1\"\n    enforce: allow_with_flag\n"),
            KillSwitch::default(),
        );
        let breach = || RiskAction::LimitBreach {
            var_usd: 60.0,
            limit_usd: 50.0,
        };
        let first = g.decide(&req("a1", breach()));
        let second = g.decide(&req("a2", breach()));
        assert!(!first.cached && second.cached);
        assert_eq!(first.verdict, Verdict::PassFlagged);
        assert_eq!(
            (first.verdict, &first.reasons, &first.rules_fired),
            (second.verdict, &second.reasons, &second.rules_fired)
        );
        // the duplicate check is never cached
        assert_eq!(g.decide(&req("a2", breach())).layer, Some(Layer::L0));
        g.set_rules(rules("version: 1\nrules:\n  - id: block\n    trigger: [LIMIT_BREACH]\n    check: \"var_to_limit > 1\"\n    enforce: block\n"));
        let third = g.decide(&req("a3", breach()));
        assert!(!third.cached);
        assert_eq!(third.verdict, Verdict::Block);
    }

    #[test]
    fn shadow_rules_are_reported_never_enforced() {
        let mut g = gate(false);
        g.set_shadow_rules(Some(rules(
            "version: 1\nrules:\n  - id: no-resume\n    trigger: [RESUME]\n    check: \"var_usd >= 0\"\n    enforce: block\n",
        )));
        let d = g.decide(&req("s1", RiskAction::Resume));
        assert_eq!(d.verdict, Verdict::Pass);
        let shadow = d.shadow.unwrap();
        assert_eq!(shadow.verdict, Verdict::Block);
        assert!(shadow.diverged);
        assert_eq!(&*shadow.rules_fired[0].rule_id, "no-resume");
        let d = g.decide(&req("s2", RiskAction::PublishRiskSnapshot));
        assert!(!d.shadow.unwrap().diverged);
    }
}
