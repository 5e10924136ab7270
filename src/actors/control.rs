//! The host of the control step: it reads the clock, carries out what the step admits
//! (the kill switch, the gates' trading states and rules, rule files read from disk), and
//! publishes each request's signed record before its effect, so the trail shows every
//! change to the engine's behaviour before the first decision it touches.

use std::sync::Arc;

use actix::prelude::*;

use super::gate::{GateControl, ReloadRules, SetTradingState, Tune};
use super::publisher::{publish_signed, PublisherActor};
use super::PipelineError;
use crate::config::Config;
use crate::control::{
    http_status, Admission, ControlCommand, ControlInput, ControlReason, ControlRecord, ControlStep,
};
use crate::elf::{GateTuning, KillSwitch, RuleSet, TradingState};
use crate::metrics::optimizer::{ChangeView, WatchView};
use crate::metrics::Metrics;

/// A control request; the answer is what the HTTP side returns.
#[derive(Message)]
#[rtype(result = "ControlReply")]
pub struct Control(pub ControlInput);

/// Sample the gates' metrics: judge the watched change, refresh the live recommendations.
#[derive(Message)]
#[rtype(result = "()")]
struct WatchTick;

/// Seal the control chain's open checkpoint (at shutdown).
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct SealControl;

/// The gates, once started: the operator state set so far (and any rules reloaded) is
/// passed on to them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachGates(pub Vec<GateRoute>);

#[derive(Debug, Clone)]
pub struct ControlReply {
    pub status: u16,
    pub body: serde_json::Value,
}

/// Where the operator state (kill switch, trading states) is kept: beside the chain heads.
pub fn state_file(config: &Config) -> std::path::PathBuf {
    config
        .signing
        .heads_file
        .with_file_name("control_state.json")
}

/// The operator state of an earlier run, if one was kept.
pub fn load_state(
    config: &Config,
) -> Result<Option<crate::control::ControlState>, crate::snapshot::SnapshotError> {
    crate::snapshot::load(&state_file(config))
}

/// A gate and the symbol its chain decides for (`None`: the portfolio).
pub struct GateRoute {
    pub symbol: Option<String>,
    pub gate: GateControl,
}

pub struct ControlActor {
    step: ControlStep,
    publisher: Addr<PublisherActor>,
    gates: Arc<Vec<GateRoute>>,
    kill_switch: KillSwitch,
    config: Config,
    metrics: Arc<Metrics>,
    /// The newest rules a reload loaded, for gates attached after it.
    reloaded: Option<(Arc<RuleSet>, Option<Arc<RuleSet>>)>,
    /// Sealed at shutdown, or a record did not reach the sink: requests are answered 503,
    /// unsigned.
    stopped: bool,
    /// Where the operator state is kept across restarts.
    state_file: std::path::PathBuf,
    /// Records of the restored operator state, signed when the gates attach.
    restored: Vec<ControlRecord>,
    tick_queued: bool,
}

/// What an admitted command does once its record is published.
enum Effect {
    None,
    KillSwitch(bool),
    TradingState(Option<String>, TradingState),
    Rules(Arc<RuleSet>, Option<Arc<RuleSet>>),
    Tuning(GateTuning),
}

impl ControlActor {
    /// A control host without gates yet (see `AttachGates`), continuing the operator state
    /// the step was restored with (the kill switch is engaged at once if it was).
    pub fn new(
        step: ControlStep,
        restored: Vec<ControlRecord>,
        publisher: Addr<PublisherActor>,
        kill_switch: KillSwitch,
        config: Config,
        metrics: Arc<Metrics>,
    ) -> Self {
        if step.state().kill_switch_engaged {
            kill_switch.engage();
        }
        Self {
            restored,
            state_file: state_file(&config),
            step,
            publisher,
            gates: Arc::new(Vec::new()),
            kill_switch,
            config,
            metrics,
            reloaded: None,
            stopped: false,
            tick_queued: false,
        }
    }

