//! The VaR actor of one symbol: bars, posterior, limits; its actions go to its gate, its bar
//! returns to the portfolio actor.

use std::sync::Arc;

use actix::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::gate::{GateActor, GateRequest};
use super::portfolio::{BarClosed, PortfolioActor};
use super::PipelineError;
use crate::config::Config;
use crate::elf::{ActionRequest, Evidence, InputRange};
use crate::market::MarketEvent;
use crate::risk::{LimitPolicy, LimitTracker, RiskAction};
use crate::var::bars::{BarBuilder, ClosedBar};
use crate::var::exceedance::ExceedanceWindow;
use crate::var::nig::{McScratch, NigParams, NigPosterior};
use crate::var::{LevelRisk, ModelFigures};

/// Forecasts kept for the rolling backtest.
const BACKTEST_WINDOW: usize = 250;

#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct Tick {
    pub event: MarketEvent,
    /// The ingest clock when the frame arrived.
    pub received_at_ms: i64,
    /// False while the feed for this symbol is not trustworthy.
    pub feed_healthy: bool,
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
    pub latest: Vec<LevelRisk>,
    pub exceedances: f64,
    pub expected_exceedances: f64,
}

#[derive(Message)]
#[rtype(result = "SymbolReport")]
pub struct GetSymbolReport;

pub struct SymbolActor {
    symbol: String,
    index: usize,
    chain: String,
    levels: Vec<f64>,
    lambda: f64,
    min_returns: u64,
    mc_draws: usize,
    credible_level: f64,
    seed: u64,
    position_qty: f64,
    limit_cap_usd: f64,
    bars: BarBuilder,
    closed: Vec<ClosedBar>,
    posterior: NigPosterior,
    limits: LimitTracker,
    backtest: ExceedanceWindow,
    last_forecast_var: Option<f64>,
    rng: ChaCha8Rng,
    scratch: McScratch,
    next_action: u64,
    report: SymbolReport,
    gate: Addr<GateActor>,
    portfolio: Option<Addr<PortfolioActor>>,
    mailbox_capacity: usize,
}

impl SymbolActor {
    pub fn new(
        config: &Config,
        index: usize,
        chain: String,
        gate: Addr<GateActor>,
        portfolio: Option<Addr<PortfolioActor>>,
    ) -> Option<Self> {
        let inst = config.instruments.get(index)?;
        let v = &config.var;
        let mut rng = ChaCha8Rng::seed_from_u64(config.engine.seed);
        rng.set_stream(index as u64);
        Some(Self {
            symbol: inst.symbol.clone(),
            index,
            chain,
            levels: v.levels.clone(),
            lambda: v.lambda,
            min_returns: u64::from(v.min_returns),
            mc_draws: v.mc_draws,
            credible_level: v.credible_level,
            seed: config.engine.seed,
            position_qty: inst.position_qty,
            limit_cap_usd: inst.limit_cap_usd,
            bars: BarBuilder::new(config.bars.interval_ms),
            closed: Vec::new(),
            posterior: NigPosterior::new(
                NigParams {
                    m: v.prior_m0,
                    k: v.prior_k0,
                    a: v.prior_a0,
                    b: v.prior_b0,
                },
                v.lambda,
            ),
            limits: LimitTracker::new(LimitPolicy {
                limit_usd: inst.var_limit_usd,
                reduce_ratio: config.limits.reduce_ratio,
                halt_ratio: config.limits.halt_ratio,
                resume_ratio: config.limits.resume_ratio,
            }),
            backtest: ExceedanceWindow::new(v.levels[0], BACKTEST_WINDOW),
            last_forecast_var: None,
            rng,
            scratch: McScratch::default(),
            next_action: 0,
            report: SymbolReport {
                symbol: inst.symbol.clone(),
                position_qty: inst.position_qty,
                ..Default::default()
            },
            gate,
            portfolio,
            mailbox_capacity: config.feed.mailbox_capacity,
        })
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
        if let Some(forecast) = self.last_forecast_var {
            self.backtest.record(-r, forecast);
        }
        self.posterior.update(r);
        self.report.returns = self.posterior.n;
        let stream_pos = self.rng.get_word_pos();
        let figures = match self.posterior.risk(
            &self.levels,
            self.mc_draws,
            self.credible_level,
            &mut self.rng,
            &mut self.scratch,
        ) {
            Ok(levels) => {
                self.last_forecast_var = levels.first().map(|l| l.var);
                self.report.latest = levels.clone();
                ModelFigures::Nig {
                    params: self.posterior.params,
                    lambda: self.lambda,
                    levels,
                    mc_draws: self.mc_draws,
                    mc_seed: self.seed,
                    mc_stream_pos: stream_pos,
                }
            }
            Err(e) => {
                tracing::warn!(symbol = %self.symbol, error = %e, "VaR not computable for this bar");
                self.last_forecast_var = None;
                ModelFigures::None
            }
        };
        let notional = self.position_qty * bar.close;
        let evidence = match &figures {
            ModelFigures::Nig { levels, .. } => {
                let primary = levels[0];
                Evidence {
                    level: primary.level,
                    var_usd: primary.var * notional,
                    es_usd: primary.es * notional,
                    limit_usd: self.limits.policy.limit_usd,
                    limit_cap_usd: self.limit_cap_usd,
                    var_ci_low_usd: primary.var_ci_low * notional,
                    var_ci_high_usd: primary.var_ci_high * notional,
                    position_qty: self.position_qty,
                    price: bar.close,
                    ess: self.posterior.ess,
                    mc_z: primary.mc_z(),
                    exceedances: self.backtest.exceedances(),
                    expected_exceedances: self.backtest.expected(),
                }
            }
            _ => Evidence {
                level: self.levels[0],
                limit_usd: self.limits.policy.limit_usd,
                limit_cap_usd: self.limit_cap_usd,
                position_qty: self.position_qty,
                price: bar.close,
                mc_z: f64::INFINITY,
                ..Default::default()
            },
        };
        let mut actions = Vec::new();
        if self.posterior.n >= self.min_returns && matches!(figures, ModelFigures::Nig { .. }) {
            self.limits
                .evaluate(evidence.var_usd, self.position_qty, &mut actions);
        } else {
            actions.push(RiskAction::PublishRiskSnapshot);
        }
        let figures = Arc::new(figures);
        let input = InputRange {
            first_trade_id: bar.first_trade_id,
            last_trade_id: bar.last_trade_id,
            bar_start_ms: bar.start_ms,
            bar_end_ms: bar.end_ms,
            returns_seen: self.posterior.n,
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
            });
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
        self.report.exceedances = self.backtest.exceedances();
        self.report.expected_exceedances = self.backtest.expected();
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

impl Handler<GetSymbolReport> for SymbolActor {
    type Result = MessageResult<GetSymbolReport>;
    fn handle(&mut self, _: GetSymbolReport, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.report.clone())
    }
}
