//! Clock skew of the feed: local receive time minus the exchange's event time `E`, as a
//! histogram, with a warning when it exceeds a threshold. Pure: the caller supplies both
//! times.

use hdrhistogram::Histogram;

/// Skews beyond ±1 h are clamped.
const LIMIT_MS: i64 = 3_600_000;

/// Over-threshold observations between two warnings after the first.
const WARN_EVERY: u64 = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub struct SkewSummary {
    pub samples: u64,
    pub min_ms: i64,
    pub p50_ms: i64,
    pub p99_ms: i64,
    pub max_ms: i64,
    /// Observations whose |skew| exceeded the warning threshold.
    pub over_threshold: u64,
    pub warn_ms: i64,
}

impl SkewSummary {
    /// Two shards' summaries as one: counts add up, extremes combine; the percentiles are
    /// the larger of the two (conservative: exact percentiles would need both histograms).
    pub fn combine(&self, other: &SkewSummary) -> SkewSummary {
        SkewSummary {
            samples: self.samples + other.samples,
            min_ms: self.min_ms.min(other.min_ms),
            p50_ms: self.p50_ms.max(other.p50_ms),
            p99_ms: self.p99_ms.max(other.p99_ms),
            max_ms: self.max_ms.max(other.max_ms),
            over_threshold: self.over_threshold + other.over_threshold,
            warn_ms: self.warn_ms,
        }
    }
}

/// Non-negative skews (`skew + 1`) and negative ones (`-skew`, local clock behind the
/// exchange) in two histograms, so precision is relative to each value's own size.
#[derive(Debug, Clone)]
pub struct ClockSkew {
    ahead: Option<Histogram<u64>>,
    behind: Option<Histogram<u64>>,
    warn_ms: i64,
    over: u64,
}

impl ClockSkew {
    pub fn new(warn_ms: i64) -> Self {
        let h = || Histogram::new_with_bounds(1, LIMIT_MS as u64 + 1, 3).ok();
        Self {
            ahead: h(),
            behind: h(),
            warn_ms,
            over: 0,
        }
    }

    /// Record one skew; true when this observation should be logged as a warning (the first
    /// over the threshold, then one in every 10 000).
    pub fn observe(&mut self, received_ms: i64, event_ms: i64) -> bool {
        let skew = received_ms
            .saturating_sub(event_ms)
            .clamp(-LIMIT_MS, LIMIT_MS);
        let (hist, value) = if skew >= 0 {
            (&mut self.ahead, skew + 1)
        } else {
            (&mut self.behind, -skew)
        };
        if let Some(h) = hist {
            let _ = h.record(value as u64);
        }
        if skew.abs() > self.warn_ms {
            self.over += 1;
            return self.over % WARN_EVERY == 1;
        }
        false
    }

    pub fn summary(&self) -> Option<SkewSummary> {
        let (ahead, behind) = (self.ahead.as_ref()?, self.behind.as_ref()?);
        let total = ahead.len() + behind.len();
        if total == 0 {
            return None;
        }
        // The q-quantile of the union: the negative side first, most negative lowest.
        let quantile = |q: f64| -> i64 {
            let rank = q * total as f64;
            let n_behind = behind.len() as f64;
            if rank < n_behind {
                -(behind.value_at_quantile(1.0 - rank / n_behind) as i64)
            } else {
                let rest = ahead.len().max(1) as f64;
                ahead.value_at_quantile(((rank - n_behind) / rest).min(1.0)) as i64 - 1
            }
        };
        Some(SkewSummary {
            samples: total,
            min_ms: if behind.is_empty() {
                ahead.min() as i64 - 1
            } else {
                -(behind.max() as i64)
            },
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
            max_ms: if ahead.is_empty() {
                -(behind.min() as i64)
            } else {
                ahead.max() as i64 - 1
            },
            over_threshold: self.over,
            warn_ms: self.warn_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_signed_skews_and_rate_limits_warnings() {
        let mut s = ClockSkew::new(1000);
        assert!(s.summary().is_none());
        let mut warnings = 0;
        for i in 0..20_000i64 {
            // local clock 50 ms ahead, every 2nd event 1.5 s late
            let late = if i % 2 == 0 { 1_500 } else { 0 };
            warnings += u64::from(s.observe(10_000 + 50 + late, 10_000));
        }
        assert_eq!(warnings, 1, "the first over-threshold event");
        // the 10 001st over the threshold (local clock 2 s behind) warns again
        assert!(s.observe(0, 2_000));
        let sum = s.summary().unwrap();
        assert_eq!(sum.samples, 20_001);
        assert_eq!(sum.min_ms, -2_000);
        assert!((1_545..=1_555).contains(&sum.max_ms), "{sum:?}");
        assert!((45..=55).contains(&sum.p50_ms) || (1_545..=1_555).contains(&sum.p50_ms));
        assert_eq!(sum.over_threshold, 10_001);
    }
}
