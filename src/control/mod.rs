//! The control plane's decisions: who may ask for what, and the signed record of every
//! request on the engine's control chain (`<engine_id>.control`). Pure: the host passes
//! each request and the time in, carries out what is admitted (flipping the kill switch,
//! messaging the gates, reading rule files) and publishes the signed records.

pub mod rate;
pub mod tokens;

use serde::Serialize;

use crate::audit::wire::Payload;
pub use crate::audit::wire::{
    ControlCommand, ControlOutcome, ControlReason, ControlRecord, ControlSource, TradingStateName,
};
use crate::audit::{AuditError, ChainSigner, SignedEvent};
use crate::elf::{GateTuning, TradingState};
use crate::optimizer::tuning::{apply_to_tuning, diff};
use crate::optimizer::{
    AbEvidence, LiveSample, Num, RollbackCause, SettingChange, TuningError, Watch, WatchEvidence,
    WatchOutcome, WatchTerms,
};
use crate::secret::Secret;
pub use rate::{Admit, RateLimit};
pub use tokens::{AuthFailure, Caller, Role, TokenError, Tokens};

/// The Kafka key and partition key of the control chain's records.
pub const CONTROL_PARTITION_KEY: &str = "CONTROL";

/// The control chain of an engine.
pub fn control_chain(engine_id: &str) -> String {
    format!("{engine_id}.control")
}

/// Query parameters that look like a credential: a request carrying one is refused, so a
/// token never travels (or gets logged) in a URL.
const CREDENTIAL_PARAMS: [&str; 8] = [
    "token",
    "access_token",
    "bearer",
    "auth",
    "authorization",
    "api_key",
    "apikey",
    "key",
];

/// One HTTP request to `/control/...`, as the host read it.
pub struct HttpRequest {
    /// `X-Request-Id`, as sent.
    pub request_id: Option<String>,
    pub client_ip: String,
    pub method: String,
    pub path: String,
    /// The query string; may hold a token, so it is held as a secret and never recorded.
    pub query: Secret,
    pub authorization: Option<Secret>,
    /// The body, or `None` when it was longer than the limit.
    pub body: Option<Vec<u8>>,
}

/// A request to the control plane.
pub enum ControlInput {
    Http(HttpRequest),
    /// SIGHUP: reload the rules (the signal's sender is authorised by the operating system).
    Hangup,
}

/// What the host must do with a request.
pub enum Admission {
    /// Carry out `command`, fill in the record's outcome with `finish`, sign it.
    Do {
        command: ControlCommand,
        record: ControlRecord,
    },
    /// Refused: sign `record` (unless it is `None`: a rate-limited request beyond the first
    /// of its minute, counted but not signed) and answer.
    Refused { record: Option<ControlRecord> },
}

/// The control state operators set (trading states the gates reach by their own actions
/// are in the decision trail). The host keeps it in a file so a restart keeps it too.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct ControlState {
    pub kill_switch_engaged: bool,
    pub global_trading_state: Option<TradingStateName>,
    pub symbol_trading_states: std::collections::BTreeMap<String, TradingStateName>,
    pub rules_sha256: String,
    /// The gates' performance settings in force (the configuration's until a change is
    /// applied at run time).
    #[serde(default)]
    pub tuning: Option<GateTuning>,
    /// What the last applied change replaced: what a rollback puts back.
    #[serde(default)]
    pub tuning_before: Option<GateTuning>,
}

