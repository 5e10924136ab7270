//! Recommended setting changes from a run's KPIs, each with the effect expected and the
//! figures behind it. A recommendation is a hypothesis: `optimize --apply` applies a
//! performance change only after an A/B replay confirms it; a threshold is only ever
//! recommended, because it changes decisions.

use serde::{Deserialize, Serialize};

use super::kpi::Kpis;
use crate::audit::wire::{Setting, SettingChange};
use crate::elf::GateTuning;

/// Whether a recommendation may be applied without a person deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Applies {
    /// A performance setting: applied when an A/B replay shows it better with the same
    /// decisions.
    AfterAbReplay,
    /// It changes decisions: for a person to review, never applied automatically.
    RecommendOnly,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub change: SettingChange,
    pub applies: Applies,
    /// The effect expected, in words.
    pub expected: String,
    /// The measured figures behind it.
    pub evidence: String,
}

/// Below this much L3 work a second thread costs more than it saves (the hand-off to
/// another core measured 0.2-1 µs on two cores).
const PARALLEL_PAYS_ABOVE_US: f64 = 5.0;
/// A cache that hits less often than this costs more per decision than it saves.
const CACHE_PAYS_ABOVE_HIT_RATE: f64 = 0.2;
/// Enough lookups to judge the hit rate.
const MIN_CACHE_LOOKUPS: u64 = 100;
/// L1 refusing more than this share of decisions is worth a person's look at the threshold.
const L1_REVIEW_ABOVE: f64 = 0.25;
/// Enough decisions to judge anything.
const MIN_DECISIONS: u64 = 50;

fn change(setting: Setting, from: impl ToString, to: impl ToString) -> SettingChange {
    SettingChange {
        from: from.to_string(),
        setting,
        to: to.to_string(),
    }
}

