//! L0 -> L1 -> (L2 || L3): the decision, before L4 signs it.

use std::collections::HashSet;
use std::sync::Arc;

use super::l0::{self, DuplicateWindow, L0Limits};
use super::l1::{self, Compliance, ComplianceWeights};
use super::l2::{Guardrails, KillSwitch};
use super::rules::{Enforcement, RuleHit, RuleSet};
use super::{ActionRequest, Layer, ReasonCode, Verdict};
use crate::config::ElfConfig;

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
}

impl GateSettings {
    pub fn from_config(c: &ElfConfig) -> Self {
        Self {
            input_validation: c.input_validation_guardrail,
            compliance_threshold: c.constitutional_compliance,
            parallelize_l2_l3: c.parallelize_l2_l3,
            max_data_age_ms: c.max_data_age_ms,
            max_future_skew_ms: c.max_future_skew_ms,
            duplicate_window: c.duplicate_window,
            weights: ComplianceWeights {
                freshness: c.weight_freshness,
                sample: c.weight_sample,
                mc_agreement: c.weight_mc_agreement,
                backtest: c.weight_backtest,
            },
            ess_target: c.ess_target,
            throttle_max_actions: c.throttle_max_actions,
            throttle_window_ms: c.throttle_window_ms,
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
}

/// One gate per chain: its L0 duplicate window and L2 state belong to that chain.
pub struct ElfGate {
    settings: GateSettings,
    known_symbols: HashSet<String>,
    ids: DuplicateWindow,
    guardrails: Guardrails,
    rules: Arc<RuleSet>,
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
        Self {
            ids: DuplicateWindow::new(settings.duplicate_window),
            settings,
            known_symbols,
            guardrails,
            rules,
        }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Swap in a new rule set (run-time reload).
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.rules = rules;
    }

    pub fn guardrails(&self) -> &Guardrails {
        &self.guardrails
    }

    /// Decide and, when allowed, apply the action's effect on the gate's state.
    pub fn decide(&mut self, req: &ActionRequest) -> Decision {
        let mut reasons = Vec::new();
        if self.settings.input_validation {
            let limits = L0Limits {
                known_symbols: &self.known_symbols,
                max_data_age_ms: self.settings.max_data_age_ms,
                max_future_skew_ms: self.settings.max_future_skew_ms,
            };
            l0::validate(req, &limits, &self.ids, &mut reasons);
        }
        // Even a refused ID is remembered, so a replayed request never gets a second chance.
        self.ids.insert(&req.action_id);
        if !reasons.is_empty() {
            return Decision {
                verdict: Verdict::Block,
                layer: Some(Layer::L0),
                reasons,
                compliance: None,
                rules_fired: Vec::new(),
            };
        }

        let s = &self.settings;
        let compliance = l1::score(
            req,
            &s.weights,
            s.compliance_threshold,
            s.max_data_age_ms,
            s.ess_target,
        );
        if !compliance.passes() {
            return Decision {
                verdict: Verdict::Block,
                layer: Some(Layer::L1),
                reasons: vec![ReasonCode::ComplianceBelowThreshold],
                compliance: Some(compliance),
                rules_fired: Vec::new(),
            };
        }

        let mut l2_reasons = Vec::new();
        let mut hits = Vec::new();
        if s.parallelize_l2_l3 {
            let (guardrails, rules) = (&self.guardrails, &self.rules);
            std::thread::scope(|scope| {
                let l3 = scope.spawn(|| {
                    let mut h = Vec::new();
                    rules.evaluate(req, &mut h);
                    h
                });
                guardrails.check(req, &mut l2_reasons);
                hits = l3.join().unwrap_or_default();
            });
        } else {
            self.guardrails.check(req, &mut l2_reasons);
            self.rules.evaluate(req, &mut hits);
        }

        let (verdict, layer) = combine(&l2_reasons, &hits, &mut reasons);
        if verdict.allows() {
            self.guardrails.commit(req);
        }
        Decision {
            verdict,
            layer,
            reasons,
            compliance: Some(compliance),
            rules_fired: hits,
        }
    }
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
        let mut s = GateSettings::from_config(&c.elf);
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
}
