//! The portfolio step: aligns bar returns across symbols by bar end time, updates both
//! portfolio models and proposes portfolio-level actions.

use std::collections::BTreeMap;

use super::state::{PortfolioSnapshot, SNAPSHOT_VERSION};
use super::{BarClosed, GateRequest};
use crate::audit::wire::BarRecords;
use crate::elf::{ActionRequest, Evidence, InputRange};
use crate::market::Kline;
use crate::risk::{LimitPolicy, LimitTracker, RiskAction};
use crate::var::portfolio_risk::{PortfolioModelSettings, PortfolioRiskModel};
use crate::var::{ModelFigures, PortfolioFigures};

/// Bars waiting for the other symbols; older incomplete ones are dropped.
const MAX_PENDING_BARS: usize = 4096;

#[derive(Debug, Clone)]
pub struct PortfolioSettings {
    /// The chain its actions are signed on.
    pub chain: String,
    /// Per symbol, in configuration order.
    pub position_qty: Vec<f64>,
    pub interval_ms: i64,
    pub model: PortfolioModelSettings,
    pub limits: LimitPolicy,
    pub snapshot_every_bars: Option<u32>,
}

/// What the portfolio starts from: a snapshot and/or each symbol's klines.
#[derive(Debug, Clone, Default)]
pub struct PortfolioStart {
    pub snapshot: Option<PortfolioSnapshot>,
    /// Per symbol, in configuration order.
    pub klines: Vec<Vec<Kline>>,
}

#[derive(Debug, Clone, Default)]
pub struct PortfolioReport {
    pub aligned_bars: u64,
    pub dropped_bars: u64,
    /// Aligned bars the models refused (e.g. a non-finite return).
    pub skipped_bars: u64,
    pub warm_start_returns: u64,
    pub restored_from_snapshot: bool,
    pub snapshot_ignored: bool,
    pub latest: Option<PortfolioFigures>,
}

#[derive(Debug, Default)]
pub struct PortfolioOutput {
    pub requests: Vec<GateRequest>,
    pub snapshot: Option<PortfolioSnapshot>,
}

impl PortfolioOutput {
    pub fn clear(&mut self) {
        self.requests.clear();
        self.snapshot = None;
    }
}

pub struct PortfolioStep {
    settings: PortfolioSettings,
    pending: BTreeMap<i64, Vec<Option<BarClosed>>>,
    /// Newest bar end seen per symbol.
    last_end: Vec<i64>,
    /// Newest aligned bar and its closes (for snapshots).
    last_aligned: Option<(i64, Vec<f64>)>,
    model: PortfolioRiskModel,
    limits: LimitTracker,
    next_action: u64,
    report: PortfolioReport,
    bars_since_snapshot: u32,
}

impl PortfolioStep {
    pub fn new(settings: PortfolioSettings, start: PortfolioStart) -> Self {
        let d = settings.position_qty.len();
        let interval_ms = settings.interval_ms;
        let mut model = PortfolioRiskModel::new(settings.model.clone());
        let mut report = PortfolioReport::default();
        let mut last: Option<(i64, Vec<f64>)> = None;
        if let Some(snap) = start.snapshot {
            if snap.symbols == settings.model.symbols
                && snap.interval_ms == interval_ms
                && snap.version == SNAPSHOT_VERSION
                && snap.last_closes.len() == d
                && model.restore(snap.model)
            {
                last = Some((snap.last_bar_end_ms, snap.last_closes));
                report.restored_from_snapshot = true;
            } else {
                report.snapshot_ignored = true;
            }
        }
        for (end, closes) in align_klines(&start.klines, interval_ms) {
            if last.as_ref().is_some_and(|(e, _)| end <= *e) {
                continue;
            }
            if let Some((_, prev)) = &last {
                let returns: Vec<f64> =
                    closes.iter().zip(prev).map(|(c, p)| (c / p).ln()).collect();
                let notionals: Vec<f64> = settings
                    .position_qty
                    .iter()
                    .zip(&closes)
                    .map(|(q, c)| q * c)
                    .collect();
                if model.absorb(&returns, &notionals).is_ok() {
                    report.warm_start_returns += 1;
                }
            }
            last = Some((end, closes));
        }
        let limits = LimitTracker::new(settings.limits);
        Self {
            pending: BTreeMap::new(),
            last_end: vec![i64::MIN; d],
            last_aligned: last,
            model,
            limits,
            next_action: 0,
            report,
            bars_since_snapshot: 0,
            settings,
        }
    }

