//! The audit trail: sign + link per event, checkpoint sealing, and `verify` throughput
//! (batched and strict) over realistic signed decisions with their checkpoints.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::SigningKey;

use bizra_risk::audit::wire::Payload;
use bizra_risk::audit::{proof, ChainHead, ChainSigner, CheckpointPolicy, Verifier, VerifyOptions};
use bizra_risk::config::Config;
use bizra_risk::elf_demo;

const RECORDS: usize = 4096;

fn benches(c: &mut Criterion) {
    let config = Config::embedded().expect("defaults");
    let record = elf_demo::sample_decision(&config).expect("sample decision");
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let policy = CheckpointPolicy {
        every_events: 1000,
        every_ms: i64::MAX,
    };

    let mut signer = ChainSigner::new(
        key.clone(),
        "bench.sign".into(),
        ChainHead::genesis(),
        policy,
    );
    c.bench_function("sign_and_link_realistic_event", |b| {
        b.iter(|| {
            signer.sign(
                0,
                "BTCUSDT",
                &Payload::RiskDecision(Box::new(record.clone())),
            )
        })
    });

    // A trail of RECORDS events in two chains with their checkpoints, as `verify` reads it.
    let mut lines = Vec::new();
    let mut checkpoints = Vec::new();
    for chain in ["bench.A", "bench.B"] {
        let mut s = ChainSigner::new(key.clone(), chain.into(), ChainHead::genesis(), policy);
        for i in 0..RECORDS / 2 {
            let e = s
                .sign(
                    i as i64,
                    "A",
                    &Payload::RiskDecision(Box::new(record.clone())),
                )
                .expect("sign");
            lines.push(e.line);
            if let Some(cp) = s.checkpoint_if_due("A").expect("checkpoint") {
                checkpoints.push(cp.line);
            }
        }
        if let Some(cp) = s.checkpoint("A").expect("checkpoint") {
            checkpoints.push(cp.line);
        }
    }
    let avg = lines.iter().map(Vec::len).sum::<usize>() / lines.len();
    eprintln!(
        "verify benches: {RECORDS} records of {avg} bytes on average, {} checkpoints",
        checkpoints.len()
    );
    let run = |strict: bool| {
        let options = VerifyOptions {
            strict,
            from_genesis: true,
            allow_duplicates: false,
        };
        let mut v = Verifier::with_options(&[key.verifying_key()], options);
        for (n, l) in checkpoints.iter().chain(lines.iter()).enumerate() {
            v.push(&n.to_string(), l);
        }
        let r = v.finish();
        assert!(r.ok(), "{:?}", r.failures.first());
        r
    };
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.sample_size(10);
    g.bench_function("batched", |b| b.iter(|| black_box(run(false))));
    g.bench_function("strict", |b| b.iter(|| black_box(run(true))));
    g.finish();

    c.bench_function("inclusion_proof_build_4096", |b| {
        b.iter(|| {
            proof::build(
                "bench.A",
                1500,
                checkpoints.iter().chain(lines.iter()).map(Vec::as_slice),
            )
        })
    });
}

criterion_group!(audit, benches);
criterion_main!(audit);
