//! The engine core: synchronous steps with no I/O, clock, thread or configuration file of
//! their own. Hosts (the actix pipeline, the in-process replay, and next the Kafka roles and
//! the auditor's replay) receive input, call a step, and do the I/O for what comes out.
//!
//! - [`crate::market::feed::FeedStep`]: frames and REST answers in; ticks and fetches out.
//! - [`SymbolStep`]: a symbol's trades in; gate requests and closed bars out.
//! - [`PortfolioStep`]: closed bars of every symbol in; portfolio gate requests out.
//! - [`GateStep`]: a gate request in; the signed decision, checkpoint and VaR snapshot out.
//! - [`Engine`]: the last three composed for hosts that run a whole engine in one thread.

pub mod gate;
pub mod portfolio;
pub mod state;
pub mod symbol;
mod var_snapshot;

use serde::{Deserialize, Serialize};

use crate::audit::{AuditError, SignedEvent};
use crate::elf::ActionRequest;
use crate::fast_hash::FastMap;
use crate::market::feed::digest::InputMark;
use crate::market::feed::FeedTick;
use crate::market::{MarketEvent, Symbol};
use state::{PortfolioSnapshot, SymbolSnapshot};

pub use crate::var::symbol_risk::ModelScratch;
pub use gate::{GateOutput, GateStats, GateStep};
pub use portfolio::{
    PortfolioOutput, PortfolioReport, PortfolioSettings, PortfolioStart, PortfolioStep,
};
pub use symbol::{SymbolOutput, SymbolReport, SymbolSettings, SymbolStart, SymbolStep};
pub use var_snapshot::{VarSnapshot, VAR_SNAPSHOT_VERSION};

/// An action proposed to a chain's gate, with the model figures it is signed with.
#[derive(Debug, Clone)]
pub struct GateRequest {
    pub req: ActionRequest,
    /// The bar's evidence, input range and model figures as signed, encoded once where
    /// the bar closed (the same values as `req`'s).
    pub bar: crate::audit::wire::BarRecords,
    /// The connection's input mark at the tick that closed the bar (symbol requests); the
    /// chain's checkpoints sign the mark of their last decision.
    pub input: Option<InputMark>,
    /// The topic record the request came from, under a Kafka role (signed with the
    /// decision, so a record consumed twice is recognised).
    pub source: Option<crate::audit::wire::SourceOffset>,
}

/// A symbol's closed bar, for the portfolio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BarClosed {
    /// The symbol's position in the configuration.
    pub index: usize,
    pub bar_end_ms: i64,
    pub log_return: f64,
    pub close: f64,
    pub data_time_ms: i64,
    pub received_at_ms: i64,
    pub feed_healthy: bool,
}

/// The stages a host may time; the engine marks the end of each with [`Stopwatch::lap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Bars, both models, limits (symbol and portfolio).
    Models,
    /// L0-L3.
    Decide,
    /// Decision record, L4 signature, chain link, checkpoint, snapshot.
    Sign,
}

/// Injected by the host, which owns the clock; the engine only says where a stage ends.
pub trait Stopwatch {
    fn lap(&mut self, stage: Stage);
}

/// A host that does not time stages.
pub struct NoStopwatch;

impl Stopwatch for NoStopwatch {
    fn lap(&mut self, _: Stage) {}
}

/// What the engine hands its host, in order.
#[derive(Debug, Clone)]
pub enum EngineOutput {
    /// A signed decision, key rotation or checkpoint: publish it.
    Signed(SignedEvent),
    /// The dashboard message of the decision just signed.
    VarSnapshot(Box<VarSnapshot>),
    /// A model snapshot is due: persist it.
    SymbolState(Box<SymbolSnapshot>),
    PortfolioState(Box<PortfolioSnapshot>),
}

/// The symbol, portfolio and gate steps of one engine, for single-threaded hosts.
pub struct Engine {
    symbols: Vec<SymbolStep>,
    symbol_gates: Vec<GateStep>,
    routes: FastMap<Symbol, usize>,
    portfolio: Option<(PortfolioStep, GateStep)>,
    symbol_out: SymbolOutput,
    portfolio_out: PortfolioOutput,
    /// Shared by every symbol: the engine steps them one at a time.
    scratch: ModelScratch,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("symbol {0} has no gate")]
    MissingGate(String),
    #[error("signing: {0}")]
    Audit(#[from] AuditError),
}