    /// Carry out the part of a command that can fail before anything changes.
    fn prepare(
        &mut self,
        command: &ControlCommand,
    ) -> (Result<Option<String>, (ControlReason, String)>, Effect) {
        match command {
            ControlCommand::KillSwitch { engaged } => (
                Ok(Some(
                    if *engaged {
                        "kill switch engaged"
                    } else {
                        "kill switch released"
                    }
                    .into(),
                )),
                Effect::KillSwitch(*engaged),
            ),
            ControlCommand::TradingState { state, symbol } => (
                Ok(None),
                Effect::TradingState(symbol.clone(), (*state).into()),
            ),
            ControlCommand::RulesReload => match crate::assemble::load_rules(&self.config) {
                Ok((active, shadow)) => {
                    let sha = active.hash_hex().to_string();
                    (
                        Ok(Some(format!("rules_sha256 {sha}"))),
                        Effect::Rules(active, shadow),
                    )
                }
                Err(e) => {
                    self.metrics
                        .elf_rules_reloads_total
                        .with_label_values(&["rejected"])
                        .inc();
                    tracing::error!(error = %e, "rules reload rejected; previous rules stay in force");
                    (
                        Err((ControlReason::RulesRejected, e.to_string())),
                        Effect::None,
                    )
                }
            },
            ControlCommand::State => (Ok(None), Effect::None),
            ControlCommand::ConfigApply { .. } | ControlCommand::ConfigRollback { .. } => {
                let mut next = self.step.state().clone();
                match (next.apply(command), next.tuning) {
                    (true, Some(t)) => (Ok(Some(describe(command))), Effect::Tuning(t)),
                    _ => (Ok(None), Effect::None),
                }
            }
        }
    }

    /// The watch over the last change and the live recommendations, for metrics and the
    /// dashboard.
    fn publish_optimizer_view(&self) {
        let o = &self.metrics.optimizer;
        if let Some(t) = self.step.tuning() {
            o.set_tuning(t, self.config.optimizer.kpi().as_str());
        }
        let sample = self.metrics.live_sample();
        o.set_watch(self.step.watch().map(|w| {
            let (observed, n) = w.observed(&sample);
            let t = w.terms();
            WatchView {
                baseline_us: t.baseline.0,
                observed_us: observed,
                observed_decisions: n,
                degradation_pct_allowed: t.degradation_pct.0,
                until_ms: t.until_ms,
            }
        }));
        if let (Some(t), Ok(kpis)) = (
            self.step.tuning(),
            crate::optimizer::prometheus_text::parse(&self.metrics.render()),
        ) {
            o.set_recommendations(crate::optimizer::recommend(
                &kpis,
                &t,
                self.config.elf.constitutional_compliance,
            ));
        }
    }

