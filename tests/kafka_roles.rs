//! The roles over a real Kafka-protocol broker: one `ingest`, three `risk` workers and a
//! `portfolio` worker over a capture; one risk worker is killed mid-stream and another
//! added; every chain then verifies with no gap and no fork, and its decisions are those of
//! a single-process run over the same input. A fresh group re-reading the whole input (its
//! offsets reset) publishes no second event for any input record.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bizra_risk::audit::{Verifier, VerifyOptions};
use bizra_risk::replay::Speed;

/// Kills every worker it holds when the test ends, passed or failed.
struct Reaper(Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for c in &mut self.0 {
            kill(c);
        }
    }
}

struct Deployment {
    brokers: String,
    prefix: String,
    dir: PathBuf,
    key: PathBuf,
    url: String,
}

impl Deployment {
    fn role(&self, role: &str, name: &str, group: &str) -> Child {
        self.role_serving(role, name, group, "", name)
    }

    /// A worker with static group membership as `instance`, serving `/metrics` on `bind`.
    fn role_serving(
        &self,
        role: &str,
        name: &str,
        group: &str,
        bind: &str,
        instance: &str,
    ) -> Child {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let p = &self.prefix;
        Command::new(env!("CARGO_BIN_EXE_bizra-risk"))
            .args(["role", role])
            .env_remove("BIZRA_TEST_KAFKA_BROKERS")
            .env_remove("BIZRA_TEST_TANSU")
            .env("BIZRA_KAFKA__BROKERS", &self.brokers)
            .env("BIZRA_KAFKA__TOPIC_DECISIONS", format!("{p}.decisions"))
            .env("BIZRA_KAFKA__TOPIC_CHECKPOINTS", format!("{p}.checkpoints"))
            .env("BIZRA_KAFKA__TOPIC_VAR_SNAPSHOTS", format!("{p}.var"))
            .env("BIZRA_ROLES__MARKET_TOPIC", format!("{p}.market"))
            .env("BIZRA_ROLES__BARS_TOPIC", format!("{p}.bars"))
            .env("BIZRA_ROLES__MARKET_PARTITIONS", "6")
            .env("BIZRA_ROLES__RISK_GROUP", format!("{p}.{group}"))
            .env(
                "BIZRA_ROLES__PORTFOLIO_GROUP",
                format!("{p}.portfolio-{group}"),
            )
            .env("BIZRA_ROLES__SESSION_TIMEOUT_MS", "6000")
            .env("BIZRA_ROLES__MAX_POLL_INTERVAL_MS", "10000")
            .env("BIZRA_FEED__URL", &self.url)
            .env("BIZRA_FEED__ON_SERVER_CLOSE", "stop")
            .env("BIZRA_FEED__MAX_MESSAGES_PER_S", "0")
            .env("BIZRA_ENGINE__CLOCK", "event_time")
            .env("BIZRA_SIGNING__KEY_FILE", &self.key)
            .env("BIZRA_SINK__DIR", self.dir.join(name))
            .env(
                "BIZRA_ELF__RULES_FILE",
                common::repo().join("config/rules.yaml"),
            )
            .env("BIZRA_HTTP__BIND", bind)
            .env("BIZRA_ROLES__GROUP_INSTANCE_ID", instance)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    fn topic(&self, kind: &str) -> String {
        format!("{}.{kind}", self.prefix)
    }
}

/// The decision payloads of each chain in sequence order, without what only says where the
/// input came from (`source`) or which configuration file ran (`provenance`).
fn decisions(lines: impl IntoIterator<Item = Vec<u8>>) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut by_chain: BTreeMap<String, BTreeMap<u64, serde_json::Value>> = BTreeMap::new();
    for line in lines {
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        if v["event"]["kind"] != "RISK_DECISION" {
            continue;
        }
        let mut record = v["payload"].clone();
        let map = record.as_object_mut().unwrap();
        map.remove("source");
        map.remove("provenance");
        let chain = v["event"]["chain"].as_str().unwrap().to_string();
        let seq = v["event"]["seq"].as_u64().unwrap();
        by_chain.entry(chain).or_default().insert(seq, record);
    }
    by_chain
        .into_iter()
        .map(|(c, m)| (c, m.into_values().collect()))
        .collect()
}

fn counts(d: &BTreeMap<String, Vec<serde_json::Value>>) -> BTreeMap<String, usize> {
    d.iter().map(|(c, v)| (c.clone(), v.len())).collect()
}

