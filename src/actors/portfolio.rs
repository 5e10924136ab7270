//! The portfolio actor: aligns bar returns across symbols by bar end time, updates the NIW
//! posterior and proposes portfolio-level actions to the portfolio gate.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;

use super::gate::{GateActor, GateRequest};
use super::PipelineError;
use crate::config::Config;
use crate::elf::{ActionRequest, Evidence, InputRange};
use crate::risk::{LimitPolicy, LimitTracker, RiskAction};
use crate::var::exceedance::ExceedanceWindow;
use crate::var::portfolio::{NiwPosterior, PortfolioRisk};
use crate::var::ModelFigures;

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
    pub latest: Option<PortfolioRisk>,
}

#[derive(Message)]
#[rtype(result = "PortfolioReport")]
pub struct GetPortfolioReport;

pub struct PortfolioActor {
    symbols: Vec<String>,
    qty: Vec<f64>,
    level: f64,
    lambda: f64,
    min_returns: u64,
    chain: String,
    pending: BTreeMap<i64, Vec<Option<BarClosed>>>,
    /// Newest bar end seen per symbol.
    last_end: Vec<i64>,
    posterior: NiwPosterior,
    ess: f64,
    limits: LimitTracker,
    backtest: ExceedanceWindow,
    last_forecast: Option<(f64, Vec<f64>)>,
    next_action: u64,
    report: PortfolioReport,
    gate: Addr<GateActor>,
    mailbox_capacity: usize,
}

impl PortfolioActor {
    pub fn new(config: &Config, chain: String, gate: Addr<GateActor>) -> Self {
        let d = config.instruments.len();
        let v = &config.var;
        Self {
            symbols: config.symbols(),
            qty: config.instruments.iter().map(|i| i.position_qty).collect(),
            level: v.levels[0],
            lambda: config.portfolio.lambda,
            min_returns: u64::from(v.min_returns),
            chain,
            pending: BTreeMap::new(),
            last_end: vec![i64::MIN; d],
            posterior: NiwPosterior::new(d, v.prior_k0, v.prior_b0, config.portfolio.lambda),
            ess: 0.0,
            limits: LimitTracker::new(LimitPolicy {
                limit_usd: config.portfolio.var_limit_usd,
                reduce_ratio: config.limits.reduce_ratio,
                halt_ratio: config.limits.halt_ratio,
                resume_ratio: config.limits.resume_ratio,
            }),
            backtest: ExceedanceWindow::new(v.levels[0], 250),
            last_forecast: None,
            next_action: 0,
            report: PortfolioReport::default(),
            gate,
            mailbox_capacity: config.feed.mailbox_capacity,
        }
    }

    fn on_aligned(&mut self, bars: Vec<BarClosed>, requests: &mut Vec<GateRequest>) {
        self.report.aligned_bars += 1;
        let returns: Vec<f64> = bars.iter().map(|b| b.log_return).collect();
        if let Some((var_usd, notionals)) = &self.last_forecast {
            let pnl: f64 = notionals.iter().zip(&returns).map(|(w, r)| w * r).sum();
            self.backtest.record(-pnl, *var_usd);
        }
        if let Err(e) = self.posterior.update(&returns) {
            tracing::warn!(error = %e, "portfolio update skipped");
            return;
        }
        self.ess = self.ess * self.lambda + 1.0;
        let notionals: Vec<f64> = self
            .qty
            .iter()
            .zip(&bars)
            .map(|(q, b)| q * b.close)
            .collect();
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
        let bar_end_ms = bars.first().map_or(0, |b| b.bar_end_ms);
        let feed_healthy = bars.iter().all(|b| b.feed_healthy);

        let (figures, evidence) = match self.posterior.risk(&notionals, self.level) {
            Ok(risk) => {
                self.last_forecast = Some((risk.var_usd, notionals.clone()));
                self.report.latest = Some(risk.clone());
                let ev = Evidence {
                    level: self.level,
                    var_usd: risk.var_usd,
                    es_usd: risk.es_usd,
                    limit_usd: self.limits.policy.limit_usd,
                    limit_cap_usd: self.limits.policy.limit_usd,
                    // Closed form only: the interval collapses to the point estimate.
                    var_ci_low_usd: risk.var_usd,
                    var_ci_high_usd: risk.var_usd,
                    position_qty: 0.0,
                    price: 0.0,
                    ess: self.ess,
                    mc_z: 0.0,
                    exceedances: self.backtest.exceedances(),
                    expected_exceedances: self.backtest.expected(),
                };
                let f = ModelFigures::Niw {
                    risk,
                    symbols: self.symbols.clone(),
                    notionals_usd: notionals,
                    lambda: self.lambda,
                    observations: self.posterior.n,
                };
                (f, ev)
            }
            Err(e) => {
                tracing::warn!(error = %e, "portfolio VaR not computable for this bar");
                self.last_forecast = None;
                return;
            }
        };
        let mut actions = Vec::new();
        if self.posterior.n >= self.min_returns {
            self.limits.evaluate(evidence.var_usd, 0.0, &mut actions);
        } else {
            actions.push(RiskAction::PublishRiskSnapshot);
        }
        let figures = Arc::new(figures);
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
                        bar_start_ms: bar_end_ms - 1,
                        bar_end_ms,
                        returns_seen: self.posterior.n,
                    },
                },
                figures: figures.clone(),
            });
        }
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

impl Handler<GetPortfolioReport> for PortfolioActor {
    type Result = MessageResult<GetPortfolioReport>;
    fn handle(&mut self, _: GetPortfolioReport, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.report.clone())
    }
}