impl Engine {
    /// `symbols[i]` is gated by `symbol_gates[i]`.
    pub fn new(
        symbols: Vec<SymbolStep>,
        symbol_gates: Vec<GateStep>,
        portfolio: Option<(PortfolioStep, GateStep)>,
    ) -> Result<Self, EngineError> {
        if let Some(s) = symbols.get(symbol_gates.len()) {
            return Err(EngineError::MissingGate(s.symbol().to_string()));
        }
        let routes = symbols
            .iter()
            .enumerate()
            .map(|(i, s)| (Symbol::from(s.symbol()), i))
            .collect();
        Ok(Self {
            symbols,
            symbol_gates,
            routes,
            portfolio,
            symbol_out: SymbolOutput::default(),
            portfolio_out: PortfolioOutput::default(),
            scratch: ModelScratch::default(),
        })
    }

    /// Whether [`on_tick`](Self::on_tick) uses `tick`: trades only. Quotes only refresh
    /// freshness in the feed step; VaR is computed from trades. A host that hands ticks to
    /// the engine across threads sends only these.
    pub fn consumes(tick: &FeedTick) -> bool {
        matches!(tick.event, MarketEvent::Trade(_))
    }

    /// One tick from the feed step; a tick it does not [`consume`](Self::consumes) changes
    /// nothing.
    pub fn on_tick(
        &mut self,
        tick: &FeedTick,
        watch: &mut impl Stopwatch,
        out: &mut Vec<EngineOutput>,
    ) -> Result<(), EngineError> {
        let MarketEvent::Trade(trade) = &tick.event else {
            return Ok(());
        };
        let Some(&i) = self.routes.get(trade.symbol.as_str()) else {
            return Ok(());
        };
        self.symbols[i].on_trade(
            trade,
            tick.received_at_ms,
            tick.feed_healthy,
            tick.input,
            &mut self.scratch,
            &mut self.symbol_out,
        );
        watch.lap(Stage::Models);
        if let Some(s) = self.symbol_out.snapshot.take() {
            out.push(EngineOutput::SymbolState(Box::new(s)));
        }
        for request in &self.symbol_out.requests {
            gate(&mut self.symbol_gates[i], request, watch, out)?;
        }
        if let Some((step, portfolio_gate)) = &mut self.portfolio {
            for bar in &self.symbol_out.bars {
                step.on_bar(*bar, &mut self.portfolio_out);
                watch.lap(Stage::Models);
                if let Some(s) = self.portfolio_out.snapshot.take() {
                    out.push(EngineOutput::PortfolioState(Box::new(s)));
                }
                for request in &self.portfolio_out.requests {
                    gate(portfolio_gate, request, watch, out)?;
                }
            }
        }
        Ok(())
    }

    /// At the end of input: seal every open checkpoint and hand out the model snapshots.
    pub fn finish(&mut self, out: &mut Vec<EngineOutput>) -> Result<(), EngineError> {
        for g in self.gates_mut() {
            if let Some(cp) = g.seal_checkpoint()? {
                out.push(EngineOutput::Signed(cp));
            }
        }
        for s in &self.symbols {
            if let Some(snap) = s.snapshot() {
                out.push(EngineOutput::SymbolState(Box::new(snap)));
            }
        }
        if let Some(snap) = self.portfolio.as_ref().and_then(|(p, _)| p.snapshot()) {
            out.push(EngineOutput::PortfolioState(Box::new(snap)));
        }
        Ok(())
    }

    /// Every gate: the portfolio's first, then the symbols' in configuration order.
    pub fn gates_mut(&mut self) -> impl Iterator<Item = &mut GateStep> {
        self.portfolio
            .iter_mut()
            .map(|(_, g)| g)
            .chain(self.symbol_gates.iter_mut())
    }

    pub fn gate_stats(&self) -> Vec<GateStats> {
        self.portfolio
            .iter()
            .map(|(_, g)| g)
            .chain(&self.symbol_gates)
            .map(|g| g.stats().clone())
            .collect()
    }

    pub fn symbol_reports(&self) -> Vec<SymbolReport> {
        self.symbols.iter().map(|s| s.report().clone()).collect()
    }

    pub fn portfolio_report(&self) -> Option<PortfolioReport> {
        self.portfolio.as_ref().map(|(p, _)| p.report().clone())
    }
}

/// One request through a gate, its outputs in publishing order.
fn gate(
    step: &mut GateStep,
    request: &GateRequest,
    watch: &mut impl Stopwatch,
    out: &mut Vec<EngineOutput>,
) -> Result<(), EngineError> {
    let decision = step.decide(&request.req);
    watch.lap(Stage::Decide);
    let sealed = step.seal(request, &decision)?;
    watch.lap(Stage::Sign);
    out.push(EngineOutput::Signed(sealed.signed));
    if let Some(cp) = sealed.checkpoint {
        out.push(EngineOutput::Signed(cp));
    }
    if let Some(v) = sealed.snapshot {
        out.push(EngineOutput::VarSnapshot(Box::new(v)));
    }
    Ok(())
}
