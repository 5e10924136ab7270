//! `[elf]`: the gate.

use super::*;

/// ELF gate settings. The first six keys keep the names of the ELF v1.1 reference.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ElfConfig {
    pub constitutional_compliance: f64,
    pub enable_decision_cache: bool,
    pub decision_cache_ttl_s: u64,
    pub decision_cache_size: u64,
    pub parallelize_l2_l3: bool,
    pub input_validation_guardrail: bool,
    pub max_data_age_ms: i64,
    pub max_future_skew_ms: i64,
    pub duplicate_window: usize,
    pub weight_freshness: f64,
    pub weight_sample: f64,
    pub weight_mc_agreement: f64,
    pub weight_backtest: f64,
    pub ess_target: f64,
    pub throttle_max_actions: u32,
    pub throttle_window_ms: i64,
    pub rules_file: PathBuf,
    /// Candidate rules evaluated beside the active ones and never enforced; empty is off.
    pub shadow_rules_file: PathBuf,
}

impl ElfConfig {
    /// The gate's settings as plain values.
    pub fn gate_settings(&self) -> crate::elf::GateSettings {
        let c = self;
        crate::elf::GateSettings {
            input_validation: c.input_validation_guardrail,
            compliance_threshold: c.constitutional_compliance,
            parallelize_l2_l3: c.parallelize_l2_l3,
            max_data_age_ms: c.max_data_age_ms,
            max_future_skew_ms: c.max_future_skew_ms,
            duplicate_window: c.duplicate_window,
            weights: crate::elf::ComplianceWeights {
                freshness: c.weight_freshness,
                sample: c.weight_sample,
                mc_agreement: c.weight_mc_agreement,
                backtest: c.weight_backtest,
            },
            ess_target: c.ess_target,
            throttle_max_actions: c.throttle_max_actions,
            throttle_window_ms: c.throttle_window_ms,
            decision_cache: c.enable_decision_cache,
            decision_cache_size: c.decision_cache_size,
            decision_cache_ttl: std::time::Duration::from_secs(c.decision_cache_ttl_s),
        }
    }
}

impl Config {
    /// Problems of `[elf]`.
    pub(super) fn elf_problems(&self, check: &mut impl FnMut(bool, String)) {
        let e = &self.elf;
        check(
            (0.0..=1.0).contains(&e.constitutional_compliance),
            format!(
                "elf.constitutional_compliance must be in [0, 1], got {}",
                e.constitutional_compliance
            ),
        );
        check(
            e.decision_cache_size > 0,
            "elf.decision_cache_size must be > 0".into(),
        );
        check(
            e.decision_cache_ttl_s > 0,
            "elf.decision_cache_ttl_s must be > 0".into(),
        );
        check(
            e.max_data_age_ms > 0,
            "elf.max_data_age_ms must be > 0".into(),
        );
        check(
            e.max_future_skew_ms >= 0,
            "elf.max_future_skew_ms must be >= 0".into(),
        );
        check(
            (1..=1_000_000).contains(&e.duplicate_window),
            "elf.duplicate_window must be in 1..=1000000".into(),
        );
        let weights = [
            e.weight_freshness,
            e.weight_sample,
            e.weight_mc_agreement,
            e.weight_backtest,
        ];
        check(
            weights.iter().all(|w| (0.0..=1.0).contains(w))
                && (weights.iter().sum::<f64>() - 1.0).abs() < 1e-9,
            format!("elf.weight_* must be in [0, 1] and sum to 1, got {weights:?}"),
        );
        check(e.ess_target > 0.0, "elf.ess_target must be > 0".into());
        check(
            e.throttle_max_actions > 0,
            "elf.throttle_max_actions must be > 0".into(),
        );
        check(
            e.throttle_window_ms > 0,
            "elf.throttle_window_ms must be > 0".into(),
        );
    }
}
