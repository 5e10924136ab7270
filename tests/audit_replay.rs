//! The auditor's replay: a trail re-derives bit for bit from its input recording, across a
//! restart and a reconnect with REST backfill; a changed configuration value, a changed rule
//! or a trade dropped from the recording is named with the first affected event and its
//! cause.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bizra_risk::config::ClockMode;
use bizra_risk::replay::{spawn_in_thread, ReplayOptions, SkipTrades, Speed};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_bizra-risk");

fn demo(out: &Path) {
    let mut cmd = Command::new(BIN);
    cmd.args(["demo", "--out"])
        .arg(out)
        .current_dir(common::repo());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BIZRA_") {
            cmd.env_remove(&name);
        }
    }
    let run = cmd.output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// `audit-replay --json` with `args`: (exit code, report).
fn audit(args: &[&std::ffi::OsStr]) -> (i32, Value) {
    let mut cmd = Command::new(BIN);
    cmd.arg("audit-replay").arg("--json").args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BIZRA_") {
            cmd.env_remove(&name);
        }
    }
    let out = cmd.output().unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn run_dir(events: &Path) -> PathBuf {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(events.join("recording"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    runs[0].clone()
}

/// Decisions in the trail (key rotations aside).
fn decisions(events: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(events).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".jsonl") && !name.ends_with(".checkpoints.jsonl") {
            n += common::record_lines(&p)
                .iter()
                .filter(|l| !String::from_utf8_lossy(l).contains("KEY_ROTATION"))
                .count() as u64;
        }
    }
    n
}

fn first(report: &Value) -> &Value {
    &report["first_divergence"]
}

#[test]
fn the_demo_trail_rederives_and_every_change_is_named_with_its_first_event_and_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    demo(&out);
    let events = out.join("events");
    let trail = events.as_os_str();

    // 100 %: every decision and every checkpoint's input digest.
    let (code, r) = audit(&["--trail".as_ref(), trail]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["decisions"].as_u64(), Some(decisions(&events)), "{r:#}");
    assert_eq!(r["matched"], r["decisions"], "{r:#}");
    assert_eq!(r["diverged"], 0);
    assert!(r["checkpoints_matched"].as_u64().unwrap() > 0);
    assert_eq!(r["checkpoints_diverged"], 0);

    // The recorded configuration as a file: the same result.
    let run = run_dir(&events);
    let config = run.join("config.toml");
    let (code, _) = audit(&[
        "--trail".as_ref(),
        trail,
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, 0);

    // One configuration value: BTCUSDT's VaR limit (the first instrument's).
    let text = std::fs::read_to_string(&config).unwrap();
    assert_eq!(text.matches("var_limit_usd = 50.0").count(), 1, "{text}");
    let changed = tmp.path().join("changed.toml");
    std::fs::write(
        &changed,
        text.replace("var_limit_usd = 50.0", "var_limit_usd = 45.0"),
    )
    .unwrap();
    let (code, r) = audit(&[
        "--trail".as_ref(),
        trail,
        "--config".as_ref(),
        changed.as_os_str(),
    ]);
    assert_eq!(code, 1);
    let d = first(&r);
    assert_eq!(d["cause"], "CONFIG_CHANGED", "{r:#}");
    assert_eq!(d["field"], "evidence.limit_usd", "{r:#}");
    assert_eq!(
        (d["signed"].as_f64(), d["recomputed"].as_f64()),
        (Some(50.0), Some(45.0))
    );

    // One rule: flag thin-history breaches below 100 effective returns instead of 200.
    let rules = std::fs::read_to_string(common::repo().join("config/rules.yaml")).unwrap();
    assert!(rules.contains("check: \"ess < 200\""));
    let changed_rules = tmp.path().join("rules.yaml");
    std::fs::write(&changed_rules, rules.replace("ess < 200", "ess < 100")).unwrap();
    let (code, r) = audit(&[
        "--trail".as_ref(),
        trail,
        "--rules".as_ref(),
        changed_rules.as_os_str(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(first(&r)["cause"], "RULES_CHANGED", "{r:#}");
    assert_eq!(first(&r)["field"], "reasons", "{r:#}");

    // One trade dropped from the recording: the first decision of its chain at or after
    // the bar that held it, because the recording lacks what the engine consumed.
    let segment = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "rec"))
        .unwrap();
    let text = std::fs::read_to_string(&segment).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let (at, line) = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("\"btcusdt@trade\""))
        .nth(5000)
        .map(|(i, l)| (i, l.to_string()))
        .unwrap();
    let frame: Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
    let dropped_id = frame["data"]["t"].as_u64().unwrap();
    lines.remove(at);
    std::fs::write(&segment, lines.join("\n") + "\n").unwrap();
    let (code, r) = audit(&["--trail".as_ref(), trail]);
    assert_eq!(code, 1);
    let d = first(&r);
    assert_eq!(d["cause"], "RECORDING_MISMATCH", "{r:#}");
    assert_eq!(d["chain"], "bizra.BTCUSDT", "{r:#}");
    let expected_seq = common::record_lines(&events.join("bizra.BTCUSDT.jsonl"))
        .iter()
        .map(|l| serde_json::from_slice::<Value>(l).unwrap())
        .find(|rec| {
            rec["payload"]["input"]["last_trade_id"]
                .as_u64()
                .is_some_and(|last| last >= dropped_id)
        })
        .map(|rec| rec["event"]["seq"].as_u64().unwrap())
        .unwrap();
    assert_eq!(d["seq"].as_u64(), Some(expected_seq), "{r:#}");
    assert!(r["recording_problems"][0]
        .as_str()
        .unwrap()
        .contains(&dropped_id.to_string()));
}

