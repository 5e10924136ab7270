//! The portfolio actor: aligns bar returns across symbols by bar end time, updates the NIW
//! posterior and proposes portfolio-level actions to the portfolio gate.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;

use super::gate::{GateActor, GateRequest};
use super::symbol::SaveSnapshot;
use super::PipelineError;
use crate::config::Config;
use crate::elf::{ActionRequest, Evidence, InputRange};
use crate::market::rest::Kline;
use crate::risk::{LimitPolicy, LimitTracker, RiskAction};
use crate::snapshot::{self, PortfolioSnapshot, SNAPSHOT_VERSION};
use crate::var::portfolio_risk::PortfolioRiskModel;
use crate::var::{ModelFigures, PortfolioFigures};

/// Bars waiting for the other symbols; older incomplete ones are dropped.
const MAX_PENDING_BARS: usize = 4096;

#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct BarClosed {
    pub index: usize,
    pub bar_end_ms: i64,
    pub log_return: f64,
    pub close: f64,
    pub data_time_ms: i64,
    pub received_at_ms: i64,
    pub feed_healthy: bool,
}

#[derive(Debug, Clone, Default)]
pub struct PortfolioReport {
    pub aligned_bars: u64,
    pub dropped_bars: u64,
    pub warm_start_returns: u64,
    pub restored_from_snapshot: bool,
    pub latest: Option<PortfolioFigures>,
}

#[derive(Message)]
#[rtype(result = "PortfolioReport")]
pub struct GetPortfolioReport;

/// What the portfolio starts from: a snapshot and/or each symbol's klines.
#[derive(Debug, Clone, Default)]
pub struct PortfolioStart {
    pub snapshot: Option<PortfolioSnapshot>,
    /// Per symbol, in configuration order.
    pub klines: Vec<Vec<Kline>>,
}

pub struct PortfolioActor {
    symbols: Vec<String>,
    qty: Vec<f64>,
    /// The VaR level of the portfolio limit.
    level: f64,
    interval_ms: i64,
    chain: String,
    pending: BTreeMap<i64, Vec<Option<BarClosed>>>,
    /// Newest bar end seen per symbol.
    last_end: Vec<i64>,
    /// Newest aligned bar and its closes (for snapshots).
    last_aligned: Option<(i64, Vec<f64>)>,
    model: PortfolioRiskModel,
    limits: LimitTracker,
    next_action: u64,
    report: PortfolioReport,
    gate: Addr<GateActor>,
    mailbox_capacity: usize,
    snapshot_dir: Option<PathBuf>,
    snapshot_every_bars: u32,
    bars_since_snapshot: u32,
}

impl PortfolioActor {
    pub fn new(
        config: &Config,
        chain: String,
        gate: Addr<GateActor>,
        start: PortfolioStart,
    ) -> Self {
        let d = config.instruments.len();
        let interval_ms = config.bars.interval_ms;
        let qty: Vec<f64> = config.instruments.iter().map(|i| i.position_qty).collect();
        let symbols = config.symbols();
        let mut model = PortfolioRiskModel::new(config.portfolio_model());
        let mut report = PortfolioReport::default();
        let mut last: Option<(i64, Vec<f64>)> = None;
        if let Some(snap) = start.snapshot {
            if snap.symbols == symbols
                && snap.interval_ms == interval_ms
                && snap.version == SNAPSHOT_VERSION
                && snap.last_closes.len() == d
                && model.restore(snap.model)
            {
                last = Some((snap.last_bar_end_ms, snap.last_closes));
                report.restored_from_snapshot = true;
            } else {
                tracing::warn!("portfolio snapshot made with other parameters; ignored");
            }
        }
        for (end, closes) in align_klines(&start.klines, interval_ms) {
            if last.as_ref().is_some_and(|(e, _)| end <= *e) {
                continue;
            }
            if let Some((_, prev)) = &last {
                let returns: Vec<f64> =
                    closes.iter().zip(prev).map(|(c, p)| (c / p).ln()).collect();
                let notionals: Vec<f64> = qty.iter().zip(&closes).map(|(q, c)| q * c).collect();
                if model.absorb(&returns, &notionals).is_ok() {
                    report.warm_start_returns += 1;
                }
            }
            last = Some((end, closes));
        }
        let snapshot_dir = (!config.var.snapshot.dir.as_os_str().is_empty())
            .then(|| config.var.snapshot.dir.clone());
        Self {
            symbols,
            qty,
            level: config.var.levels[0],
            interval_ms,
            chain,
            pending: BTreeMap::new(),
            last_end: vec![i64::MIN; d],
            last_aligned: last,
            model,
            limits: LimitTracker::new(LimitPolicy {
                limit_usd: config.portfolio.var_limit_usd,
                reduce_ratio: config.limits.reduce_ratio,
                halt_ratio: config.limits.halt_ratio,
                resume_ratio: config.limits.resume_ratio,
            }),
            next_action: 0,
            report,
            gate,
            mailbox_capacity: config.feed.mailbox_capacity,
            snapshot_dir,
            snapshot_every_bars: config.var.snapshot.every_bars,
            bars_since_snapshot: 0,
        }
    }

