//! Value-at-Risk maths: bars and returns, the Normal-Inverse-Gamma posterior per symbol,
//! and the Normal-Inverse-Wishart portfolio model. Pure functions and types, no I/O.
//!
//! Conventions: returns are log returns of consecutive bar closes; VaR and ES are positive
//! losses of a long position as fractions of its value (multiply by notional for USDT);
//! `level` is a confidence level (0.99 means the 1 % lower tail).

pub mod bars;
pub mod exceedance;
pub mod fhs;
pub mod nig;
pub mod portfolio;
pub mod portfolio_fhs;
pub mod portfolio_risk;
pub mod quantiles;
pub mod student;
pub mod symbol_risk;

use serde::{Deserialize, Serialize};

/// Population variance (ddof 0) of the start-up returns, floored at the smallest positive
/// double so a flat start never divides by zero; seeds the variance filters and b0.
pub fn start_variance<I>(xs: I) -> f64
where
    I: Iterator<Item = f64> + Clone,
{
    let n = xs.clone().count() as f64;
    let mean = xs.clone().sum::<f64>() / n;
    let var = xs.map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    var.max(f64::MIN_POSITIVE)
}

/// VaR and ES at one confidence level, closed form plus Monte-Carlo evidence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LevelRisk {
    pub level: f64,
    /// Posterior-predictive VaR (closed form).
    pub var: f64,
    /// Posterior-predictive ES (closed form).
    pub es: f64,
    /// Credible interval of VaR over parameter uncertainty (Monte-Carlo).
    pub var_ci_low: f64,
    pub var_ci_high: f64,
    /// Predictive VaR estimated by simulation, and its standard error.
    pub mc_var: f64,
    pub mc_std_error: f64,
}

impl LevelRisk {
    /// |MC - closed form| in units of the MC standard error.
    pub fn mc_z(&self) -> f64 {
        if self.mc_std_error > 0.0 {
            (self.mc_var - self.var).abs() / self.mc_std_error
        } else {
            f64::INFINITY
        }
    }
}

/// The model whose VaR drives limits and actions; both are computed every bar.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PrimaryModel {
    /// Filtered historical simulation with adaptive conformal calibration.
    FhsAci,
    /// Normal-Inverse-Gamma posterior, Student-t predictive.
    Nig,
}

/// NIG multi-bar VaR / ES by posterior-predictive simulation, at the first level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HorizonRisk {
    pub bars: u32,
    pub level: f64,
    pub var: f64,
    pub es: f64,
}

/// Per-symbol Normal-Inverse-Gamma figures.
#[derive(Debug, Clone, PartialEq)]
pub struct NigFigures {
    pub params: nig::NigParams,
    pub lambda: f64,
    pub levels: Vec<LevelRisk>,
    pub horizon: Option<HorizonRisk>,
    pub mc_draws: usize,
    pub mc_seed: u64,
    /// ChaCha8 word position before this bar's draws.
    pub mc_stream_pos: u128,
}

/// FHS VaR / ES at one level with its Bayesian-bootstrap credible interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FhsLevelRisk {
    pub level: f64,
    /// ACI-adjusted tail probability used for this forecast.
    pub adjusted_alpha: f64,
    pub var: f64,
    pub es: f64,
    pub var_ci_low: f64,
    pub var_ci_high: f64,
    pub es_ci_low: f64,
    pub es_ci_high: f64,
}

/// Per-symbol filtered-historical-simulation figures.
#[derive(Debug, Clone, PartialEq)]
pub struct FhsFigures {
    pub lambda: f64,
    pub kappa: f64,
    pub window: usize,
    pub aci_step: f64,
    pub observations: u64,
    /// Returns still needed before the first forecast (0 when ready).
    pub warmup_remaining: u64,
    /// Forecast volatility of the next return.
    pub sigma: Option<f64>,
    pub pool_size: usize,
    /// Empty while warming up.
    pub levels: Vec<FhsLevelRisk>,
    pub bootstrap_draws: usize,
    /// ChaCha8 word position of the bootstrap stream before this bar's draws.
    pub bootstrap_stream_pos: u128,
}

/// Both per-symbol models side by side; `primary` drives limits.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolFigures {
    pub primary: PrimaryModel,
    pub fhs: FhsFigures,
    pub nig: Option<NigFigures>,
}

/// Portfolio filtered historical simulation figures (USDT).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortfolioFhsFigures {
    pub warmup_remaining: u64,
    pub scenarios: usize,
    pub level: f64,
    pub adjusted_alpha: f64,
    pub var_usd: f64,
    pub es_usd: f64,
    pub component_var_usd: Vec<f64>,
}

/// Both portfolio models side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct PortfolioFigures {
    pub primary: PrimaryModel,
    pub symbols: Vec<String>,
    pub notionals_usd: Vec<f64>,
    pub fhs: Option<PortfolioFhsFigures>,
    pub niw: Option<portfolio::PortfolioRisk>,
    pub niw_lambda: f64,
    pub observations: u64,
}

/// The model output behind an action, signed with it so a replay can re-derive it.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelFigures {
    Symbol(Box<SymbolFigures>),
    Portfolio(Box<PortfolioFigures>),
    /// No model output (no return yet).
    None,
}
