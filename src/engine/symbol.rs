//! The symbol step: one instrument's bars, both models, limits and warm-up rule. Each trade
//! goes in; the gate requests and the bar return for the portfolio come out.

use super::state::{SymbolSnapshot, SNAPSHOT_VERSION};
use super::{BarClosed, GateRequest};
use crate::audit::wire::BarRecords;
use crate::elf::{ActionRequest, Evidence, InputRange};
use crate::market::feed::digest::InputMark;
use crate::market::Kline;
use crate::market::Trade;
use crate::risk::{LimitPolicy, LimitTracker, RiskAction};
use crate::var::bars::{BarBuilder, ClosedBar};
use crate::var::symbol_risk::{ModelScratch, PrimaryView, SymbolModelSettings, SymbolRiskModel};
use crate::var::{FhsLevelRisk, LevelRisk, ModelFigures};

/// Everything the step needs, as plain values.
#[derive(Debug, Clone)]
pub struct SymbolSettings {
    pub symbol: String,
    /// Position of the symbol in the configuration (the portfolio's column).
    pub index: usize,
    /// The chain its actions are signed on; action IDs are `<chain>/<n>`.
    pub chain: String,
    pub position_qty: f64,
    pub limit_cap_usd: f64,
    pub interval_ms: i64,
    pub model: SymbolModelSettings,
    pub limits: LimitPolicy,
    /// A model snapshot is due after this many bars; `None` keeps no snapshots.
    pub snapshot_every_bars: Option<u32>,
}

/// What a symbol starts from: a snapshot of an earlier run and/or klines history.
#[derive(Debug, Clone, Default)]
pub struct SymbolStart {
    pub snapshot: Option<SymbolSnapshot>,
    /// Closed klines, oldest first.
    pub klines: Vec<Kline>,
}

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
    /// A snapshot was offered but made with other parameters.
    pub snapshot_ignored: bool,
    pub primary: Option<PrimaryView>,
    pub fhs_warmup_remaining: u64,
    pub fhs_latest: Vec<FhsLevelRisk>,
    pub nig_latest: Vec<LevelRisk>,
    pub exceedances: f64,
    pub expected_exceedances: f64,
}

/// What one trade caused, in order.
#[derive(Debug, Default)]
pub struct SymbolOutput {
    pub requests: Vec<GateRequest>,
    pub bars: Vec<BarClosed>,
    /// A model snapshot is due: the host writes it.
    pub snapshot: Option<SymbolSnapshot>,
}

impl SymbolOutput {
    pub fn clear(&mut self) {
        self.requests.clear();
        self.bars.clear();
        self.snapshot = None;
    }
}

pub struct SymbolStep {
    settings: SymbolSettings,
    bars: BarBuilder,
    closed: Vec<ClosedBar>,
    model: SymbolRiskModel,
    limits: LimitTracker,
    next_action: u64,
    report: SymbolReport,
    bars_since_snapshot: u32,
}

