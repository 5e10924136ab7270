//! L1: the compliance score, a weighted sum of named components in [0, 1].
//!
//! - freshness    = clamp(1 - data_age_ms / max_data_age_ms, 0, 1)
//! - sample       = min(1, ess / ess_target)
//! - mc_agreement = clamp((4 - mc_z) / 2, 0, 1): 1 while Monte-Carlo and closed form agree
//!   within 2 standard errors, 0 beyond 4
//! - backtest     = clamp(1 - max(0, x - allowed) / allowed, 0, 1) with x recent exceedances,
//!   allowed = e + 2 sqrt(e) + 1 and e the expected count
//!
//! score = sum of weight * component. Components and score are signed with every decision.

use super::ActionRequest;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ComplianceWeights {
    pub freshness: f64,
    pub sample: f64,
    pub mc_agreement: f64,
    pub backtest: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ComplianceComponents {
    pub freshness: f64,
    pub sample: f64,
    pub mc_agreement: f64,
    pub backtest: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Compliance {
    pub score: f64,
    pub threshold: f64,
    pub components: ComplianceComponents,
}

impl Compliance {
    pub fn passes(&self) -> bool {
        self.score >= self.threshold
    }
}

pub(crate) fn score(
    req: &ActionRequest,
    weights: &ComplianceWeights,
    threshold: f64,
    max_data_age_ms: i64,
    ess_target: f64,
) -> Compliance {
    let e = &req.evidence;
    let age = req.decided_at_ms.saturating_sub(req.data_time_ms).max(0) as f64;
    let clamp = |x: f64| if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) };
    let allowed = e.expected_exceedances + 2.0 * e.expected_exceedances.max(0.0).sqrt() + 1.0;
    let components = ComplianceComponents {
        freshness: clamp(1.0 - age / max_data_age_ms as f64),
        sample: clamp(e.ess / ess_target),
        mc_agreement: clamp((4.0 - e.mc_z) / 2.0),
        backtest: clamp(1.0 - (e.exceedances - allowed).max(0.0) / allowed),
    };
    let score = weights.freshness * components.freshness
        + weights.sample * components.sample
        + weights.mc_agreement * components.mc_agreement
        + weights.backtest * components.backtest;
    Compliance {
        score,
        threshold,
        components,
    }
}
