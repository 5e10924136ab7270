//! Both per-symbol models side by side (FHS with ACI and the NIG posterior), seeded
//! randomness, the rolling backtest of the primary model, and a serialisable state.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::exceedance::ExceedanceWindow;
use super::fhs::{BootstrapScratch, FhsFilter, FhsParams, Side};
use super::nig::{McScratch, NigParams, NigPosterior};
use super::{FhsFigures, FhsLevelRisk, HorizonRisk, NigFigures, PrimaryModel, SymbolFigures};

/// Forecasts kept for the rolling backtest of the primary model.
pub const BACKTEST_WINDOW: usize = 250;

#[derive(Debug, Clone, PartialEq)]
pub struct SymbolModelSettings {
    /// Confidence levels; the first drives limits.
    pub levels: Vec<f64>,
    pub primary: PrimaryModel,
    pub nig_prior: NigParams,
    pub nig_lambda: f64,
    pub nig_min_returns: u64,
    pub fhs: FhsParams,
    pub horizon_bars: u32,
    pub mc_draws: usize,
    pub credible_level: f64,
    pub bootstrap_draws: usize,
    pub seed: u64,
    /// Distinct per symbol so each symbol has its own random streams.
    pub stream: u64,
}

/// The primary model's figures at the first level, as fractions of position value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrimaryView {
    pub level: f64,
    pub var: f64,
    pub es: f64,
    pub var_ci_low: f64,
    pub var_ci_high: f64,
}

/// One bar's output: the figures of both models and what the gate needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolForecast {
    pub figures: SymbolFigures,
    /// `None` while the primary model warms up.
    pub primary: Option<PrimaryView>,
    pub ess: f64,
    pub mc_z: f64,
    pub exceedances: f64,
    pub expected_exceedances: f64,
}

/// What a snapshot keeps: enough to continue without a warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolModelState {
    pub nig: NigPosterior,
    pub fhs: FhsFilter,
}

/// The buffers a bar's draws are summarised in (about 90 KB at the defaults). They carry
/// nothing from one forecast to the next, so a host keeps one per thread and lends it to
/// every symbol it steps, instead of each symbol keeping its own.
#[derive(Debug, Default)]
pub struct ModelScratch {
    mc: McScratch,
    bootstrap: BootstrapScratch,
}

pub struct SymbolRiskModel {
    settings: SymbolModelSettings,
    nig: NigPosterior,
    fhs: FhsFilter,
    mc_rng: ChaCha8Rng,
    bootstrap_rng: ChaCha8Rng,
    backtest: ExceedanceWindow,
    last_primary_var: Option<f64>,
}

impl SymbolRiskModel {
    pub fn new(settings: SymbolModelSettings) -> Self {
        let mut mc_rng = ChaCha8Rng::seed_from_u64(settings.seed);
        mc_rng.set_stream(settings.stream * 2);
        let mut bootstrap_rng = ChaCha8Rng::seed_from_u64(settings.seed);
        bootstrap_rng.set_stream(settings.stream * 2 + 1);
        Self {
            nig: NigPosterior::new(settings.nig_prior, settings.nig_lambda),
            fhs: FhsFilter::new(settings.fhs.clone(), Side::Long),
            backtest: ExceedanceWindow::new(settings.levels[0], BACKTEST_WINDOW),
            mc_rng,
            bootstrap_rng,
            last_primary_var: None,
            settings,
        }
    }

    /// Continue from a snapshot if it was made with the same model parameters.
    pub fn restore(&mut self, state: SymbolModelState) -> bool {
        let compatible = state.fhs.params() == &self.settings.fhs
            && state.nig.lambda == self.settings.nig_lambda;
        if compatible {
            self.nig = state.nig;
            self.fhs = state.fhs;
        }
        compatible
    }

    pub fn state(&self) -> SymbolModelState {
        SymbolModelState {
            nig: self.nig.clone(),
            fhs: self.fhs.clone(),
        }
    }

