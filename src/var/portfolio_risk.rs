//! Both portfolio models side by side (multivariate FHS with ACI and the NIW posterior) and
//! the rolling backtest of the primary one. Figures are in USDT for the given notionals.

use serde::{Deserialize, Serialize};

use super::exceedance::ExceedanceWindow;
use super::fhs::FhsParams;
use super::portfolio::NiwPosterior;
use super::portfolio_fhs::PortfolioFhs;
use super::symbol_risk::{PrimaryView, BACKTEST_WINDOW};
use super::{PortfolioFigures, PrimaryModel};

#[derive(Debug, Clone, PartialEq)]
pub struct PortfolioModelSettings {
    pub symbols: Vec<String>,
    pub level: f64,
    pub primary: PrimaryModel,
    pub niw_lambda: f64,
    pub niw_k0: f64,
    pub niw_psi0: f64,
    pub min_returns: u64,
    pub fhs: FhsParams,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PortfolioForecast {
    pub figures: PortfolioFigures,
    pub primary: Option<PrimaryView>,
    pub ess: f64,
    pub exceedances: f64,
    pub expected_exceedances: f64,
}

/// What a snapshot keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortfolioModelState {
    pub niw: NiwPosterior,
    pub fhs: PortfolioFhs,
    pub ess: f64,
}

pub struct PortfolioRiskModel {
    settings: PortfolioModelSettings,
    niw: NiwPosterior,
    fhs: PortfolioFhs,
    ess: f64,
    backtest: ExceedanceWindow,
    /// Primary VaR forecast and the notionals it was made for.
    last_forecast: Option<(f64, Vec<f64>)>,
    scratch: Vec<(f64, usize)>,
}

impl PortfolioRiskModel {
    pub fn new(settings: PortfolioModelSettings) -> Self {
        let d = settings.symbols.len();
        Self {
            niw: NiwPosterior::new(d, settings.niw_k0, settings.niw_psi0, settings.niw_lambda),
            fhs: PortfolioFhs::new(settings.fhs.clone(), 1.0 - settings.level, d),
            ess: 0.0,
            backtest: ExceedanceWindow::new(settings.level, BACKTEST_WINDOW),
            last_forecast: None,
            scratch: Vec::new(),
            settings,
        }
    }

    pub fn restore(&mut self, state: PortfolioModelState) -> bool {
        let compatible = state.fhs.params_match(&self.settings.fhs)
            && state.niw.dim() == self.settings.symbols.len();
        if compatible {
            self.niw = state.niw;
            self.fhs = state.fhs;
            self.ess = state.ess;
        }
        compatible
    }

    pub fn state(&self) -> PortfolioModelState {
        PortfolioModelState {
            niw: self.niw.clone(),
            fhs: self.fhs.clone(),
            ess: self.ess,
        }
    }

    pub fn observations(&self) -> u64 {
        self.niw.n
    }

    /// Absorb one aligned return vector; `notionals_usd` are the positions held into the
    /// next bar. Bad vectors are skipped and reported.
    pub fn absorb(&mut self, returns: &[f64], notionals_usd: &[f64]) -> Result<(), String> {
        if let Some((var_usd, w)) = &self.last_forecast {
            let pnl: f64 = w.iter().zip(returns).map(|(w, r)| w * r).sum();
            self.backtest.record(-pnl, *var_usd);
        }
        self.niw.update(returns).map_err(|e| e.to_string())?;
        self.fhs
            .update(returns, notionals_usd)
            .map_err(|e| e.to_string())?;
        self.ess = self.ess * self.settings.niw_lambda + 1.0;
        Ok(())
    }

    pub fn forecast(&mut self, notionals_usd: &[f64]) -> PortfolioForecast {
        let s = &self.settings;
        let niw = self.niw.risk(notionals_usd, s.level).ok();
        let fhs = self.fhs.forecast(s.level, notionals_usd, &mut self.scratch);
        let primary = match s.primary {
            PrimaryModel::FhsAci => fhs.as_ref().map(|f| PrimaryView {
                level: f.level,
                var: f.var_usd,
                es: f.es_usd,
                var_ci_low: f.var_usd,
                var_ci_high: f.var_usd,
            }),
            PrimaryModel::Nig => niw
                .as_ref()
                .filter(|_| self.niw.n >= s.min_returns)
                .map(|r| PrimaryView {
                    level: r.level,
                    var: r.var_usd,
                    es: r.es_usd,
                    var_ci_low: r.var_usd,
                    var_ci_high: r.var_usd,
                }),
        };
        self.last_forecast = primary.map(|p| (p.var, notionals_usd.to_vec()));
        let warmup_remaining = self.fhs.warmup_remaining() as u64;
        PortfolioForecast {
            figures: PortfolioFigures {
                primary: s.primary,
                symbols: s.symbols.clone(),
                notionals_usd: notionals_usd.to_vec(),
                fhs: fhs.map(|mut f| {
                    f.warmup_remaining = warmup_remaining;
                    f
                }),
                niw,
                niw_lambda: s.niw_lambda,
                observations: self.niw.n,
            },
            primary,
            ess: self.ess,
            exceedances: self.backtest.exceedances(),
            expected_exceedances: self.backtest.expected(),
        }
    }
}
