//! The settings the optimizer may change, their values as TOML literals, and how a change
//! applies to the gate's tuning (a configuration's: `ab::candidate_config`).

use crate::audit::wire::{Setting, SettingChange};
use crate::elf::GateTuning;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TuningError {
    #[error("{setting}: {problem}")]
    BadValue {
        setting: &'static str,
        problem: String,
    },
    #[error("{0} changes decisions: it is recommended, never applied at run time")]
    DecisionAltering(&'static str),
    #[error("unknown setting {0:?} (known: {KNOWN})")]
    Unknown(String),
}

const KNOWN: &str = "elf.parallelize_l2_l3, elf.enable_decision_cache, elf.decision_cache_size, \
                     elf.decision_cache_ttl_s, elf.constitutional_compliance";

impl Setting {
    pub const ALL: [Setting; 5] = [
        Setting::ParallelizeL2L3,
        Setting::EnableDecisionCache,
        Setting::DecisionCacheSize,
        Setting::DecisionCacheTtlS,
        Setting::ConstitutionalCompliance,
    ];

    /// The configuration key.
    pub fn key(self) -> &'static str {
        match self {
            Setting::ParallelizeL2L3 => "elf.parallelize_l2_l3",
            Setting::EnableDecisionCache => "elf.enable_decision_cache",
            Setting::DecisionCacheSize => "elf.decision_cache_size",
            Setting::DecisionCacheTtlS => "elf.decision_cache_ttl_s",
            Setting::ConstitutionalCompliance => "elf.constitutional_compliance",
        }
    }

    pub fn parse(key: &str) -> Result<Self, TuningError> {
        Self::ALL
            .into_iter()
            .find(|s| s.key() == key)
            .ok_or_else(|| TuningError::Unknown(key.to_string()))
    }

    /// Whether the setting can change a decision (then it is only ever recommended).
    pub fn alters_decisions(self) -> bool {
        self == Setting::ConstitutionalCompliance
    }

    /// The setting's value in a gate's tuning (`None` for a threshold).
    pub fn value_in_tuning(self, t: &GateTuning) -> Option<String> {
        Some(match self {
            Setting::ParallelizeL2L3 => t.parallelize_l2_l3.to_string(),
            Setting::EnableDecisionCache => t.enable_decision_cache.to_string(),
            Setting::DecisionCacheSize => t.decision_cache_size.to_string(),
            Setting::DecisionCacheTtlS => t.decision_cache_ttl_s.to_string(),
            Setting::ConstitutionalCompliance => return None,
        })
    }

    /// A value as its canonical TOML literal, checked against the setting's bounds.
    pub fn normalise(self, value: &str) -> Result<String, TuningError> {
        let bad = |problem: String| TuningError::BadValue {
            setting: self.key(),
            problem,
        };
        let value = value.trim();
        match self {
            Setting::ParallelizeL2L3 | Setting::EnableDecisionCache => value
                .parse::<bool>()
                .map(|b| b.to_string())
                .map_err(|_| bad(format!("{value:?} is not true or false"))),
            Setting::DecisionCacheSize | Setting::DecisionCacheTtlS => match value.parse::<u64>() {
                Ok(n) if (1..=100_000_000).contains(&n) => Ok(n.to_string()),
                _ => Err(bad(format!("{value:?} is not an integer in 1..=100000000"))),
            },
            Setting::ConstitutionalCompliance => match value.parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => Ok(literal(x)),
                _ => Err(bad(format!("{value:?} is not a number in [0, 1]"))),
            },
        }
    }
}

/// `0.9` rather than `0.9000000000000001`-style noise; integers keep a decimal point.
pub fn literal(x: f64) -> String {
    let s = format!("{}", (x * 1e6).round() / 1e6);
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// `tuning` with `changes` applied. A threshold is refused: it changes decisions.
pub fn apply_to_tuning(
    tuning: &GateTuning,
    changes: &[SettingChange],
) -> Result<GateTuning, TuningError> {
    let mut t = *tuning;
    for c in changes {
        let to = c.setting.normalise(&c.to)?;
        match c.setting {
            Setting::ParallelizeL2L3 => t.parallelize_l2_l3 = to == "true",
            Setting::EnableDecisionCache => t.enable_decision_cache = to == "true",
            Setting::DecisionCacheSize => t.decision_cache_size = parse_u64(&to),
            Setting::DecisionCacheTtlS => t.decision_cache_ttl_s = parse_u64(&to),
            Setting::ConstitutionalCompliance => {
                return Err(TuningError::DecisionAltering(c.setting.key()))
            }
        }
    }
    Ok(t)
}

/// The changes that turn `from` into `to`, in setting order.
pub fn diff(from: &GateTuning, to: &GateTuning) -> Vec<SettingChange> {
    Setting::ALL
        .into_iter()
        .filter_map(|s| {
            let (a, b) = (s.value_in_tuning(from)?, s.value_in_tuning(to)?);
            (a != b).then_some(SettingChange {
                from: a,
                setting: s,
                to: b,
            })
        })
        .collect()
}

/// The changes as a TOML fragment (what to put in the configuration file).
pub fn as_toml(changes: &[SettingChange]) -> String {
    let mut out = String::from("[elf]\n");
    for c in changes {
        let name = c.setting.key().trim_start_matches("elf.");
        out.push_str(&format!("{name} = {}    # was {}\n", c.to, c.from));
    }
    out
}

pub(super) fn parse_u64(s: &str) -> u64 {
    s.parse().unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning() -> GateTuning {
        GateTuning {
            parallelize_l2_l3: true,
            enable_decision_cache: true,
            decision_cache_size: 2048,
            decision_cache_ttl_s: 120,
        }
    }

    fn change(setting: Setting, to: &str) -> SettingChange {
        SettingChange {
            from: String::new(),
            setting,
            to: to.into(),
        }
    }

    #[test]
    fn performance_settings_apply_and_thresholds_are_refused() {
        let t = apply_to_tuning(
            &tuning(),
            &[
                change(Setting::ParallelizeL2L3, "false"),
                change(Setting::DecisionCacheSize, " 4096 "),
            ],
        )
        .unwrap();
        assert!(!t.parallelize_l2_l3);
        assert_eq!(t.decision_cache_size, 4096);
        assert_eq!(diff(&tuning(), &t).len(), 2);
        assert_eq!(
            apply_to_tuning(
                &tuning(),
                &[change(Setting::ConstitutionalCompliance, "0.8")]
            ),
            Err(TuningError::DecisionAltering(
                "elf.constitutional_compliance"
            ))
        );
        assert!(apply_to_tuning(&tuning(), &[change(Setting::DecisionCacheTtlS, "0")]).is_err());
        assert!(apply_to_tuning(&tuning(), &[change(Setting::ParallelizeL2L3, "yes")]).is_err());
    }

    #[test]
    fn keys_round_trip_and_serialise_as_the_configuration_key() {
        for s in Setting::ALL {
            assert_eq!(Setting::parse(s.key()), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.key());
        }
        assert!(Setting::parse("elf.rules_file").is_err());
        assert_eq!(
            Setting::ConstitutionalCompliance.normalise("0.9").unwrap(),
            "0.9"
        );
        assert_eq!(
            Setting::ConstitutionalCompliance.normalise("1").unwrap(),
            "1.0"
        );
    }
}