    /// Returns absorbed by the NIG posterior (all returns seen).
    pub fn returns_seen(&self) -> u64 {
        self.nig.n
    }

    /// Absorb history without forecasting (warm start): both models see every return.
    pub fn warm(&mut self, returns: &[f64]) {
        for r in returns {
            self.nig.update(*r);
            self.fhs.update(*r);
        }
    }

    /// Absorb the newest bar return: the previous primary forecast is backtested first.
    pub fn absorb(&mut self, r: f64) {
        if let Some(var) = self.last_primary_var {
            self.backtest.record(-r, var);
        }
        self.nig.update(r);
        self.fhs.update(r);
    }

    /// Forecast the next bar with both models. `scratch` holds the draws while they are
    /// summarised; what it held before does not matter.
    pub fn forecast(&mut self, scratch: &mut ModelScratch) -> SymbolForecast {
        let s = &self.settings;
        let mc_stream_pos = self.mc_rng.get_word_pos();
        let nig = match self.nig.risk(
            &s.levels,
            s.mc_draws,
            s.credible_level,
            &mut self.mc_rng,
            &mut scratch.mc,
        ) {
            Ok(levels) => {
                let horizon = if s.horizon_bars > 1 {
                    self.nig
                        .horizon_over_draws(s.horizon_bars, s.levels[0], &mut scratch.mc)
                        .ok()
                        .map(|(var, es)| HorizonRisk {
                            bars: s.horizon_bars,
                            level: s.levels[0],
                            var,
                            es,
                        })
                } else {
                    None
                };
                Some(NigFigures {
                    params: self.nig.params,
                    lambda: self.nig.lambda,
                    levels,
                    horizon,
                    mc_draws: s.mc_draws,
                    mc_seed: s.seed,
                    mc_stream_pos,
                })
            }
            Err(_) => None,
        };
        let bootstrap_stream_pos = self.bootstrap_rng.get_word_pos();
        let intervals = self.fhs.credible_intervals(
            s.bootstrap_draws,
            s.credible_level,
            &mut self.bootstrap_rng,
            &mut scratch.bootstrap,
        );
        let fhs_levels: Vec<FhsLevelRisk> = self
            .fhs
            .forecast()
            .iter()
            .zip(&s.levels)
            .zip(intervals.iter().map(Some).chain(std::iter::repeat(None)))
            .map(|((f, level), ci)| {
                let [vl, vh, el, eh] = ci.copied().unwrap_or([f.var, f.var, f.es, f.es]);
                FhsLevelRisk {
                    level: *level,
                    adjusted_alpha: f.adjusted_alpha,
                    var: f.var,
                    es: f.es,
                    var_ci_low: vl,
                    var_ci_high: vh,
                    es_ci_low: el,
                    es_ci_high: eh,
                }
            })
            .collect();
        let primary = match s.primary {
            PrimaryModel::FhsAci => fhs_levels.first().map(|l| PrimaryView {
                level: l.level,
                var: l.var,
                es: l.es,
                var_ci_low: l.var_ci_low,
                var_ci_high: l.var_ci_high,
            }),
            PrimaryModel::Nig => nig
                .as_ref()
                .filter(|_| self.nig.n >= s.nig_min_returns)
                .and_then(|n| n.levels.first())
                .map(|l| PrimaryView {
                    level: l.level,
                    var: l.var,
                    es: l.es,
                    var_ci_low: l.var_ci_low,
                    var_ci_high: l.var_ci_high,
                }),
        };
        self.last_primary_var = primary.map(|p| p.var);
        let mc_z = nig
            .as_ref()
            .and_then(|n| n.levels.first())
            .map_or(f64::INFINITY, |l| l.mc_z());
        let figures = SymbolFigures {
            primary: s.primary,
            fhs: FhsFigures {
                lambda: s.fhs.lambda,
                kappa: s.fhs.kappa,
                window: s.fhs.window,
                aci_step: s.fhs.aci_step,
                observations: self.fhs.observations() as u64,
                warmup_remaining: self.fhs.warmup_remaining() as u64,
                sigma: self.fhs.sigma(),
                pool_size: self.fhs.pool().len(),
                levels: fhs_levels,
                bootstrap_draws: s.bootstrap_draws,
                bootstrap_stream_pos,
            },
            nig,
        };
        SymbolForecast {
            figures,
            primary,
            ess: self.nig.ess,
            mc_z,
            exceedances: self.backtest.exceedances(),
            expected_exceedances: self.backtest.expected(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    fn settings(primary: PrimaryModel) -> SymbolModelSettings {
        SymbolModelSettings {
            levels: vec![0.99, 0.975],
            primary,
            nig_prior: NigParams {
                m: 0.0,
                k: 0.01,
                a: 1.0,
                b: 1e-8,
            },
            nig_lambda: 0.995,
            nig_min_returns: 50,
            fhs: FhsParams {
                alphas: vec![0.01, 0.025],
                ..FhsParams::default()
            },
            horizon_bars: 10,
            mc_draws: 500,
            credible_level: 0.9,
            bootstrap_draws: 50,
            seed: 1,
            stream: 0,
        }
    }

    fn returns(n: usize) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let normal = Normal::new(0.0, 0.001).unwrap();
        (0..n).map(|_| normal.sample(&mut rng)).collect()
    }

    #[test]
    fn fhs_primary_warms_up_then_forecasts_both_models() {
        let mut m = SymbolRiskModel::new(settings(PrimaryModel::FhsAci));
        let rs = returns(300);
        for r in &rs[..200] {
            m.absorb(*r);
        }
        let f = m.forecast(&mut ModelScratch::default());
        assert!(f.primary.is_none(), "FHS needs 250 returns");
        assert_eq!(f.figures.fhs.warmup_remaining, 50);
        assert!(f.figures.nig.is_some());
        m.warm(&rs[200..]);
        let f = m.forecast(&mut ModelScratch::default());
        let p = f.primary.unwrap();
        assert!(p.var > 0.0 && p.es >= p.var && p.var_ci_low <= p.var_ci_high);
        assert!(f.figures.nig.unwrap().horizon.unwrap().var > p.var);
    }

    #[test]
    fn snapshot_restores_the_same_forecast() {
        let rs = returns(400);
        let mut a = SymbolRiskModel::new(settings(PrimaryModel::FhsAci));
        a.warm(&rs);
        let state = a.state();
        let mut b = SymbolRiskModel::new(settings(PrimaryModel::FhsAci));
        assert!(b.restore(state.clone()));
        let mut scratch = ModelScratch::default();
        assert_eq!(a.forecast(&mut scratch), b.forecast(&mut scratch));
        let mut other = settings(PrimaryModel::FhsAci);
        other.fhs.lambda = 0.8;
        assert!(!SymbolRiskModel::new(other).restore(state));
    }

    #[test]
    fn a_scratch_left_by_a_larger_model_changes_no_figure() {
        let rs = returns(400);
        let mut larger = settings(PrimaryModel::Nig);
        larger.levels = vec![0.999, 0.99, 0.975, 0.95];
        larger.fhs.alphas = vec![0.001, 0.01, 0.025, 0.05];
        larger.mc_draws = 3000;
        larger.bootstrap_draws = 300;
        larger.stream = 7;
        let mut big = SymbolRiskModel::new(larger);
        big.warm(&rs);
        let mut used = ModelScratch::default();
        big.forecast(&mut used);
        let (mut a, mut b) = (
            SymbolRiskModel::new(settings(PrimaryModel::FhsAci)),
            SymbolRiskModel::new(settings(PrimaryModel::FhsAci)),
        );
        a.warm(&rs);
        b.warm(&rs);
        assert_eq!(
            a.forecast(&mut used),
            b.forecast(&mut ModelScratch::default())
        );
    }
}
