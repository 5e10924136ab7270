//! The VaR actor of one symbol: bars, both models, limits; its actions go to its gate, its
//! bar returns to the portfolio actor. The maths lives in `var::symbol_risk`.

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;

use super::gate::{GateActor, GateRequest};
use super::portfolio::{BarClosed, PortfolioActor};
use super::PipelineError;
use crate::config::Config;
use crate::elf::{ActionRequest, Evidence, InputRange};
use crate::market::rest::Kline;
use crate::market::MarketEvent;
use crate::risk::{LimitPolicy, LimitTracker, RiskAction};
use crate::snapshot::{self, SymbolSnapshot, SNAPSHOT_VERSION};
use crate::var::bars::{BarBuilder, ClosedBar};
use crate::var::symbol_risk::{PrimaryView, SymbolRiskModel};
use crate::var::{FhsLevelRisk, LevelRisk, ModelFigures};

#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct Tick {
    pub event: MarketEvent,
    /// The ingest clock when the frame arrived.
    pub received_at_ms: i64,
    /// Monotonic arrival time, for end-to-end latency (tick to acknowledged).
    pub arrived: std::time::Instant,
    /// False while the feed for this symbol is not trustworthy.
    pub feed_healthy: bool,
}

/// Write the model snapshot now (at shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SaveSnapshot;

/// Latest figures of a symbol, for the run summary.
#[derive(Debug, Clone, Default)]
pub struct SymbolReport {
    pub symbol: String,
    pub trades: u64,
    pub bars: u64,
    pub returns: u64,
    pub price: f64,
    pub position_qty: f64,
    /// Returns absorbed from klines history before the first live bar.
    pub warm_start_returns: u64,
    pub restored_from_snapshot: bool,
    pub primary: Option<PrimaryView>,
    pub fhs_warmup_remaining: u64,
    pub fhs_latest: Vec<FhsLevelRisk>,
    pub nig_latest: Vec<LevelRisk>,
    pub exceedances: f64,
    pub expected_exceedances: f64,
}

#[derive(Message)]
#[rtype(result = "SymbolReport")]
pub struct GetSymbolReport;

/// What a symbol starts from: a snapshot of an earlier run and/or klines history.
#[derive(Debug, Clone, Default)]
pub struct SymbolStart {
    pub snapshot: Option<SymbolSnapshot>,
    /// Closed klines, oldest first.
    pub klines: Vec<Kline>,
}

pub struct SymbolActor {
    symbol: String,
    index: usize,
    chain: String,
    position_qty: f64,
    limit_cap_usd: f64,
    /// The VaR level that drives limits.
    first_level: f64,
    bars: BarBuilder,
    closed: Vec<ClosedBar>,
    model: SymbolRiskModel,
    limits: LimitTracker,
    next_action: u64,
    report: SymbolReport,
    gate: Addr<GateActor>,
    portfolio: Option<Addr<PortfolioActor>>,
    mailbox_capacity: usize,
    snapshot_dir: Option<PathBuf>,
    snapshot_every_bars: u32,
    bars_since_snapshot: u32,
}

