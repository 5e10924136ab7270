//! Portfolio filtered historical simulation: one downside-weighted variance filter per
//! symbol, a pool of standardised residual vectors on aligned bars, scenario P&L of the
//! positions, portfolio-level ACI, and Euler allocation over the scenarios near the quantile.
//!
//! With one symbol and a unit position it is exactly the per-symbol `FhsFilter`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::fhs::FhsParams;
use super::PortfolioFhsFigures;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PortfolioFhsError {
    #[error("dimension mismatch: model has {expected} symbols, got {got}")]
    Dimension { expected: usize, got: usize },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortfolioFhs {
    params: FhsParams,
    /// Tail probability of the level that drives the portfolio limit.
    alpha: f64,
    dim: usize,
    t: usize,
    pending: Vec<Vec<f64>>,
    variance: Option<Vec<f64>>,
    adjusted: f64,
    /// Residual vectors, oldest first, at most `window`.
    ring: VecDeque<Vec<f64>>,
    /// VaR forecast for the next P&L and the notionals it assumed.
    last_var_usd: Option<f64>,
    last_weights: Vec<f64>,
}

impl PortfolioFhs {
    /// `alpha` is the tail probability (1 - level) of the portfolio VaR.
    pub fn new(params: FhsParams, alpha: f64, dim: usize) -> Self {
        Self {
            ring: VecDeque::with_capacity(params.window + 1),
            pending: Vec::with_capacity(params.init_returns),
            params,
            alpha,
            dim,
            t: 0,
            variance: None,
            adjusted: alpha,
            last_var_usd: None,
            last_weights: vec![0.0; dim],
        }
    }

    /// Whether a saved state was made with these filter parameters (levels aside).
    pub fn params_match(&self, params: &FhsParams) -> bool {
        FhsParams {
            alphas: Vec::new(),
            ..self.params.clone()
        } == FhsParams {
            alphas: Vec::new(),
            ..params.clone()
        }
    }

    pub fn observations(&self) -> usize {
        self.t
    }

    pub fn warmup_remaining(&self) -> usize {
        self.params.t0.saturating_sub(self.t)
    }

    /// Absorb one aligned return vector; `weights_usd` are the notionals held into the
    /// next bar. Non-finite vectors are skipped.
    pub fn update(&mut self, r: &[f64], weights_usd: &[f64]) -> Result<(), PortfolioFhsError> {
        for len in [r.len(), weights_usd.len()] {
            if len != self.dim {
                return Err(PortfolioFhsError::Dimension {
                    expected: self.dim,
                    got: len,
                });
            }
        }
        if r.iter().any(|x| !x.is_finite()) {
            return Ok(());
        }
        if self.variance.is_none() {
            self.pending.push(r.to_vec());
            if self.pending.len() == self.params.init_returns {
                let pending = &self.pending;
                let start: Vec<f64> = (0..self.dim)
                    .map(|i| super::start_variance(pending.iter().map(|p| p[i])))
                    .collect();
                self.variance = Some(start);
                let held = std::mem::take(&mut self.pending);
                for p in &held {
                    self.step(p, weights_usd);
                }
            }
            return Ok(());
        }
        self.step(r, weights_usd);
        Ok(())
    }

    fn step(&mut self, r: &[f64], weights_usd: &[f64]) {
        let p = &self.params;
        let Some(variance) = self.variance.as_mut() else {
            return;
        };
        if self.t >= p.t0 {
            if let Some(var) = self.last_var_usd {
                let pnl: f64 = self.last_weights.iter().zip(r).map(|(w, x)| w * x).sum();
                let hit = if -pnl > var { 1.0 } else { 0.0 };
                let a = self.alpha;
                self.adjusted =
                    (self.adjusted + p.aci_step * a * (a - hit)).clamp(0.2 * a, 3.0 * a);
            }
        }
        if self.t >= p.z_start {
            let z: Vec<f64> = r
                .iter()
                .zip(variance.iter())
                .map(|(x, v)| x / v.sqrt())
                .collect();
            if z.iter().all(|x| x.is_finite()) {
                self.ring.push_back(z);
                if self.ring.len() > p.window {
                    self.ring.pop_front();
                }
            }
        }
        for (v, x) in variance.iter_mut().zip(r) {
            let w = if *x < 0.0 {
                1.0 + p.kappa
            } else {
                1.0 - p.kappa
            };
            *v = (p.lambda * *v + (1.0 - p.lambda) * (w * (x * x))).max(f64::MIN_POSITIVE);
        }
        self.t += 1;
        self.last_weights.copy_from_slice(weights_usd);
        self.last_var_usd = None;
    }

    /// Forecast of the next bar's portfolio P&L for notionals `weights_usd`; `None` while
    /// warming up. Also remembered for the next ACI step.
    pub fn forecast(
        &mut self,
        level: f64,
        weights_usd: &[f64],
        scratch: &mut Vec<(f64, usize)>,
    ) -> Option<PortfolioFhsFigures> {
        let variance = self.variance.as_ref()?;
        let n = self.ring.len();
        if self.t < self.params.t0 || n < 2 || weights_usd.len() != self.dim {
            return None;
        }
        let scale: Vec<f64> = weights_usd
            .iter()
            .zip(variance)
            .map(|(w, v)| w * v.sqrt())
            .collect();
        scratch.clear();
        scratch.extend(
            self.ring
                .iter()
                .enumerate()
                .map(|(s, z)| (z.iter().zip(&scale).map(|(z, c)| z * c).sum::<f64>(), s)),
        );
        scratch.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let a = self.adjusted;
        let h = (n - 1) as f64 * a;
        let j = (h.floor() as usize).min(n - 1);
        let g = h - j as f64;
        let q = match scratch.get(j + 1) {
            Some(next) => scratch[j].0 + g * (next.0 - scratch[j].0),
            None => scratch[j].0,
        };
        let var_usd = -q;
        let es_usd = -scratch[..=j].iter().map(|s| s.0).sum::<f64>() / (j + 1) as f64;
        // Euler allocation: average each symbol's P&L over the scenarios around the
        // quantile, rescaled so the components add up to the VaR.
        let half = (n / 100).max(1);
        let lo = j.saturating_sub(half);
        let hi = (j + half).min(n - 1);
        let mut contrib = vec![0.0; self.dim];
        for s in &scratch[lo..=hi] {
            for (c, (z, k)) in contrib.iter_mut().zip(self.ring[s.1].iter().zip(&scale)) {
                *c -= z * k;
            }
        }
        let total: f64 = contrib.iter().sum();
        let component_var_usd = if total.abs() > f64::EPSILON * var_usd.abs().max(1.0) {
            contrib.iter().map(|c| c * var_usd / total).collect()
        } else {
            let m = (hi - lo + 1) as f64;
            contrib.iter().map(|c| c / m).collect()
        };
        self.last_var_usd = Some(var_usd);
        self.last_weights.copy_from_slice(weights_usd);
        Some(PortfolioFhsFigures {
            warmup_remaining: 0,
            scenarios: n,
            level,
            adjusted_alpha: a,
            var_usd,
            es_usd,
            component_var_usd,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::var::fhs::{FhsFilter, Side};
    use proptest::prelude::*;

    fn params(alpha: f64) -> FhsParams {
        FhsParams {
            window: 30,
            init_returns: 5,
            z_start: 5,
            t0: 12,
            alphas: vec![alpha],
            ..FhsParams::default()
        }
    }

    proptest! {
        #[test]
        fn one_symbol_unit_position_is_the_symbol_model(
            rs in prop::collection::vec(-0.05f64..0.05, 20..120),
        ) {
            let mut single = FhsFilter::new(params(0.05), Side::Long);
            let mut port = PortfolioFhs::new(params(0.05), 0.05, 1);
            let mut scratch = Vec::new();
            for r in &rs {
                single.update(*r);
                port.update(&[*r], &[1.0]).unwrap();
                let p = port.forecast(0.95, &[1.0], &mut scratch);
                match (single.forecast().first(), p) {
                    (Some(s), Some(p)) => {
                        prop_assert!((s.var - p.var_usd).abs() <= 1e-12 * s.var.abs().max(1e-9));
                        prop_assert!((s.es - p.es_usd).abs() <= 1e-12 * s.es.abs().max(1e-9));
                        prop_assert_eq!(s.adjusted_alpha, p.adjusted_alpha);
                    }
                    (None, None) => {}
                    (s, p) => prop_assert!(false, "{:?} vs {:?}", s, p),
                }
            }
        }

        #[test]
        fn components_add_up_and_positions_scale(
            rs in prop::collection::vec((-0.05f64..0.05, -0.05f64..0.05, -0.05f64..0.05), 40..120),
            k in 0.5f64..20.0,
        ) {
            let w = [1000.0, -300.0, 500.0];
            let wk: Vec<f64> = w.iter().map(|x| x * k).collect();
            let mut a = PortfolioFhs::new(params(0.05), 0.05, 3);
            let mut b = PortfolioFhs::new(FhsParams { aci_step: 0.0, ..params(0.05) }, 0.05, 3);
            let mut c = PortfolioFhs::new(FhsParams { aci_step: 0.0, ..params(0.05) }, 0.05, 3);
            let mut scratch = Vec::new();
            for (x, y, z) in &rs {
                a.update(&[*x, *y, *z], &w).unwrap();
                b.update(&[*x, *y, *z], &w).unwrap();
                c.update(&[*x, *y, *z], &wk).unwrap();
                if let Some(f) = a.forecast(0.95, &w, &mut scratch) {
                    let sum: f64 = f.component_var_usd.iter().sum();
                    prop_assert!((sum - f.var_usd).abs() <= 1e-9 * f.var_usd.abs().max(1.0));
                    prop_assert!(f.es_usd >= f.var_usd - 1e-9);
                }
                let fb = b.forecast(0.95, &w, &mut scratch);
                let fc = c.forecast(0.95, &wk, &mut scratch);
                if let (Some(fb), Some(fc)) = (fb, fc) {
                    prop_assert!((fb.var_usd * k - fc.var_usd).abs() <= 1e-9 * fc.var_usd.abs().max(1.0));
                }
            }
        }
    }

    #[test]
    fn rejects_wrong_dimensions() {
        let mut p = PortfolioFhs::new(params(0.05), 0.05, 2);
        assert!(p.update(&[0.1], &[1.0, 1.0]).is_err());
        assert!(p.update(&[0.1, 0.2], &[1.0]).is_err());
    }
}