impl SymbolStep {
    pub fn new(settings: SymbolSettings, start: SymbolStart) -> Self {
        let interval_ms = settings.interval_ms;
        let mut model = SymbolRiskModel::new(settings.model.clone());
        let mut bars = BarBuilder::new(interval_ms);
        let mut report = SymbolReport {
            symbol: settings.symbol.clone(),
            position_qty: settings.position_qty,
            ..Default::default()
        };
        // A compatible snapshot first, then whatever klines came after it.
        let mut last: Option<(i64, f64)> = None;
        if let Some(snap) = start.snapshot {
            if snap.symbol == settings.symbol
                && snap.interval_ms == interval_ms
                && snap.version == SNAPSHOT_VERSION
                && model.restore(snap.model)
            {
                last = Some((snap.last_bar_start_ms, snap.last_close));
                report.restored_from_snapshot = true;
            } else {
                report.snapshot_ignored = true;
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
        let limits = LimitTracker::new(settings.limits);
        Self {
            settings,
            bars,
            closed: Vec::new(),
            model,
            limits,
            next_action: 0,
            report,
            bars_since_snapshot: 0,
        }
    }

    pub fn symbol(&self) -> &str {
        &self.settings.symbol
    }

    pub fn report(&self) -> &SymbolReport {
        &self.report
    }

    /// The models and where the bars stopped, once a bar has closed.
    pub fn snapshot(&self) -> Option<SymbolSnapshot> {
        let (start, close) = self.bars.last_closed()?;
        Some(SymbolSnapshot {
            version: SNAPSHOT_VERSION,
            symbol: self.settings.symbol.clone(),
            interval_ms: self.bars.interval_ms(),
            last_bar_start_ms: start,
            last_close: close,
            model: self.model.state(),
        })
    }

    /// One trade at engine time `now_ms`; `out` is cleared first. `scratch` is the host's
    /// (one per thread will do): the models summarise their draws in it.
    pub fn on_trade(
        &mut self,
        trade: &Trade,
        now_ms: i64,
        feed_healthy: bool,
        input: Option<InputMark>,
        scratch: &mut ModelScratch,
        out: &mut SymbolOutput,
    ) {
        out.clear();
        self.report.trades += 1;
        self.report.price = trade.price;
        self.bars.push(
            trade.trade_time_ms,
            trade.price,
            trade.trade_id,
            &mut self.closed,
        );
        let closed = std::mem::take(&mut self.closed);
        let arrival = Arrival {
            data_time_ms: trade.trade_time_ms,
            now_ms,
            feed_healthy,
            input,
        };
        for bar in &closed {
            self.on_bar(*bar, &arrival, scratch, out);
        }
        self.closed = closed;
        self.closed.clear();
    }

    fn on_bar(
        &mut self,
        bar: ClosedBar,
        arrival: &Arrival,
        scratch: &mut ModelScratch,
        out: &mut SymbolOutput,
    ) {
        let Arrival {
            data_time_ms,
            now_ms,
            feed_healthy,
            input: input_mark,
        } = *arrival;
        self.report.bars += 1;
        let Some(r) = bar.log_return else {
            return;
        };
        self.model.absorb(r);
        self.report.returns = self.model.returns_seen();
        let forecast = self.model.forecast(scratch);
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
        let s = &self.settings;
        let notional = s.position_qty * bar.close;
        let p = forecast.primary;
        let first_level = s.model.levels.first().copied().unwrap_or(0.99);
        let evidence = Evidence {
            level: p.map_or(first_level, |p| p.level),
            var_usd: p.map_or(0.0, |p| p.var * notional),
            es_usd: p.map_or(0.0, |p| p.es * notional),
            limit_usd: self.limits.policy.limit_usd,
            limit_cap_usd: s.limit_cap_usd,
            var_ci_low_usd: p.map_or(0.0, |p| p.var_ci_low * notional),
            var_ci_high_usd: p.map_or(0.0, |p| p.var_ci_high * notional),
            position_qty: s.position_qty,
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
                .evaluate(evidence.var_usd, s.position_qty, &mut actions);
        } else {
            // Desks still see the picture; nothing that needs a VaR is proposed.
            actions.push(RiskAction::PublishRiskSnapshot);
        }
        // Encoded here, once, for every decision signed with them.
        let input = InputRange {
            first_trade_id: bar.first_trade_id,
            last_trade_id: bar.last_trade_id,
            bar_start_ms: bar.start_ms,
            bar_end_ms: bar.end_ms,
            returns_seen: self.model.returns_seen(),
        };
        let records = BarRecords::of(
            &evidence,
            &input,
            &ModelFigures::Symbol(Box::new(forecast.figures)),
        );
        for action in actions {
            self.next_action += 1;
            out.requests.push(GateRequest {
                req: ActionRequest {
                    action_id: format!("{}/{}", s.chain, self.next_action),
                    symbol: s.symbol.clone(),
                    action,
                    data_time_ms,
                    decided_at_ms: now_ms,
                    feed_healthy,
                    evidence,
                    input,
                },
                bar: records.clone(),
                input: input_mark,
                source: None,
            });
        }
        if let Some(every) = s.snapshot_every_bars {
            self.bars_since_snapshot += 1;
            if self.bars_since_snapshot >= every {
                self.bars_since_snapshot = 0;
                out.snapshot = self.snapshot();
            }
        }
        out.bars.push(BarClosed {
            index: s.index,
            bar_end_ms: bar.end_ms,
            log_return: r,
            close: bar.close,
            data_time_ms,
            received_at_ms: now_ms,
            feed_healthy,
        });
    }
}

/// The trade that closed a bar, as the bar's decisions record it.
struct Arrival {
    data_time_ms: i64,
    now_ms: i64,
    feed_healthy: bool,
    input: Option<InputMark>,
}