    /// Carry out an admitted or refused request: sign, publish, keep the state, apply the
    /// effect, commit; the reply is what the HTTP side returns.
    fn carry_out(
        &mut self,
        admission: Admission,
        now_ms: i64,
    ) -> ResponseActFuture<Self, ControlReply> {
        let (record, effect, command) = match admission {
            Admission::Refused { record: None } => {
                self.count(None);
                let reply = ControlReply {
                    status: 429,
                    body: serde_json::json!({"outcome": "REFUSED", "reason": "RATE_LIMITED"}),
                };
                return Box::pin(fut::ready(reply));
            }
            Admission::Refused { record: Some(r) } => (r, Effect::None, None),
            Admission::Do {
                command,
                mut record,
            } => {
                let (result, effect) = self.prepare(&command);
                self.step.finish(&mut record, result);
                let done = record.reason.is_none().then_some(command);
                (record, effect, done)
            }
        };
        self.count(Some(&record));
        let status = http_status(&record);
        let state = (command == Some(ControlCommand::State))
            .then(|| serde_json::to_value(self.step.state()).unwrap_or_default());
        tracing::info!(
            request_id = %record.request_id,
            token_id = record.token_id.as_deref().unwrap_or("-"),
            client = record.client.as_deref().unwrap_or("-"),
            path = %record.path,
            status,
            reason = record.reason.map_or("-", |r| r.as_str()),
            "control request"
        );
        let mut body = serde_json::json!({
            "request_id": record.request_id,
            "outcome": record.outcome,
            "reason": record.reason,
            "detail": record.detail,
        });
        if let Some(state) = state {
            body["state"] = state;
        }
        if let Some(
            c @ (ControlCommand::ConfigApply { .. } | ControlCommand::ConfigRollback { .. }),
        ) = &command
        {
            body["request"] = serde_json::to_value(c).unwrap_or_default();
        }
        // The operator state after this command, kept on disk before its effect.
        let next_state = command.as_ref().and_then(|c| {
            let mut next = self.step.state().clone();
            next.apply(c).then_some(next)
        });
        let change_view = command.as_ref().and_then(|c| change_view(c, &record));
        let state_file = self.state_file.clone();
        let signed = self.step.sign(record, now_ms);
        let publisher = self.publisher.clone();
        let gates = self.gates.clone();
        let kill_switch = self.kill_switch.clone();
        Box::pin(
            async move {
                let signed = match signed {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "control request not signed; not carried out");
                        let body = serde_json::json!({"outcome": "FAILED", "detail": "not signed"});
                        return (ControlReply { status: 500, body }, Published::No, None, None);
                    }
                };
                body["chain"] = signed.event.chain.clone().into();
                body["seq"] = signed.event.seq.into();
                let place = (signed.event.chain.clone(), signed.event.seq, now_ms);
                if publish_signed(&publisher, [signed.event]).await.is_err() {
                    tracing::error!("control record not published; request not carried out");
                    let body = serde_json::json!({"outcome": "FAILED", "detail": "not published"});
                    return (ControlReply { status: 503, body }, Published::No, None, None);
                }
                // The record is in the trail: the state is kept, then the effect follows,
                // whatever becomes of the checkpoint.
                if let Some(next) = &next_state {
                    if let Err(e) = crate::snapshot::save(&state_file, next) {
                        tracing::error!(error = %e, "operator state not saved; a restart would not keep it");
                    }
                }
                let rules = match &effect {
                    Effect::Rules(a, s) => Some((a.clone(), s.clone())),
                    _ => None,
                };
                apply(effect, &gates, &kill_switch).await;
                let checkpoint_ok = publish_signed(&publisher, signed.checkpoint).await.is_ok();
                let published = if checkpoint_ok {
                    Published::Yes
                } else {
                    tracing::error!("control checkpoint not published");
                    Published::EventOnly
                };
                let change = change_view.map(|(kind, cause, mut v)| {
                    (v.chain, v.seq, v.ts_ms) = place;
                    (kind, cause, v)
                });
                (ControlReply { status, body }, published, rules, change)
            }
            .into_actor(self)
            .map(move |(reply, published, rules, change), act, _| {
                if published != Published::No {
                    if let Some(command) = &command {
                        // The gates have the change: the watch measures from here.
                        act.step.note_sample(act.metrics.live_sample());
                        act.step.commit(command);
                    }
                    if let Some(rules) = rules {
                        act.metrics
                            .elf_rules_reloads_total
                            .with_label_values(&["ok"])
                            .inc();
                        act.step.note_rules(rules.0.hash_hex().to_string());
                        act.reloaded = Some(rules);
                    }
                    if let Some((kind, cause, view)) = change {
                        act.metrics.optimizer.note_change(kind, cause, view);
                        act.publish_optimizer_view();
                    }
                }
                if published != Published::Yes {
                    // The chain's head moved past what the trail holds: stop signing.
                    act.stopped = true;
                }
                reply
            }),
        )
    }

    fn count(&self, record: Option<&ControlRecord>) {
        let (outcome, reason) = match record {
            Some(r) => (
                serde_json::to_value(r.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                r.reason.map_or("NONE", |x| x.as_str()),
            ),
            None => ("REFUSED".to_string(), ControlReason::RateLimited.as_str()),
        };
        self.metrics
            .control_requests_total
            .with_label_values(&[outcome.as_str(), reason])
            .inc();
        if record.is_none_or(|r| r.reason == Some(ControlReason::RateLimited)) {
            self.metrics
                .input_limit_breaches_total
                .with_label_values(&["control_requests_per_minute"])
                .inc();
        }
    }
}

