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
pub mod student;

use serde::Serialize;

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

/// The model output behind an action, signed with it so a replay can re-derive it.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelFigures {
    /// Per-symbol Normal-Inverse-Gamma posterior, Student-t predictive.
    Nig {
        params: nig::NigParams,
        lambda: f64,
        levels: Vec<LevelRisk>,
        mc_draws: usize,
        mc_seed: u64,
        /// ChaCha8 word position before this bar's draws.
        mc_stream_pos: u128,
    },
    /// Portfolio Normal-Inverse-Wishart posterior, multivariate-t predictive.
    Niw {
        risk: portfolio::PortfolioRisk,
        symbols: Vec<String>,
        notionals_usd: Vec<f64>,
        lambda: f64,
        observations: u64,
    },
    /// No model output yet (warming up).
    None,
}
