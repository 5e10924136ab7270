//! Every kind of message the engine publishes validates against its documented JSON Schema
//! (docs/events.md, docs/schemas/): signed events, checkpoints and VaR snapshots of a real
//! run, including blocked decisions. The Kafka test validates the topics' messages too.

mod common;

use std::fs;

use bizra_risk::replay::Speed;

#[test]
fn every_published_message_matches_its_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let server = common::replay_day("20240808", Speed::Max);
    common::run(common::test_config(&server.url(), tmp.path(), &key));
    let events = tmp.path().join("events");
    let signed = common::schema("signed-event");
    let checkpoint = common::schema("checkpoint");
    let snapshot = common::schema("var-snapshot");
    let mut counts = [0usize; 3];
    let mut blocked = 0;
    for entry in fs::read_dir(&events).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".jsonl") {
            continue;
        }
        let (schema, slot) = if name.ends_with(".checkpoints.jsonl") {
            (&checkpoint, 1)
        } else {
            (&signed, 0)
        };
        for (i, line) in fs::read_to_string(&path).unwrap().lines().enumerate() {
            common::assert_valid(schema, &format!("{name}:{}", i + 1), line.as_bytes());
            blocked += usize::from(line.contains("\"verdict\":\"BLOCK\""));
            counts[slot] += 1;
        }
    }
    for entry in fs::read_dir(events.join("var_snapshots")).unwrap() {
        let path = entry.unwrap().path();
        for (i, line) in fs::read_to_string(&path).unwrap().lines().enumerate() {
            common::assert_valid(
                &snapshot,
                &format!("{}:{}", path.display(), i + 1),
                line.as_bytes(),
            );
            counts[2] += 1;
        }
    }
    assert!(
        counts[0] > 500 && counts[1] >= 3 && counts[2] == counts[0],
        "{counts:?}"
    );
    assert!(blocked > 0, "blocked decisions are covered too");

    // The schemas are strict: a field too many, a wrong type or a bad code fails.
    let line = fs::read_to_string(events.join("bizra.BTCUSDT.jsonl")).unwrap();
    let first = line.lines().next().unwrap();
    for bad in [
        first.replacen("\"sig\":", "\"extra\":1,\"sig\":", 1),
        first.replacen("\"seq\":0", "\"seq\":\"0\"", 1),
        first.replacen("\"verdict\":\"", "\"verdict\":\"MAYBE", 1),
    ] {
        let value: serde_json::Value = serde_json::from_str(&bad).unwrap();
        assert!(!signed.is_valid(&value), "accepted: {}", &bad[..200]);
    }
    // Integers beyond 2^53 - 1 travel as their exact decimal strings (docs/audit-format.md).
    let huge = first.replacen("\"seq\":0", "\"seq\":\"9007199254740993\"", 1);
    let value: serde_json::Value = serde_json::from_str(&huge).unwrap();
    assert!(signed.is_valid(&value), "refused: {}", &huge[..200]);
}