impl ControlState {
    /// The state after an accepted command; true when it changed.
    pub fn apply(&mut self, command: &ControlCommand) -> bool {
        match command {
            ControlCommand::KillSwitch { engaged } => {
                let changed = self.kill_switch_engaged != *engaged;
                self.kill_switch_engaged = *engaged;
                changed
            }
            ControlCommand::TradingState { state, symbol } => match symbol {
                Some(s) => self.symbol_trading_states.insert(s.clone(), *state) != Some(*state),
                None => self.global_trading_state.replace(*state) != Some(*state),
            },
            ControlCommand::ConfigApply { changes, .. } => {
                let Some(now) = self.tuning else {
                    return false;
                };
                match apply_to_tuning(&now, changes) {
                    Ok(next) if next != now => {
                        self.tuning_before = Some(now);
                        self.tuning = Some(next);
                        true
                    }
                    _ => false,
                }
            }
            ControlCommand::ConfigRollback { .. } => match self.tuning_before.take() {
                Some(before) => {
                    self.tuning = Some(before);
                    true
                }
                None => false,
            },
            ControlCommand::RulesReload | ControlCommand::State => false,
        }
    }

    /// The commands that set this state on a fresh engine.
    pub fn commands(&self) -> Vec<ControlCommand> {
        let mut out = Vec::new();
        if self.kill_switch_engaged {
            out.push(ControlCommand::KillSwitch { engaged: true });
        }
        if let Some(state) = self.global_trading_state {
            out.push(ControlCommand::TradingState {
                state,
                symbol: None,
            });
        }
        for (symbol, state) in &self.symbol_trading_states {
            out.push(ControlCommand::TradingState {
                state: *state,
                symbol: Some(symbol.clone()),
            });
        }
        out
    }
}

/// The signed record of a request and the checkpoint it completed.
pub struct ControlSigned {
    pub event: SignedEvent,
    pub checkpoint: Option<SignedEvent>,
}

/// How the step watches an applied change (`[optimizer]`).
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    pub kpi: crate::optimizer::KpiName,
    pub window_ms: i64,
    pub degradation_pct: f64,
    pub min_decisions: u64,
}

pub struct ControlStep {
    signer: ChainSigner,
    tokens: Tokens,
    /// Per token (authenticated) and per address (not).
    rate: RateLimit,
    /// All unauthenticated requests together: ten times one client's allowance.
    anonymous: RateLimit,
    symbols: Vec<String>,
    state: ControlState,
    assigned_ids: u64,
    /// The configuration's performance settings.
    base_tuning: Option<GateTuning>,
    watch_settings: Option<WatchSettings>,
    /// The gate counters the host sampled last, and when the settings last changed.
    last_sample: LiveSample,
    since_change: LiveSample,
    watch: Option<Watch>,
    /// A rollback the watch asked for and the host has not carried out yet.
    rollback_pending: bool,
}

impl ControlStep {
    pub fn new(
        signer: ChainSigner,
        tokens: Tokens,
        rate: RateLimit,
        symbols: Vec<String>,
        rules_sha256: String,
    ) -> Self {
        Self {
            signer,
            tokens,
            anonymous: rate.scaled(10),
            rate,
            symbols,
            state: ControlState {
                rules_sha256,
                ..ControlState::default()
            },
            assigned_ids: 0,
            base_tuning: None,
            watch_settings: None,
            last_sample: LiveSample::default(),
            since_change: LiveSample::default(),
            watch: None,
            rollback_pending: false,
        }
    }

    /// The gates' performance settings from the configuration, and how a change to them is
    /// watched: enables `/control/config/apply` and `/control/config/rollback`.
    pub fn with_tuning(mut self, tuning: GateTuning, watch: WatchSettings) -> Self {
        self.base_tuning = Some(tuning);
        self.state.tuning = Some(tuning);
        self.watch_settings = Some(watch);
        self
    }

    /// The performance settings in force.
    pub fn tuning(&self) -> Option<GateTuning> {
        self.state.tuning
    }

    /// The watch over the last applied change, while there is one.
    pub fn watch(&self) -> Option<&Watch> {
        self.watch.as_ref()
    }

    /// The gate counters now (the host reads its metrics before each request and on its
    /// watch interval).
    pub fn note_sample(&mut self, sample: LiveSample) {
        self.last_sample = sample;
    }

