//! The control plane against a running engine binary: bearer tokens with roles, refusals
//! that change nothing, the kill switch and trading states carried out, every request a
//! signed event on the control chain that `verify` accepts, limits on bodies, heads, slow
//! clients and floods, start-up refusals, and no secret in any log line, metric, HTTP
//! answer or trail record.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bizra_risk::replay::{spawn_in_thread, ReplayOptions, Speed};
use serde_json::Value;

const OPERATOR: &str = "op-4f1c2a9e7d3b5a8c6e0f1d2b3c4a5e6f7d8c9b0a";
const VIEWER: &str = "view-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b";

fn tokens_file(dir: &Path, mode: u32) -> std::path::PathBuf {
    let path = dir.join("control-tokens.toml");
    common::write_secret(
        &path,
        &format!(
            "[[tokens]]\nid = \"ops-alice\"\nrole = \"operator\"\ntoken = \"{OPERATOR}\"\n\n\
             [[tokens]]\nid = \"dash\"\nrole = \"viewer\"\ntoken = \"{VIEWER}\"\n"
        ),
        mode,
    );
    path
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn metric(port: u16, name: &str) -> f64 {
    let (_, _, body) = common::http_request(port, "GET", "/metrics", &[], "");
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The decisions of `chain` in `events`: (seq, action type, reasons).
fn decisions(events: &Path, chain: &str) -> Vec<(u64, String, Vec<String>)> {
    let path = events.join(format!("{chain}.jsonl"));
    common::record_lines(&path)
        .iter()
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .filter(|v| v["event"]["kind"] == "RISK_DECISION")
        .map(|v| {
            let p = &v["payload"];
            let reasons = p["reasons"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            (
                v["event"]["seq"].as_u64().unwrap(),
                p["action"]["type"].as_str().unwrap_or_default().to_string(),
                reasons,
            )
        })
        .collect()
}

#[test]
fn control_requests_are_authenticated_signed_and_carried_out() {
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let tokens = tokens_file(tmp.path(), 0o600);
    let mut opts = ReplayOptions::new(common::capture_files_of_day("20240809"), Speed::Factor(8.0));
    opts.history = common::capture_files_of_day("20240808");
    let server = spawn_in_thread("127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let port = common::free_port();
    let mut engine = common::engine_command(&server.url(), tmp.path(), &key)
        .env("BIZRA_HTTP__BIND", format!("127.0.0.1:{port}"))
        .env("BIZRA_HTTP__CONTROL_TOKENS_FILE", &tokens)
        .env("BIZRA_HTTP__CONTROL_BURST", "25")
        .env("BIZRA_HTTP__REQUEST_TIMEOUT_MS", "1000")
        .env("RUST_LOG", "debug")
        .spawn()
        .unwrap();
    let base_ok = || common::http_request(port, "GET", "/healthz", &[], "").0 == 200;
    common::wait_for("/healthz", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok() && base_ok()
    });
    let events = tmp.path().join("events");
    common::wait_for(
        "the first BTCUSDT decisions",
        Duration::from_secs(60),
        || events.join("bizra.BTCUSDT.jsonl").exists(),
    );
    let mut answers = Vec::new();
    let mut call = |method: &str, target: &str, token: Option<&str>, body: &str| {
        let auth = token.map(bearer);
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let answer = common::http_request(port, method, target, &headers, body);
        answers.push(answer.clone());
        answer
    };
    let engage = r#"{"engaged": true}"#;

    // Refusals: no token, a wrong token, a token in the query string, a viewer.
    assert_eq!(call("POST", "/control/kill-switch", None, engage).0, 401);
    let wrong = "wrong-0000000000000000000000000000000000000";
    assert_eq!(
        call("POST", "/control/kill-switch", Some(wrong), engage).0,
        401
    );
    let in_query = format!("/control/kill-switch?access_token={OPERATOR}");
    assert_eq!(call("POST", &in_query, None, engage).0, 401);
    assert_eq!(
        call("POST", "/control/kill-switch", Some(VIEWER), engage).0,
        403
    );
    let (status, _, body) = call("GET", "/control/state", Some(VIEWER), "");
    assert_eq!(status, 200, "{body}");
    let state: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["state"]["kill_switch_engaged"], false, "{body}");
    assert_eq!(
        metric(
            port,
            "elf_blocks_total{layer=\"L2\",reason=\"KILL_SWITCH\"}"
        ),
        0.0
    );

    // The operator engages the kill switch: from the chain's next decision on, every
    // action but a risk snapshot is blocked with KILL_SWITCH.
    let chains = ["bizra.BTCUSDT", "bizra.ETHUSDT", "bizra.PORTFOLIO"];
    let next_seqs =
        || chains.map(|c| metric(port, &format!("bizra_chain_next_seq{{chain=\"{c}\"}}")) as u64);
    let next_seq = || next_seqs().iter().sum::<u64>();
    let before = next_seqs();
    let (status, head, body) = call("POST", "/control/kill-switch", Some(OPERATOR), engage);
    assert_eq!(status, 200, "{body}");
    assert!(
        head.to_ascii_lowercase().contains("x-request-id: ctl-"),
        "{head}"
    );
    let engaged_at = next_seqs();
    common::wait_for("a kill-switch block", Duration::from_secs(60), || {
        metric(
            port,
            "elf_blocks_total{layer=\"L2\",reason=\"KILL_SWITCH\"}",
        ) >= 3.0
    });
    let released_before = next_seqs();
    let (status, _, body) = call(
        "POST",
        "/control/kill-switch",
        Some(OPERATOR),
        r#"{"engaged": false}"#,
    );
    assert_eq!(status, 200, "{body}");
    let released_at = next_seqs();

    // Bad requests are refused; a trading state is set and cleared; the rules reload.
    assert_eq!(
        call(
            "POST",
            "/control/kill-switch",
            Some(OPERATOR),
            "{\"on\": 1}"
        )
        .0,
        400
    );
    let halt_x = r#"{"state": "HALTED", "symbol": "XRPUSDT"}"#;
    assert_eq!(
        call("POST", "/control/trading-state", Some(OPERATOR), halt_x).0,
        400
    );
    let halt = r#"{"state": "HALTED", "symbol": "ETHUSDT"}"#;
    assert_eq!(
        call("POST", "/control/trading-state", Some(OPERATOR), halt).0,
        200
    );
    let active = r#"{"state": "ACTIVE", "symbol": "ETHUSDT"}"#;
    assert_eq!(
        call("POST", "/control/trading-state", Some(OPERATOR), active).0,
        200
    );
    let (status, _, body) = call("POST", "/control/rules/reload", Some(OPERATOR), "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("rules_sha256"), "{body}");
    assert_eq!(
        call("DELETE", "/control/kill-switch", Some(OPERATOR), "").0,
        404
    );

    // Limits: an oversized body, an oversized head, a slow client, a flood.
    let big = format!("{{\"engaged\": true, \"pad\": \"{}\"}}", "x".repeat(10_000));
    assert_eq!(
        call("POST", "/control/kill-switch", Some(OPERATOR), &big).0,
        413
    );
    let huge_header = "h".repeat(40_000);
    let (status, _, _) = common::http_request(
        port,
        "GET",
        "/healthz",
        &[("X-Pad", huge_header.as_str())],
        "",
    );
    assert_ne!(status, 200, "a 40 kB request head must not be served");
    let slow = Instant::now();
    let mut loris = TcpStream::connect(("127.0.0.1", port)).unwrap();
    loris
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    loris
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = loris.read_to_end(&mut buf);
    assert!(
        slow.elapsed() < Duration::from_secs(5),
        "a client that never finishes its head is cut after request_timeout_ms"
    );
    common::wait_for(
        "the cut slow client to be counted",
        Duration::from_secs(10),
        || {
            metric(
                port,
                "bizra_input_limit_breaches_total{limit=\"http_request_incomplete\"}",
            ) >= 1.0
        },
    );
    let mut limited = 0;
    for _ in 0..60 {
        if common::http_request(
            port,
            "GET",
            "/control/state",
            &[("Authorization", &bearer(VIEWER))],
            "",
        )
        .0 == 429
        {
            limited += 1;
        }
    }
    assert!(limited >= 30, "{limited} of 60 flood requests were limited");
    assert!(
        metric(
            port,
            "bizra_input_limit_breaches_total{limit=\"control_requests_per_minute\"}"
        ) >= 30.0
    );
    assert!(
        metric(
            port,
            "bizra_input_limit_breaches_total{limit=\"http_body_bytes\"}"
        ) >= 1.0
    );
    // The pipeline kept going through all of it.
    let after_flood = next_seq();
    common::wait_for("decisions after the flood", Duration::from_secs(60), || {
        next_seq() > after_flood
    });
    // SIGHUP is a rules reload like any other control request.
    let reloads = metric(port, "elf_rules_reloads_total{outcome=\"ok\"}");
    common::send_signal(&engine.id().to_string(), "-HUP");
    common::wait_for("the SIGHUP reload", Duration::from_secs(20), || {
        metric(port, "elf_rules_reloads_total{outcome=\"ok\"}") > reloads
    });
    let metrics_text = common::http_request(port, "GET", "/metrics", &[], "").2;

    let status = engine.wait().unwrap();
    assert!(status.success(), "{}", common::engine_log(tmp.path()));

    // The kill switch's effect, by each chain's sequence numbers.
    let kill = "KILL_SWITCH".to_string();
    let (mut during, mut resumed) = (0, 0);
    for (n, chain) in chains.iter().enumerate() {
        let all = decisions(&events, chain);
        let acts = |from: u64, to: u64| {
            all.iter()
                .filter(move |(seq, action, _)| {
                    *seq >= from && *seq < to && action != "PUBLISH_RISK_SNAPSHOT"
                })
                .collect::<Vec<_>>()
        };
        assert!(acts(0, before[n])
            .iter()
            .all(|(_, _, r)| !r.contains(&kill)));
        // The sequence number read back after the switch engaged may trail a decision or
        // two still on its way to the sink: the first blocked one comes within that slack,
        // and every action after it, until the release, is blocked.
        let during_kill = acts(engaged_at[n], released_before[n]);
        let first = during_kill
            .iter()
            .position(|(_, _, r)| r.contains(&kill))
            .unwrap_or(during_kill.len());
        assert!(
            first <= 2,
            "{chain}: {first} actions passed after the switch engaged"
        );
        for (seq, action, reasons) in &during_kill[first..] {
            assert!(
                reasons.contains(&kill),
                "{chain} seq {seq} {action}: {reasons:?}"
            );
            during += 1;
        }
        resumed += acts(released_at[n], u64::MAX)
            .iter()
            .filter(|(_, _, r)| !r.contains(&kill))
            .count();
    }
    assert!(during > 0, "no action while the kill switch was engaged");
    assert!(resumed > 0, "actions resume after the release");

    // Every control request is a signed event on the control chain; verify accepts all.
    let control = common::record_lines(&events.join("bizra.control.jsonl"));
    let records: Vec<Value> = control
        .iter()
        .map(|l| serde_json::from_slice::<Value>(l).unwrap())
        .collect();
    let by_reason = |reason: &str| {
        records
            .iter()
            .filter(|r| r["payload"]["reason"] == reason)
            .count()
    };
    for reason in [
        "UNAUTHENTICATED",
        "TOKEN_UNKNOWN",
        "TOKEN_IN_QUERY",
        "FORBIDDEN",
        "BAD_REQUEST",
        "UNKNOWN_SYMBOL",
        "BODY_TOO_LARGE",
        "UNKNOWN_ENDPOINT",
    ] {
        assert!(by_reason(reason) >= 1, "no signed {reason} refusal");
    }
    // Once a minute per client: twice when the flood straddles a minute's turn.
    assert!(
        (1..=2).contains(&by_reason("RATE_LIMITED")),
        "a flood is signed once a minute per client"
    );
    assert!(
        records
            .iter()
            .any(|r| r["payload"]["source"] == "SIGNAL" && r["payload"]["outcome"] == "ACCEPTED"),
        "the SIGHUP reload is signed"
    );
    let accepted: Vec<&Value> = records
        .iter()
        .filter(|r| r["payload"]["outcome"] == "ACCEPTED")
        .collect();
    let changes: Vec<&str> = accepted
        .iter()
        .filter_map(|r| r["payload"]["request"]["type"].as_str())
        .filter(|t| *t != "STATE")
        .collect();
    assert_eq!(
        changes,
        [
            "KILL_SWITCH",
            "KILL_SWITCH",
            "TRADING_STATE",
            "TRADING_STATE",
            "RULES_RELOAD",
            "RULES_RELOAD"
        ]
    );
    assert!(accepted.iter().all(|r| {
        let p = &r["payload"];
        p["token_id"] == "ops-alice" || p["token_id"] == "dash" || p["source"] == "SIGNAL"
    }));
    let pubkey = hex::encode(common::verifying_key(&key).as_bytes());
    let out = common::cli_ok(&[
        "verify",
        "--pubkey",
        &pubkey,
        events.to_str().unwrap(),
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["failures"], serde_json::json!([]), "{report}");
    assert!(
        report["chains"]["bizra.control"].is_object(),
        "verify covers the control chain: {report}"
    );

    // The reference verifier, written from the format document, agrees.
    let python = std::process::Command::new("python3")
        .arg(common::repo().join("examples/verify_trail.py"))
        .arg("--pubkey-file")
        .arg(tmp.path().join("signing.key.pub"))
        .arg("--json")
        .arg(&events)
        .output()
        .unwrap();
    assert!(
        python.status.success(),
        "{}{}",
        String::from_utf8_lossy(&python.stdout),
        String::from_utf8_lossy(&python.stderr)
    );

    // No secret anywhere: logs, metrics, HTTP answers, trail, in plain, hex or base64.
    let mut haystack = std::fs::read_to_string(tmp.path().join("engine.log")).unwrap();
    haystack.push_str(&metrics_text);
    for (_, h, b) in &answers {
        haystack.push_str(h);
        haystack.push_str(b);
    }
    for entry in walk(&events) {
        haystack.push_str(&String::from_utf8_lossy(&std::fs::read(entry).unwrap()));
    }
    assert!(haystack.contains("ops-alice"), "the token ID is named");
    let signing_key = std::fs::read_to_string(&key).unwrap().trim().to_string();
    let key_bytes = hex::decode(&signing_key).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    for form in [
        signing_key.clone(),
        signing_key.to_uppercase(),
        b64.encode(&key_bytes),
    ] {
        assert!(
            !haystack.contains(&form),
            "the signing key leaked as {form}"
        );
    }
    for secret in [OPERATOR, VIEWER] {
        let b64 = base64::engine::general_purpose::STANDARD;
        for form in [
            secret.to_string(),
            hex::encode(secret),
            b64.encode(secret),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
            secret[..24].to_string(),
        ] {
            assert!(
                !haystack.contains(&form),
                "a secret leaked in the form {form}"
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn start_up_refuses_open_control_without_tokens_and_readable_secret_files() {
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let port = common::free_port();
    let run = |envs: &[(&str, String)]| {
        // Each start's log on its own: a message from an earlier start must not count.
        let _ = std::fs::remove_file(tmp.path().join("engine.log"));
        let mut cmd = common::engine_command("ws://127.0.0.1:9/ws", tmp.path(), &key);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let status = cmd.env_remove("BIZRA_CONTROL_TOKENS").status().unwrap();
        (
            status,
            std::fs::read_to_string(tmp.path().join("engine.log")).unwrap_or_default(),
        )
    };
    let (status, log) = run(&[("BIZRA_HTTP__BIND", format!("0.0.0.0:{port}"))]);
    assert!(!status.success());
    assert!(log.contains("not a loopback address"), "{log}");

    let loose = tokens_file(tmp.path(), 0o644);
    let (status, log) = run(&[
        ("BIZRA_HTTP__BIND", format!("127.0.0.1:{port}")),
        (
            "BIZRA_HTTP__CONTROL_TOKENS_FILE",
            loose.display().to_string(),
        ),
    ]);
    assert!(!status.success());
    assert!(log.contains("mode 644"), "{log}");
    assert!(!log.contains(OPERATOR));

    let loose_key = tmp.path().join("loose.key");
    std::fs::copy(&key, &loose_key).unwrap();
    common::write_secret(&loose_key, &std::fs::read_to_string(&key).unwrap(), 0o644);
    let (status, log) = run(&[("BIZRA_SIGNING__KEY_FILE", loose_key.display().to_string())]);
    assert!(!status.success());
    assert!(log.contains("chmod 600"), "{log}");
}

#[test]
fn an_engaged_kill_switch_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let tokens = tokens_file(tmp.path(), 0o600);
    let events = tmp.path().join("events");
    let chains = ["bizra.BTCUSDT", "bizra.ETHUSDT", "bizra.PORTFOLIO"];

    // First run: the operator engages the kill switch, then the capture ends.
    let mut opts = ReplayOptions::new(
        common::capture_files_of_day("20240808"),
        Speed::Factor(20.0),
    );
    opts.history = Vec::new();
    let server = spawn_in_thread("127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let port = common::free_port();
    let mut engine = common::engine_command(&server.url(), tmp.path(), &key)
        .env("BIZRA_HTTP__BIND", format!("127.0.0.1:{port}"))
        .env("BIZRA_HTTP__CONTROL_TOKENS_FILE", &tokens)
        .spawn()
        .unwrap();
    common::wait_for("/healthz", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
            && common::http_request(port, "GET", "/healthz", &[], "").0 == 200
    });
    let auth = bearer(OPERATOR);
    let headers = [("Authorization", auth.as_str())];
    let (status, _, body) = common::http_request(
        port,
        "POST",
        "/control/kill-switch",
        &headers,
        r#"{"engaged": true}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        engine.wait().unwrap().success(),
        "{}",
        common::engine_log(tmp.path())
    );
    drop(server);
    let first_run: Vec<usize> = chains.iter().map(|c| decisions(&events, c).len()).collect();

    // Second run, no request at all: the switch is still engaged from its first decision.
    let server = common::replay_day("20240809", Speed::Max);
    let status = common::engine_command(&server.url(), tmp.path(), &key)
        .status()
        .unwrap();
    assert!(status.success(), "{}", common::engine_log(tmp.path()));
    let log = std::fs::read_to_string(tmp.path().join("engine.log")).unwrap();
    assert!(
        log.contains("operator state of the previous run restored"),
        "{log}"
    );
    // No action passes in the second run, and those that reach L2 are stopped by the switch.
    let (mut passed, mut killed) = (0, 0);
    for (n, chain) in chains.iter().enumerate() {
        let lines = common::record_lines(&events.join(format!("{chain}.jsonl")));
        for line in lines.iter().skip(first_run[n]) {
            let v: Value = serde_json::from_slice(line).unwrap();
            let p = &v["payload"];
            if v["event"]["kind"] != "RISK_DECISION"
                || p["action"]["type"] == "PUBLISH_RISK_SNAPSHOT"
            {
                continue;
            }
            if p["verdict"] == "PASS" {
                passed += 1;
            }
            if p["reasons"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "KILL_SWITCH"))
            {
                killed += 1;
            }
        }
    }
    assert_eq!(
        passed, 0,
        "an action passed with the restored kill switch engaged"
    );
    assert!(
        killed > 0,
        "no action reached the kill switch in the second run"
    );
    // The restored setting is itself a signed record on the control chain.
    let control = common::record_lines(&events.join("bizra.control.jsonl"));
    let restart = control
        .iter()
        .map(|l| serde_json::from_slice::<Value>(l).unwrap())
        .filter(|v| v["payload"]["source"] == "RESTART")
        .collect::<Vec<_>>();
    assert_eq!(restart.len(), 1, "{restart:?}");
    assert_eq!(restart[0]["payload"]["request"]["type"], "KILL_SWITCH");
    let pubkey = hex::encode(common::verifying_key(&key).as_bytes());
    common::cli_ok(&["verify", "--pubkey", &pubkey, events.to_str().unwrap()]);
}
