//! The host of the portfolio step (`engine::portfolio`) and its chain's gate: closed bars
//! of every symbol in, signed decisions to the publisher, model snapshots to disk.

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;

use super::gate::{hosts_gate, GateHost};
use super::publisher::{publish_then, PublisherActor};
use super::{PipelineError, SaveSnapshot};
use crate::engine::{BarClosed, PortfolioOutput, PortfolioReport, PortfolioStep};
use crate::metrics::Metrics;
use crate::snapshot::{self, PortfolioSnapshot};

impl Message for BarClosed {
    type Result = Result<(), PipelineError>;
}

#[derive(Message)]
#[rtype(result = "PortfolioReport")]
pub struct GetPortfolioReport;

pub struct PortfolioActor {
    step: PortfolioStep,
    out: PortfolioOutput,
    gate: GateHost,
    publisher: Addr<PublisherActor>,
    mailbox_capacity: usize,
    snapshot_dir: Option<PathBuf>,
    metrics: Arc<Metrics>,
}

impl PortfolioActor {
    pub fn new(
        step: PortfolioStep,
        gate: GateHost,
        publisher: Addr<PublisherActor>,
        mailbox_capacity: usize,
        snapshot_dir: Option<PathBuf>,
        metrics: Arc<Metrics>,
    ) -> Self {
        if step.report().snapshot_ignored {
            tracing::warn!("portfolio snapshot made with other parameters; ignored");
        }
        Self {
            step,
            out: PortfolioOutput::default(),
            gate,
            publisher,
            mailbox_capacity,
            snapshot_dir,
            metrics,
        }
    }

    fn with_gate<R>(&mut self, f: impl FnOnce(&mut GateHost) -> R) -> R {
        f(&mut self.gate)
    }
}

pub(super) fn save_portfolio_snapshot(dir: &Option<PathBuf>, snap: &PortfolioSnapshot) {
    let Some(dir) = dir else {
        return;
    };
    if let Err(e) = snapshot::save(&snapshot::portfolio_path(dir), snap) {
        tracing::warn!(error = %e, "portfolio snapshot not written");
    }
}

impl Actor for PortfolioActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<BarClosed> for PortfolioActor {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;

    fn handle(&mut self, bar: BarClosed, _: &mut Self::Context) -> Self::Result {
        let (skipped, aligned) = {
            let r = self.step.report();
            (r.skipped_bars, r.aligned_bars)
        };
        let started = std::time::Instant::now();
        self.step.on_bar(bar, &mut self.out);
        let r = self.step.report();
        if r.aligned_bars > aligned {
            self.metrics
                .risk
                .var_compute_seconds
                .with_label_values(&["portfolio"])
                .observe(started.elapsed().as_secs_f64());
        }
        if r.skipped_bars > skipped {
            self.metrics
                .risk
                .var_errors_total
                .with_label_values(&["portfolio"])
                .inc_by(r.skipped_bars - skipped);
            tracing::warn!(bar_end_ms = bar.bar_end_ms, "portfolio update skipped");
        }
        if let Some(snap) = self.out.snapshot.take() {
            save_portfolio_snapshot(&self.snapshot_dir, &snap);
        }
        let mut outs = Vec::new();
        let sealed = self.gate.pass_all(&self.out.requests, &mut outs);
        let publisher = self.publisher.clone();
        AtomicResponse::new(Box::pin(
            async move { publish_then(&publisher, outs, None, sealed).await }.into_actor(self),
        ))
    }
}

hosts_gate!(PortfolioActor);

impl Handler<SaveSnapshot> for PortfolioActor {
    type Result = ();
    fn handle(&mut self, _: SaveSnapshot, _: &mut Self::Context) {
        if let Some(snap) = self.step.snapshot() {
            save_portfolio_snapshot(&self.snapshot_dir, &snap);
        }
    }
}

impl Handler<GetPortfolioReport> for PortfolioActor {
    type Result = MessageResult<GetPortfolioReport>;
    fn handle(&mut self, _: GetPortfolioReport, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.step.report().clone())
    }
}