impl Deployment {
    /// Wait for `f`; on a timeout, fail with what every worker last logged.
    fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !f() {
            if Instant::now() > deadline {
                let mut logs = String::new();
                for entry in std::fs::read_dir(&self.dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.extension().is_some_and(|e| e == "log") {
                        let text = std::fs::read_to_string(&path).unwrap_or_default();
                        let lines: Vec<&str> = text
                            .lines()
                            .filter(|l| !l.contains("created topic"))
                            .collect();
                        logs.push_str(&format!("== {}\n", path.display()));
                        for l in &lines[lines.len().saturating_sub(8)..] {
                            logs.push_str(&l.chars().take(400).collect::<String>());
                            logs.push('\n');
                        }
                    }
                }
                panic!("timed out waiting for {what}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn stop(child: &mut Child) {
    common::send_signal(&child.id().to_string(), "-TERM");
    let _ = child.wait();
}

fn single_process(dir: &Path, key: &Path) -> BTreeMap<String, Vec<serde_json::Value>> {
    let server = common::replay_day("20240808", Speed::Max);
    let config = common::test_config(&server.url(), dir, key);
    common::run(config);
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir.join("events")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".jsonl") && !name.contains("checkpoints") {
            lines.extend(common::record_lines(&path));
        }
    }
    decisions(lines)
}

#[test]
fn workers_hand_chains_over_without_forks_and_decide_as_one_process() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let expected = single_process(&tmp.path().join("single"), &key);
    assert_eq!(expected.len(), 3, "two symbols and the portfolio");

    let server = common::replay_day("20240808", Speed::Factor(12.0));
    let d = Deployment {
        brokers: brokers.clone(),
        prefix: format!("roles-{}", std::process::id()),
        dir: tmp.path().to_path_buf(),
        key: key.clone(),
        url: server.url(),
    };
    // 0..3: risk workers, 3: portfolio, 4: ingest, 5: the killed worker's replacement, 6:
    // a worker added later, 7..9: a fresh group re-reading everything.
    let mut w = Reaper(
        (0..3)
            .map(|i| d.role("risk", &format!("risk{i}"), "g"))
            .collect(),
    );
    w.0.push(d.role("portfolio", "portfolio", "g"));
    d.wait("every worker's assignment", Duration::from_secs(60), || {
        (0..3).all(|i| d.log(&format!("risk{i}")).contains("ASSIGNED"))
            && d.log("portfolio").contains("ASSIGNED")
    });
    w.0.push(d.role("ingest", "ingest", "g"));

    // Mid-stream, kill -9 the worker that owns BTCUSDT.
    d.wait("BTCUSDT decisions", Duration::from_secs(60), || {
        let (lines, _) = common::read_deduplicated(&brokers, &d.topic("decisions"));
        counts(&decisions(lines))
            .get("bizra.BTCUSDT")
            .copied()
            .unwrap_or(0)
            > 80
    });
    let owner = (0..3)
        .find(|i| {
            d.log(&format!("risk{i}"))
                .lines()
                .any(|l| l.contains("symbol taken") && l.contains("BTCUSDT"))
        })
        .expect("an owner of BTCUSDT");
    let before = {
        let (lines, _) = common::read_deduplicated(&brokers, &d.topic("decisions"));
        counts(&decisions(lines))["bizra.BTCUSDT"]
    };
    let killed_at = Instant::now();
    kill(&mut w.0[owner]);
    // Its replacement starts under the same instance ID, as a StatefulSet restarts a pod
    // (static membership: it takes the partitions back at once; with dynamic membership the
    // group moves them after roles.session_timeout_ms).
    let port = common::free_port();
    w.0.push(d.role_serving(
        "risk",
        "replacement",
        "g",
        &format!("127.0.0.1:{port}"),
        &format!("risk{owner}"),
    ));
    let partition = d
        .log(&format!("risk{owner}"))
        .lines()
        .find(|l| l.contains("symbol taken") && l.contains("BTCUSDT"))
        .and_then(|l| l.split("\"partition\":").nth(1))
        .and_then(|p| p.split(|c: char| !c.is_ascii_digit()).next())
        .map(str::to_string)
        .expect("BTCUSDT's partition");
    let taken_over = |name: &str| {
        d.log(name).lines().any(|l| {
            l.contains("partition re-derived") && l.contains(&format!("\"partition\":{partition},"))
        })
    };
    d.wait(
        "the new owner's re-derivation of BTCUSDT",
        Duration::from_secs(180),
        || {
            (0..3)
                .filter(|i| *i != owner)
                .any(|i| taken_over(&format!("risk{i}")))
                || taken_over("replacement")
        },
    );
    let handover = killed_at.elapsed();
    d.wait(
        "the new owner's first BTCUSDT decision",
        Duration::from_secs(180),
        || {
            let (lines, _) = common::read_deduplicated(&brokers, &d.topic("decisions"));
            counts(&decisions(lines))
                .get("bizra.BTCUSDT")
                .copied()
                .unwrap_or(0)
                > before
        },
    );
    // And a fourth worker joins: partitions move again, chains continue.
    w.0.push(d.role("risk", "risk3", "g"));
    d.wait(
        "the new worker's assignment",
        Duration::from_secs(180),
        || d.log("risk3").contains("ASSIGNED"),
    );

