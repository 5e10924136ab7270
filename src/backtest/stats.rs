//! The standard VaR / ES backtests over a series of exceedance indicators.
//!
//! Conventions: `hits[t]` is true when the realised loss exceeded the VaR forecast made
//! for it; likelihood-ratio terms use 0 * ln 0 = 0.

use serde::Serialize;
use statrs::distribution::{Binomial, ChiSquared, ContinuousCDF, DiscreteCDF};

/// A likelihood-ratio statistic and its chi-square p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LrTest {
    pub lr: f64,
    pub p_value: f64,
}

impl LrTest {
    fn chi2(lr: f64, dof: f64) -> Self {
        let lr = lr.max(0.0);
        let p_value = ChiSquared::new(dof)
            .map(|c| 1.0 - c.cdf(lr))
            .unwrap_or(f64::NAN);
        Self { lr, p_value }
    }

    /// Not rejected at `significance` (e.g. 0.05).
    pub fn passes(&self, significance: f64) -> bool {
        self.p_value >= significance
    }
}

/// x ln p with 0 ln 0 = 0.
fn xlogp(x: f64, p: f64) -> f64 {
    if x == 0.0 {
        0.0
    } else {
        x * p.ln()
    }
}

/// Binomial log-likelihood of `x` hits in `n` trials at hit probability `p`.
fn bernoulli_ll(n: f64, x: f64, p: f64) -> f64 {
    xlogp(n - x, 1.0 - p) + xlogp(x, p)
}

/// Kupiec's proportion-of-failures test: is the hit rate alpha?
pub fn kupiec(hits: &[bool], alpha: f64) -> LrTest {
    let n = hits.len() as f64;
    let x = hits.iter().filter(|h| **h).count() as f64;
    if n == 0.0 {
        return LrTest {
            lr: 0.0,
            p_value: 1.0,
        };
    }
    let lr = -2.0 * (bernoulli_ll(n, x, alpha) - bernoulli_ll(n, x, x / n));
    LrTest::chi2(lr, 1.0)
}

/// Christoffersen's independence test (first-order Markov against independence).
pub fn christoffersen_independence(hits: &[bool]) -> LrTest {
    let mut n = [[0.0f64; 2]; 2];
    for w in hits.windows(2) {
        n[w[0] as usize][w[1] as usize] += 1.0;
    }
    let (n00, n01, n10, n11) = (n[0][0], n[0][1], n[1][0], n[1][1]);
    let total = n00 + n01 + n10 + n11;
    if total == 0.0 {
        return LrTest {
            lr: 0.0,
            p_value: 1.0,
        };
    }
    let pi = (n01 + n11) / total;
    let pi0 = if n00 + n01 > 0.0 {
        n01 / (n00 + n01)
    } else {
        0.0
    };
    let pi1 = if n10 + n11 > 0.0 {
        n11 / (n10 + n11)
    } else {
        0.0
    };
    let restricted = bernoulli_ll(total, n01 + n11, pi);
    let unrestricted = bernoulli_ll(n00 + n01, n01, pi0) + bernoulli_ll(n10 + n11, n11, pi1);
    LrTest::chi2(-2.0 * (restricted - unrestricted), 1.0)
}

