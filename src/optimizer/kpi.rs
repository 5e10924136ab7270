//! The KPIs of a measured run: latency per layer (mean, p50, p95, p99), throughput, block
//! rate by reason, decision-cache hit rate and error rate; from the gates' statistics of a
//! replay (`from_run`) or from a live engine's metrics (`prometheus_text`).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::audit::wire::KpiName;
use crate::engine::GateStats;

/// Mean and percentiles of a latency, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of nanoseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p95: us(h.value_at_quantile(0.95)),
            p99: us(h.value_at_quantile(0.99)),
            max: us(h.max()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Kpis {
    /// Decisions signed (requests that reached the gate).
    pub decisions: u64,
    /// L0-L3 (the decision) and the whole gate (with the L4 signature).
    pub decide_us: Percentiles,
    pub gate_us: Percentiles,
    /// Each layer: L0, L1, L2, L3 (when the host timed layers) and L4.
    pub layer_us: BTreeMap<String, Percentiles>,
    /// Over a replay: market events per second of engine time.
    pub market_events_per_s: Option<f64>,
    pub decisions_per_s: Option<f64>,
    /// Refusals by reason code, as a fraction of decisions.
    pub block_rate_by_reason: BTreeMap<String, f64>,
    /// BLOCK verdicts as a fraction of decisions.
    pub block_rate: f64,
    /// Decision-cache lookups that hit; `None` when the cache was not consulted.
    pub cache_hit_rate: Option<f64>,
    pub cache_lookups: u64,
    /// Requests the gate could not evaluate (refused by L0 input validation), as a fraction
    /// of decisions.
    pub error_rate: f64,
}

/// The gate's layers in the order `GateStats::layer_ns` counts them.
const LAYER_NAMES: [&str; 4] = ["L0", "L1", "L2", "L3"];

impl Kpis {
    /// The KPIs of a replay: the gates' statistics, the decide and gate latencies the host
    /// measured per decision, and the throughput.
    pub fn from_run(
        gates: &[GateStats],
        decide_us: Percentiles,
        gate_us: Percentiles,
        market_events_per_s: f64,
        decisions_per_s: f64,
    ) -> Self {
        let mut k = Kpis {
            decide_us,
            gate_us,
            market_events_per_s: Some(market_events_per_s),
            decisions_per_s: Some(decisions_per_s),
            ..Kpis::default()
        };
        // Each layer over every gate (empty histograms are left out below).
        let mut layers: Vec<Histogram<u64>> = LAYER_NAMES
            .iter()
            .map(|_| Histogram::new(2))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        let (mut hits, mut misses, mut blocks, mut l0) = (0u64, 0u64, 0u64, 0u64);
        let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
        for g in gates {
            k.decisions += g.by_verdict.values().sum::<u64>();
            blocks += g.by_verdict.get("BLOCK").copied().unwrap_or(0);
            hits += g.cache_hits;
            misses += g.cache_misses;
            l0 += g.refused_at_l0;
            for ((_, reason), n) in &g.blocks_by_reason {
                *by_reason.entry(reason.as_str().to_string()).or_default() += n;
            }
            for (all, one) in layers.iter_mut().zip(&g.layer_ns) {
                crate::engine::gate::add_counts(all, one);
            }
        }
        for (name, h) in LAYER_NAMES.iter().zip(&layers) {
            if !h.is_empty() {
                k.layer_us.insert((*name).into(), Percentiles::of(h));
            }
        }
        let n = k.decisions.max(1) as f64;
        k.block_rate = blocks as f64 / n;
        k.block_rate_by_reason = by_reason
            .into_iter()
            .map(|(r, c)| (r, c as f64 / n))
            .collect();
        k.cache_lookups = hits + misses;
        k.cache_hit_rate = (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64);
        // L0 refuses requests the gate cannot evaluate (bad figures, stale or duplicate
        // input): counted once per request however many L0 reasons it had.
        k.error_rate = (l0 as f64 / n).min(1.0);
        k
    }

    /// The value of one KPI, when the run measured it.
    pub fn value(&self, kpi: KpiName) -> Option<f64> {
        let v = match kpi {
            KpiName::DecideMeanUs => self.decide_us.mean,
            KpiName::DecideP50Us => self.decide_us.p50,
            KpiName::DecideP95Us => self.decide_us.p95,
            KpiName::DecideP99Us => self.decide_us.p99,
            KpiName::GateMeanUs => self.gate_us.mean,
            KpiName::GateP99Us => self.gate_us.p99,
            KpiName::MarketEventsPerS => return self.market_events_per_s,
        };
        (self.decisions > 0 && v > 0.0).then_some(v)
    }
}

impl KpiName {
    pub fn higher_is_better(self) -> bool {
        self == KpiName::MarketEventsPerS
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KpiName::DecideMeanUs => "DECIDE_MEAN_US",
            KpiName::DecideP50Us => "DECIDE_P50_US",
            KpiName::DecideP95Us => "DECIDE_P95_US",
            KpiName::DecideP99Us => "DECIDE_P99_US",
            KpiName::GateMeanUs => "GATE_MEAN_US",
            KpiName::GateP99Us => "GATE_P99_US",
            KpiName::MarketEventsPerS => "MARKET_EVENTS_PER_S",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_uppercase())).ok()
    }

    /// Improvement from `before` to `after`, percent of `before` (positive: better).
    pub fn improvement_pct(self, before: f64, after: f64) -> f64 {
        if before <= 0.0 {
            return 0.0;
        }
        let change = (after - before) / before * 100.0;
        if self.higher_is_better() {
            change
        } else {
            -change
        }
    }

    /// Whether the engine can watch it live from its own metrics (means only).
    pub fn watchable(self) -> bool {
        matches!(self, KpiName::DecideMeanUs | KpiName::GateMeanUs)
    }
}

/// The median of some measurements (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn improvement_has_the_sign_of_better() {
        assert!((KpiName::DecideMeanUs.improvement_pct(2.0, 1.0) - 50.0).abs() < 1e-9);
        assert!(KpiName::DecideMeanUs.improvement_pct(1.0, 2.0) < 0.0);
        assert!((KpiName::MarketEventsPerS.improvement_pct(100.0, 110.0) - 10.0).abs() < 1e-9);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(KpiName::parse("decide_p99_us"), Some(KpiName::DecideP99Us));
        assert_eq!(KpiName::parse("nope"), None);
    }
}
