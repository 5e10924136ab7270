//! KPIs of a live engine from its `/metrics` text: layer latencies from the
//! `elf_latency_seconds` histogram (means exact from `_sum`/`_count`, percentiles
//! interpolated within buckets as PromQL's `histogram_quantile` does), refusals from
//! `elf_blocks_total`, BLOCK verdicts from `bizra_decisions_total`, requests L0 refused from
//! `elf_requests_total` (reaching L0 but not L1), the cache from `elf_decision_cache_total`.

use std::collections::BTreeMap;

use super::kpi::{Kpis, Percentiles};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsTextError {
    #[error("line {line}: {problem}")]
    Malformed { line: usize, problem: String },
    #[error("no elf_latency_seconds samples: is this a bizra-risk /metrics page?")]
    NoGateMetrics,
}

/// One sample: name, labels, value.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_line(line: &str, n: usize) -> Result<Option<Sample>, MetricsTextError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let bad = |problem: &str| MetricsTextError::Malformed {
        line: n,
        problem: problem.into(),
    };
    let (head, rest) = match line.find('{') {
        Some(open) => {
            let close = line[open..]
                .find('}')
                .ok_or_else(|| bad("unclosed labels"))?
                + open;
            (&line[..close + 1], &line[close + 1..])
        }
        None => line.split_at(line.find(' ').ok_or_else(|| bad("no value"))?),
    };
    let value_text = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| bad("no value"))?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| bad("value is not a number"))?,
    };
    let (name, labels) = match head.find('{') {
        Some(open) => (&head[..open], parse_labels(&head[open + 1..head.len() - 1])),
        None => (head, BTreeMap::new()),
    };
    Ok(Some(Sample {
        name: name.trim().to_string(),
        labels,
        value,
    }))
}

/// `a="x",b="y"` (the engine's label values hold no quotes or commas).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

