//! Replay -> pipeline -> a real Kafka-protocol broker; consume the topic back and verify
//! every signature and chain link.

mod common;

use std::time::Duration;

use bizra_risk::audit::Verifier;
use bizra_risk::replay::{spawn_in_thread, ReplayOptions, Speed};
use bizra_risk::sink::KafkaSource;

#[test]
fn signed_events_reach_kafka_and_verify() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let files: Vec<_> = common::capture_files_of_day("20240808");
    let server = spawn_in_thread(
        "127.0.0.1:0".parse().unwrap(),
        ReplayOptions::new(files, Speed::Max),
    )
    .unwrap();
    let mut config = common::test_config(&server.url(), tmp.path(), &key);
    let topic = format!("bizra-test-{}", std::process::id());
    config.kafka.brokers = brokers.clone();
    config.kafka.topic_decisions = topic.clone();
    config.kafka.topic_checkpoints = format!("{topic}-checkpoints");
    config.kafka.topic_var_snapshots = format!("{topic}-var");
    let summary = common::run(config);
    assert_eq!(summary.spooled_bytes_left, 0, "every record acknowledged");
    let produced: u64 = summary.gates.iter().map(|g| g.next_seq).sum();
    assert!(produced > 500, "{produced}");
    assert!(summary.sink.starts_with("kafka:"));

    let source = KafkaSource::new(&brokers, &topic).unwrap();
    let mut verifier = Verifier::new(&[common::verifying_key(&key)]);
    let n = source
        .read_all(Duration::from_secs(60), |pos, payload| {
            verifier.push(pos, payload)
        })
        .unwrap();
    let report = verifier.finish();
    assert_eq!(
        n, produced,
        "every signed event is on the topic exactly once"
    );
    assert!(report.ok(), "{:?}", report.failures);
    assert_eq!(report.chains.len(), 3);

    // Restart into the same topic with the next day's data: every chain continues from
    // its last sequence number on the topic, no fork, no restart at genesis.
    let server = common::replay_day("20240809", Speed::Max);
    let mut config = common::test_config(&server.url(), tmp.path(), &key);
    config.kafka.brokers = brokers.clone();
    config.kafka.topic_decisions = topic.clone();
    config.kafka.topic_checkpoints = format!("{topic}-checkpoints");
    config.kafka.topic_var_snapshots = format!("{topic}-var");
    let summary = common::run(config);
    let total: u64 = summary.gates.iter().map(|g| g.next_seq).sum();
    assert!(total > produced + 300, "{total} after {produced}");
    let mut verifier = Verifier::new(&[common::verifying_key(&key)]);
    let n = source
        .read_all(Duration::from_secs(60), |pos, payload| {
            verifier.push(pos, payload)
        })
        .unwrap();
    let report = verifier.finish();
    assert_eq!(n, total, "both runs' events, each once");
    assert!(report.ok(), "{:?}", report.failures);
    assert_eq!(report.chains.len(), 3);

    // The auditor's CLI over both topics: checkpoints read first and matched, from the
    // beginning and from an offset, and an inclusion proof taken from the topics.
    let pubkey = hex::encode(common::verifying_key(&key).as_bytes());
    let cli = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bizra-risk"))
            .args([
                "verify",
                "--json",
                "--pubkey",
                &pubkey,
                "--kafka-brokers",
                &brokers,
            ])
            .args([
                "--topic",
                &topic,
                "--checkpoint-topic",
                &format!("{topic}-checkpoints"),
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let full = cli(&[]);
    assert!(full["records"].as_u64().unwrap() > total);
    for c in full["chains"].as_object().unwrap().values() {
        assert!(c["checkpoints_verified"].as_u64().unwrap() >= 2, "{c}");
    }
    let later = cli(&["--from-offset", "20"]);
    assert!(later["records"].as_u64().unwrap() < full["records"].as_u64().unwrap());
    let proof = cli(&["--prove", "30", "--chain", "bizra.BTCUSDT"]);
    assert_eq!(proof["seq"], 30);
    assert!(!proof["audit_path"].as_array().unwrap().is_empty());

    // A desk's view: `tail` decodes and verifies every event, filtered by verdict.
    let out = common::cli_ok(&[
        "tail",
        "--json",
        "--verdict",
        "block",
        "--pubkey",
        &pubkey,
        "--kafka-brokers",
        &brokers,
        "--topic",
        &topic,
    ]);
    let lines: Vec<serde_json::Value> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    assert!(lines
        .iter()
        .all(|l| l["verified"] == true && l["verdict"] == "BLOCK"));

    // Every message on the three topics matches its documented schema.
    for (suffix, schema) in [
        ("", "signed-event"),
        ("-checkpoints", "checkpoint"),
        ("-var", "var-snapshot"),
    ] {
        let t = format!("{topic}{suffix}");
        let validator = common::schema(schema);
        let n = KafkaSource::new(&brokers, &t)
            .unwrap()
            .read_all(Duration::from_secs(60), |pos, payload| {
                common::assert_valid(&validator, pos, payload)
            })
            .unwrap();
        assert!(n > 0, "{t} is empty");
    }
}
