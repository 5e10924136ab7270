//! Kafka delivery figures against a real local broker (`scripts/bench-kafka` starts one):
//! spool write rate, sustained signed events per second acknowledged by the broker through
//! the spool, and the rate at which a full spool drains after an outage.
//!
//! `BIZRA_BENCH_KAFKA_BROKERS=host:port cargo bench --bench kafka` (skips without it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;

use bizra_risk::audit::wire::Payload;
use bizra_risk::audit::{ChainHead, ChainSigner, CheckpointPolicy};
use bizra_risk::config::Config;
use bizra_risk::elf_demo;
use bizra_risk::metrics::Metrics;
use bizra_risk::sink::spool::{Spool, SpoolRecord, TopicKind};
use bizra_risk::sink::{ensure_topics, KafkaSink, Readback, Topics};

fn records(n: usize) -> Vec<SpoolRecord> {
    let config = Config::embedded().expect("defaults");
    let payload = Payload::RiskDecision(Box::new(
        elf_demo::sample_decision(&config).expect("sample decision"),
    ));
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"];
    let mut signers: Vec<ChainSigner> = symbols
        .iter()
        .map(|s| {
            ChainSigner::new(
                key.clone(),
                format!("bench.{s}"),
                ChainHead::genesis(),
                CheckpointPolicy::default(),
            )
        })
        .collect();
    let started = Instant::now();
    let out: Vec<SpoolRecord> = (0..n)
        .map(|i| {
            let s = &mut signers[i % symbols.len()];
            let e = s
                .sign(i as i64, symbols[i % symbols.len()], &payload)
                .expect("sign");
            SpoolRecord {
                topic: TopicKind::Decisions,
                partition_key: e.partition_key,
                chain: e.chain,
                seq: e.seq,
                key_id: e.key_id,
                payload: e.line,
            }
        })
        .collect();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "signed {n} events ({} bytes each) in {secs:.2} s: {:.0} events/s on one core",
        out[0].payload.len(),
        n as f64 / secs
    );
    out
}

fn main() {
    let Ok(brokers) = std::env::var("BIZRA_BENCH_KAFKA_BROKERS") else {
        eprintln!("skipped: set BIZRA_BENCH_KAFKA_BROKERS (scripts/bench-kafka starts a broker)");
        return;
    };
    let n: usize = std::env::var("BIZRA_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let recs = records(n);
    let bytes: usize = recs.iter().map(|r| r.payload.len()).sum();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let run_id = std::process::id();
    let topics = Topics {
        decisions: format!("bench-{run_id}"),
        checkpoints: format!("bench-{run_id}.checkpoints"),
        var_snapshots: format!("bench-{run_id}.var"),
    };
    rt.block_on(ensure_topics(
        &brokers,
        &[
            &topics.decisions,
            &topics.checkpoints,
            &topics.var_snapshots,
        ],
        4,
        1,
        Duration::from_secs(30),
    ))
    .expect("topics");

    // 1. Spool write (append + one fsync at the end).
    let dir = tempfile::tempdir().expect("tmp");
    let mut spool = Spool::open(&dir.path().join("w"), 8 << 30, 0).expect("spool");
    let t = Instant::now();
    for r in &recs {
        spool.append(r).expect("append");
    }
    spool.sync().expect("sync");
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "spool write: {:.0} records/s, {:.0} MB/s",
        n as f64 / secs,
        bytes as f64 / secs / 1e6
    );

    // 2. Sustained: spool + producer + acknowledgements, everything acknowledged.
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let spool = Spool::open(&dir.path().join("s"), 8 << 30, 0).expect("spool");
    let readback = Readback::new(Duration::from_secs(5), Duration::from_secs(5));
    let mut sink = KafkaSink::new(
        &brokers,
        topics.clone(),
        spool,
        readback,
        None,
        metrics.clone(),
    )
    .expect("sink");
    let t = Instant::now();
    rt.block_on(async {
        for r in &recs {
            sink.send(r.clone(), Some(Instant::now()))
                .await
                .expect("send");
        }
        let left = sink
            .drain(Instant::now() + Duration::from_secs(300))
            .await
            .expect("drain");
        assert_eq!(left, 0, "everything acknowledged");
    });
    let secs = t.elapsed().as_secs_f64();
    let lat = sink.tick_to_ack().expect("latencies");
    eprintln!(
        "sustained: {n} signed events acknowledged in {secs:.2} s: {:.0} events/s ({:.0} MB/s); \
         publish -> ack p50 {} us, p99 {} us at full load",
        n as f64 / secs,
        bytes as f64 / secs / 1e6,
        lat.p50,
        lat.p99
    );

    // 3. Drain: a spool filled while the broker was away, sent on recovery.
    let drain_dir = dir.path().join("d");
    let mut spool = Spool::open(&drain_dir, 8 << 30, 0).expect("spool");
    for r in &recs {
        spool.append(r).expect("append");
    }
    spool.sync().expect("sync");
    drop(spool);
    let spool = Spool::open(&drain_dir, 8 << 30, 0).expect("spool");
    let readback = Readback::new(Duration::from_secs(5), Duration::from_secs(5));
    let mut sink = KafkaSink::new(&brokers, topics, spool, readback, None, metrics).expect("sink");
    let t = Instant::now();
    let left = rt
        .block_on(sink.drain(Instant::now() + Duration::from_secs(300)))
        .expect("drain");
    assert_eq!(left, 0);
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "spool drain after an outage: {n} records in {secs:.2} s: {:.0} records/s",
        n as f64 / secs
    );
}