impl Actor for ControlActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        self.publish_optimizer_view();
        let every = std::time::Duration::from_millis(self.config.optimizer.watch_interval_ms);
        ctx.run_interval(every, |act, ctx| {
            // One tick at a time: a tick still waiting in the mailbox is enough.
            if !act.tick_queued {
                act.tick_queued = true;
                ctx.notify(WatchTick);
            }
        });
    }
}

impl Handler<Control> for ControlActor {
    type Result = AtomicResponse<Self, ControlReply>;

    fn handle(&mut self, msg: Control, _: &mut Self::Context) -> Self::Result {
        if self.stopped {
            // Sealed at shutdown, or the sink failed: nothing more is signed or done.
            let reply = ControlReply {
                status: 503,
                body: serde_json::json!({"outcome": "FAILED", "detail": "the engine is stopping"}),
            };
            return AtomicResponse::new(Box::pin(fut::ready(reply)));
        }
        let now_ms = crate::clock::system_now_ms();
        // An apply's baseline is the live KPI up to now.
        self.step.note_sample(self.metrics.live_sample());
        let admission = self.step.admit(&msg.0, now_ms);
        AtomicResponse::new(self.carry_out(admission, now_ms))
    }
}

impl Handler<WatchTick> for ControlActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: WatchTick, _: &mut Self::Context) -> Self::Result {
        self.tick_queued = false;
        if self.stopped {
            return AtomicResponse::new(Box::pin(fut::ready(())));
        }
        let now_ms = crate::clock::system_now_ms();
        self.step.note_sample(self.metrics.live_sample());
        let watched = self.step.watch().is_some();
        let rollback = self.step.watch_step(now_ms);
        if watched && rollback.is_none() && self.step.watch().is_none() {
            tracing::info!("the applied change was watched for its whole window and is kept");
        }
        self.publish_optimizer_view();
        match rollback {
            Some(admission) => {
                tracing::warn!("the watched KPI degraded: rolling the change back");
                AtomicResponse::new(Box::pin(
                    self.carry_out(admission, now_ms).map(|_, _, _| ()),
                ))
            }
            None => AtomicResponse::new(Box::pin(fut::ready(()))),
        }
    }
}

/// A config change's effect in words.
fn describe(command: &ControlCommand) -> String {
    let changes = match command {
        ControlCommand::ConfigApply { changes, .. }
        | ControlCommand::ConfigRollback { changes, .. } => changes,
        _ => return String::new(),
    };
    changes
        .iter()
        .map(|c| format!("{} {} -> {}", c.setting.key(), c.from, c.to))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The dashboard's line for an accepted config change: kind, cause and what changed.
fn change_view(
    command: &ControlCommand,
    record: &ControlRecord,
) -> Option<(&'static str, &'static str, ChangeView)> {
    if record.reason.is_some() {
        return None;
    }
    let (request, kind, cause, changes) = match command {
        ControlCommand::ConfigApply {
            changes, evidence, ..
        } => {
            let cause = match (record.source, evidence) {
                (crate::control::ControlSource::Restart, _) => "RESTART",
                (_, Some(_)) => "A_B_REPLAY",
                (_, None) => "OPERATOR",
            };
            ("CONFIG_APPLY", "apply", cause, changes)
        }
        ControlCommand::ConfigRollback { changes, cause, .. } => {
            let cause = match cause {
                crate::optimizer::RollbackCause::KpiDegraded => "KPI_DEGRADED",
                crate::optimizer::RollbackCause::Operator => "OPERATOR",
            };
            ("CONFIG_ROLLBACK", "rollback", cause, changes)
        }
        _ => return None,
    };
    Some((
        kind,
        cause,
        ChangeView {
            request,
            request_id: record.request_id.clone(),
            chain: String::new(),
            seq: 0,
            ts_ms: 0,
            changes: changes.clone(),
            detail: record.detail.clone(),
        },
    ))
}

/// How far a control record reached the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Published {
    No,
    EventOnly,
    Yes,
}

