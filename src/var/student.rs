//! Lower-tail VaR / ES of a location-scale Student-t distribution.

use statrs::distribution::{Continuous, ContinuousCDF, StudentsT};

#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum TailError {
    #[error("degrees of freedom must be > 1 for a finite ES, got {0}")]
    DegreesOfFreedom(f64),
    #[error("scale must be finite and > 0, got {0}")]
    Scale(f64),
    #[error("confidence level must be in (0, 1), got {0}")]
    Level(f64),
}

/// Above this many degrees of freedom the t is the normal to 1e-5, and statrs' t quantile
/// loses accuracy; the normal is used instead.
const NORMAL_DF: f64 = 1e5;

/// Standard Student-t lower quantile and density at it, for `alpha = 1 - level`.
fn standard_tail(df: f64, alpha: f64) -> Result<(f64, f64), TailError> {
    if df > NORMAL_DF {
        let n = statrs::distribution::Normal::standard();
        let q = n.inverse_cdf(alpha);
        return Ok((q, n.pdf(q)));
    }
    let t = StudentsT::new(0.0, 1.0, df).map_err(|_| TailError::DegreesOfFreedom(df))?;
    let q = t.inverse_cdf(alpha);
    Ok((q, t.pdf(q)))
}

/// (VaR, ES) as positive losses for X ~ loc + scale * t_df, at confidence `level`.
pub fn t_var_es(df: f64, loc: f64, scale: f64, level: f64) -> Result<(f64, f64), TailError> {
    if !(df > 1.0 && df.is_finite()) {
        return Err(TailError::DegreesOfFreedom(df));
    }
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(TailError::Scale(scale));
    }
    if !(level > 0.0 && level < 1.0) {
        return Err(TailError::Level(level));
    }
    let alpha = 1.0 - level;
    let (q, pdf) = standard_tail(df, alpha)?;
    let var = -(loc + scale * q);
    // E[T | T < q] = -(df + q^2) / (df - 1) * pdf(q) / alpha for the standard t.
    let tail_factor = if df > NORMAL_DF {
        1.0
    } else {
        (df + q * q) / (df - 1.0)
    };
    let es = -loc + scale * tail_factor * pdf / alpha;
    Ok((var, es))
}

/// Multiplier k with VaR = -loc + k * scale (used for Euler allocation).
pub fn t_var_multiplier(df: f64, level: f64) -> Result<f64, TailError> {
    Ok(-standard_tail(df, 1.0 - level)?.0)
}

/// Density of the location-scale t at x (for the standard error of a quantile).
pub fn t_pdf(df: f64, loc: f64, scale: f64, x: f64) -> f64 {
    StudentsT::new(loc, scale, df)
        .map(|t| t.pdf(x))
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_known_t_quantile_and_es() {
        // t_5 0.01 quantile = -3.364929997; ES of standard t_5 at 99 %:
        // (5 + q^2)/4 * pdf(q) / 0.01
        let (var, es) = t_var_es(5.0, 0.0, 1.0, 0.99).unwrap();
        assert!((var - 3.364929997).abs() < 1e-6, "{var}");
        let q: f64 = -3.364929997;
        let pdf = 0.0_f64.max(t_pdf(5.0, 0.0, 1.0, q));
        assert!((es - (5.0 + q * q) / 4.0 * pdf / 0.01).abs() < 1e-6);
        assert!(es > var);
    }

    #[test]
    fn large_df_approaches_normal() {
        let (v5, _) = t_var_es(9e4, 0.0, 1.0, 0.99).unwrap();
        assert!((v5 - 2.326347874).abs() < 1e-4, "{v5}");
        let (var, es) = t_var_es(1e7, 0.0, 1.0, 0.99).unwrap();
        assert!((var - 2.326347874).abs() < 1e-4, "{var}");
        assert!((es - 2.665214220).abs() < 1e-4, "{es}");
    }

    #[test]
    fn rejects_degenerate_inputs() {
        assert!(t_var_es(1.0, 0.0, 1.0, 0.99).is_err());
        assert!(t_var_es(5.0, 0.0, 0.0, 0.99).is_err());
        assert!(t_var_es(5.0, 0.0, f64::NAN, 0.99).is_err());
        assert!(t_var_es(5.0, 0.0, 1.0, 1.0).is_err());
    }
}
