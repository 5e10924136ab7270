//! The host of one chain's gate step (`engine::gate`): it times the step, records the
//! metrics, and hands the signed decision, checkpoint and VaR snapshot to the publisher.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::publisher::{publish_signed, Publish, PublisherActor};
use super::PipelineError;
use crate::elf::RuleSet;
use crate::engine::{GateRequest, GateStats, GateStep};
use crate::metrics::Metrics;
use crate::sink::Outgoing;

/// A gate request and, beside it, when the market event that caused it arrived
/// (end-to-end latency).
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct ToGate {
    pub request: GateRequest,
    pub origin: Option<Instant>,
}

/// Swap the active (and candidate) rule sets at run time.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct ReloadRules {
    pub active: Arc<RuleSet>,
    pub shadow: Option<Arc<RuleSet>>,
}

/// An operator's trading-state change (a symbol's, or the global one when `None`).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct SetTradingState {
    pub symbol: Option<String>,
    pub state: crate::elf::TradingState,
}

/// New performance settings for the gate (decisions unchanged).
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Tune(pub crate::elf::GateTuning);

#[derive(Message)]
#[rtype(result = "GateStats")]
pub struct GetGateStats;

/// Seal the chain's open checkpoint now (at shutdown).
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct SealCheckpoint;

pub struct GateActor {
    step: GateStep,
    publisher: Addr<PublisherActor>,
    metrics: Arc<Metrics>,
    mailbox_capacity: usize,
}

impl GateActor {
    pub fn new(
        mut step: GateStep,
        publisher: Addr<PublisherActor>,
        metrics: Arc<Metrics>,
        mailbox_capacity: usize,
    ) -> Self {
        step.set_timer(Some(crate::clock::monotonic_ns));
        Self {
            step,
            publisher,
            metrics,
            mailbox_capacity,
        }
    }
}

impl Handler<ReloadRules> for GateActor {
    type Result = ();
    fn handle(&mut self, msg: ReloadRules, _: &mut Self::Context) {
        tracing::info!(
            chain = %self.step.chain(),
            rules_sha256 = %msg.active.hash_hex(),
            shadow_sha256 = msg.shadow.as_ref().map(|s| s.hash_hex().to_string()),
            "rules reloaded"
        );
        self.step.set_rules(msg.active, msg.shadow);
    }
}

impl Handler<SetTradingState> for GateActor {
    type Result = ();
    fn handle(&mut self, msg: SetTradingState, _: &mut Self::Context) {
        tracing::info!(
            chain = %self.step.chain(),
            symbol = msg.symbol.as_deref().unwrap_or("*"),
            state = msg.state.as_str(),
            "trading state set by an operator"
        );
        self.step
            .set_trading_state(msg.symbol.as_deref(), msg.state);
    }
}

impl Handler<Tune> for GateActor {
    type Result = ();
    fn handle(&mut self, msg: Tune, _: &mut Self::Context) {
        tracing::info!(chain = %self.step.chain(), tuning = ?msg.0, "gate settings changed");
        self.step.set_tuning(msg.0);
    }
}

impl Actor for GateActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<ToGate> for GateActor {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;

    fn handle(&mut self, msg: ToGate, _: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let decision = self.step.decide(&msg.request.req);
        let decided = started.elapsed();
        let sealed = self.step.seal(&msg.request, &decision);
        let total = started.elapsed();
        self.step
            .record_latency(decided.as_nanos() as u64, total.as_nanos() as u64);
        self.metrics.observe_decision(&decision, decided, total);
        let req = &msg.request.req;
        match &sealed {
            Ok(out) => tracing::debug!(
                chain = %out.signed.chain,
                seq = out.signed.seq,
                action_id = %req.action_id,
                verdict = decision.verdict.as_str(),
                "decision signed"
            ),
            Err(e) => tracing::error!(
                chain = %self.step.chain(),
                action_id = %req.action_id,
                error = %e,
                "decision not signed"
            ),
        }

        let publisher = self.publisher.clone();
        let origin = msg.origin;
        AtomicResponse::new(Box::pin(
            async move {
                let sealed = sealed?;
                publisher
                    .send(Publish {
                        out: Outgoing::Signed(sealed.signed),
                        origin,
                    })
                    .await??;
                publish_signed(&publisher, sealed.checkpoint).await?;
                if let Some(v) = sealed.snapshot {
                    publisher
                        .send(Publish {
                            out: Outgoing::VarSnapshot(Box::new(v)),
                            origin: None,
                        })
                        .await??;
                }
                Ok(())
            }
            .into_actor(self),
        ))
    }
}

impl Handler<SealCheckpoint> for GateActor {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;
    fn handle(&mut self, _: SealCheckpoint, _: &mut Self::Context) -> Self::Result {
        let checkpoint = self.step.seal_checkpoint();
        let publisher = self.publisher.clone();
        AtomicResponse::new(Box::pin(
            async move { publish_signed(&publisher, checkpoint?).await }.into_actor(self),
        ))
    }
}

impl Handler<GetGateStats> for GateActor {
    type Result = MessageResult<GetGateStats>;
    fn handle(&mut self, _: GetGateStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.step.stats().clone())
    }
}