/// What to change, given the KPIs of a run under `tuning` and the L1 `threshold`.
pub fn recommend(kpis: &Kpis, tuning: &GateTuning, threshold: f64) -> Vec<Recommendation> {
    let mut out = Vec::new();
    if kpis.decisions < MIN_DECISIONS {
        return out;
    }
    let layer = |name: &str| kpis.layer_us.get(name).map_or(0.0, |p| p.mean);
    let (l2, l3) = (layer("L2"), layer("L3"));
    let decide = kpis.decide_us.mean;
    // Beside L2, L3 can save at most L2's time; with layer times the decision is clear,
    // without them a short decision says the same.
    let l2_known = kpis.layer_us.contains_key("L2");
    let overlap_small = if l2_known {
        l2 < PARALLEL_PAYS_ABOVE_US
    } else {
        decide < PARALLEL_PAYS_ABOVE_US
    };
    if tuning.parallelize_l2_l3 && overlap_small {
        let evidence = if l2_known {
            format!(
                "L2 takes {l2:.2} µs mean, so running L3 beside it saves at most that, while \
                 waiting for the L3 thread takes {l3:.2} µs mean (the decision {decide:.2} µs)"
            )
        } else {
            format!(
                "the whole decision (L0-L3) takes {decide:.2} µs mean, under the \
                 {PARALLEL_PAYS_ABOVE_US} µs where a second thread starts to pay"
            )
        };
        out.push(Recommendation {
            change: change(Setting::ParallelizeL2L3, true, false),
            applies: Applies::AfterAbReplay,
            expected: "lower decision latency: L3 on another thread pays only when L2 and L3 \
                       both take longer than the hand-off between threads"
                .into(),
            evidence,
        });
    }
    if !tuning.parallelize_l2_l3 && l3 > PARALLEL_PAYS_ABOVE_US && l2 > 1.0 {
        out.push(Recommendation {
            change: change(Setting::ParallelizeL2L3, false, true),
            applies: Applies::AfterAbReplay,
            expected: "lower decision latency: L2 and L3 both take long enough to overlap".into(),
            evidence: format!("L2 takes {l2:.2} µs and L3 {l3:.2} µs mean, in turn"),
        });
    }
    match kpis.cache_hit_rate {
        Some(hit) if tuning.enable_decision_cache && kpis.cache_lookups >= MIN_CACHE_LOOKUPS => {
            if hit < CACHE_PAYS_ABOVE_HIT_RATE {
                out.push(Recommendation {
                    change: change(Setting::EnableDecisionCache, true, false),
                    applies: Applies::AfterAbReplay,
                    expected: "lower decision latency: a lookup costs about what evaluating the \
                               rules does, and few lookups hit"
                        .into(),
                    evidence: format!(
                        "{:.1} % of {} cache lookups hit (the cache pays above {:.0} %)",
                        hit * 100.0,
                        kpis.cache_lookups,
                        CACHE_PAYS_ABOVE_HIT_RATE * 100.0
                    ),
                });
            } else if hit < 0.9 {
                // Hits are worth having: more room and a longer life may give more.
                let size = tuning.decision_cache_size;
                out.push(Recommendation {
                    change: change(Setting::DecisionCacheSize, size, size.saturating_mul(4)),
                    applies: Applies::AfterAbReplay,
                    expected: "more cache hits, if entries are evicted before they are reused"
                        .into(),
                    evidence: format!("{:.1} % of lookups hit", hit * 100.0),
                });
                let ttl = tuning.decision_cache_ttl_s;
                out.push(Recommendation {
                    change: change(Setting::DecisionCacheTtlS, ttl, ttl.saturating_mul(2)),
                    applies: Applies::AfterAbReplay,
                    expected: "more cache hits, if entries expire before they are reused".into(),
                    evidence: format!("{:.1} % of lookups hit", hit * 100.0),
                });
            }
        }
        _ => {}
    }
    if !tuning.enable_decision_cache && l3 > 2.0 {
        out.push(Recommendation {
            change: change(Setting::EnableDecisionCache, false, true),
            applies: Applies::AfterAbReplay,
            expected: "lower decision latency when the same evidence recurs: the rules are \
                       costly"
                .into(),
            evidence: format!("L3 takes {l3:.2} µs mean"),
        });
    }
    let l1 = kpis
        .block_rate_by_reason
        .get("COMPLIANCE_BELOW_THRESHOLD")
        .copied()
        .unwrap_or(0.0);
    if l1 > L1_REVIEW_ABOVE && threshold > 0.05 {
        let lower = ((threshold - 0.05) * 100.0).round() / 100.0;
        out.push(Recommendation {
            change: change(
                Setting::ConstitutionalCompliance,
                super::tuning::literal(threshold),
                super::tuning::literal(lower),
            ),
            applies: Applies::RecommendOnly,
            expected: "fewer L1 refusals; changes decisions, so a person decides".into(),
            evidence: format!(
                "L1 refused {:.1} % of decisions at threshold {threshold} (review above {:.0} %)",
                l1 * 100.0,
                L1_REVIEW_ABOVE * 100.0
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::Percentiles;

    fn kpis(decide_us: f64, hit_rate: Option<f64>) -> Kpis {
        Kpis {
            decisions: 1000,
            decide_us: Percentiles {
                mean: decide_us,
                p99: decide_us * 2.0,
                ..Percentiles::default()
            },
            cache_hit_rate: hit_rate,
            cache_lookups: 1000,
            ..Kpis::default()
        }
    }

    fn tuning(parallel: bool, cache: bool) -> GateTuning {
        GateTuning {
            parallelize_l2_l3: parallel,
            enable_decision_cache: cache,
            decision_cache_size: 2048,
            decision_cache_ttl_s: 120,
        }
    }

    #[test]
    fn a_cheap_decision_on_two_threads_and_an_idle_cache_are_recommended_off() {
        let r = recommend(&kpis(0.8, Some(0.01)), &tuning(true, true), 0.9);
        let settings: Vec<_> = r
            .iter()
            .map(|r| (r.change.setting, r.change.to.as_str()))
            .collect();
        assert_eq!(
            settings,
            [
                (Setting::ParallelizeL2L3, "false"),
                (Setting::EnableDecisionCache, "false")
            ]
        );
        assert!(r.iter().all(|r| r.applies == Applies::AfterAbReplay));
        assert!(r[1].evidence.contains("1.0 % of 1000"));
    }

    #[test]
    fn the_defaults_with_cheap_rules_need_nothing_and_thresholds_are_recommend_only() {
        assert!(recommend(&kpis(0.3, None), &tuning(false, false), 0.9).is_empty());
        let mut k = kpis(0.3, None);
        k.block_rate_by_reason
            .insert("COMPLIANCE_BELOW_THRESHOLD".into(), 0.4);
        let r = recommend(&k, &tuning(false, false), 0.9);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].applies, Applies::RecommendOnly);
        assert_eq!(r[0].change.to, "0.85");
        assert!(recommend(&Kpis::default(), &tuning(true, true), 0.9).is_empty());
    }
}