    let (_, _, metrics) = common::http_request(port, "GET", "/metrics", &[], "");
    for name in [
        "bizra_role_owned_partitions{role=\"risk\"}",
        "bizra_role_rebalances_total{kind=\"ASSIGNED\",role=\"risk\"}",
        "bizra_role_restore_seconds_count{role=\"risk\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    let status = w.0[4].wait().unwrap();
    assert!(status.success(), "ingest: {}", d.log("ingest"));
    let want = counts(&expected);
    let mut got = BTreeMap::new();
    let mut dups = 0;
    d.wait(
        "every decision of the single-process run",
        Duration::from_secs(240),
        || {
            let (lines, d_) = common::read_deduplicated(&brokers, &d.topic("decisions"));
            dups = d_;
            got = decisions(lines);
            counts(&got) == want
        },
    );
    // Nothing more comes: the workers publish exactly what one process signs.
    std::thread::sleep(Duration::from_secs(3));
    let (lines, _) = common::read_deduplicated(&brokers, &d.topic("decisions"));
    let got_later = decisions(lines);
    assert_eq!(counts(&got_later), want);
    for (chain, records) in &expected {
        for (i, (a, b)) in records.iter().zip(&got_later[chain]).enumerate() {
            assert_eq!(a, b, "{chain} decision {i} differs from the single process");
        }
    }

    // Every chain verifies end to end (events and checkpoints, no gap, no fork); copies a
    // dying worker had in flight are byte-identical and skipped.
    let source = bizra_risk::sink::KafkaSource::new(&brokers, &d.topic("checkpoints")).unwrap();
    let mut verifier = Verifier::with_options(
        &[common::verifying_key(&key)],
        VerifyOptions {
            allow_duplicates: true,
            ..Default::default()
        },
    );
    source
        .read_all(Duration::from_secs(60), |pos, payload| {
            verifier.push(pos, payload)
        })
        .unwrap();
    let events = bizra_risk::sink::KafkaSource::new(&brokers, &d.topic("decisions")).unwrap();
    events
        .read_all(Duration::from_secs(60), |pos, payload| {
            verifier.push(pos, payload)
        })
        .unwrap();
    let report = verifier.finish();
    assert!(report.ok(), "{:?}", report.failures);
    assert_eq!(report.chains.len(), 3);

    // Each decision names the input record it came from; no input record has two
    // decisions of the same action about the same bar (a trade can close several bars).
    let mut by_source: HashMap<(String, i64, i64, String), u64> = HashMap::new();
    let (lines, _) = common::read_deduplicated(&brokers, &d.topic("decisions"));
    for line in &lines {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        let r = &v["payload"];
        if v["event"]["kind"] != "RISK_DECISION" {
            continue;
        }
        let s = &r["source"];
        let key = (
            s["topic"].as_str().unwrap().to_string(),
            s["partition"].as_i64().unwrap(),
            s["offset"].as_i64().unwrap(),
            format!(
                "{} {}",
                r["input"]["bar_end_ms"],
                r["action"]["type"].as_str().unwrap()
            ),
        );
        let seq = v["event"]["seq"].as_u64().unwrap();
        if let Some(prev) = by_source.insert(key.clone(), seq) {
            panic!("{key:?} decided twice: seq {prev} and {seq}");
        }
    }

    // A fresh group re-reads the whole input (its offsets reset): it re-derives every chain
    // and publishes nothing new.
    for i in [0, 1, 2, 3, 5, 6] {
        if i != owner {
            stop(&mut w.0[i]);
        }
    }
    w.0.push(d.role("risk", "again-risk", "h"));
    w.0.push(d.role("portfolio", "again-portfolio", "h"));
    d.wait(
        "the re-derivation of every chain",
        Duration::from_secs(240),
        || {
            d.log("again-risk").matches("partition re-derived").count() >= 2
                && d.log("again-portfolio").contains("partition re-derived")
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let (lines, _) = common::read_deduplicated(&brokers, &d.topic("decisions"));
    assert_eq!(
        counts(&decisions(lines)),
        want,
        "a second reading signed nothing new"
    );
    stop(&mut w.0[7]);
    stop(&mut w.0[8]);
    eprintln!(
        "roles: {:?} decisions; hand-over from kill -9 to the new owner publishing (re-derivation at the head): {} ms (static membership); {dups} duplicate copies",
        want,
        handover.as_millis()
    );
}
