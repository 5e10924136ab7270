//! The risk figures dashboards and alerts read: VaR and ES per symbol and model, the
//! portfolio's against its limit, model timing and errors, rolling exceedances and the
//! Basel zone, and each chain's progress.

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use crate::engine::VarSnapshot;

pub struct RiskMetrics {
    pub var_usd: GaugeVec,
    pub es_usd: GaugeVec,
    pub primary_var_usd: GaugeVec,
    pub var_limit_usd: GaugeVec,
    pub var_compute_seconds: HistogramVec,
    pub var_errors_total: IntCounterVec,
    pub exceedances: GaugeVec,
    pub expected_exceedances: GaugeVec,
    pub basel_zone: IntGaugeVec,
    pub chain_next_seq: IntGaugeVec,
    pub checkpoints_total: IntCounterVec,
    pub decisions_total: IntCounterVec,
}

impl RiskMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            var_usd: GaugeVec::new(
                Opts::new(
                    "bizra_var_usd",
                    "Value-at-Risk at the limit level, USD, by symbol (PORTFOLIO for the portfolio) and model (fhs_aci, bayes)",
                ),
                &["symbol", "model"],
            )?,
            es_usd: GaugeVec::new(
                Opts::new(
                    "bizra_es_usd",
                    "Expected Shortfall at the limit level, USD, by symbol and model",
                ),
                &["symbol", "model"],
            )?,
            primary_var_usd: GaugeVec::new(
                Opts::new(
                    "bizra_primary_var_usd",
                    "The VaR that drives limits (the primary model's), USD, as signed in the latest decision",
                ),
                &["symbol"],
            )?,
            var_limit_usd: GaugeVec::new(
                Opts::new("bizra_var_limit_usd", "The VaR limit, USD"),
                &["symbol"],
            )?,
            var_compute_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "bizra_var_compute_seconds",
                    "Time to update the models and compute VaR/ES after a bar, by scope (symbol, portfolio)",
                )
                .buckets(vec![
                    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 0.1,
                ]),
                &["scope"],
            )?,
            var_errors_total: IntCounterVec::new(
                Opts::new(
                    "bizra_var_errors_total",
                    "Bars whose model update failed (skipped), by scope",
                ),
                &["scope"],
            )?,
            exceedances: GaugeVec::new(
                Opts::new(
                    "bizra_var_exceedances",
                    "Losses beyond the VaR forecast in the rolling backtest window",
                ),
                &["symbol"],
            )?,
            expected_exceedances: GaugeVec::new(
                Opts::new(
                    "bizra_var_expected_exceedances",
                    "Exceedances expected in the rolling backtest window at the limit level",
                ),
                &["symbol"],
            )?,
            basel_zone: IntGaugeVec::new(
                Opts::new(
                    "bizra_basel_zone",
                    "Basel traffic light of the rolling backtest: 0 green, 1 yellow, 2 red",
                ),
                &["symbol"],
            )?,
            chain_next_seq: IntGaugeVec::new(
                Opts::new(
                    "bizra_chain_next_seq",
                    "Sequence number the chain's next signed event will carry",
                ),
                &["chain"],
            )?,
            checkpoints_total: IntCounterVec::new(
                Opts::new("bizra_checkpoints_total", "Signed Merkle checkpoints sealed"),
                &["chain"],
            )?,
            decisions_total: IntCounterVec::new(
                Opts::new(
                    "bizra_decisions_total",
                    "Signed decisions, by symbol and verdict",
                ),
                &["symbol", "verdict"],
            )?,
        };
        registry.register(Box::new(m.var_usd.clone()))?;
        registry.register(Box::new(m.es_usd.clone()))?;
        registry.register(Box::new(m.primary_var_usd.clone()))?;
        registry.register(Box::new(m.var_limit_usd.clone()))?;
        registry.register(Box::new(m.var_compute_seconds.clone()))?;
        registry.register(Box::new(m.var_errors_total.clone()))?;
        registry.register(Box::new(m.exceedances.clone()))?;
        registry.register(Box::new(m.expected_exceedances.clone()))?;
        registry.register(Box::new(m.basel_zone.clone()))?;
        registry.register(Box::new(m.chain_next_seq.clone()))?;
        registry.register(Box::new(m.checkpoints_total.clone()))?;
        registry.register(Box::new(m.decisions_total.clone()))?;
        Ok(m)
    }

    /// The figures of a signed decision, as its VaR snapshot carries them.
    pub fn observe_snapshot(&self, v: &VarSnapshot) {
        let s = v.symbol.as_str();
        self.decisions_total
            .with_label_values(&[s, verdict_label(v)])
            .inc();
        self.chain_next_seq
            .with_label_values(&[v.chain.as_str()])
            .set(i64::try_from(v.seq.saturating_add(1)).unwrap_or(i64::MAX));
        self.var_limit_usd
            .with_label_values(&[s])
            .set(v.limit_usd.0);
        if v.model_warming_up {
            return;
        }
        self.primary_var_usd
            .with_label_values(&[s])
            .set(v.var_usd.0);
        for (model, figures) in [("fhs_aci", v.models.fhs_aci), ("bayes", v.models.bayes)] {
            if let Some(f) = figures {
                self.var_usd.with_label_values(&[s, model]).set(f.var_usd.0);
                self.es_usd.with_label_values(&[s, model]).set(f.es_usd.0);
            }
        }
    }

    /// The rolling backtest of a symbol's primary model.
    pub fn observe_backtest(&self, symbol: &str, exceedances: f64, expected: f64, level: f64) {
        self.exceedances
            .with_label_values(&[symbol])
            .set(exceedances);
        self.expected_exceedances
            .with_label_values(&[symbol])
            .set(expected);
        let alpha = 1.0 - level;
        if alpha > 0.0 && expected > 0.0 {
            let n = (expected / alpha).round() as usize;
            let zone = crate::backtest::stats::basel_zone(n, exceedances.round() as usize, alpha);
            let code = match zone {
                crate::backtest::stats::BaselZone::Green => 0,
                crate::backtest::stats::BaselZone::Yellow => 1,
                crate::backtest::stats::BaselZone::Red => 2,
            };
            self.basel_zone.with_label_values(&[symbol]).set(code);
        }
    }
}

fn verdict_label(v: &VarSnapshot) -> &'static str {
    v.verdict.as_str()
}