#[derive(Default)]
struct HistogramSeries {
    /// (upper bound, cumulative count)
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl HistogramSeries {
    fn quantile(&self, q: f64) -> f64 {
        let mut b = self.buckets.clone();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        let Some(&(_, total)) = b.last() else {
            return 0.0;
        };
        if total <= 0.0 {
            return 0.0;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(upper, cumulative) in &b {
            if cumulative >= rank {
                if upper.is_infinite() {
                    return lower;
                }
                let inside = cumulative - below;
                let frac = if inside > 0.0 {
                    (rank - below) / inside
                } else {
                    1.0
                };
                return lower + (upper - lower) * frac;
            }
            lower = upper;
            below = cumulative;
        }
        lower
    }

    fn percentiles_us(&self) -> Percentiles {
        let us = |s: f64| s * 1e6;
        Percentiles {
            mean: if self.count > 0.0 {
                us(self.sum / self.count)
            } else {
                0.0
            },
            p50: us(self.quantile(0.50)),
            p95: us(self.quantile(0.95)),
            p99: us(self.quantile(0.99)),
            max: us(self.quantile(1.0)),
        }
    }
}

/// The KPIs in a `/metrics` page (cumulative since the engine started).
pub fn parse(text: &str) -> Result<Kpis, MetricsTextError> {
    let mut latency: BTreeMap<String, HistogramSeries> = BTreeMap::new();
    let mut k = Kpis::default();
    let (mut hits, mut misses) = (0.0, 0.0);
    let mut by_reason: BTreeMap<String, f64> = BTreeMap::new();
    // Requests reaching L0 but not L1 were refused at L0.
    let (mut reached_l0, mut reached_l1) = (0.0, 0.0);
    let mut decisions = 0.0;
    let mut blocked = 0.0;
    for (i, line) in text.lines().enumerate() {
        let Some(s) = parse_line(line, i + 1)? else {
            continue;
        };
        let label = |name: &str| s.labels.get(name).cloned().unwrap_or_default();
        match s.name.as_str() {
            "elf_latency_seconds_bucket" => {
                let le = match label("le").as_str() {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().unwrap_or(f64::INFINITY),
                };
                latency
                    .entry(label("layer"))
                    .or_default()
                    .buckets
                    .push((le, s.value));
            }
            "elf_latency_seconds_sum" => latency.entry(label("layer")).or_default().sum = s.value,
            "elf_latency_seconds_count" => {
                latency.entry(label("layer")).or_default().count = s.value
            }
            "elf_requests_total" => match label("layer").as_str() {
                "L4" => decisions = s.value,
                "L0" => reached_l0 = s.value,
                "L1" => reached_l1 = s.value,
                _ => {}
            },
            "elf_blocks_total" => {
                *by_reason.entry(label("reason")).or_default() += s.value;
            }
            "bizra_decisions_total" if label("verdict") == "BLOCK" => blocked += s.value,
            "elf_decision_cache_total" => match label("result").as_str() {
                "hit" => hits += s.value,
                "miss" => misses += s.value,
                _ => {}
            },
            _ => {}
        }
    }
    let decide = latency
        .get("L0_L3")
        .ok_or(MetricsTextError::NoGateMetrics)?;
    k.decisions = decisions.max(decide.count) as u64;
    k.decide_us = decide.percentiles_us();
    if let Some(l4) = latency.get("L4") {
        let sign = l4.percentiles_us();
        k.gate_us = Percentiles {
            mean: k.decide_us.mean + sign.mean,
            // Percentiles of a sum are not sums; the signature dominates the tail.
            p50: k.decide_us.p50 + sign.p50,
            p95: k.decide_us.p95 + sign.p95,
            p99: k.decide_us.p99 + sign.p99,
            max: k.decide_us.max + sign.max,
        };
    }
    for (layer, h) in &latency {
        if layer != "L0_L3" && h.count > 0.0 {
            k.layer_us.insert(layer.clone(), h.percentiles_us());
        }
    }
    let n = (k.decisions as f64).max(1.0);
    k.block_rate_by_reason = by_reason.into_iter().map(|(r, c)| (r, c / n)).collect();
    k.block_rate = (blocked / n).min(1.0);
    k.cache_lookups = (hits + misses) as u64;
    k.cache_hit_rate = (hits + misses > 0.0).then(|| hits / (hits + misses));
    k.error_rate = ((reached_l0 - reached_l1).max(0.0) / n).min(1.0);
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP elf_latency_seconds ELF latency per layer
# TYPE elf_latency_seconds histogram
elf_latency_seconds_bucket{layer="L0_L3",le="0.0000001"} 0
elf_latency_seconds_bucket{layer="L0_L3",le="0.00000025"} 50
elf_latency_seconds_bucket{layer="L0_L3",le="0.0000005"} 90
elf_latency_seconds_bucket{layer="L0_L3",le="0.000001"} 100
elf_latency_seconds_bucket{layer="L0_L3",le="+Inf"} 100
elf_latency_seconds_sum{layer="L0_L3"} 0.00003
elf_latency_seconds_count{layer="L0_L3"} 100
elf_latency_seconds_bucket{layer="L4",le="0.00001"} 0
elf_latency_seconds_bucket{layer="L4",le="0.000025"} 100
elf_latency_seconds_bucket{layer="L4",le="+Inf"} 100
elf_latency_seconds_sum{layer="L4"} 0.0016
elf_latency_seconds_count{layer="L4"} 100
elf_requests_total{layer="L0"} 100
elf_requests_total{layer="L1"} 98
elf_requests_total{layer="L4"} 100
elf_blocks_total{layer="L2",reason="THROTTLED"} 10
elf_blocks_total{layer="L0",reason="STALE_DATA"} 2
bizra_decisions_total{symbol="BTCUSDT",verdict="BLOCK"} 7
bizra_decisions_total{symbol="BTCUSDT",verdict="PASS"} 93
elf_decision_cache_total{result="hit"} 5
elf_decision_cache_total{result="miss"} 95
"#;

    #[test]
    fn a_metrics_page_gives_the_kpis() {
        let k = parse(PAGE).unwrap();
        assert_eq!(k.decisions, 100);
        assert!((k.decide_us.mean - 0.3).abs() < 1e-9);
        // the median falls at the top of the 0.1-0.25 µs bucket
        assert!((k.decide_us.p50 - 0.25).abs() < 1e-9, "{}", k.decide_us.p50);
        assert!(k.decide_us.p99 > 0.5 && k.decide_us.p99 <= 1.0);
        assert!((k.gate_us.mean - 16.3).abs() < 1e-9);
        assert!((k.block_rate_by_reason["THROTTLED"] - 0.1).abs() < 1e-12);
        assert!((k.error_rate - 0.02).abs() < 1e-12);
        assert!((k.block_rate - 0.07).abs() < 1e-12);
        assert_eq!(k.cache_hit_rate, Some(0.05));
        assert!(parse("foo 1\n").is_err());
        assert!(parse("foo{a=\"b\" 1\n").is_err());
    }
}
