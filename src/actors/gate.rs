//! A chain's gate step (`engine::gate`) as the actor that makes the chain's requests hosts
//! it: the symbol actor for a symbol's chain, the portfolio actor for the portfolio's. The
//! gate runs in the same handler as the models, so a closed bar is decided, signed and
//! handed to the publisher in one batch, with no hop between models and signature (each
//! hop waits behind every other task on the thread). The operator's messages reach the
//! gate through its host (`GateControl`).

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::PipelineError;
use crate::audit::{AuditError, SignedEvent};
use crate::elf::RuleSet;
use crate::engine::{GateRequest, GateStats, GateStep};
use crate::metrics::Metrics;
use crate::sink::Outgoing;

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

/// One chain's gate step with its timing, metrics and logs.
pub struct GateHost {
    step: GateStep,
    metrics: Arc<Metrics>,
}

impl GateHost {
    pub fn new(mut step: GateStep, metrics: Arc<Metrics>) -> Self {
        step.set_timer(Some(crate::clock::monotonic_ns));
        Self { step, metrics }
    }

    /// Decide and seal one request; its records (the decision, the checkpoint it
    /// completed, its VaR snapshot) go to `outs` in publishing order.
    pub fn pass(
        &mut self,
        request: &GateRequest,
        outs: &mut Vec<Outgoing>,
    ) -> Result<(), PipelineError> {
        let started = Instant::now();
        let decision = self.step.decide(&request.req);
        let decided = started.elapsed();
        let sealed = self.step.seal(request, &decision);
        let total = started.elapsed();
        self.step
            .record_latency(decided.as_nanos() as u64, total.as_nanos() as u64);
        self.metrics.observe_decision(&decision, decided, total);
        let req = &request.req;
        let sealed = match sealed {
            Ok(sealed) => sealed,
            Err(e) => {
                tracing::error!(
                    chain = %self.step.chain(),
                    action_id = %req.action_id,
                    error = %e,
                    "decision not signed"
                );
                return Err(e.into());
            }
        };
        tracing::debug!(
            chain = %sealed.signed.chain,
            seq = sealed.signed.seq,
            action_id = %req.action_id,
            verdict = decision.verdict.as_str(),
            "decision signed"
        );
        outs.push(Outgoing::Signed(sealed.signed));
        outs.extend(sealed.checkpoint.map(Outgoing::Signed));
        outs.extend(sealed.snapshot.map(|v| Outgoing::VarSnapshot(Box::new(v))));
        Ok(())
    }

    /// Every request in order into `outs`; the first that fails stops the rest (what was
    /// sealed before it is still in `outs`, to be published).
    pub fn pass_all(
        &mut self,
        requests: &[GateRequest],
        outs: &mut Vec<Outgoing>,
    ) -> Result<(), PipelineError> {
        requests.iter().try_for_each(|r| self.pass(r, outs))
    }

    pub fn reload(&mut self, msg: ReloadRules) {
        tracing::info!(
            chain = %self.step.chain(),
            rules_sha256 = %msg.active.hash_hex(),
            shadow_sha256 = msg.shadow.as_ref().map(|s| s.hash_hex().to_string()),
            "rules reloaded"
        );
        self.step.set_rules(msg.active, msg.shadow);
    }

    pub fn set_trading_state(&mut self, msg: SetTradingState) {
        tracing::info!(
            chain = %self.step.chain(),
            symbol = msg.symbol.as_deref().unwrap_or("*"),
            state = msg.state.as_str(),
            "trading state set by an operator"
        );
        self.step
            .set_trading_state(msg.symbol.as_deref(), msg.state);
    }

    pub fn tune(&mut self, msg: Tune) {
        tracing::info!(chain = %self.step.chain(), tuning = ?msg.0, "gate settings changed");
        self.step.set_tuning(msg.0);
    }

    pub fn stats(&self) -> GateStats {
        self.step.stats().clone()
    }

    pub fn seal_checkpoint(&mut self) -> Result<Option<SignedEvent>, AuditError> {
        self.step.seal_checkpoint()
    }
}

/// Where the operator's messages and the end of the run reach one chain's gate.
#[derive(Clone)]
pub struct GateControl {
    pub reload: Recipient<ReloadRules>,
    pub trading_state: Recipient<SetTradingState>,
    pub tune: Recipient<Tune>,
    pub seal: Recipient<SealCheckpoint>,
    pub stats: Recipient<GetGateStats>,
}

impl GateControl {
    pub fn of<A>(addr: &Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>>
            + Handler<ReloadRules>
            + Handler<SetTradingState>
            + Handler<Tune>
            + Handler<SealCheckpoint>
            + Handler<GetGateStats>,
    {
        Self {
            reload: addr.clone().recipient(),
            trading_state: addr.clone().recipient(),
            tune: addr.clone().recipient(),
            seal: addr.clone().recipient(),
            stats: addr.clone().recipient(),
        }
    }
}

/// The gate's messages for an actor with a `with_gate(FnOnce(&mut GateHost) -> R) -> R`
/// method and a `publisher: Addr<PublisherActor>`.
macro_rules! hosts_gate {
    ($actor:ty) => {
        impl ::actix::Handler<$crate::actors::gate::ReloadRules> for $actor {
            type Result = ();
            fn handle(&mut self, msg: $crate::actors::gate::ReloadRules, _: &mut Self::Context) {
                self.with_gate(|g| g.reload(msg));
            }
        }

        impl ::actix::Handler<$crate::actors::gate::SetTradingState> for $actor {
            type Result = ();
            fn handle(
                &mut self,
                msg: $crate::actors::gate::SetTradingState,
                _: &mut Self::Context,
            ) {
                self.with_gate(|g| g.set_trading_state(msg));
            }
        }

        impl ::actix::Handler<$crate::actors::gate::Tune> for $actor {
            type Result = ();
            fn handle(&mut self, msg: $crate::actors::gate::Tune, _: &mut Self::Context) {
                self.with_gate(|g| g.tune(msg));
            }
        }

        impl ::actix::Handler<$crate::actors::gate::GetGateStats> for $actor {
            type Result = ::actix::MessageResult<$crate::actors::gate::GetGateStats>;
            fn handle(
                &mut self,
                _: $crate::actors::gate::GetGateStats,
                _: &mut Self::Context,
            ) -> Self::Result {
                ::actix::MessageResult(self.with_gate(|g| g.stats()))
            }
        }

        impl ::actix::Handler<$crate::actors::gate::SealCheckpoint> for $actor {
            type Result = ::actix::AtomicResponse<Self, Result<(), $crate::actors::PipelineError>>;
            fn handle(
                &mut self,
                _: $crate::actors::gate::SealCheckpoint,
                _: &mut Self::Context,
            ) -> Self::Result {
                use ::actix::WrapFuture;
                let checkpoint = self.with_gate(|g| g.seal_checkpoint());
                let publisher = self.publisher.clone();
                ::actix::AtomicResponse::new(Box::pin(
                    async move {
                        $crate::actors::publisher::publish_signed(&publisher, checkpoint?).await
                    }
                    .into_actor(self),
                ))
            }
        }
    };
}
pub(super) use hosts_gate;
