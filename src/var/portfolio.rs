//! Portfolio VaR: Normal-Inverse-Wishart posterior over the vector of bar returns with
//! exponential forgetting, and the multivariate-t predictive of the positions' P&L.

use nalgebra::{DMatrix, DVector};
use serde::Serialize;

use super::student::{t_var_es, t_var_multiplier, TailError};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PortfolioError {
    #[error("dimension mismatch: model has {expected} symbols, got {got}")]
    Dimension { expected: usize, got: usize },
    #[error("predictive covariance is not positive definite even after regularisation")]
    NotPositiveDefinite,
    #[error("non-finite input")]
    NonFinite,
    #[error(transparent)]
    Tail(#[from] TailError),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NiwPosterior {
    m: DVector<f64>,
    kappa: f64,
    nu: f64,
    psi: DMatrix<f64>,
    lambda: f64,
    pub n: u64,
}

/// Portfolio VaR / ES in USDT with the per-symbol Euler allocation of VaR.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortfolioRisk {
    pub level: f64,
    pub var_usd: f64,
    pub es_usd: f64,
    /// Component VaR per symbol (sums to `var_usd`).
    pub component_var_usd: Vec<f64>,
    /// Marginal VaR per symbol: change of VaR per extra USDT of that position.
    pub marginal_var: Vec<f64>,
    /// Whether the covariance needed a ridge to be factorised.
    pub regularised: bool,
}

impl NiwPosterior {
    /// Weak prior: m = 0, kappa = k0, nu = d + 2, Psi = psi0 * I.
    pub fn new(dim: usize, k0: f64, psi0: f64, lambda: f64) -> Self {
        Self {
            m: DVector::zeros(dim),
            kappa: k0,
            nu: dim as f64 + 2.0,
            psi: DMatrix::identity(dim, dim) * psi0,
            lambda,
            n: 0,
        }
    }

    pub fn dim(&self) -> usize {
        self.m.len()
    }

    pub fn update(&mut self, x: &[f64]) -> Result<(), PortfolioError> {
        let d = self.dim();
        if x.len() != d {
            return Err(PortfolioError::Dimension {
                expected: d,
                got: x.len(),
            });
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(PortfolioError::NonFinite);
        }
        let x = DVector::from_column_slice(x);
        let l = self.lambda;
        // Forget, but keep nu above d + 1 so the predictive stays proper.
        let kappa = self.kappa * l;
        let nu = (self.nu * l).max(d as f64 + 1.0);
        let psi = &self.psi * l;
        let diff = &x - &self.m;
        let k1 = kappa + 1.0;
        self.m = (&self.m * kappa + &x) / k1;
        self.psi = psi + (&diff * diff.transpose()) * (kappa / k1);
        self.kappa = k1;
        self.nu = nu + 1.0;
        self.n += 1;
        Ok(())
    }

    /// VaR / ES of P&L = w . r for notionals `w` (USDT) at `level`.
    pub fn risk(&self, weights: &[f64], level: f64) -> Result<PortfolioRisk, PortfolioError> {
        let d = self.dim();
        if weights.len() != d {
            return Err(PortfolioError::Dimension {
                expected: d,
                got: weights.len(),
            });
        }
        let df = self.nu - d as f64 + 1.0;
        let mut shape = &self.psi * ((self.kappa + 1.0) / (self.kappa * df));
        let mut regularised = false;
        if shape.clone().cholesky().is_none() {
            let ridge = (shape.trace() / d as f64).abs().max(1e-18) * 1e-6;
            shape += DMatrix::identity(d, d) * ridge;
            regularised = true;
            if shape.clone().cholesky().is_none() {
                return Err(PortfolioError::NotPositiveDefinite);
            }
        }
        let w = DVector::from_column_slice(weights);
        let loc = w.dot(&self.m);
        let sw = &shape * &w;
        let variance = w.dot(&sw);
        if !(variance > 0.0 && variance.is_finite()) {
            return Err(PortfolioError::NotPositiveDefinite);
        }
        let scale = variance.sqrt();
        let (var_usd, es_usd) = t_var_es(df, loc, scale, level)?;
        let k = t_var_multiplier(df, level)?;
        let marginal_var: Vec<f64> = (0..d).map(|i| -self.m[i] + k * sw[i] / scale).collect();
        let component_var_usd = (0..d).map(|i| w[i] * marginal_var[i]).collect();
        Ok(PortfolioRisk {
            level,
            var_usd,
            es_usd,
            component_var_usd,
            marginal_var,
            regularised,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_sum_to_total_and_diversify() {
        let mut p = NiwPosterior::new(2, 0.01, 1e-8, 1.0);
        let xs = [
            0.001, -0.002, 0.0015, -0.0005, 0.0007, -0.0011, 0.0002, 0.0009,
        ];
        for (i, x) in xs.iter().enumerate() {
            p.update(&[*x, xs[(i + 3) % xs.len()] * 0.5]).unwrap();
        }
        let r = p.risk(&[1000.0, 2000.0], 0.99).unwrap();
        let sum: f64 = r.component_var_usd.iter().sum();
        assert!(
            (sum - r.var_usd).abs() < 1e-9 * r.var_usd.abs().max(1.0),
            "{r:?}"
        );
        assert!(r.es_usd > r.var_usd);
        let single_a = p.risk(&[1000.0, 0.0], 0.99).unwrap().var_usd;
        let single_b = p.risk(&[0.0, 2000.0], 0.99).unwrap().var_usd;
        assert!(r.var_usd <= single_a + single_b + 1e-9);
        // marginal VaR is the derivative of VaR in each notional
        for i in 0..2 {
            let mut w = [1000.0, 2000.0];
            w[i] += 1e-3;
            let bumped = p.risk(&w, 0.99).unwrap().var_usd;
            let fd = (bumped - r.var_usd) / 1e-3;
            assert!(
                (fd - r.marginal_var[i]).abs() < 1e-6,
                "{fd} vs {:?}",
                r.marginal_var
            );
        }
    }

    #[test]
    fn rejects_bad_input() {
        let mut p = NiwPosterior::new(2, 0.01, 1e-8, 0.99);
        assert_eq!(
            p.update(&[1.0]),
            Err(PortfolioError::Dimension {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(p.update(&[f64::NAN, 0.0]), Err(PortfolioError::NonFinite));
        assert!(p.risk(&[1.0], 0.99).is_err());
    }

    #[test]
    fn degenerate_covariance_is_regularised_not_nan() {
        let mut p = NiwPosterior::new(2, 1e-12, 0.0, 1.0);
        for _ in 0..5 {
            p.update(&[0.001, 0.001]).unwrap();
        }
        match p.risk(&[1.0, -1.0], 0.99) {
            Ok(r) => assert!(r.var_usd.is_finite()),
            Err(e) => assert_eq!(e, PortfolioError::NotPositiveDefinite),
        }
    }
}