impl SymbolActor {
    pub fn new(
        config: &Config,
        index: usize,
        chain: String,
        gate: Addr<GateActor>,
        portfolio: Option<Addr<PortfolioActor>>,
        start: SymbolStart,
    ) -> Option<Self> {
        let inst = config.instruments.get(index)?;
        let interval_ms = config.bars.interval_ms;
        let mut model = SymbolRiskModel::new(config.symbol_model(index));
        let mut bars = BarBuilder::new(interval_ms);
        let mut report = SymbolReport {
            symbol: inst.symbol.clone(),
            position_qty: inst.position_qty,
            ..Default::default()
        };
        // A compatible snapshot first, then whatever klines came after it.
        let mut last: Option<(i64, f64)> = None;
        if let Some(snap) = start.snapshot {
            if snap.symbol == inst.symbol
                && snap.interval_ms == interval_ms
                && snap.version == SNAPSHOT_VERSION
                && model.restore(snap.model)
            {
                last = Some((snap.last_bar_start_ms, snap.last_close));
                report.restored_from_snapshot = true;
            } else {
                tracing::warn!(symbol = %inst.symbol, "snapshot made with other parameters; ignored");
            }
        }
        let mut returns = Vec::new();
        let resume_after = last.map(|(start, _)| start);
        for k in start
            .klines
            .iter()
            .filter(|k| resume_after.is_none_or(|start| k.open_time_ms > start))
        {
            if let Some((_, prev)) = last {
                returns.push((k.close / prev).ln());
            }
            last = Some((k.open_time_ms, k.close));
        }
        model.warm(&returns);
        report.warm_start_returns = returns.len() as u64;
        if let Some((start_ms, close)) = last {
            bars.resume(start_ms, close);
        }
        report.returns = model.returns_seen();
        let snapshot_dir = (!config.var.snapshot.dir.as_os_str().is_empty())
            .then(|| config.var.snapshot.dir.clone());
        Some(Self {
            symbol: inst.symbol.clone(),
            index,
            chain,
            position_qty: inst.position_qty,
            limit_cap_usd: inst.limit_cap_usd,
            first_level: config.var.levels[0],
            bars,
            closed: Vec::new(),
            model,
            limits: LimitTracker::new(LimitPolicy {
                limit_usd: inst.var_limit_usd,
                reduce_ratio: config.limits.reduce_ratio,
                halt_ratio: config.limits.halt_ratio,
                resume_ratio: config.limits.resume_ratio,
            }),
            next_action: 0,
            report,
            gate,
            portfolio,
            mailbox_capacity: config.feed.mailbox_capacity,
            snapshot_dir,
            snapshot_every_bars: config.var.snapshot.every_bars,
            bars_since_snapshot: 0,
        })
    }

    fn save_snapshot(&mut self) {
        let (Some(dir), Some((start, close))) = (&self.snapshot_dir, self.bars.last_closed())
        else {
            return;
        };
        let snap = SymbolSnapshot {
            version: SNAPSHOT_VERSION,
            symbol: self.symbol.clone(),
            interval_ms: self.bars.interval_ms(),
            last_bar_start_ms: start,
            last_close: close,
            model: self.model.state(),
        };
        if let Err(e) = snapshot::save(&snapshot::symbol_path(dir, &self.symbol), &snap) {
            tracing::warn!(symbol = %self.symbol, error = %e, "snapshot not written");
        }
        self.bars_since_snapshot = 0;
    }

