//! The models a backtest puts side by side, each a one-step-ahead forecaster of VaR / ES
//! for a long position. All share one start-up convention: the population variance b0 of
//! the first `init_returns` returns seeds the model, and those returns are absorbed.

use std::collections::VecDeque;

use serde::Serialize;

use crate::var::fhs::{sorted_tail, FhsFilter, FhsParams, Side};
use crate::var::nig::{NigParams, NigPosterior};
use crate::var::start_variance;
use crate::var::student::normal_quantile;

/// Which model, with its parameters; `id()` is stable for JSON and CSV columns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "model", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ModelSpec {
    /// Normal-Inverse-Gamma posterior with forgetting, Student-t predictive.
    Nig { lambda: f64 },
    /// RiskMetrics: zero-mean normal with an EWMA variance.
    Ewma { lambda: f64 },
    /// Historical simulation over the last `window` returns.
    Hs { window: usize },
    /// Filtered historical simulation (downside-weighted filter, ACI when aci_step > 0).
    Fhs { params: FhsParams },
}

impl ModelSpec {
    pub fn id(&self) -> String {
        match self {
            Self::Nig { lambda } => format!("nig_{lambda}"),
            Self::Ewma { lambda } => format!("ewma_{lambda}"),
            Self::Hs { window } => format!("hs_{window}"),
            Self::Fhs { params } if params.aci_step > 0.0 => "fhs_aci".into(),
            Self::Fhs { .. } => "fhs".into(),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Self::Nig { lambda } => format!("NIG lambda={lambda}"),
            Self::Ewma { lambda } => format!("EWMA lambda={lambda}"),
            Self::Hs { window } => format!("HS window={window}"),
            Self::Fhs { params } if params.aci_step > 0.0 => {
                format!("FHS+ACI c={}", params.aci_step)
            }
            Self::Fhs { .. } => "FHS c=0".into(),
        }
    }
}

/// VaR and ES (positive losses) at one tail probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Forecast {
    pub var: f64,
    pub es: f64,
}

enum State {
    Starting(Vec<f64>),
    Nig(NigPosterior),
    Ewma {
        variance: f64,
    },
    Hs {
        window: VecDeque<f64>,
        sorted: Vec<f64>,
    },
    Fhs(Box<FhsFilter>),
}

/// One model's running state.
pub struct Forecaster {
    spec: ModelSpec,
    alphas: Vec<f64>,
    init_returns: usize,
    state: State,
}

impl Forecaster {
    pub fn new(spec: ModelSpec, alphas: &[f64], init_returns: usize) -> Self {
        let state = match &spec {
            // The filter holds its own start-up returns.
            ModelSpec::Fhs { params } => State::Fhs(Box::new(FhsFilter::new(
                FhsParams {
                    alphas: alphas.to_vec(),
                    ..params.clone()
                },
                Side::Long,
            ))),
            _ => State::Starting(Vec::with_capacity(init_returns)),
        };
        Self {
            spec,
            alphas: alphas.to_vec(),
            init_returns: init_returns.max(2),
            state,
        }
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Absorb the next return.
    pub fn update(&mut self, r: f64) {
        match &mut self.state {
            State::Starting(held) => {
                held.push(r);
                if held.len() == self.init_returns {
                    let held = std::mem::take(held);
                    self.start(&held);
                }
            }
            State::Nig(p) => p.update(r),
            State::Ewma { variance } => {
                if let ModelSpec::Ewma { lambda } = self.spec {
                    *variance = lambda * *variance + (1.0 - lambda) * r * r;
                }
            }
            State::Hs { window, sorted } => {
                let cap = match self.spec {
                    ModelSpec::Hs { window } => window,
                    _ => usize::MAX,
                };
                window.push_back(r);
                let at = sorted.partition_point(|s| *s < r);
                sorted.insert(at, r);
                if window.len() > cap {
                    if let Some(old) = window.pop_front() {
                        let at = sorted.partition_point(|s| *s < old);
                        sorted.remove(at);
                    }
                }
            }
            State::Fhs(f) => f.update(r),
        }
    }

    fn start(&mut self, held: &[f64]) {
        let b0 = start_variance(held.iter().copied());
        self.state = match self.spec {
            ModelSpec::Nig { lambda } => State::Nig(NigPosterior::new(
                NigParams {
                    m: 0.0,
                    k: 0.01,
                    a: 1.0,
                    b: b0,
                },
                lambda,
            )),
            ModelSpec::Ewma { .. } => State::Ewma { variance: b0 },
            ModelSpec::Hs { window } => State::Hs {
                window: VecDeque::with_capacity(window + 1),
                sorted: Vec::with_capacity(window + 1),
            },
            ModelSpec::Fhs { .. } => return,
        };
        for r in held {
            self.update(*r);
        }
    }

    /// Forecast for the next return per tail probability, or `None` while starting.
    pub fn forecast(&self, out: &mut Vec<Forecast>) -> bool {
        out.clear();
        match &self.state {
            State::Starting(_) => return false,
            State::Nig(p) => {
                for a in &self.alphas {
                    match p.var_es(1.0 - a) {
                        Ok((var, es)) => out.push(Forecast { var, es }),
                        Err(_) => return false,
                    }
                }
            }
            State::Ewma { variance } => {
                let sigma = variance.sqrt();
                for a in &self.alphas {
                    let z = normal_quantile(*a);
                    let density = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
                    out.push(Forecast {
                        var: -sigma * z,
                        es: sigma * density / a,
                    });
                }
            }
            State::Hs { sorted, .. } => {
                if sorted.len() < 2 {
                    return false;
                }
                // The same interpolated quantile and tail mean as FHS, on raw returns.
                for a in &self.alphas {
                    let (q, mean) = sorted_tail(sorted, *a);
                    out.push(Forecast { var: -q, es: -mean });
                }
            }
            State::Fhs(f) => {
                out.extend(f.forecast().iter().map(|f| Forecast {
                    var: f.var,
                    es: f.es,
                }));
            }
        }
        !out.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_normal_figures_by_hand() {
        let mut f = Forecaster::new(ModelSpec::Ewma { lambda: 0.94 }, &[0.01], 2);
        f.update(0.01);
        f.update(-0.01);
        // b0 = 1e-4; then v = .94 v + .06 r^2 twice = 1e-4 (r^2 == b0)
        let mut out = Vec::new();
        assert!(f.forecast(&mut out));
        assert!((out[0].var - 0.01 * 2.326347874).abs() < 1e-9);
        assert!((out[0].es - 0.01 * 2.665214220).abs() < 1e-8);
    }

    #[test]
    fn historical_simulation_keeps_its_window() {
        let mut f = Forecaster::new(ModelSpec::Hs { window: 3 }, &[0.5], 2);
        for r in [0.0, 0.0, -3.0, 1.0, 2.0, 5.0] {
            f.update(r);
        }
        // window = [1, 2, 5]; median 2
        let mut out = Vec::new();
        assert!(f.forecast(&mut out));
        assert_eq!(out[0].var, -2.0);
        assert_eq!(out[0].es, -1.5);
    }

    #[test]
    fn nothing_before_start() {
        let mut f = Forecaster::new(ModelSpec::Nig { lambda: 0.99 }, &[0.01], 50);
        let mut out = Vec::new();
        for _ in 0..49 {
            f.update(0.001);
            assert!(!f.forecast(&mut out));
        }
        f.update(-0.001);
        assert!(f.forecast(&mut out));
    }
}