    pub fn report(&self) -> &PortfolioReport {
        &self.report
    }

    pub fn snapshot(&self) -> Option<PortfolioSnapshot> {
        let (end, closes) = self.last_aligned.as_ref()?;
        Some(PortfolioSnapshot {
            version: SNAPSHOT_VERSION,
            symbols: self.settings.model.symbols.clone(),
            interval_ms: self.settings.interval_ms,
            last_bar_end_ms: *end,
            last_closes: closes.clone(),
            model: self.model.state(),
        })
    }

    /// One symbol's closed bar; `out` is cleared first. Bars complete in time order per
    /// symbol, so complete entries are emitted oldest first.
    pub fn on_bar(&mut self, bar: BarClosed, out: &mut PortfolioOutput) {
        out.clear();
        let d = self.settings.position_qty.len();
        let slot = self
            .pending
            .entry(bar.bar_end_ms)
            .or_insert_with(|| vec![None; d]);
        if let Some(s) = slot.get_mut(bar.index) {
            *s = Some(bar);
        }
        if let Some(e) = self.last_end.get_mut(bar.index) {
            *e = (*e).max(bar.bar_end_ms);
        }
        while let Some((&end, slots)) = self.pending.iter().next() {
            if slots.iter().all(Option::is_some) {
                let bars: Vec<BarClosed> = self
                    .pending
                    .remove(&end)
                    .unwrap_or_default()
                    .into_iter()
                    .flatten()
                    .collect();
                self.on_aligned(bars, out);
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
    }

    fn on_aligned(&mut self, bars: Vec<BarClosed>, out: &mut PortfolioOutput) {
        self.report.aligned_bars += 1;
        let returns: Vec<f64> = bars.iter().map(|b| b.log_return).collect();
        let closes: Vec<f64> = bars.iter().map(|b| b.close).collect();
        let notionals: Vec<f64> = self
            .settings
            .position_qty
            .iter()
            .zip(&closes)
            .map(|(q, c)| q * c)
            .collect();
        let bar_end_ms = bars.first().map_or(0, |b| b.bar_end_ms);
        self.last_aligned = Some((bar_end_ms, closes));
        if self.model.absorb(&returns, &notionals).is_err() {
            self.report.skipped_bars += 1;
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
            level: p.map_or(self.settings.model.level, |p| p.level),
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
        // Encoded here, once, for every decision signed with them.
        let input = InputRange {
            first_trade_id: None,
            last_trade_id: None,
            bar_start_ms: bar_end_ms - self.settings.interval_ms,
            bar_end_ms,
            returns_seen: self.model.observations(),
        };
        let records = BarRecords::of(
            &evidence,
            &input,
            &ModelFigures::Portfolio(Box::new(forecast.figures)),
        );
        for action in actions {
            self.next_action += 1;
            out.requests.push(GateRequest {
                req: ActionRequest {
                    action_id: format!("{}/{}", self.settings.chain, self.next_action),
                    symbol: crate::PORTFOLIO_CHAIN.to_string(),
                    action,
                    data_time_ms,
                    decided_at_ms: now_ms,
                    feed_healthy,
                    evidence,
                    input,
                },
                bar: records.clone(),
                // Its inputs are the symbols' bars, whose chains sign their input marks.
                input: None,
                source: None,
            });
        }
        if let Some(every) = self.settings.snapshot_every_bars {
            self.bars_since_snapshot += 1;
            if self.bars_since_snapshot >= every {
                self.bars_since_snapshot = 0;
                out.snapshot = self.snapshot();
            }
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