    /// Absorb a closed bar; returns the gate requests and the portfolio message it causes.
    fn on_bar(
        &mut self,
        bar: ClosedBar,
        data_time_ms: i64,
        now_ms: i64,
        feed_healthy: bool,
        requests: &mut Vec<GateRequest>,
    ) -> Option<BarClosed> {
        self.report.bars += 1;
        let r = bar.log_return?;
        self.model.absorb(r);
        self.report.returns = self.model.returns_seen();
        let forecast = self.model.forecast();
        self.report.primary = forecast.primary;
        self.report.fhs_warmup_remaining = forecast.figures.fhs.warmup_remaining;
        self.report.fhs_latest = forecast.figures.fhs.levels.clone();
        self.report.nig_latest = forecast
            .figures
            .nig
            .as_ref()
            .map(|n| n.levels.clone())
            .unwrap_or_default();
        self.report.exceedances = forecast.exceedances;
        self.report.expected_exceedances = forecast.expected_exceedances;
        let notional = self.position_qty * bar.close;
        let p = forecast.primary;
        let evidence = Evidence {
            level: p.map_or(self.first_level, |p| p.level),
            var_usd: p.map_or(0.0, |p| p.var * notional),
            es_usd: p.map_or(0.0, |p| p.es * notional),
            limit_usd: self.limits.policy.limit_usd,
            limit_cap_usd: self.limit_cap_usd,
            var_ci_low_usd: p.map_or(0.0, |p| p.var_ci_low * notional),
            var_ci_high_usd: p.map_or(0.0, |p| p.var_ci_high * notional),
            position_qty: self.position_qty,
            price: bar.close,
            ess: forecast.ess,
            mc_z: forecast.mc_z,
            exceedances: forecast.exceedances,
            expected_exceedances: forecast.expected_exceedances,
            model_warming_up: p.is_none(),
        };
        let mut actions = Vec::new();
        if p.is_some() {
            self.limits
                .evaluate(evidence.var_usd, self.position_qty, &mut actions);
        } else {
            // Desks still see the picture; nothing that needs a VaR is proposed.
            actions.push(RiskAction::PublishRiskSnapshot);
        }
        let figures = Arc::new(ModelFigures::Symbol(Box::new(forecast.figures)));
        let input = InputRange {
            first_trade_id: bar.first_trade_id,
            last_trade_id: bar.last_trade_id,
            bar_start_ms: bar.start_ms,
            bar_end_ms: bar.end_ms,
            returns_seen: self.model.returns_seen(),
        };
        for action in actions {
            self.next_action += 1;
            requests.push(GateRequest {
                req: ActionRequest {
                    action_id: format!("{}/{}", self.chain, self.next_action),
                    symbol: self.symbol.clone(),
                    action,
                    data_time_ms,
                    decided_at_ms: now_ms,
                    feed_healthy,
                    evidence,
                    input,
                },
                figures: figures.clone(),
                origin: None,
            });
        }
        self.bars_since_snapshot += 1;
        if self.bars_since_snapshot >= self.snapshot_every_bars {
            self.save_snapshot();
        }
        Some(BarClosed {
            index: self.index,
            bar_end_ms: bar.end_ms,
            log_return: r,
            close: bar.close,
            data_time_ms,
            received_at_ms: now_ms,
            feed_healthy,
        })
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
        let MarketEvent::Trade(trade) = msg.event else {
            // Quotes only refresh freshness; VaR is computed from trades.
            return AtomicResponse::new(Box::pin(fut::ready(Ok(()))));
        };
        self.report.trades += 1;
        self.report.price = trade.price;
        self.bars.push(
            trade.trade_time_ms,
            trade.price,
            trade.trade_id,
            &mut self.closed,
        );
        if self.closed.is_empty() {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(()))));
        }
        let mut requests = Vec::new();
        let mut bar_msgs = Vec::new();
        let closed = std::mem::take(&mut self.closed);
        for bar in &closed {
            if let Some(m) = self.on_bar(
                *bar,
                trade.trade_time_ms,
                msg.received_at_ms,
                msg.feed_healthy,
                &mut requests,
            ) {
                bar_msgs.push(m);
            }
        }
        self.closed = closed;
        self.closed.clear();
        for r in &mut requests {
            r.origin = Some(msg.arrived);
        }
        let gate = self.gate.clone();
        let portfolio = self.portfolio.clone();
        AtomicResponse::new(Box::pin(
            async move {
                for r in requests {
                    gate.send(r).await??;
                }
                if let Some(p) = portfolio {
                    for m in bar_msgs {
                        p.send(m).await??;
                    }
                }
                Ok(())
            }
            .into_actor(self),
        ))
    }
}

impl Handler<SaveSnapshot> for SymbolActor {
    type Result = ();
    fn handle(&mut self, _: SaveSnapshot, _: &mut Self::Context) {
        self.save_snapshot();
    }
}

impl Handler<GetSymbolReport> for SymbolActor {
    type Result = MessageResult<GetSymbolReport>;
    fn handle(&mut self, _: GetSymbolReport, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.report.clone())
    }
}