/// Christoffersen's conditional coverage: Kupiec + independence, chi-square with 2 dof.
pub fn christoffersen_cc(hits: &[bool], alpha: f64) -> LrTest {
    let lr = kupiec(hits, alpha).lr + christoffersen_independence(hits).lr;
    LrTest::chi2(lr, 2.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BaselZone {
    Green,
    Yellow,
    Red,
}

/// Basel traffic light: the zone of `exceedances` in `n` observations at tail probability
/// `alpha` by the cumulative binomial probability (green below 95 %, red from 99.99 %).
/// For n = 250 at 1 % this is the familiar 0-4 green, 5-9 yellow, 10+ red.
pub fn basel_zone(n: usize, exceedances: usize, alpha: f64) -> BaselZone {
    let Ok(b) = Binomial::new(alpha, n as u64) else {
        return BaselZone::Red;
    };
    let cumulative = b.cdf(exceedances as u64);
    if cumulative < 0.95 {
        BaselZone::Green
    } else if cumulative < 0.9999 {
        BaselZone::Yellow
    } else {
        BaselZone::Red
    }
}

/// Acerbi-Szekely Z2 for ES: sum(X_t I_t / (T alpha ES_t)) + 1, with X_t the return
/// (P&L of a unit long), I_t the VaR exceedance indicator and ES_t a positive loss.
/// Expected 0 when ES is right; negative when risk is underestimated.
pub fn acerbi_szekely_z2(returns: &[f64], es: &[f64], hits: &[bool], alpha: f64) -> f64 {
    let t = returns.len() as f64;
    if t == 0.0 {
        return f64::NAN;
    }
    let sum: f64 = returns
        .iter()
        .zip(es)
        .zip(hits)
        .filter(|(_, hit)| **hit)
        .map(|((x, es), _)| x / es)
        .sum();
    sum / (t * alpha) + 1.0
}

/// Z2 thresholds published by Acerbi and Szekely (2014), stable across distributions:
/// below -0.70 rejects at 5 %, below -1.80 at 0.01 %.
pub const Z2_REJECT_5PCT: f64 = -0.70;
pub const Z2_REJECT_001PCT: f64 = -1.80;

#[cfg(test)]
mod tests {
    use super::*;

    fn series(pattern: &str) -> Vec<bool> {
        pattern.chars().map(|c| c == '1').collect()
    }

    #[test]
    fn kupiec_by_hand() {
        // 2 hits in 10 at alpha 0.1: LR = -2[8 ln .9 + 2 ln .1 - 8 ln .8 - 2 ln .2]
        let t = kupiec(&series("0100000100"), 0.1);
        let expected =
            -2.0 * (8.0 * 0.9f64.ln() + 2.0 * 0.1f64.ln() - 8.0 * 0.8f64.ln() - 2.0 * 0.2f64.ln());
        assert!((t.lr - expected).abs() < 1e-12);
        assert!((expected - 0.888060).abs() < 1e-6);
        // chi2(1) survival at 0.888060 = erfc(sqrt(0.888060 / 2)) = 0.346004
        assert!((t.p_value - 0.346004).abs() < 1e-6, "{}", t.p_value);
    }

    #[test]
    fn kupiec_zero_hits_uses_zero_log_zero() {
        // 0 hits in 100 at 1 %: LR = -2 * 100 ln 0.99 = 2.01007
        let t = kupiec(&[false; 100], 0.01);
        assert!((t.lr - 2.010067).abs() < 1e-5, "{}", t.lr);
        assert!((t.p_value - 0.15621).abs() < 1e-4, "{}", t.p_value);
    }

    #[test]
    fn independence_by_hand() {
        // 0011000100: n00 = 4, n01 = 2, n10 = 2, n11 = 1 (9 transitions)
        let hits = series("0011000100");
        let t = christoffersen_independence(&hits);
        let (n00, n01, n10, n11) = (4.0f64, 2.0f64, 2.0f64, 1.0f64);
        let pi = (n01 + n11) / (n00 + n01 + n10 + n11);
        let pi0 = n01 / (n00 + n01);
        let pi1 = n11 / (n10 + n11);
        let l0 = (n00 + n10) * (1.0 - pi).ln() + (n01 + n11) * pi.ln();
        let l1 = n00 * (1.0 - pi0).ln() + n01 * pi0.ln() + n10 * (1.0 - pi1).ln() + n11 * pi1.ln();
        assert!((t.lr - (-2.0 * (l0 - l1))).abs() < 1e-12);
        let cc = christoffersen_cc(&hits, 0.1);
        assert!((cc.lr - (t.lr + kupiec(&hits, 0.1).lr)).abs() < 1e-12);
    }

    #[test]
    fn clustered_hits_fail_independence() {
        let mut hits = vec![false; 500];
        for h in hits.iter_mut().skip(200).take(5) {
            *h = true;
        }
        assert!(kupiec(&hits, 0.01).passes(0.05));
        assert!(!christoffersen_independence(&hits).passes(0.05));
    }

    #[test]
    fn no_hit_after_hit_is_finite() {
        // n11 = 0 and a lone hit at the end: pi1 has an empty denominator
        let t = christoffersen_independence(&series("0000000001"));
        assert!(t.lr.is_finite() && t.p_value.is_finite());
    }

    #[test]
    fn basel_zones_at_250() {
        assert_eq!(basel_zone(250, 4, 0.01), BaselZone::Green);
        assert_eq!(basel_zone(250, 5, 0.01), BaselZone::Yellow);
        assert_eq!(basel_zone(250, 9, 0.01), BaselZone::Yellow);
        assert_eq!(basel_zone(250, 10, 0.01), BaselZone::Red);
    }

    #[test]
    fn z2_is_zero_when_tail_losses_match_es() {
        // 40 obs at alpha 2.5 % -> 1 expected hit; one hit with loss exactly ES
        let mut returns = vec![0.0; 40];
        let es = vec![0.05; 40];
        let mut hits = vec![false; 40];
        returns[7] = -0.05;
        hits[7] = true;
        assert!(acerbi_szekely_z2(&returns, &es, &hits, 0.025).abs() < 1e-12);
        // twice the ES on the hit -> Z2 = -1
        returns[7] = -0.10;
        assert!((acerbi_szekely_z2(&returns, &es, &hits, 0.025) + 1.0).abs() < 1e-12);
    }
}
