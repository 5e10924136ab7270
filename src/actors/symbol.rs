//! The host of one symbol's step (`engine::symbol`) and its chain's gate. Ingest calls the
//! step in its own task through a `SymbolHandle`: a trade's models, decisions and
//! signatures run where the frame was read, with no hop in between (a hop waits behind
//! every other task on the thread); the bar's records then go to the publisher in one
//! message and the closed bars to the portfolio. The `SymbolActor` takes the rest: the
//! operator's gate messages, the model snapshot at shutdown, the report.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::prelude::*;

use super::gate::{hosts_gate, GateHost};
use super::portfolio::PortfolioActor;
use super::publisher::{publish_then, PublisherActor};
use super::{PipelineError, SaveSnapshot};
use crate::engine::{BarClosed, ModelScratch, SymbolOutput, SymbolReport, SymbolStep};
use crate::market::feed::digest::InputMark;
use crate::market::MarketEvent;
use crate::metrics::Metrics;
use crate::sink::Outgoing;
use crate::snapshot::{self, SymbolSnapshot};

/// A market event for a symbol, as ingest hands it on.
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct Tick {
    pub event: MarketEvent,
    /// The engine clock when the frame arrived.
    pub received_at_ms: i64,
    /// Monotonic arrival time, for end-to-end latency (tick to signed, to acknowledged).
    pub arrived: std::time::Instant,
    /// False while the feed for this symbol is not trustworthy.
    pub feed_healthy: bool,
    pub input: Option<InputMark>,
}

#[derive(Message)]
#[rtype(result = "SymbolReport")]
pub struct GetSymbolReport;

thread_local! {
    /// The models' scratch, one per thread: every symbol stepped on the thread borrows it
    /// in turn (about 90 KB each symbol would otherwise keep).
    static MODEL_SCRATCH: RefCell<ModelScratch> = RefCell::new(ModelScratch::default());
}

/// One symbol's step and its chain's gate, with the metrics and snapshot file around them.
pub struct SymbolCore {
    step: SymbolStep,
    out: SymbolOutput,
    gate: GateHost,
    snapshot_dir: Option<PathBuf>,
    metrics: Arc<Metrics>,
}

/// What a trade left to send: the records in publishing order, the closed bars, and the
/// gate's failure if one request could not be sealed (what was sealed before it is in
/// `outs`).
struct Sent {
    outs: Vec<Outgoing>,
    bars: Vec<BarClosed>,
    sealed: Result<(), PipelineError>,
}

impl SymbolCore {
    pub fn new(
        step: SymbolStep,
        gate: GateHost,
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

    /// A trade through the models and, for each request they make, the gate. `None`:
    /// nothing to send (a quote, or a trade that closed no bar).
    fn on_tick(&mut self, tick: &Tick) -> Option<Sent> {
        let MarketEvent::Trade(trade) = &tick.event else {
            // Quotes only refresh freshness; VaR is computed from trades.
            return None;
        };
        let started = std::time::Instant::now();
        MODEL_SCRATCH.with_borrow_mut(|scratch| {
            self.step.on_trade(
                trade,
                tick.received_at_ms,
                tick.feed_healthy,
                tick.input,
                scratch,
                &mut self.out,
            )
        });
        if !self.out.bars.is_empty() {
            self.observe_bar(started.elapsed());
        }
        if let Some(snap) = self.out.snapshot.take() {
            save_symbol_snapshot(&self.snapshot_dir, &snap);
        }
        if self.out.requests.is_empty() && self.out.bars.is_empty() {
            return None;
        }
        let mut outs = Vec::new();
        let sealed = self.gate.pass_all(&self.out.requests, &mut outs);
        Some(Sent {
            outs,
            bars: std::mem::take(&mut self.out.bars),
            sealed,
        })
    }
}

fn lock(core: &Mutex<SymbolCore>) -> MutexGuard<'_, SymbolCore> {
    // Held only between two awaits, never across one; a panic inside ends the run anyway.
    core.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where ingest hands a symbol's trades. The core is shared with the symbol's actor on the
/// same thread; neither holds it across an await, so the lock is never contended. A
/// trade's records are handed to the publisher before the next is taken; the actor
/// publishes only at shutdown (`SealCheckpoint`), once ingest has stopped, so a chain's
/// records reach the publisher in the order they were signed.
#[derive(Clone)]
pub struct SymbolHandle {
    core: Arc<Mutex<SymbolCore>>,
    publisher: Addr<PublisherActor>,
    portfolio: Option<Addr<PortfolioActor>>,
}

impl SymbolHandle {
    pub async fn tick(&self, tick: Tick) -> Result<(), PipelineError> {
        let Some(sent) = lock(&self.core).on_tick(&tick) else {
            return Ok(());
        };
        publish_then(&self.publisher, sent.outs, Some(tick.arrived), sent.sealed).await?;
        if let Some(p) = &self.portfolio {
            for bar in sent.bars {
                p.send(bar).await??;
            }
        }
        Ok(())
    }
}

pub struct SymbolActor {
    core: Arc<Mutex<SymbolCore>>,
    publisher: Addr<PublisherActor>,
    mailbox_capacity: usize,
}

impl SymbolActor {
    /// Start the symbol's actor on `on`; ingest calls its step through the handle.
    pub fn start(
        core: SymbolCore,
        publisher: Addr<PublisherActor>,
        portfolio: Option<Addr<PortfolioActor>>,
        mailbox_capacity: usize,
        on: &ArbiterHandle,
    ) -> (Addr<Self>, SymbolHandle) {
        let core = Arc::new(Mutex::new(core));
        let actor = Self {
            core: core.clone(),
            publisher: publisher.clone(),
            mailbox_capacity,
        };
        let addr = Self::start_in_arbiter(on, move |_| actor);
        let handle = SymbolHandle {
            core,
            publisher,
            portfolio,
        };
        (addr, handle)
    }

    fn with_gate<R>(&mut self, f: impl FnOnce(&mut GateHost) -> R) -> R {
        f(&mut lock(&self.core).gate)
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

hosts_gate!(SymbolActor);

impl Handler<SaveSnapshot> for SymbolActor {
    type Result = ();
    fn handle(&mut self, _: SaveSnapshot, _: &mut Self::Context) {
        let core = lock(&self.core);
        if let Some(snap) = core.step.snapshot() {
            save_symbol_snapshot(&core.snapshot_dir, &snap);
        }
    }
}

impl Handler<GetSymbolReport> for SymbolActor {
    type Result = MessageResult<GetSymbolReport>;
    fn handle(&mut self, _: GetSymbolReport, _: &mut Self::Context) -> Self::Result {
        MessageResult(lock(&self.core).step.report().clone())
    }
}
