//! `[bars]` and `[var]`: bars, both models and their per-instrument overrides, warm start
//! and snapshots.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BarsConfig {
    pub interval_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VarConfig {
    pub levels: Vec<f64>,
    pub primary_model: PrimaryModel,
    /// Bars summed by the simulated multi-bar NIG VaR (1 disables it).
    pub horizon_bars: u32,
    pub mc_draws: usize,
    pub credible_level: f64,
    /// Bayesian-bootstrap draws of the FHS credible interval.
    pub bootstrap_draws: usize,
    pub nig: NigConfig,
    pub fhs: FhsConfig,
    pub warm_start: WarmStartConfig,
    pub snapshot: SnapshotConfig,
}

/// Normal-Inverse-Gamma prior and forgetting; see docs/var.md.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NigConfig {
    pub lambda: f64,
    pub prior_m0: f64,
    pub prior_k0: f64,
    pub prior_a0: f64,
    pub prior_b0: f64,
    /// Returns absorbed before the NIG VaR may drive actions.
    pub min_returns: u32,
}

/// Filtered historical simulation; see docs/var.md.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FhsConfig {
    pub lambda: f64,
    pub kappa: f64,
    pub window: usize,
    pub aci_step: f64,
    pub init_returns: usize,
    pub z_start: usize,
    pub t0: usize,
}

/// Per-instrument NIG overrides (unset keys fall back to `[var.nig]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NigOverride {
    pub lambda: Option<f64>,
    pub prior_m0: Option<f64>,
    pub prior_k0: Option<f64>,
    pub prior_a0: Option<f64>,
    pub prior_b0: Option<f64>,
}

/// Per-instrument FHS overrides (unset keys fall back to `[var.fhs]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FhsOverride {
    pub lambda: Option<f64>,
    pub kappa: Option<f64>,
    pub window: Option<usize>,
    pub aci_step: Option<f64>,
}

/// History fetched from the REST klines endpoint at start so VaR exists from the first bar.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WarmStartConfig {
    pub enabled: bool,
    pub timeout_ms: u64,
}

/// Model state persisted so a restart continues without a warm-up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Empty disables snapshots.
    pub dir: PathBuf,
    pub every_bars: u32,
}

fn nig_problems(n: &NigConfig) -> Vec<String> {
    let mut out = Vec::new();
    if !(n.lambda > 0.0 && n.lambda <= 1.0) {
        out.push(format!("lambda must be in (0, 1], got {}", n.lambda));
    }
    if !n.prior_m0.is_finite() {
        out.push("prior_m0 must be finite".into());
    }
    for (name, value) in [
        ("prior_k0", n.prior_k0),
        ("prior_a0", n.prior_a0),
        ("prior_b0", n.prior_b0),
    ] {
        if !(value > 0.0 && value.is_finite()) {
            out.push(format!("{name} must be finite and > 0, got {value}"));
        }
    }
    out
}

impl Config {
    /// Problems of `[bars]`, `[var]` and its subsections (with the per-instrument model overrides).
    pub(super) fn var_problems(&self, check: &mut impl FnMut(bool, String)) {
        let in_open_unit = |x: f64| x > 0.0 && x < 1.0;

        check(
            self.bars.interval_ms >= 100,
            format!(
                "bars.interval_ms must be >= 100, got {}",
                self.bars.interval_ms
            ),
        );

        let v = &self.var;
        check(!v.levels.is_empty(), "var.levels must not be empty".into());
        for l in &v.levels {
            // FHS calibration moves the tail probability up to 3 alpha, which must stay < 1.
            check(
                l.is_finite() && *l > 2.0 / 3.0 && *l < 1.0,
                format!("var.levels: {l} must be a confidence level in (2/3, 1)"),
            );
        }
        check(
            (1..=100_000).contains(&v.horizon_bars),
            format!(
                "var.horizon_bars must be in 1..=100000, got {}",
                v.horizon_bars
            ),
        );
        check(
            (100..=1_000_000).contains(&v.mc_draws),
            format!("var.mc_draws must be in 100..=1000000, got {}", v.mc_draws),
        );
        check(
            in_open_unit(v.credible_level),
            format!(
                "var.credible_level must be in (0, 1), got {}",
                v.credible_level
            ),
        );
        check(
            (20..=100_000).contains(&v.bootstrap_draws),
            format!(
                "var.bootstrap_draws must be in 20..=100000, got {}",
                v.bootstrap_draws
            ),
        );
        check(
            v.nig.min_returns >= 2,
            "var.nig.min_returns must be >= 2".into(),
        );
        check(
            v.warm_start.timeout_ms > 0,
            "var.warm_start.timeout_ms must be > 0".into(),
        );
        check(
            self.feed.rest_url.is_empty()
                || self.feed.rest_url.starts_with("http://")
                || self.feed.rest_url.starts_with("https://"),
            format!(
                "feed.rest_url must be empty or start with http:// or https://, got {:?}",
                self.feed.rest_url
            ),
        );
        check(
            !v.warm_start.enabled || crate::market::rest::kline_interval(self.bars.interval_ms).is_some(),
            format!(
                "var.warm_start needs bars.interval_ms to be a Binance kline interval (1s, 1m, 3m, 5m, 15m, 30m, 1h, ...), got {} ms",
                self.bars.interval_ms
            ),
        );
        check(
            v.snapshot.every_bars > 0,
            "var.snapshot.every_bars must be > 0".into(),
        );
        for (name, nig) in self.nig_settings_all() {
            for p in nig_problems(&nig) {
                errors_push(check, format!("{name}: {p}"));
            }
        }
        for (name, fhs) in self.fhs_settings_all() {
            for p in fhs.problems() {
                errors_push(check, format!("{name}: {p}"));
            }
        }
    }
}