    /// Judge the watched change on the last sample: a rollback to carry out when it
    /// degraded the KPI (once), and `None` otherwise; the watch ends when its window does.
    pub fn watch_step(&mut self, now_ms: i64) -> Option<Admission> {
        let outcome = self.watch.as_ref()?.step(&self.last_sample, now_ms);
        match outcome {
            WatchOutcome::Watching => None,
            WatchOutcome::Kept => {
                self.watch = None;
                None
            }
            WatchOutcome::RollBack(evidence) => {
                if self.rollback_pending {
                    return None;
                }
                let command = self.rollback_command(RollbackCause::KpiDegraded, Some(evidence))?;
                self.rollback_pending = true;
                let record = ControlRecord {
                    client: None,
                    detail: Some("the watched KPI degraded after the change".into()),
                    method: "WATCHDOG".into(),
                    outcome: ControlOutcome::Accepted,
                    path: "optimizer.watch".into(),
                    reason: None,
                    request: Some(command.clone()),
                    request_id: self.assign_id(now_ms),
                    role: None,
                    source: ControlSource::Watchdog,
                    token_id: None,
                };
                Some(Admission::Do { command, record })
            }
        }
    }

    fn rollback_command(
        &self,
        cause: RollbackCause,
        evidence: Option<WatchEvidence>,
    ) -> Option<ControlCommand> {
        let (now, before) = (self.state.tuning?, self.state.tuning_before?);
        Some(ControlCommand::ConfigRollback {
            changes: diff(&now, &before),
            cause,
            evidence,
        })
    }

    /// How an apply admitted now is watched: against the KPI since the last change, when
    /// enough decisions measured it.
    fn watch_terms(&self, now_ms: i64) -> Result<WatchTerms, String> {
        let Some(w) = self.watch_settings else {
            return Err("not watched: no watch settings".into());
        };
        let (baseline, n) = self.last_sample.since(&self.since_change, w.kpi);
        match baseline {
            Some(b) if n >= w.min_decisions => Ok(WatchTerms {
                baseline: Num((b * 10_000.0).round() / 10_000.0),
                baseline_decisions: i64::try_from(n).unwrap_or(i64::MAX),
                degradation_pct: Num(w.degradation_pct),
                kpi: w.kpi,
                until_ms: now_ms.saturating_add(w.window_ms),
            }),
            _ => Err(format!(
                "not watched: {n} decisions since the last change, {} needed for a baseline",
                w.min_decisions
            )),
        }
    }

    pub fn chain(&self) -> &str {
        self.signer.chain()
    }

    pub fn state(&self) -> &ControlState {
        &self.state
    }

