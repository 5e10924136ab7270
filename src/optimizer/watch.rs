//! The watch over an applied change: the live KPI since the change against the KPI before
//! it. Pure: the host samples its own metrics (cumulative counters) and the engine time.

use crate::audit::wire::{KpiName, Num, WatchEvidence, WatchTerms};

/// Cumulative gate counters read from the engine's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LiveSample {
    pub decisions: u64,
    /// Sum of L0-L3 times, and of L0-L4 (with the signature), seconds.
    pub decide_sum_s: f64,
    pub gate_sum_s: f64,
}

impl LiveSample {
    /// The KPI over the decisions between `earlier` and this sample, with their count.
    pub fn since(&self, earlier: &LiveSample, kpi: KpiName) -> (Option<f64>, u64) {
        let n = self.decisions.saturating_sub(earlier.decisions);
        let sum = match kpi {
            KpiName::GateMeanUs => self.gate_sum_s - earlier.gate_sum_s,
            _ => self.decide_sum_s - earlier.decide_sum_s,
        };
        let mean_us = (n > 0 && kpi.watchable()).then(|| sum / n as f64 * 1e6);
        (mean_us, n)
    }
}

/// What the watch makes of a sample.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchOutcome {
    /// Not enough decisions yet, or no worse than allowed.
    Watching,
    /// Degraded by at least the allowed percentage: roll back.
    RollBack(WatchEvidence),
    /// The window ended without degradation: the change stays.
    Kept,
}

#[derive(Debug, Clone)]
pub struct Watch {
    terms: WatchTerms,
    at_apply: LiveSample,
    min_decisions: u64,
}

impl Watch {
    /// Watch from `at_apply` (the counters when the change took effect).
    pub fn new(terms: WatchTerms, at_apply: LiveSample, min_decisions: u64) -> Self {
        Self {
            terms,
            at_apply,
            min_decisions: min_decisions.max(1),
        }
    }

    pub fn terms(&self) -> &WatchTerms {
        &self.terms
    }

    /// The KPI since the change, and over how many decisions.
    pub fn observed(&self, now: &LiveSample) -> (Option<f64>, u64) {
        now.since(&self.at_apply, self.terms.kpi)
    }

    pub fn step(&self, now: &LiveSample, now_ms: i64) -> WatchOutcome {
        let (observed, n) = self.observed(now);
        let baseline = self.terms.baseline.0;
        if let Some(observed) = observed.filter(|_| n >= self.min_decisions && baseline > 0.0) {
            let worse_pct = -self.terms.kpi.improvement_pct(baseline, observed);
            if worse_pct >= self.terms.degradation_pct.0 {
                return WatchOutcome::RollBack(WatchEvidence {
                    baseline: self.terms.baseline,
                    degradation_pct: Num((worse_pct * 100.0).round() / 100.0),
                    kpi: self.terms.kpi,
                    observed: Num((observed * 10_000.0).round() / 10_000.0),
                    observed_decisions: i64::try_from(n).unwrap_or(i64::MAX),
                });
            }
        }
        if now_ms >= self.terms.until_ms {
            WatchOutcome::Kept
        } else {
            WatchOutcome::Watching
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> Watch {
        let terms = WatchTerms {
            baseline: Num(1.0),
            baseline_decisions: 500,
            degradation_pct: Num(5.0),
            kpi: KpiName::DecideMeanUs,
            until_ms: 10_000,
        };
        let at_apply = LiveSample {
            decisions: 500,
            decide_sum_s: 500e-6,
            gate_sum_s: 0.01,
        };
        Watch::new(terms, at_apply, 100)
    }

    fn after(n: u64, mean_us: f64) -> LiveSample {
        LiveSample {
            decisions: 500 + n,
            decide_sum_s: 500e-6 + n as f64 * mean_us * 1e-6,
            gate_sum_s: 0.02,
        }
    }

    #[test]
    fn an_injected_degradation_rolls_back_once_enough_decisions_show_it() {
        let w = watch();
        assert_eq!(
            w.step(&after(50, 2.0), 1_000),
            WatchOutcome::Watching,
            "too few"
        );
        assert_eq!(
            w.step(&after(200, 1.04), 1_000),
            WatchOutcome::Watching,
            "4 % worse"
        );
        match w.step(&after(200, 1.06), 1_000) {
            WatchOutcome::RollBack(e) => {
                assert!((e.degradation_pct.0 - 6.0).abs() < 1e-9);
                assert_eq!(e.observed_decisions, 200);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.step(&after(200, 0.5), 10_000), WatchOutcome::Kept);
        // a degradation seen at the end of the window still rolls back
        assert!(matches!(
            w.step(&after(200, 1.5), 10_000),
            WatchOutcome::RollBack(_)
        ));
    }
}
