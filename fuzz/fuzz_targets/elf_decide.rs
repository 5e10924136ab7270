#![no_main]
//! Arbitrary action requests (any bit patterns for numbers, any symbol and ID, any time
//! offsets) through the whole gate, L0 to L4, with cache and L2 || L3 on and off: no
//! panic, and the signed record of every decision parses back in canonical form.
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;

use bizra_risk::audit::wire::{self, BarRecords, DecisionRecord, Payload, RunProvenance};
use bizra_risk::audit::{ChainHead, ChainSigner, CheckpointPolicy};
use bizra_risk::config::Config;
use bizra_risk::elf::{ActionRequest, ElfGate, Evidence, InputRange, KillSwitch, RuleSet};
use bizra_risk::risk::RiskAction;
use bizra_risk::var::ModelFigures;

fn f(data: &[u8], i: usize) -> f64 {
    let mut b = [0u8; 8];
    for (k, slot) in b.iter_mut().enumerate() {
        *slot = data.get(i * 8 + k).copied().unwrap_or(0);
    }
    f64::from_bits(u64::from_le_bytes(b))
}

fuzz_target!(|data: &[u8]| {
    let Ok(config) = Config::embedded() else { return };
    let Ok(rules) = RuleSet::parse(include_str!("../../config/rules.yaml")) else { return };
    let mut settings = config.elf.gate_settings();
    let flags = data.first().copied().unwrap_or(0);
    settings.decision_cache = flags & 1 != 0;
    settings.parallelize_l2_l3 = flags & 2 != 0;
    let mut gate = ElfGate::new(
        settings,
        ["BTCUSDT".to_string()].into(),
        Arc::new(rules),
        KillSwitch::default(),
    );
    let action = match flags >> 2 & 7 {
        0 => RiskAction::PublishRiskSnapshot,
        1 => RiskAction::LimitBreach { var_usd: f(data, 1), limit_usd: f(data, 2) },
        2 => RiskAction::ReduceExposure { current_qty: f(data, 1), target_qty: f(data, 2) },
        3 => RiskAction::Halt,
        4 => RiskAction::Resume,
        _ => RiskAction::SetLimit { new_limit_usd: f(data, 1) },
    };
    let text = String::from_utf8_lossy(data.get(200..).unwrap_or(&[]));
    let req = ActionRequest {
        action_id: text.chars().take(16).collect(),
        symbol: if flags & 32 != 0 { "BTCUSDT".into() } else { text.chars().skip(16).take(8).collect() },
        action,
        data_time_ms: f(data, 3).to_bits() as i64,
        decided_at_ms: f(data, 4).to_bits() as i64,
        feed_healthy: flags & 64 != 0,
        evidence: Evidence {
            level: f(data, 5), var_usd: f(data, 6), es_usd: f(data, 7), limit_usd: f(data, 8),
            limit_cap_usd: f(data, 9), var_ci_low_usd: f(data, 10), var_ci_high_usd: f(data, 11),
            position_qty: f(data, 12), price: f(data, 13), ess: f(data, 14), mc_z: f(data, 15),
            exceedances: f(data, 16), expected_exceedances: f(data, 17),
            model_warming_up: flags & 128 != 0,
        },
        input: InputRange::default(),
    };
    let first = gate.decide(&req);
    let mut again = req.clone();
    again.action_id.push('x');
    let _ = gate.decide(&again);
    assert!(!(first.verdict.allows() && req.evidence.var_usd.is_nan()));

    // L4: whatever was decided is signed, and the record reads back byte for byte.
    let provenance = RunProvenance { config_sha256: "0".repeat(64), rules_sha256: "1".repeat(64) };
    let bar = BarRecords::of(&req.evidence, &req.input, &ModelFigures::None);
    let record = DecisionRecord::new(&req, &first, &bar, &provenance.record());
    let mut signer = ChainSigner::new(
        ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
        "bizra.FUZZ".into(),
        ChainHead::genesis(),
        CheckpointPolicy::default(),
    );
    let signed = signer
        .sign(req.decided_at_ms, "FUZZ", &Payload::RiskDecision(Box::new(record)))
        .expect("every decision can be signed");
    wire::parse_record(&signed.line).expect("a signed record parses back in canonical form");
});