    /// Decide whether a request may be carried out. Checked in order: credentials (a token
    /// in the query string, then the bearer token), the rate limit (per token, or per address
    /// and for all unauthenticated callers together), a query string, the endpoint, the
    /// role, the body's size and shape, the symbol.
    pub fn admit(&mut self, input: &ControlInput, now_ms: i64) -> Admission {
        let req = match input {
            ControlInput::Hangup => {
                return Admission::Do {
                    command: ControlCommand::RulesReload,
                    record: ControlRecord {
                        client: None,
                        detail: None,
                        method: "SIGNAL".into(),
                        outcome: ControlOutcome::Accepted,
                        path: "SIGHUP".into(),
                        reason: None,
                        request: Some(ControlCommand::RulesReload),
                        request_id: self.assign_id(now_ms),
                        role: None,
                        source: ControlSource::Signal,
                        token_id: None,
                    },
                }
            }
            ControlInput::Http(req) => req,
        };
        let request_id = match req.request_id.as_deref().filter(|id| valid_request_id(id)) {
            Some(id) => id.to_string(),
            None => self.assign_id(now_ms),
        };
        let mut record = ControlRecord {
            client: Some(req.client_ip.clone()),
            detail: None,
            method: req.method.clone(),
            outcome: ControlOutcome::Refused,
            path: req.path.clone(),
            reason: None,
            request: None,
            request_id,
            role: None,
            source: ControlSource::Http,
            token_id: None,
        };
        let refuse = |mut record: ControlRecord, reason: ControlReason, detail: &str| {
            record.reason = Some(reason);
            record.detail = (!detail.is_empty()).then(|| detail.to_string());
            Admission::Refused {
                record: Some(record),
            }
        };
        let query = req.query.expose();
        let credential_in_query = query.split('&').any(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            CREDENTIAL_PARAMS
                .iter()
                .any(|c| name.eq_ignore_ascii_case(c))
        });
        // A token in the URL is never used, even when it is right.
        let caller = if credential_in_query {
            Err((
                ControlReason::TokenInQuery,
                "tokens are accepted only in the Authorization header",
            ))
        } else {
            self.tokens
                .authenticate(req.authorization.as_ref().map(Secret::expose))
                .map_err(|failure| match failure {
                    AuthFailure::Missing => (ControlReason::Unauthenticated, "no bearer token"),
                    AuthFailure::Malformed => (
                        ControlReason::TokenMalformed,
                        "Authorization must be 'Bearer <token>'",
                    ),
                    AuthFailure::Unknown => (ControlReason::TokenUnknown, "no such token"),
                })
        };
        // Authenticated callers are limited per token; the others per address and, all
        // together, by a shared bucket, so neither can starve the other nor fill the trail.
        let limited = match &caller {
            Ok(c) => self.rate.admit(&format!("token:{}", c.token_id), now_ms),
            Err(_) => match self.rate.admit(&format!("ip:{}", req.client_ip), now_ms) {
                Admit::Allowed => self.anonymous.admit("anonymous", now_ms),
                limited => limited,
            },
        };
        if let Ok(c) = &caller {
            record.token_id = Some(c.token_id.clone());
            record.role = Some(c.role);
        }
        match limited {
            Admit::Allowed => {}
            Admit::Limited { sign: false, .. } => return Admission::Refused { record: None },
            Admit::Limited {
                sign: true,
                unsigned_before,
            } => {
                let detail = if unsigned_before > 0 {
                    format!(
                        "{unsigned_before} earlier rate-limited request(s) were counted, not signed"
                    )
                } else {
                    String::new()
                };
                return refuse(record, ControlReason::RateLimited, &detail);
            }
        }
        let caller = match caller {
            Ok(c) => c,
            Err((reason, detail)) => return refuse(record, reason, detail),
        };
        if !query.is_empty() {
            return refuse(
                record,
                ControlReason::BadRequest,
                "control endpoints take no query string",
            );
        }
        let endpoint = match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/control/kill-switch") => Endpoint::KillSwitch,
            ("POST", "/control/trading-state") => Endpoint::TradingState,
            ("POST", "/control/rules/reload") => Endpoint::RulesReload,
            ("GET", "/control/state") => Endpoint::State,
            ("POST", "/control/config/apply") => Endpoint::ConfigApply,
            ("POST", "/control/config/rollback") => Endpoint::ConfigRollback,
            _ => {
                return refuse(
                    record,
                    ControlReason::UnknownEndpoint,
                    "see docs/control.md for the control endpoints",
                )
            }
        };
        if caller.role != Role::Operator && endpoint != Endpoint::State {
            return refuse(
                record,
                ControlReason::Forbidden,
                "this request needs the operator role",
            );
        }
        let Some(body) = &req.body else {
            return refuse(
                record,
                ControlReason::BodyTooLarge,
                "the body is over http.max_body_bytes",
            );
        };
        let command = match parse_command(endpoint, body) {
            Ok(c) => c,
            Err(detail) => return refuse(record, ControlReason::BadRequest, &detail),
        };
        let command = match self.complete(command, now_ms) {
            Ok((c, detail)) => {
                record.detail = detail;
                c
            }
            Err((reason, detail)) => return refuse(record, reason, &detail),
        };
        record.request = Some(command.clone());
        if let ControlCommand::TradingState {
            symbol: Some(symbol),
            ..
        } = &command
        {
            if !self.symbols.contains(symbol) {
                return refuse(
                    record,
                    ControlReason::UnknownSymbol,
                    &format!("{symbol} is not one of the engine's instruments"),
                );
            }
        }
        record.outcome = ControlOutcome::Accepted;
        Admission::Do { command, record }
    }

    /// Fill in what only the engine knows: the values a config change replaces, how it is
    /// watched, what a rollback puts back. Refuses thresholds and changes that change
    /// nothing.
    fn complete(
        &self,
        command: ControlCommand,
        now_ms: i64,
    ) -> Result<(ControlCommand, Option<String>), (ControlReason, String)> {
        let not_enabled = || {
            (
                ControlReason::UnknownEndpoint,
                "config changes are not enabled on this engine".to_string(),
            )
        };
        match command {
            ControlCommand::ConfigApply {
                changes, evidence, ..
            } => {
                let now = self.state.tuning.ok_or_else(not_enabled)?;
                if changes.is_empty() {
                    return Err((ControlReason::BadRequest, "no changes".into()));
                }
                if let Some(e) = &evidence {
                    evidence_problem(e).map_or(Ok(()), |p| Err((ControlReason::BadRequest, p)))?;
                }
                let next = apply_to_tuning(&now, &changes).map_err(|e| match e {
                    TuningError::DecisionAltering(_) => {
                        (ControlReason::DecisionAltering, e.to_string())
                    }
                    _ => (ControlReason::BadRequest, e.to_string()),
                })?;
                let changes = diff(&now, &next);
                if changes.is_empty() {
                    return Err((
                        ControlReason::BadRequest,
                        "the change sets what is already in force".into(),
                    ));
                }
                let (watch, detail) = match self.watch_terms(now_ms) {
                    Ok(terms) => (Some(terms), None),
                    Err(why) => (None, Some(why)),
                };
                Ok((
                    ControlCommand::ConfigApply {
                        changes,
                        evidence,
                        watch,
                    },
                    detail,
                ))
            }
            ControlCommand::ConfigRollback { .. } => {
                self.state.tuning.ok_or_else(not_enabled)?;
                let command = self
                    .rollback_command(RollbackCause::Operator, None)
                    .ok_or_else(|| {
                        (
                            ControlReason::NothingToRollBack,
                            "no applied change to roll back".to_string(),
                        )
                    })?;
                Ok((command, None))
            }
            other => Ok((other, None)),
        }
    }

    /// Record what carrying out an admitted command did: `Ok(detail)` or a failure.
    pub fn finish(
        &mut self,
        record: &mut ControlRecord,
        result: Result<Option<String>, (ControlReason, String)>,
    ) {
        match result {
            Ok(detail) => {
                record.outcome = ControlOutcome::Accepted;
                record.detail = match (record.detail.take(), detail) {
                    (Some(a), Some(b)) => Some(format!("{b}; {a}")),
                    (a, b) => b.or(a),
                };
            }
            Err((reason, detail)) => {
                record.outcome = ControlOutcome::Failed;
                record.reason = Some(reason);
                record.detail = Some(detail);
            }
        }
    }

    /// An accepted command's record reached the trail and it was carried out: the control
    /// state now shows it. True when the state changed.
    pub fn commit(&mut self, command: &ControlCommand) -> bool {
        let changed = self.state.apply(command);
        match command {
            ControlCommand::ConfigApply { watch, .. } if changed => {
                // Measured from the sample the host took once the gates had the change.
                self.since_change = self.last_sample;
                self.watch = watch
                    .clone()
                    .zip(self.watch_settings)
                    .map(|(terms, w)| Watch::new(terms, self.last_sample, w.min_decisions));
                self.rollback_pending = false;
            }
            ControlCommand::ConfigRollback { .. } => {
                self.since_change = self.last_sample;
                self.watch = None;
                self.rollback_pending = false;
            }
            _ => {}
        }
        changed
    }

    /// Continue from the operator state of an earlier run (trading states of symbols the
    /// engine no longer trades are dropped; the rules are this run's).
    /// Returns one accepted record per restored setting, to be signed before any decision.
    pub fn restore(&mut self, mut earlier: ControlState, now_ms: i64) -> Vec<ControlRecord> {
        earlier
            .symbol_trading_states
            .retain(|s, _| self.symbols.contains(s));
        earlier.rules_sha256 = std::mem::take(&mut self.state.rules_sha256);
        // Performance settings applied at run time are kept; without them (or when config
        // changes are off) the configuration's hold.
        let base = self.base_tuning;
        let restored_tuning = match (base, earlier.tuning) {
            (Some(b), Some(t)) if t != b => Some(ControlCommand::ConfigApply {
                changes: diff(&b, &t),
                evidence: None,
                watch: None,
            }),
            _ => None,
        };
        if base.is_none() || restored_tuning.is_none() {
            earlier.tuning = base;
            earlier.tuning_before = None;
        }
        self.state = earlier;
        self.state
            .commands()
            .into_iter()
            .chain(restored_tuning)
            .map(|command| ControlRecord {
                client: None,
                detail: Some(
                    "the previous run's operator state, kept in control_state.json".into(),
                ),
                method: "RESTART".into(),
                outcome: ControlOutcome::Accepted,
                path: "control_state.json".into(),
                reason: None,
                request: Some(command),
                request_id: self.assign_id(now_ms),
                role: None,
                source: ControlSource::Restart,
                token_id: None,
            })
            .collect()
    }

    /// The rules now in force (after an accepted reload).
    pub fn note_rules(&mut self, rules_sha256: String) {
        self.state.rules_sha256 = rules_sha256;
    }

    /// Sign a request's record on the control chain (and a checkpoint when one is due).
    pub fn sign(
        &mut self,
        record: ControlRecord,
        now_ms: i64,
    ) -> Result<ControlSigned, AuditError> {
        let ts_ms = now_ms.max(self.signer.head().ts_ms);
        let payload = Payload::ControlRequest(Box::new(record));
        let event = self.signer.sign(ts_ms, CONTROL_PARTITION_KEY, &payload)?;
        let checkpoint = self.signer.checkpoint_if_due(CONTROL_PARTITION_KEY)?;
        Ok(ControlSigned { event, checkpoint })
    }

    /// Seal the open checkpoint (at shutdown).
    pub fn seal_checkpoint(&mut self) -> Result<Option<SignedEvent>, AuditError> {
        self.signer.checkpoint(CONTROL_PARTITION_KEY)
    }

    fn assign_id(&mut self, now_ms: i64) -> String {
        self.assigned_ids += 1;
        format!("ctl-{now_ms}-{}", self.assigned_ids)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    KillSwitch,
    TradingState,
    RulesReload,
    State,
    ConfigApply,
    ConfigRollback,
}

