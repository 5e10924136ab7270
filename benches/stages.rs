//! Per-stage costs: parse, VaR update, Monte-Carlo, ELF decision (L2 || L3 on and off),
//! L4 signing against a bare Ed25519 signature, and verification.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ed25519_dalek::SigningKey;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use bizra_risk::audit::wire::{self, BarRecords, DecisionRecord, Payload, RunProvenance};
use bizra_risk::audit::{ChainHead, ChainSigner, CheckpointPolicy};
use bizra_risk::config::Config;
use bizra_risk::elf::{ActionRequest, ElfGate, Evidence, InputRange, KillSwitch, RuleSet};
use bizra_risk::market::parse_combined;
use bizra_risk::risk::RiskAction;
use bizra_risk::var::nig::{McScratch, NigParams, NigPosterior};
use bizra_risk::var::ModelFigures;

const TRADE: &str = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161253900,"s":"BTCUSDT","t":3735683259,"p":"61556.04000000","q":"0.00100000","T":1723161253899,"m":true,"M":true}}"#;

fn request(i: u64) -> ActionRequest {
    ActionRequest {
        action_id: format!("bench/{i}"),
        symbol: "BTCUSDT".into(),
        action: RiskAction::LimitBreach {
            var_usd: 60.0,
            limit_usd: 50.0,
        },
        // 20 s apart: under the default throttle (6 per minute), every request passes L2.
        data_time_ms: i as i64 * 20_000 - 50,
        decided_at_ms: i as i64 * 20_000,
        feed_healthy: true,
        evidence: Evidence {
            level: 0.99,
            var_usd: 60.0,
            es_usd: 70.0,
            limit_usd: 50.0,
            limit_cap_usd: 200.0,
            var_ci_low_usd: 55.0,
            var_ci_high_usd: 65.0,
            position_qty: 2.0,
            price: 61_000.0,
            ess: 180.0,
            mc_z: 0.4,
            exceedances: 2.0,
            expected_exceedances: 2.0,
            model_warming_up: false,
        },
        input: InputRange {
            first_trade_id: Some(1),
            last_trade_id: Some(9),
            bar_start_ms: 0,
            bar_end_ms: 1000,
            returns_seen: 300,
        },
    }
}

fn gate(parallel: bool) -> ElfGate {
    let config = Config::embedded().expect("defaults");
    let mut settings = config.elf.gate_settings();
    settings.parallelize_l2_l3 = parallel;
    let rules = RuleSet::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/rules.yaml"
    )))
    .expect("rules");
    ElfGate::new(
        settings,
        ["BTCUSDT".to_string()].into(),
        Arc::new(rules),
        KillSwitch::default(),
    )
}

fn posterior() -> NigPosterior {
    let mut p = NigPosterior::new(
        NigParams {
            m: 0.0,
            k: 0.01,
            a: 1.0,
            b: 1e-8,
        },
        0.995,
    );
    for i in 0..500 {
        p.update(((i * 7919) % 200) as f64 * 1e-6 - 1e-4);
    }
    p
}

fn benches(c: &mut Criterion) {
    c.bench_function("parse_trade_frame", |b| {
        b.iter(|| parse_combined(black_box(TRADE)))
    });

    let mut p = posterior();
    c.bench_function("nig_update_and_closed_form_var_es_2_levels", |b| {
        b.iter(|| {
            p.update(black_box(1.3e-4));
            (p.var_es(0.99), p.var_es(0.975))
        })
    });
    let p = posterior();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut scratch = McScratch::default();
    c.bench_function("nig_monte_carlo_10k_draws_2_levels", |b| {
        b.iter(|| p.risk(&[0.99, 0.975], 10_000, 0.9, &mut rng, &mut scratch))
    });

    for parallel in [false, true] {
        let mut g = gate(parallel);
        let mut i = 0u64;
        c.bench_function(&format!("elf_decide_l0_l3_parallel_{parallel}"), |b| {
            b.iter_batched(
                || {
                    i += 1;
                    request(i)
                },
                |r| g.decide(&r),
                BatchSize::SmallInput,
            )
        });
    }

    let key = SigningKey::from_bytes(&[7u8; 32]);
    let mut g = gate(false);
    let mut signer = ChainSigner::new(
        key.clone(),
        "bench.BTCUSDT".into(),
        ChainHead::genesis(),
        CheckpointPolicy::default(),
    );
    let prov = RunProvenance {
        config_sha256: "0".repeat(64),
        rules_sha256: "0".repeat(64),
    }
    .record();
    let r = request(0);
    // A bar's records, encoded once where the bar closes.
    let bar = BarRecords::of(&r.evidence, &r.input, &ModelFigures::None);
    let d = g.decide(&r);
    let record = DecisionRecord::new(&r, &d, &bar, &prov);
    let sample_payload = Payload::RiskDecision(Box::new(record.clone()));
    let sample = wire::canonical_payload(&sample_payload).expect("canonical");
    c.bench_function("rfc8785_encode_payload", |b| {
        b.iter(|| wire::canonical_payload(black_box(&sample_payload)))
    });
    c.bench_function("serde_json_plain_encode_payload", |b| {
        b.iter(|| serde_json::to_vec(black_box(&sample_payload)))
    });
    c.bench_function("sha256_payload_hash", |b| {
        b.iter(|| <sha2::Sha256 as sha2::Digest>::digest(black_box(&sample)))
    });
    c.bench_function("l4_canonicalize_sign_link", |b| {
        b.iter(|| {
            signer.sign(
                0,
                "BTCUSDT",
                &Payload::RiskDecision(Box::new(record.clone())),
            )
        })
    });
    let mut i = 0u64;
    c.bench_function("elf_full_gate_l0_l4", |b| {
        b.iter_batched(
            || {
                i += 1;
                request(i)
            },
            |r| {
                let d = g.decide(&r);
                signer.sign(
                    0,
                    "BTCUSDT",
                    &Payload::RiskDecision(Box::new(DecisionRecord::new(&r, &d, &bar, &prov))),
                )
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(stages, benches);
criterion_main!(stages);
