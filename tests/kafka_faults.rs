//! Delivery guarantees against real brokers: the broker stopped for 30 s mid-stream, a
//! spool that fills up while the broker is away, the engine killed with SIGKILL and
//! restarted, and a graceful SIGTERM. Afterwards every chain is complete on its topic:
//! every sequence number, signatures and links valid, duplicates only as exact copies that
//! a consumer drops by (chain, seq).
//!
//! The outage tests use tansu, which keeps acknowledged writes across a kill -9 restart.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bizra_risk::audit::Verifier;
use bizra_risk::config::Config;
use bizra_risk::metrics::Metrics;
use bizra_risk::replay::Speed;

fn kafka_config(url: &str, dir: &Path, key: &Path, brokers: &str, topic: &str) -> Config {
    let mut c = common::kafka_test_config(url, dir, key, brokers, topic);
    c.kafka.topic_partitions = 2;
    c
}

/// The deduplicated topic verifies as complete chains from genesis; returns the number of
/// distinct events and of exact duplicates dropped.
fn assert_chains_complete(brokers: &str, topic: &str, key: &Path) -> (u64, usize) {
    let (records, dups) = common::read_deduplicated(brokers, topic);
    let mut v = Verifier::new(&[common::verifying_key(key)]);
    for (i, r) in records.iter().enumerate() {
        v.push(&format!("{topic}#{i}"), r);
    }
    let report = v.finish();
    assert!(
        report.ok(),
        "{:?}",
        report.failures.iter().take(5).collect::<Vec<_>>()
    );
    for c in report.chains.values() {
        assert_eq!((c.first_seq, c.events), (0, c.last_seq + 1), "no gap");
    }
    (report.chains.values().map(|c| c.events).sum(), dups)
}

/// Like `assert_chains_complete`, with every signed event on the topic.
fn assert_complete(brokers: &str, topic: &str, key: &Path, expected_events: u64) -> usize {
    let (events, dups) = assert_chains_complete(brokers, topic, key);
    assert_eq!(events, expected_events, "every signed event on the topic");
    dups
}

#[test]
fn broker_down_for_30_s_mid_stream_loses_nothing() {
    let Some(tansu) = common::tansu_binary() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let port = common::free_port();
    let brokers = format!("127.0.0.1:{port}");
    let broker = common::Tansu::start(&tansu, port, &tmp.path().join("broker"));
    // Day two paced to ~37 s, so that the stream goes on through the whole outage.
    let server = common::replay_day("20240809", Speed::Factor(8.0));
    let config = kafka_config(&server.url(), tmp.path(), &key, &brokers, "outage");
    let metrics = Arc::new(Metrics::new().unwrap());
    let m = metrics.clone();
    let run = std::thread::spawn(move || common::run_with_metrics(config, m));

    std::thread::sleep(Duration::from_secs(4));
    let acked_before = metrics.kafka_acked_total.get();
    assert!(
        acked_before > 0,
        "records reached the broker before the outage"
    );
    broker.kill();
    let down_at = Instant::now();
    std::thread::sleep(Duration::from_secs(30));
    // The pipeline went on: records accumulated in the spool.
    assert!(metrics.spool_bytes.get() > 0);
    assert!(!run.is_finished() || down_at.elapsed() < Duration::from_secs(31));
    let _broker = common::Tansu::start(&tansu, port, &tmp.path().join("broker"));
    let summary = run.join().unwrap();
    assert_eq!(summary.spooled_bytes_left, 0, "the spool drained");
    assert_eq!(metrics.spool_bytes.get(), 0);
    let produced: u64 = summary.gates.iter().map(|g| g.next_seq).sum();
    let dups = assert_complete(&brokers, "outage", &key, produced);
    eprintln!(
        "outage: {produced} events, {acked_before} acknowledged before the outage, {dups} duplicates dropped by the consumer"
    );
}