/// A TCP proxy to `upstream` that, once, stops forwarding a connection's server-to-client
/// bytes after `stall_after` of them (the connection stays open, silent): a client with an
/// idle timeout replaces it.
fn stalling_proxy(upstream: SocketAddr, stall_after: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stalled = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
            });
            let stalled = stalled.clone();
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                let mut carried = 0usize;
                loop {
                    let Ok(n) = s_read.read(&mut buf) else { return };
                    if n == 0 || c_write.write_all(&buf[..n]).is_err() {
                        let _ = c_write.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    carried += n;
                    if carried >= stall_after && !stalled.swap(true, Ordering::SeqCst) {
                        // Hold both sockets open and say nothing more.
                        std::thread::sleep(std::time::Duration::from_secs(120));
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_live_clock_trail_across_a_restart_with_key_rotation_and_a_reconnect_with_rest_backfill_rederives(
) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("engine");
    let key = common::new_key(tmp.path());

    // Run 1: the first day through a proxy that goes silent once, trades missing from the
    // stream (filled from REST), under the live clock (receive times drive the engine).
    let mut opts = ReplayOptions::new(common::capture_files_of_day("20240808"), Speed::Max);
    let skipped = 3_735_685_000;
    opts.skip_trades = vec![SkipTrades {
        symbol: "BTCUSDT".into(),
        first: skipped,
        last: skipped + 40,
    }];
    let server = spawn_in_thread("127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let proxy = stalling_proxy(server.addr, 4 << 20);
    let mut config = common::test_config(&format!("ws://{proxy}"), &dir, &key);
    config.engine.clock = ClockMode::System;
    config.feed.idle_timeout_ms = 2000;
    let one = common::run(config.clone());
    drop(server);
    assert!(one.ingest.backfilled_trades > 0, "{:?}", one.ingest);
    assert!(one.ingest.idle_reconnects >= 1, "{:?}", one.ingest);

    // Run 2, a restart: the next day, from the snapshots and chain heads of run 1 ...
    let server = spawn_in_thread(
        "127.0.0.1:0".parse().unwrap(),
        ReplayOptions::new(common::capture_files_of_day("20240809"), Speed::Max),
    )
    .unwrap();
    // ... with a new signing key: every chain continues with a KEY_ROTATION event.
    config.feed.url = server.url();
    let new_key_dir = tmp.path().join("new-key");
    std::fs::create_dir_all(&new_key_dir).unwrap();
    config.signing.previous_key_file = key.clone();
    config.signing.key_file = common::new_key(&new_key_dir);
    common::run(config);
    drop(server);

    let events = dir.join("events");
    let (code, r) = audit(&["--trail".as_ref(), events.as_os_str()]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["runs"], 2);
    assert_eq!(r["decisions"].as_u64(), Some(decisions(&events)), "{r:#}");
    assert_eq!(r["matched"], r["decisions"]);
    assert!(r["checkpoints_matched"].as_u64().unwrap() > 0);
    assert_eq!(r["checkpoints_diverged"], 0);
    assert_eq!(r["recording_problems"].as_array().map(Vec::len), Some(0));

    // A partial replay from the second run's first BTCUSDT checkpoint (the one that signs
    // the state the restart loaded): the same decisions of that run, all matched.
    let checkpoints = common::record_lines(&events.join("bizra.BTCUSDT.checkpoints.jsonl"));
    let restart_cp = checkpoints
        .iter()
        .map(|l| serde_json::from_slice::<Value>(l).unwrap()["checkpoint"].clone())
        .find(|cp| cp["first_seq"].as_u64() > Some(0) && cp["run_start_sha256"].is_string())
        .expect("the restart's first checkpoint signs its start state");
    let from = format!("bizra.BTCUSDT:{}", restart_cp["last_seq"]);
    let (code, p) = audit(&[
        "--trail".as_ref(),
        events.as_os_str(),
        "--from-checkpoint".as_ref(),
        from.as_ref(),
    ]);
    assert_eq!(code, 0, "{p:#}");
    assert_eq!(p["runs"], 1);
    let runs: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(events.join("recording"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let second: Value =
        serde_json::from_slice(&std::fs::read(runs[1].join("start.json")).unwrap()).unwrap();
    let second_run_decisions: u64 = second["next_seq"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(chain, next)| {
            common::record_lines(&events.join(format!("{chain}.jsonl")))
                .iter()
                .map(|l| serde_json::from_slice::<Value>(l).unwrap())
                .filter(|rec| {
                    rec["event"]["seq"].as_u64() >= next.as_u64()
                        && rec["event"]["kind"] == "RISK_DECISION"
                })
                .count() as u64
        })
        .sum();
    assert_eq!(p["decisions"].as_u64(), Some(second_run_decisions), "{p:#}");
    assert_eq!(p["matched"], p["decisions"]);
    assert!(second_run_decisions > 0 && second_run_decisions < r["decisions"].as_u64().unwrap());

    // A swapped start state (one snapshot figure changed) is not the signed one: the partial
    // replay refuses it, and the full replay names the checkpoint that signs the original.
    let start_file = runs[1].join("start.json");
    let text = std::fs::read_to_string(&start_file).unwrap();
    let mut start: Value = serde_json::from_str(&text).unwrap();
    let close = &mut start["snapshots"]["symbols"][0]["last_close"];
    *close = serde_json::json!(close.as_f64().unwrap() * 1.01);
    std::fs::write(&start_file, serde_json::to_vec(&start).unwrap()).unwrap();
    let out = Command::new(BIN)
        .args(["audit-replay", "--trail"])
        .arg(&events)
        .args(["--from-checkpoint", &from])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run of the recording starts"));
    let (code, r) = audit(&["--trail".as_ref(), events.as_os_str()]);
    assert_eq!(code, 1);
    let d = first(&r);
    assert_eq!(d["cause"], "RECORDING_MISMATCH", "{r:#}");
}

/// A trail on Kafka topics (the recording beside the engine, under `sink.dir`).
#[test]
fn a_trail_read_from_kafka_rederives() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let server = spawn_in_thread(
        "127.0.0.1:0".parse().unwrap(),
        ReplayOptions::new(common::capture_files_of_day("20240808"), Speed::Max),
    )
    .unwrap();
    let topic = format!("bizra-audit-replay-{}", std::process::id());
    let config = common::kafka_test_config(&server.url(), tmp.path(), &key, &brokers, &topic);
    let summary = common::run(config);
    drop(server);
    assert_eq!(summary.spooled_bytes_left, 0);
    let recording = tmp.path().join("events/recording");
    let checkpoints = format!("{topic}.checkpoints");
    let (code, r) = audit(&[
        "--kafka-brokers".as_ref(),
        brokers.as_ref(),
        "--topic".as_ref(),
        topic.as_ref(),
        "--checkpoint-topic".as_ref(),
        checkpoints.as_ref(),
        "--recording".as_ref(),
        recording.as_os_str(),
    ]);
    assert_eq!(code, 0, "{r:#}");
    let signed: u64 = summary.gates.iter().map(|g| g.next_seq).sum();
    assert_eq!(r["decisions"].as_u64(), Some(signed), "{r:#}");
    assert_eq!(r["matched"], r["decisions"]);
    assert!(r["checkpoints_matched"].as_u64().unwrap() > 0);
}