    fn save_snapshot(&mut self) {
        let (Some(dir), Some((end, closes))) = (&self.snapshot_dir, &self.last_aligned) else {
            return;
        };
        let snap = PortfolioSnapshot {
            version: SNAPSHOT_VERSION,
            symbols: self.symbols.clone(),
            interval_ms: self.interval_ms,
            last_bar_end_ms: *end,
            last_closes: closes.clone(),
            model: self.model.state(),
        };
        if let Err(e) = snapshot::save(&snapshot::portfolio_path(dir), &snap) {
            tracing::warn!(error = %e, "portfolio snapshot not written");
        }
        self.bars_since_snapshot = 0;
    }

    fn on_aligned(&mut self, bars: Vec<BarClosed>, requests: &mut Vec<GateRequest>) {
        self.report.aligned_bars += 1;
        let returns: Vec<f64> = bars.iter().map(|b| b.log_return).collect();
        let closes: Vec<f64> = bars.iter().map(|b| b.close).collect();
        let notionals: Vec<f64> = self.qty.iter().zip(&closes).map(|(q, c)| q * c).collect();
        let bar_end_ms = bars.first().map_or(0, |b| b.bar_end_ms);
        self.last_aligned = Some((bar_end_ms, closes));
        if let Err(e) = self.model.absorb(&returns, &notionals) {
            tracing::warn!(error = %e, "portfolio update skipped");
            return;
        }
        let now_ms = bars
            .iter()
            .map(|b| b.received_at_ms)
            .max()
            .unwrap_or_default();
        let data_time_ms = bars
            .iter()
            .map(|b| b.data_time_ms)
            .max()
            .unwrap_or_default();
        let feed_healthy = bars.iter().all(|b| b.feed_healthy);
        let forecast = self.model.forecast(&notionals);
        self.report.latest = Some(forecast.figures.clone());
        let p = forecast.primary;
        let evidence = Evidence {
            level: p.map_or(self.level, |p| p.level),
            var_usd: p.map_or(0.0, |p| p.var),
            es_usd: p.map_or(0.0, |p| p.es),
            limit_usd: self.limits.policy.limit_usd,
            limit_cap_usd: self.limits.policy.limit_usd,
            var_ci_low_usd: p.map_or(0.0, |p| p.var_ci_low),
            var_ci_high_usd: p.map_or(0.0, |p| p.var_ci_high),
            position_qty: 0.0,
            price: 0.0,
            ess: forecast.ess,
            // Closed forms only at portfolio level: nothing to disagree with.
            mc_z: 0.0,
            exceedances: forecast.exceedances,
            expected_exceedances: forecast.expected_exceedances,
            model_warming_up: p.is_none(),
        };
        let mut actions = Vec::new();
        if p.is_some() {
            self.limits.evaluate(evidence.var_usd, 0.0, &mut actions);
        } else {
            actions.push(RiskAction::PublishRiskSnapshot);
        }
        let figures = Arc::new(ModelFigures::Portfolio(Box::new(forecast.figures)));
        for action in actions {
            self.next_action += 1;
            requests.push(GateRequest {
                req: ActionRequest {
                    action_id: format!("{}/{}", self.chain, self.next_action),
                    symbol: crate::PORTFOLIO_CHAIN.to_string(),
                    action,
                    data_time_ms,
                    decided_at_ms: now_ms,
                    feed_healthy,
                    evidence,
                    input: InputRange {
                        first_trade_id: None,
                        last_trade_id: None,
                        bar_start_ms: bar_end_ms - self.interval_ms,
                        bar_end_ms,
                        returns_seen: self.model.observations(),
                    },
                },
                figures: figures.clone(),
                origin: None,
            });
        }
        self.bars_since_snapshot += 1;
        if self.bars_since_snapshot >= self.snapshot_every_bars {
            self.save_snapshot();
        }
    }
}