/// An ID a caller may choose: short, printable, safe in logs.
fn valid_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

fn parse_command(endpoint: Endpoint, body: &[u8]) -> Result<ControlCommand, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct KillSwitchBody {
        engaged: bool,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TradingStateBody {
        state: TradingStateName,
        #[serde(default)]
        symbol: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Empty {}
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ChangeBody {
        setting: crate::optimizer::Setting,
        to: serde_json::Value,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ApplyBody {
        changes: Vec<ChangeBody>,
        #[serde(default)]
        evidence: Option<AbEvidence>,
    }
    fn json(what: &str) -> impl Fn(serde_json::Error) -> String + '_ {
        move |e: serde_json::Error| {
            format!(
                "the body must be {what} (line {}, column {}: {})",
                e.line(),
                e.column(),
                json_error_kind(&e)
            )
        }
    }
    let blank = body.iter().all(u8::is_ascii_whitespace);
    match endpoint {
        Endpoint::KillSwitch => serde_json::from_slice::<KillSwitchBody>(body)
            .map(|b| ControlCommand::KillSwitch { engaged: b.engaged })
            .map_err(json(r#"{"engaged": true|false}"#)),
        Endpoint::TradingState => serde_json::from_slice::<TradingStateBody>(body)
            .map(|b| ControlCommand::TradingState {
                state: b.state,
                symbol: b.symbol,
            })
            .map_err(json(
                r#"{"state": "ACTIVE"|"REDUCING"|"HALTED", "symbol": optional}"#,
            )),
        Endpoint::RulesReload if blank => Ok(ControlCommand::RulesReload),
        Endpoint::RulesReload => serde_json::from_slice::<Empty>(body)
            .map(|_| ControlCommand::RulesReload)
            .map_err(json("empty or {}")),
        Endpoint::ConfigApply => {
            let b = serde_json::from_slice::<ApplyBody>(body).map_err(json(
                r#"{"changes": [{"setting": "elf.parallelize_l2_l3", "to": false}], "evidence": optional}"#,
            ))?;
            let changes = b
                .changes
                .into_iter()
                .map(|c| {
                    let to = match c.to {
                        serde_json::Value::String(s) => s,
                        v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_)) => {
                            v.to_string()
                        }
                        _ => return Err(format!("{}: a value must be a scalar", c.setting.key())),
                    };
                    Ok(SettingChange {
                        from: String::new(),
                        setting: c.setting,
                        to,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(ControlCommand::ConfigApply {
                changes,
                evidence: b.evidence,
                watch: None,
            })
        }
        Endpoint::ConfigRollback if blank => Ok(rollback_placeholder()),
        Endpoint::ConfigRollback => serde_json::from_slice::<Empty>(body)
            .map(|_| rollback_placeholder())
            .map_err(json("empty or {}")),
        Endpoint::State if blank => Ok(ControlCommand::State),
        Endpoint::State => Err("GET /control/state takes no body".into()),
    }
}

/// Why evidence sent with an apply cannot be signed as it is, if it cannot: every number
/// finite, counts not negative, the input a SHA-256.
fn evidence_problem(e: &AbEvidence) -> Option<String> {
    let numbers = [
        e.baseline.0,
        e.candidate.0,
        e.improvement_pct.0,
        e.pairs_better_pct.0,
    ];
    if !numbers.iter().all(|x| x.is_finite()) {
        return Some("evidence: every figure must be a finite number".into());
    }
    if e.decisions_compared < 0 || e.decisions_changed < 0 || e.runs_per_side < 1 {
        return Some("evidence: counts must not be negative, runs_per_side at least 1".into());
    }
    let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !hex(&e.input_sha256) {
        return Some("evidence: input_sha256 must be 64 lowercase hex digits".into());
    }
    None
}

/// A rollback as asked for; `complete` fills in what it puts back.
fn rollback_placeholder() -> ControlCommand {
    ControlCommand::ConfigRollback {
        changes: Vec::new(),
        cause: RollbackCause::Operator,
        evidence: None,
    }
}

/// What a JSON error is called in a refusal's detail (never the body's text).
fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "wrong fields or values",
        serde_json::error::Category::Eof => "cut short",
    }
}

impl From<TradingStateName> for TradingState {
    fn from(s: TradingStateName) -> Self {
        match s {
            TradingStateName::Active => TradingState::Active,
            TradingStateName::Reducing => TradingState::Reducing,
            TradingStateName::Halted => TradingState::Halted,
        }
    }
}

/// The HTTP status of a request's outcome.
pub fn http_status(record: &ControlRecord) -> u16 {
    match record.reason {
        None => 200,
        Some(ControlReason::Unauthenticated)
        | Some(ControlReason::TokenMalformed)
        | Some(ControlReason::TokenUnknown)
        | Some(ControlReason::TokenInQuery) => 401,
        Some(ControlReason::Forbidden) => 403,
        Some(ControlReason::RateLimited) => 429,
        Some(ControlReason::BadRequest) | Some(ControlReason::UnknownSymbol) => 400,
        Some(ControlReason::BodyTooLarge) => 413,
        Some(ControlReason::UnknownEndpoint) => 404,
        Some(ControlReason::RulesRejected) | Some(ControlReason::DecisionAltering) => 422,
        Some(ControlReason::NothingToRollBack) => 409,
    }
}

#[cfg(test)]
mod tests;
