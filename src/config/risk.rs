//! `[portfolio]`, `[limits]` and `[[instruments]]`: positions and limits.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PortfolioConfig {
    pub enabled: bool,
    pub lambda: f64,
    pub var_limit_usd: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub reduce_ratio: f64,
    pub halt_ratio: f64,
    pub resume_ratio: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstrumentConfig {
    pub symbol: String,
    pub position_qty: f64,
    pub var_limit_usd: f64,
    pub limit_cap_usd: f64,
    #[serde(default)]
    pub nig: NigOverride,
    #[serde(default)]
    pub fhs: FhsOverride,
}

impl Config {
    /// Problems of `[portfolio]`, `[limits]` and `[[instruments]]`.
    pub(super) fn risk_problems(&self, check: &mut impl FnMut(bool, String)) {
        check(
            self.portfolio.lambda > 0.0 && self.portfolio.lambda <= 1.0,
            format!(
                "portfolio.lambda must be in (0, 1], got {}",
                self.portfolio.lambda
            ),
        );
        check(
            self.portfolio.var_limit_usd > 0.0 && self.portfolio.var_limit_usd.is_finite(),
            "portfolio.var_limit_usd must be > 0".into(),
        );

        let l = &self.limits;
        check(
            l.resume_ratio > 0.0 && l.resume_ratio < l.reduce_ratio && l.reduce_ratio <= l.halt_ratio,
            format!(
                "limits must satisfy 0 < resume_ratio < reduce_ratio <= halt_ratio, got {} / {} / {}",
                l.resume_ratio, l.reduce_ratio, l.halt_ratio
            ),
        );

        check(
            !self.instruments.is_empty(),
            "instruments must not be empty".into(),
        );
        let mut seen = HashSet::new();
        for inst in &self.instruments {
            let s = &inst.symbol;
            check(
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
                format!("instruments: symbol {s:?} must be upper-case letters and digits"),
            );
            check(
                seen.insert(s.clone()),
                format!("instruments: symbol {s} listed twice"),
            );
            check(
                s != crate::PORTFOLIO_CHAIN,
                format!("instruments: symbol {s} is reserved"),
            );
            check(
                inst.position_qty.is_finite() && inst.position_qty >= 0.0,
                format!("instruments.{s}.position_qty must be finite and >= 0 (long positions)"),
            );
            check(
                inst.var_limit_usd > 0.0 && inst.var_limit_usd <= inst.limit_cap_usd,
                format!("instruments.{s}: need 0 < var_limit_usd <= limit_cap_usd"),
            );
            check(
                inst.limit_cap_usd.is_finite(),
                format!("instruments.{s}.limit_cap_usd must be finite"),
            );
        }
    }
}
