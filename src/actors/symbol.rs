//! The host of one symbol's step (`engine::symbol`) and its chain's gate: trades in, the
//! bar's signed decisions to the publisher in one batch, closed bars to the portfolio,
//! model snapshots to disk.

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;

use super::gate::{hosts_gate, GateHost};
use super::portfolio::PortfolioActor;
use super::publisher::{publish_then, PublisherActor};
use super::{PipelineError, SaveSnapshot};
use crate::engine::{SymbolOutput, SymbolReport, SymbolStep};
use crate::market::feed::digest::InputMark;
use crate::market::MarketEvent;
use crate::metrics::Metrics;
use crate::snapshot::{self, SymbolSnapshot};

#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct Tick {
    pub event: MarketEvent,
    /// The engine clock when the frame arrived.
    pub received_at_ms: i64,
    /// Monotonic arrival time, for end-to-end latency (tick to acknowledged).
    pub arrived: std::time::Instant,
    /// False while the feed for this symbol is not trustworthy.
    pub feed_healthy: bool,
    pub input: Option<InputMark>,
}

#[derive(Message)]
#[rtype(result = "SymbolReport")]
pub struct GetSymbolReport;

pub struct SymbolActor {
    step: SymbolStep,
    out: SymbolOutput,
    gate: GateHost,
    publisher: Addr<PublisherActor>,
    portfolio: Option<Addr<PortfolioActor>>,
    mailbox_capacity: usize,
    snapshot_dir: Option<PathBuf>,
    metrics: Arc<Metrics>,
}

impl SymbolActor {
    pub fn new(
        step: SymbolStep,
        gate: GateHost,
        publisher: Addr<PublisherActor>,
        portfolio: Option<Addr<PortfolioActor>>,
        mailbox_capacity: usize,
        snapshot_dir: Option<PathBuf>,
        metrics: Arc<Metrics>,
    ) -> Self {
        if step.report().snapshot_ignored {
            tracing::warn!(symbol = %step.symbol(), "snapshot made with other parameters; ignored");
        }
        metrics
            .health
            .models_ready
            .with_label_values(&[step.symbol()])
            .set(i64::from(step.report().primary.is_some()));
        Self {
            step,
            out: SymbolOutput::default(),
            gate,
            publisher,
            portfolio,
            mailbox_capacity,
            snapshot_dir,
            metrics,
        }
    }

    /// After a bar: model time, readiness and the rolling backtest.
    fn observe_bar(&self, took: std::time::Duration) {
        let m = &self.metrics;
        let r = self.step.report();
        m.risk
            .var_compute_seconds
            .with_label_values(&["symbol"])
            .observe(took.as_secs_f64());
        m.health
            .models_ready
            .with_label_values(&[r.symbol.as_str()])
            .set(i64::from(r.primary.is_some()));
        if let Some(p) = r.primary {
            m.risk
                .observe_backtest(&r.symbol, r.exceedances, r.expected_exceedances, p.level);
        }
    }
}

pub(super) fn save_symbol_snapshot(dir: &Option<PathBuf>, snap: &SymbolSnapshot) {
    let Some(dir) = dir else {
        return;
    };
    if let Err(e) = snapshot::save(&snapshot::symbol_path(dir, &snap.symbol), snap) {
        tracing::warn!(symbol = %snap.symbol, error = %e, "snapshot not written");
    }
}

impl Actor for SymbolActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<Tick> for SymbolActor {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;

    fn handle(&mut self, msg: Tick, _: &mut Self::Context) -> Self::Result {
        let MarketEvent::Trade(trade) = &msg.event else {
            // Quotes only refresh freshness; VaR is computed from trades.
            return AtomicResponse::new(Box::pin(fut::ready(Ok(()))));
        };
        let started = std::time::Instant::now();
        self.step.on_trade(
            trade,
            msg.received_at_ms,
            msg.feed_healthy,
            msg.input,
            &mut self.out,
        );
        if !self.out.bars.is_empty() {
            self.observe_bar(started.elapsed());
        }
        if let Some(snap) = self.out.snapshot.take() {
            save_symbol_snapshot(&self.snapshot_dir, &snap);
        }
        if self.out.requests.is_empty() && self.out.bars.is_empty() {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(()))));
        }
        let mut outs = Vec::new();
        let sealed = self.gate.pass_all(&self.out.requests, &mut outs);
        let bars = std::mem::take(&mut self.out.bars);
        let publisher = self.publisher.clone();
        let portfolio = self.portfolio.clone();
        let origin = Some(msg.arrived);
        AtomicResponse::new(Box::pin(
            async move {
                publish_then(&publisher, outs, origin, sealed).await?;
                if let Some(p) = portfolio {
                    for bar in bars {
                        p.send(bar).await??;
                    }
                }
                Ok(())
            }
            .into_actor(self),
        ))
    }
}

hosts_gate!(SymbolActor);

impl Handler<SaveSnapshot> for SymbolActor {
    type Result = ();
    fn handle(&mut self, _: SaveSnapshot, _: &mut Self::Context) {
        if let Some(snap) = self.step.snapshot() {
            save_symbol_snapshot(&self.snapshot_dir, &snap);
        }
    }
}

impl Handler<GetSymbolReport> for SymbolActor {
    type Result = MessageResult<GetSymbolReport>;
    fn handle(&mut self, _: GetSymbolReport, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.step.report().clone())
    }
}