/// Carry out an admitted command, after its record is published.
async fn apply(effect: Effect, gates: &[GateRoute], kill_switch: &KillSwitch) {
    match effect {
        Effect::None => {}
        Effect::KillSwitch(true) => kill_switch.engage(),
        Effect::KillSwitch(false) => kill_switch.release(),
        Effect::TradingState(symbol, state) => {
            for g in gates {
                let applies = match &symbol {
                    Some(s) => g.symbol.as_ref() == Some(s),
                    None => true,
                };
                if applies {
                    let msg = SetTradingState {
                        symbol: symbol.clone(),
                        state,
                    };
                    if g.gate.trading_state.send(msg).await.is_err() {
                        tracing::warn!("a gate stopped before the trading state reached it");
                    }
                }
            }
        }
        Effect::Tuning(tuning) => {
            for g in gates {
                if g.gate.tune.send(Tune(tuning)).await.is_err() {
                    tracing::warn!("a gate stopped before the settings change reached it");
                }
            }
        }
        Effect::Rules(active, shadow) => {
            for g in gates {
                let msg = ReloadRules {
                    active: active.clone(),
                    shadow: shadow.clone(),
                };
                if g.gate.reload.send(msg).await.is_err() {
                    tracing::warn!("a gate stopped before the rules reload reached it");
                }
            }
        }
    }
}

impl Handler<AttachGates> for ControlActor {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, msg: AttachGates, _: &mut Self::Context) -> Self::Result {
        self.gates = Arc::new(msg.0);
        // The restored operator state is signed before the first decision it touches.
        let now_ms = crate::clock::system_now_ms();
        let restored = std::mem::take(&mut self.restored);
        let changes: Vec<_> = restored
            .iter()
            .filter_map(|r| change_view(r.request.as_ref()?, r))
            .collect();
        let signed: Vec<_> = restored
            .into_iter()
            .map(|record| self.step.sign(record, now_ms))
            .collect();
        for (kind, cause, view) in changes {
            self.metrics.optimizer.note_change(kind, cause, view);
        }
        let publisher = self.publisher.clone();
        let state = self.step.state().clone();
        let mut effects = Vec::new();
        if let Some(global) = state.global_trading_state {
            effects.push(Effect::TradingState(None, global.into()));
        }
        for (symbol, s) in state.symbol_trading_states {
            effects.push(Effect::TradingState(Some(symbol), s.into()));
        }
        if let Some((active, shadow)) = self.reloaded.clone() {
            effects.push(Effect::Rules(active, shadow));
        }
        if let Some(t) = state.tuning {
            effects.push(Effect::Tuning(t));
        }
        let gates = self.gates.clone();
        let kill_switch = self.kill_switch.clone();
        AtomicResponse::new(Box::pin(
            async move {
                for s in signed {
                    let published = match s {
                        Ok(s) => {
                            publish_signed(&publisher, [s.event].into_iter().chain(s.checkpoint))
                                .await
                        }
                        Err(e) => Err(e.into()),
                    };
                    if published.is_err() {
                        tracing::error!("the restored operator state's record was not published");
                    }
                }
                for e in effects {
                    apply(e, &gates, &kill_switch).await;
                }
            }
            .into_actor(self),
        ))
    }
}

impl Handler<SealControl> for ControlActor {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;
    fn handle(&mut self, _: SealControl, _: &mut Self::Context) -> Self::Result {
        self.stopped = true;
        let checkpoint = self.step.seal_checkpoint();
        let publisher = self.publisher.clone();
        AtomicResponse::new(Box::pin(
            async move { publish_signed(&publisher, checkpoint?).await }.into_actor(self),
        ))
    }
}
