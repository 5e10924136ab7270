//! Normal-Inverse-Gamma conjugate posterior on log returns with exponential forgetting.
//!
//! Model: r | mu, s2 ~ N(mu, s2); mu | s2 ~ N(m, s2 / k); s2 ~ Inv-Gamma(a, b).
//! Before each update k, a and b are multiplied by lambda (m unchanged), so old returns
//! weigh lambda^age. Posterior predictive: Student-t, df 2a, location m,
//! scale^2 = b (k + 1) / (a k).

use rand::Rng;
use rand_distr::{Distribution, Gamma, StandardNormal};
use serde::{Deserialize, Serialize};

use super::quantiles::select_quantiles;
pub use super::student::normal_quantile;
use super::student::{t_pdf, t_var_es, TailError};
use super::LevelRisk;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NigParams {
    pub m: f64,
    pub k: f64,
    pub a: f64,
    pub b: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NigPosterior {
    pub params: NigParams,
    pub lambda: f64,
    /// Returns absorbed so far.
    pub n: u64,
    /// Effective sample size under forgetting: sum of lambda^age.
    pub ess: f64,
}

impl NigPosterior {
    pub fn new(prior: NigParams, lambda: f64) -> Self {
        Self {
            params: prior,
            lambda,
            n: 0,
            ess: 0.0,
        }
    }

    /// Forget, then absorb one return. Non-finite returns are ignored (the caller reports them).
    pub fn update(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        let l = self.lambda;
        let NigParams { m, k, a, b } = self.params;
        let (k, a, b) = (k * l, a * l, b * l);
        let k1 = k + 1.0;
        self.params = NigParams {
            m: (k * m + x) / k1,
            k: k1,
            a: a + 0.5,
            b: b + k * (x - m) * (x - m) / (2.0 * k1),
        };
        self.n += 1;
        self.ess = self.ess * l + 1.0;
    }

    pub fn predictive_df(&self) -> f64 {
        2.0 * self.params.a
    }

    pub fn predictive_scale(&self) -> f64 {
        let NigParams { k, a, b, .. } = self.params;
        (b * (k + 1.0) / (a * k)).sqrt()
    }

    /// Closed-form posterior-predictive (VaR, ES) at `level`.
    pub fn var_es(&self, level: f64) -> Result<(f64, f64), TailError> {
        t_var_es(
            self.predictive_df(),
            self.params.m,
            self.predictive_scale(),
            level,
        )
    }

    /// Closed form plus Monte-Carlo evidence at each level.
    ///
    /// Each draw takes (mu, s2) from the posterior; the VaR conditional on that draw gives the
    /// credible interval, and one predictive return per draw gives a simulated predictive VaR
    /// to check against the closed form. Quantiles are found by selection, not sorting.
    pub fn risk<R: Rng>(
        &self,
        levels: &[f64],
        draws: usize,
        credible_level: f64,
        rng: &mut R,
        scratch: &mut McScratch,
    ) -> Result<Vec<LevelRisk>, TailError> {
        self.draw_parameters(draws, rng, scratch)?;
        let NigParams { m, .. } = self.params;
        let df = self.predictive_df();
        let scale = self.predictive_scale();
        let tail = (1.0 - credible_level) / 2.0;
        let alphas: Vec<f64> = levels.iter().map(|l| 1.0 - l).collect();
        let mut mc_quantiles = vec![0.0; levels.len()];
        select_quantiles(&mut scratch.sim, &alphas, &mut mc_quantiles);
        let mut out = Vec::with_capacity(levels.len());
        for ((&level, &alpha), mc_quantile) in levels.iter().zip(&alphas).zip(mc_quantiles) {
            let (var, es) = t_var_es(df, m, scale, level)?;
            let z = normal_quantile(alpha);
            scratch.cond.clear();
            scratch.cond.extend(
                scratch
                    .mu
                    .iter()
                    .zip(&scratch.sigma)
                    .map(|(mu, s)| -(mu + s * z)),
            );
            let density = t_pdf(df, m, scale, -var);
            let mc_std_error = if density > 0.0 {
                (alpha * (1.0 - alpha) / draws as f64).sqrt() / density
            } else {
                f64::INFINITY
            };
            let mut ci = [0.0; 2];
            select_quantiles(&mut scratch.cond, &[tail, 1.0 - tail], &mut ci);
            out.push(LevelRisk {
                level,
                var,
                es,
                var_ci_low: ci[0],
                var_ci_high: ci[1],
                mc_var: -mc_quantile,
                mc_std_error,
            });
        }
        Ok(out)
    }

    /// Posterior-predictive (VaR, ES) of the sum of the next `bars` returns, by simulation:
    /// each draw takes (mu, s2) from the posterior, then the sum ~ N(bars mu, bars s2).
    pub fn horizon_var_es<R: Rng>(
        &self,
        bars: u32,
        level: f64,
        draws: usize,
        rng: &mut R,
        scratch: &mut McScratch,
    ) -> Result<(f64, f64), TailError> {
        self.draw_parameters(draws, rng, scratch)?;
        self.horizon_over_draws(bars, level, scratch)
    }

    /// The horizon (VaR, ES) over the draws already in `scratch` (those of the bar's
    /// [`risk`](Self::risk) call): the posterior is drawn once per bar, and each draw's sum
    /// of `bars` returns, N(h·mu, h·s2), is made from the standard normal of that draw's
    /// simulated return (common random numbers: no further draws).
    pub fn horizon_over_draws(
        &self,
        bars: u32,
        level: f64,
        scratch: &mut McScratch,
    ) -> Result<(f64, f64), TailError> {
        if !(level > 0.0 && level < 1.0) {
            return Err(TailError::Level(level));
        }
        let h = f64::from(bars.max(1));
        let root_h = h.sqrt();
        scratch.cond.clear();
        for ((mu, s), z) in scratch.mu.iter().zip(&scratch.sigma).zip(&scratch.z) {
            scratch.cond.push(h * mu + root_h * s * z);
        }
        let alpha = 1.0 - level;
        let mut q = [0.0];
        select_quantiles(&mut scratch.cond, &[alpha], &mut q);
        let q = q[0];
        // The tail's mean sums the sums at or below the quantile in draw order (the selection
        // reordered `cond`), so the figure does not depend on how the quantile was found.
        let (sum, n) = scratch
            .mu
            .iter()
            .zip(&scratch.sigma)
            .zip(&scratch.z)
            .map(|((mu, s), z)| h * mu + root_h * s * z)
            .filter(|x| *x <= q)
            .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
        let es = if n > 0 { -sum / n as f64 } else { -q };
        Ok((-q, es))
    }

    /// Fill `scratch.mu`, `scratch.sigma` with posterior draws and `scratch.sim` with one
    /// predictive return per draw.
    fn draw_parameters<R: Rng>(
        &self,
        draws: usize,
        rng: &mut R,
        scratch: &mut McScratch,
    ) -> Result<(), TailError> {
        let NigParams { m, k, a, b } = self.params;
        // s2 ~ Inv-Gamma(a, b)  <=>  1/s2 ~ Gamma(shape a, scale 1/b)
        let precision = Gamma::new(a, 1.0 / b).map_err(|_| TailError::Scale(b))?;
        let inv_root_k = 1.0 / k.sqrt();
        scratch.mu.clear();
        scratch.sigma.clear();
        scratch.z.clear();
        scratch.sim.clear();
        for _ in 0..draws {
            let sigma = (1.0 / precision.sample(rng)).sqrt();
            let z1: f64 = StandardNormal.sample(rng);
            let mu = m + sigma * inv_root_k * z1;
            let z2: f64 = StandardNormal.sample(rng);
            scratch.mu.push(mu);
            scratch.sigma.push(sigma);
            scratch.z.push(z2);
            scratch.sim.push(mu + sigma * z2);
        }
        Ok(())
    }
}

/// Reused buffers so a bar's Monte-Carlo run does not allocate.
#[derive(Debug, Default)]
pub struct McScratch {
    mu: Vec<f64>,
    sigma: Vec<f64>,
    /// The standard normal of each draw's simulated return, in draw order.
    z: Vec<f64>,
    sim: Vec<f64>,
    cond: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn prior() -> NigParams {
        NigParams {
            m: 0.0,
            k: 0.01,
            a: 1.0,
            b: 1e-6,
        }
    }

    #[test]
    fn single_update_by_hand() {
        let mut p = NigPosterior::new(
            NigParams {
                m: 0.0,
                k: 1.0,
                a: 1.0,
                b: 1.0,
            },
            1.0,
        );
        p.update(2.0);
        // k = 2, m = 1, a = 1.5, b = 1 + 1*4/(2*2) = 2
        assert_eq!(
            p.params,
            NigParams {
                m: 1.0,
                k: 2.0,
                a: 1.5,
                b: 2.0
            }
        );
        // scale^2 = b(k+1)/(a k) = 2*3/(1.5*2) = 2
        assert!((p.predictive_scale() - 2f64.sqrt()).abs() < 1e-15);
        assert_eq!(p.predictive_df(), 3.0);
    }

    #[test]
    fn forgetting_scales_k_a_b_not_m() {
        let mut p = NigPosterior::new(
            NigParams {
                m: 0.5,
                k: 2.0,
                a: 3.0,
                b: 4.0,
            },
            0.5,
        );
        p.update(0.5);
        // k = 1 + 1, a = 1.5 + 0.5, b = 2 + 0 (x == m)
        assert_eq!(
            p.params,
            NigParams {
                m: 0.5,
                k: 2.0,
                a: 2.0,
                b: 2.0
            }
        );
        assert_eq!(p.ess, 1.0);
    }

    proptest! {
        #[test]
        fn lambda_one_equals_batch_formulas(xs in prop::collection::vec(-0.05f64..0.05, 1..60)) {
            let p0 = prior();
            let mut p = NigPosterior::new(p0, 1.0);
            for &x in &xs { p.update(x); }
            let n = xs.len() as f64;
            let mean = xs.iter().sum::<f64>() / n;
            let ss = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
            let k = p0.k + n;
            let m = (p0.k * p0.m + n * mean) / k;
            let a = p0.a + n / 2.0;
            let b = p0.b + 0.5 * ss + p0.k * n * (mean - p0.m).powi(2) / (2.0 * k);
            prop_assert!((p.params.k - k).abs() < 1e-9);
            prop_assert!((p.params.m - m).abs() < 1e-12);
            prop_assert!((p.params.a - a).abs() < 1e-9);
            prop_assert!((p.params.b - b).abs() <= 1e-9 * b.max(1e-12));
        }

        #[test]
        fn var_monotone_in_level_and_es_above_var(xs in prop::collection::vec(-0.02f64..0.02, 5..40)) {
            let mut p = NigPosterior::new(prior(), 0.99);
            for &x in &xs { p.update(x); }
            let mut last = f64::NEG_INFINITY;
            for level in [0.9, 0.95, 0.975, 0.99, 0.999] {
                let (var, es) = p.var_es(level).unwrap();
                prop_assert!(var >= last);
                prop_assert!(es >= var);
                last = var;
            }
        }
    }

    #[test]
    fn monte_carlo_agrees_with_closed_form() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut p = NigPosterior::new(prior(), 0.995);
        let normal = rand_distr::Normal::new(0.0, 0.001).unwrap();
        for _ in 0..300 {
            p.update(normal.sample(&mut rng));
        }
        let mut scratch = McScratch::default();
        let risk = p
            .risk(&[0.99, 0.975], 20_000, 0.9, &mut rng, &mut scratch)
            .unwrap();
        for r in &risk {
            assert!(r.mc_z() < 4.0, "{r:?}");
            assert!(r.var_ci_low <= r.var_ci_high);
            assert!(r.var > 0.0 && r.es > r.var);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn monte_carlo_within_four_standard_errors(
            xs in prop::collection::vec(-0.01f64..0.01, 20..200),
            seed in any::<u64>(),
            lambda in 0.95f64..=1.0,
        ) {
            let mut p = NigPosterior::new(prior(), lambda);
            for &x in &xs { p.update(x); }
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let risk = p.risk(&[0.99, 0.975, 0.95], 20_000, 0.9, &mut rng, &mut McScratch::default()).unwrap();
            for r in &risk {
                prop_assert!(r.mc_z() < 4.0, "{:?}", r);
                prop_assert!(r.var_ci_low <= r.var_ci_high);
            }
        }
    }

    #[test]
    fn horizon_simulation_matches_closed_form_at_one_bar_and_grows() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut p = NigPosterior::new(prior(), 0.995);
        let normal = rand_distr::Normal::new(0.0, 0.001).unwrap();
        for _ in 0..400 {
            p.update(normal.sample(&mut rng));
        }
        let mut scratch = McScratch::default();
        let (closed_var, closed_es) = p.var_es(0.99).unwrap();
        let (var1, es1) = p
            .horizon_var_es(1, 0.99, 50_000, &mut rng, &mut scratch)
            .unwrap();
        assert!(
            (var1 / closed_var - 1.0).abs() < 0.03,
            "{var1} vs {closed_var}"
        );
        assert!((es1 / closed_es - 1.0).abs() < 0.04, "{es1} vs {closed_es}");
        let (var16, _) = p
            .horizon_var_es(16, 0.99, 50_000, &mut rng, &mut scratch)
            .unwrap();
        // zero-mean data: the 16-bar VaR is about 4 times the one-bar VaR
        assert!((var16 / var1 - 4.0).abs() < 0.3, "{var16} vs {var1}");
    }
}