#[test]
fn a_full_spool_holds_the_pipeline_back_and_loses_nothing() {
    let Some(tansu) = common::tansu_binary() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let port = common::free_port();
    let brokers = format!("127.0.0.1:{port}");
    let broker = common::Tansu::start(&tansu, port, &tmp.path().join("broker"));
    let server = common::replay_day("20240808", Speed::Max);
    let mut config = kafka_config(&server.url(), tmp.path(), &key, &brokers, "full");
    config.kafka.spool_max_mb = 1;
    config.kafka.spool_retain_acked_mb = 1;
    let metrics = Arc::new(Metrics::new().unwrap());
    // Topics exist and chain heads are read while the broker is up; then it goes away.
    let m = metrics.clone();
    let spool_dir = config.kafka.spool_dir.clone();
    let run = std::thread::spawn(move || common::run_with_metrics(config, m));
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.kafka_acked_total.get() == 0 {
        assert!(Instant::now() < deadline, "nothing acknowledged");
        std::thread::sleep(Duration::from_millis(20));
    }
    broker.kill();
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.spool_full_waits_total.get() == 0 {
        assert!(Instant::now() < deadline, "the spool never filled");
        assert!(!run.is_finished(), "run ended without backpressure");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Backpressure: the run is held, the spool stays within its bound.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !run.is_finished(),
        "a full spool must hold the pipeline back"
    );
    let on_disk: u64 = std::fs::read_dir(&spool_dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    // The bound holds unacknowledged bytes; acknowledged ones are kept until read back, up
    // to their own bound, and wait at most one more segment (an eighth of the first bound)
    // for their segment to be removed.
    assert!(
        on_disk <= (1 << 20) + (1 << 20) + (1 << 17) + 4096,
        "spool on disk {on_disk} B"
    );
    let _broker = common::Tansu::start(&tansu, port, &tmp.path().join("broker"));
    let summary = run.join().unwrap();
    assert_eq!(summary.spooled_bytes_left, 0);
    let produced: u64 = summary.gates.iter().map(|g| g.next_seq).sum();
    assert_complete(&brokers, "full", &key, produced);
    eprintln!(
        "spool full: {} waits for room, {produced} events all on the topic",
        metrics.spool_full_waits_total.get()
    );
}

fn engine(url: &str, dir: &Path, key: &Path, brokers: &str, topic: &str) -> Command {
    let mut cmd = common::engine_command(url, dir, key);
    cmd.env("BIZRA_KAFKA__BROKERS", brokers)
        .env("BIZRA_KAFKA__TOPIC_DECISIONS", topic)
        .env(
            "BIZRA_KAFKA__TOPIC_CHECKPOINTS",
            format!("{topic}.checkpoints"),
        )
        .env("BIZRA_KAFKA__TOPIC_VAR_SNAPSHOTS", format!("{topic}.var"))
        .env("BIZRA_KAFKA__SPOOL_DIR", dir.join("spool"));
    cmd
}

/// `verify` over `topic` (and its checkpoints topic when `checkpoints`), trusting `key`;
/// it must pass. Returns its output.
fn verify_topic(
    brokers: &str,
    topic: &str,
    key: &Path,
    checkpoints: bool,
    extra: &[&str],
) -> Vec<u8> {
    let pubkey = hex::encode(common::verifying_key(key).as_bytes());
    let mut args = vec![
        "verify",
        "--pubkey",
        &pubkey,
        "--kafka-brokers",
        brokers,
        "--topic",
        topic,
    ];
    let cp_topic = format!("{topic}.checkpoints");
    if checkpoints {
        args.extend(["--checkpoint-topic", cp_topic.as_str()]);
    }
    args.extend(extra);
    common::cli_ok(&args)
}

/// Records of `topic` now (all partitions).
fn topic_len(brokers: &str, topic: &str) -> u64 {
    bizra_risk::sink::KafkaSource::new(brokers, topic)
        .and_then(|s| s.read_all(Duration::from_secs(30), |_, _| {}))
        .unwrap_or(0)
}

#[test]
fn sigkill_mid_stream_then_restart_leaves_no_gap_and_no_fork() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let topic = format!("sigkill-{}", std::process::id());
    let paced = common::replay_day("20240809", Speed::Factor(20.0));
    let mut child = engine(&paced.url(), tmp.path(), &key, &brokers, &topic)
        .spawn()
        .unwrap();
    common::wait_while_running(
        &mut child,
        tmp.path(),
        "nothing reached the topic",
        Duration::from_millis(200),
        || topic_len(&brokers, &topic) >= 100,
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let fast = common::replay_day("20240809", Speed::Max);
    let status = engine(&fast.url(), tmp.path(), &key, &brokers, &topic)
        .status()
        .unwrap();
    assert!(status.success(), "restart: {status:?}");
    let (events, dups) = assert_chains_complete(&brokers, &topic, &key);
    // The auditor's view of the raw topics: exact copies skipped and counted, nothing else.
    let out = verify_topic(
        &brokers,
        &topic,
        &key,
        true,
        &["--allow-duplicates", "--json"],
    );
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["duplicates_skipped"].as_u64(), Some(dups as u64));
    eprintln!("sigkill: {events} distinct events, {dups} duplicates dropped");
}