/// Bars present for every symbol, by bar end time, with each symbol's close.
fn align_klines(klines: &[Vec<Kline>], interval_ms: i64) -> Vec<(i64, Vec<f64>)> {
    let d = klines.len();
    if d == 0 {
        return Vec::new();
    }
    let mut by_end: BTreeMap<i64, Vec<Option<f64>>> = BTreeMap::new();
    for (i, series) in klines.iter().enumerate() {
        for k in series {
            by_end
                .entry(k.open_time_ms + interval_ms)
                .or_insert_with(|| vec![None; d])[i] = Some(k.close);
        }
    }
    by_end
        .into_iter()
        .filter_map(|(end, closes)| {
            closes
                .into_iter()
                .collect::<Option<Vec<f64>>>()
                .map(|c| (end, c))
        })
        .collect()
}

impl Actor for PortfolioActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<BarClosed> for PortfolioActor {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;

    fn handle(&mut self, msg: BarClosed, _: &mut Self::Context) -> Self::Result {
        let d = self.symbols.len();
        let slot = self
            .pending
            .entry(msg.bar_end_ms)
            .or_insert_with(|| vec![None; d]);
        if let Some(s) = slot.get_mut(msg.index) {
            *s = Some(msg);
        }
        if let Some(e) = self.last_end.get_mut(msg.index) {
            *e = (*e).max(msg.bar_end_ms);
        }
        let mut requests = Vec::new();
        // Bars complete in time order per symbol, so complete entries are emitted oldest first.
        while let Some((&end, slots)) = self.pending.iter().next() {
            if slots.iter().all(Option::is_some) {
                let bars: Vec<BarClosed> = self
                    .pending
                    .remove(&end)
                    .unwrap_or_default()
                    .into_iter()
                    .flatten()
                    .collect();
                self.on_aligned(bars, &mut requests);
            } else if self.pending.len() > MAX_PENDING_BARS
                || slots
                    .iter()
                    .enumerate()
                    .any(|(j, s)| s.is_none() && self.last_end[j] > end)
            {
                // A missing symbol has moved past this bar (it started later): it cannot align.
                self.pending.remove(&end);
                self.report.dropped_bars += 1;
            } else {
                break;
            }
        }
        let gate = self.gate.clone();
        AtomicResponse::new(Box::pin(
            async move {
                for r in requests {
                    gate.send(r).await??;
                }
                Ok(())
            }
            .into_actor(self),
        ))
    }
}

impl Handler<SaveSnapshot> for PortfolioActor {
    type Result = ();
    fn handle(&mut self, _: SaveSnapshot, _: &mut Self::Context) {
        self.save_snapshot();
    }
}

impl Handler<GetPortfolioReport> for PortfolioActor {
    type Result = MessageResult<GetPortfolioReport>;
    fn handle(&mut self, _: GetPortfolioReport, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.report.clone())
    }
}
