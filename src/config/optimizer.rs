//! `[optimizer]`: how the engine watches a performance change applied at run time.

use super::*;
use crate::audit::wire::KpiName;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// The live KPI watched after a change: DECIDE_MEAN_US or GATE_MEAN_US (means are
    /// exact from the latency histogram's sum and count).
    pub watch_kpi: String,
    /// How long a change is watched before it is kept.
    pub watch_window_s: u64,
    /// Roll back when the KPI since the change is this much worse than before it.
    pub rollback_degradation_pct: f64,
    /// How often the KPI is sampled (and live recommendations refreshed).
    pub watch_interval_ms: u64,
    /// Decisions needed before the change (for the baseline) and after it (to judge).
    pub watch_min_decisions: u64,
}

impl OptimizerConfig {
    pub fn kpi(&self) -> KpiName {
        KpiName::parse(&self.watch_kpi).unwrap_or(KpiName::DecideMeanUs)
    }
}

impl Config {
    /// Problems of `[optimizer]`.
    pub(super) fn optimizer_problems(&self, check: &mut impl FnMut(bool, String)) {
        let o = &self.optimizer;
        check(
            KpiName::parse(&o.watch_kpi).is_some_and(KpiName::watchable),
            format!(
                "optimizer.watch_kpi must be DECIDE_MEAN_US or GATE_MEAN_US, got {:?}",
                o.watch_kpi
            ),
        );
        check(
            (1..=30 * 86_400).contains(&o.watch_window_s),
            format!(
                "optimizer.watch_window_s must be in 1..=2592000, got {}",
                o.watch_window_s
            ),
        );
        check(
            o.rollback_degradation_pct > 0.0 && o.rollback_degradation_pct <= 100.0,
            format!(
                "optimizer.rollback_degradation_pct must be in (0, 100], got {}",
                o.rollback_degradation_pct
            ),
        );
        check(
            (100..=3_600_000).contains(&o.watch_interval_ms),
            format!(
                "optimizer.watch_interval_ms must be in 100..=3600000, got {}",
                o.watch_interval_ms
            ),
        );
        check(
            o.watch_min_decisions >= 1,
            "optimizer.watch_min_decisions must be >= 1".into(),
        );
    }
}