#[cfg(unix)]
#[test]
fn sigterm_drains_flushes_and_exits_zero() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let topic = format!("sigterm-{}", std::process::id());
    let paced = common::replay_day("20240809", Speed::Factor(10.0));
    let mut child = engine(&paced.url(), tmp.path(), &key, &brokers, &topic)
        .spawn()
        .unwrap();
    common::wait_while_running(
        &mut child,
        tmp.path(),
        "nothing reached the topic",
        Duration::from_millis(200),
        || topic_len(&brokers, &topic) >= 50,
    );
    let asked = Instant::now();
    let pid = child.id().to_string();
    common::send_signal(&pid, "-TERM");
    let status = child.wait().unwrap();
    let took = asked.elapsed();
    assert!(status.success(), "graceful exit: {status:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // Everything signed is on the topic, the spool is empty, the heads are persisted and
    // each chain's last checkpoint was sealed.
    let spool_left: u64 = std::fs::read_dir(tmp.path().join("spool"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert_eq!(spool_left, 0);
    let heads = bizra_risk::heads::load(&tmp.path().join("state/chain_heads.json"))
        .unwrap()
        .unwrap();
    let (records, dups) = common::read_deduplicated(&brokers, &topic);
    assert_eq!(dups, 0);
    let total: u64 = heads.values().map(|h| h.next_seq).sum();
    assert_eq!(records.len() as u64, total, "heads match the topic");
    verify_topic(&brokers, &topic, &key, true, &[]);
    eprintln!("sigterm: exit 0 after {took:?}, {} events", records.len());

    // A second signal exits at once; the next start continues the chains cleanly.
    let mut child = engine(&paced.url(), tmp.path(), &key, &brokers, &topic)
        .spawn()
        .unwrap();
    let before = topic_len(&brokers, &topic);
    common::wait_while_running(
        &mut child,
        tmp.path(),
        "the restarted engine published nothing",
        Duration::from_millis(200),
        || topic_len(&brokers, &topic) >= before + 50,
    );
    let pid = child.id().to_string();
    for _ in 0..2 {
        // The second may find the process already gone after a fast graceful exit.
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = child.wait().unwrap();
    assert!(
        matches!(status.code(), Some(0) | Some(130)),
        "graceful (0) or forced (130) exit: {status:?}"
    );
    let fast = common::replay_day("20240809", Speed::Max);
    let status = engine(&fast.url(), tmp.path(), &key, &brokers, &topic)
        .status()
        .unwrap();
    assert!(status.success(), "{}", common::engine_log(tmp.path()));
    verify_topic(&brokers, &topic, &key, false, &["--allow-duplicates"]);
}

/// `kafka.transactional = true`: the engine killed with SIGKILL mid-stream and restarted;
/// a read_committed consumer (the verifier's reader) sees every decision and every
/// checkpoint exactly once: no gap and not one duplicate.
#[test]
fn transactional_publication_is_exactly_once_across_sigkill_and_restart() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let topic = format!("txn-{}", std::process::id());
    let transactional = |cmd: &mut Command| {
        cmd.env("BIZRA_KAFKA__TRANSACTIONAL", "true");
    };
    let paced = common::replay_day("20240809", Speed::Factor(20.0));
    let mut first = engine(&paced.url(), tmp.path(), &key, &brokers, &topic);
    transactional(&mut first);
    let mut child = first.spawn().unwrap();
    common::wait_while_running(
        &mut child,
        tmp.path(),
        "nothing committed to the topic",
        Duration::from_millis(200),
        || topic_len(&brokers, &topic) >= 100,
    );
    child.kill().unwrap(); // SIGKILL, mid-transaction
    child.wait().unwrap();

    let fast = common::replay_day("20240809", Speed::Max);
    let mut second = engine(&fast.url(), tmp.path(), &key, &brokers, &topic);
    transactional(&mut second);
    let status = second.status().unwrap();
    assert!(
        status.success(),
        "restart: {status:?}: {}",
        common::engine_log(tmp.path())
    );
    for t in [topic.clone(), format!("{topic}.checkpoints")] {
        let mut seen = std::collections::HashSet::new();
        let mut twice = 0;
        bizra_risk::sink::KafkaSource::new(&brokers, &t)
            .unwrap()
            .read_all(Duration::from_secs(60), |_, payload| {
                twice += usize::from(!seen.insert(payload.to_vec()));
            })
            .unwrap();
        assert!(!seen.is_empty(), "{t} is empty");
        assert_eq!(
            twice, 0,
            "{t}: a read_committed consumer saw a record twice"
        );
    }
    let (events, _) = assert_chains_complete(&brokers, &topic, &key);
    // The verifier over both topics, no duplicates allowed.
    verify_topic(&brokers, &topic, &key, true, &[]);
    eprintln!("transactional: {events} events, each once");
}
