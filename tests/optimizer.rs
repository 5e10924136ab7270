//! The optimizer end to end: a clearly worse configuration measured over a replay, the
//! recommended change confirmed by A/B replays and applied to a running engine as a signed
//! control request; a change that alters decisions refused; an applied change that degrades
//! the live KPI rolled back by the engine's watch with a signed event; and the whole trail
//! verified afterwards (`verify --strict`, the reference verifier, the JSON schema).

mod common;

use std::path::Path;
use std::time::Duration;

use bizra_risk::replay::{spawn_in_thread, ReplayOptions, Speed};
use serde_json::Value;

const OPERATOR: &str = "op-7e2d4c6b8a0f1e3d5c7b9a1f2e4d6c8b0a9f7e5d";

fn write_owner_only(path: &Path, text: &str) {
    common::write_secret(path, text, 0o600);
}

/// A request with the operator's token: its status and JSON body.
fn request(port: u16, method: &str, target: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {OPERATOR}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (status, _, b) = common::http_request(port, method, target, &headers, body);
    // A chunked body: the JSON is the line that starts with '{'.
    let body = b
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or(&b)
        .to_string();
    (status, body)
}

fn get_json(port: u16, target: &str) -> Value {
    let (_, body) = request(port, "GET", target, "");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

fn decisions_made(port: u16) -> f64 {
    let (_, body) = request(port, "GET", "/metrics", "");
    body.lines()
        .filter(|l| l.starts_with("elf_requests_total{layer=\"L4\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `bizra-risk optimize ARGS` with the operator token in `dir`, its replays and JSON report
/// under `dir`: the process output and the report.
fn optimize(dir: &Path, args: &[&str]) -> (std::process::Output, Value) {
    let report_file = dir.join("optimize.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bizra-risk"))
        .arg("optimize")
        .args(args)
        .arg("--token-file")
        .arg(dir.join("operator.token"))
        .arg("--out")
        .arg(dir.join("optimize"))
        .arg("--json")
        .arg(&report_file)
        // The test harness's own settings are not engine configuration.
        .env_remove("BIZRA_TEST_KAFKA_BROKERS")
        .env_remove("BIZRA_TEST_TANSU")
        .output()
        .unwrap();
    let report = std::fs::read(&report_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    (out, report)
}

fn changes_of(view: &Value, request: &str) -> usize {
    view["recent_changes"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|c| c["request"] == request).count())
}

#[test]
fn a_worse_config_is_improved_by_a_signed_apply_and_a_degrading_change_is_rolled_back() {
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let tokens = tmp.path().join("control-tokens.toml");
    write_owner_only(
        &tokens,
        &format!("[[tokens]]\nid = \"ops-bob\"\nrole = \"operator\"\ntoken = \"{OPERATOR}\"\n"),
    );
    let token_file = tmp.path().join("operator.token");
    write_owner_only(&token_file, OPERATOR);
    // Clearly worse for this engine: L3 on a second thread that parks between the sparse
    // decisions, and a decision cache that never hits.
    let worse = tmp.path().join("worse.toml");
    std::fs::write(
        &worse,
        "[elf]\nparallelize_l2_l3 = true\nenable_decision_cache = true\n",
    )
    .unwrap();

    let mut opts = ReplayOptions::new(common::capture_files_of_day("20240809"), Speed::Factor(5.0));
    opts.history = common::capture_files_of_day("20240808");
    let server = spawn_in_thread("127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let port = common::free_port();
    let mut engine = common::engine_command(&server.url(), tmp.path(), &key)
        .env("BIZRA_ELF__PARALLELIZE_L2_L3", "true")
        .env("BIZRA_ELF__ENABLE_DECISION_CACHE", "true")
        .env("BIZRA_HTTP__BIND", format!("127.0.0.1:{port}"))
        .env("BIZRA_HTTP__CONTROL_TOKENS_FILE", &tokens)
        .env("BIZRA_OPTIMIZER__WATCH_INTERVAL_MS", "200")
        .env("BIZRA_OPTIMIZER__WATCH_MIN_DECISIONS", "40")
        .env("BIZRA_OPTIMIZER__WATCH_WINDOW_S", "600")
        .spawn()
        .unwrap();
    common::wait_for(
        "the engine's first decisions",
        Duration::from_secs(60),
        || decisions_made(port) >= 60.0,
    );

    // 1. Measure, recommend, confirm by A/B replays, apply to the running engine.
    let engine_url = format!("http://127.0.0.1:{port}");
    let (out, report) = optimize(
        tmp.path(),
        &[
            "--config",
            worse.to_str().unwrap(),
            "--runs",
            "3",
            "--apply",
            "--engine",
            &engine_url,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("parallelize_l2_l3 = false"), "{stdout}");
    let chosen = &report["candidates"][report["chosen"].as_u64().unwrap() as usize];
    assert_eq!(chosen["verdict"], "CONFIRMED", "{report}");
    assert_eq!(chosen["ab"]["decisions_changed"], 0);
    assert!(chosen["ab"]["improvement_pct"].as_f64().unwrap() >= 1.0);
    assert_eq!(report["applied"]["status"], 200, "{report}");
    let answer = &report["applied"]["answer"];
    assert_eq!(answer["chain"], "bizra.control");
    common::wait_for("the applied settings", Duration::from_secs(10), || {
        get_json(port, "/api/optimizer")["tuning"]["parallelize_l2_l3"] == false
    });

    // 2. A threshold changes decisions: the engine refuses to apply it at run time.
    let (status, body) = request(
        port,
        "POST",
        "/control/config/apply",
        r#"{"changes": [{"setting": "elf.constitutional_compliance", "to": 0.8}]}"#,
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("DECISION_ALTERING"), "{body}");

    // 3. An operator's change that degrades the live KPI is rolled back by the watch.
    common::wait_for(
        "decisions since the change",
        Duration::from_secs(60),
        || {
            get_json(port, "/api/optimizer")["watch"]["observed_decisions"]
                .as_u64()
                .is_some_and(|n| n >= 40)
        },
    );
    let (status, body) = request(
        port,
        "POST",
        "/control/config/apply",
        r#"{"changes": [{"setting": "elf.parallelize_l2_l3", "to": true}]}"#,
    );
    assert_eq!(status, 200, "{body}");
    let applied: Value = serde_json::from_str(&body).unwrap();
    assert!(
        applied["request"]["watch"]["baseline"].as_f64().unwrap() > 0.0,
        "{body}"
    );
    common::wait_for("the automatic rollback", Duration::from_secs(60), || {
        changes_of(&get_json(port, "/api/optimizer"), "CONFIG_ROLLBACK") == 1
    });
    let view = get_json(port, "/api/optimizer");
    assert_eq!(view["tuning"]["parallelize_l2_l3"], false, "{view}");
    assert_eq!(changes_of(&view, "CONFIG_APPLY"), 2, "{view}");
    let (status, body) = request(port, "POST", "/control/config/rollback", "");
    assert_eq!(status, 409, "nothing left to roll back: {body}");
    let (_, metrics) = request(port, "GET", "/metrics", "");
    assert!(
        metrics.contains("elf_optimizer_changes_total{cause=\"KPI_DEGRADED\",kind=\"rollback\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("elf_optimizer_setting{setting=\"elf.parallelize_l2_l3\"} 0"));
    let (_, page) = request(port, "GET", "/", "");
    assert!(page.contains("/api/optimizer"));

    let status = engine.wait().unwrap();
    assert!(status.success(), "{}", common::engine_log(tmp.path()));
    drop(server);

    // The control chain: the signed apply with its evidence, the refusal, the operator's
    // apply with its watch terms, the watch's rollback with what it measured.
    let events = tmp.path().join("events");
    let control: Vec<Value> = common::record_lines(&events.join("bizra.control.jsonl"))
        .iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let of = |t: &str| -> Vec<&Value> {
        control
            .iter()
            .filter(|r| r["payload"]["request"]["type"] == t)
            .collect()
    };
    let applies = of("CONFIG_APPLY");
    let accepted: Vec<_> = applies
        .iter()
        .filter(|r| r["payload"]["outcome"] == "ACCEPTED")
        .collect();
    assert_eq!(accepted.len(), 2, "{control:#?}");
    let first = &accepted[0]["payload"];
    assert_eq!(first["token_id"], "ops-bob");
    assert_eq!(first["request"]["evidence"]["decisions_changed"], 0);
    assert!(
        first["request"]["evidence"]["improvement_pct"]
            .as_f64()
            .unwrap()
            >= 1.0
    );
    assert!(first["request"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["setting"] == "elf.parallelize_l2_l3"
            && c["from"] == "true"
            && c["to"] == "false"));
    assert!(accepted[1]["payload"]["request"]["evidence"].is_null());
    // Refused before the request was understood in full: the path, reason and detail say
    // what was refused.
    let refused = |reason: &str| {
        control
            .iter()
            .find(|r| r["payload"]["reason"] == reason)
            .map(|r| r["payload"].clone())
            .unwrap_or(Value::Null)
    };
    let altering = refused("DECISION_ALTERING");
    assert_eq!(altering["path"], "/control/config/apply", "{altering}");
    assert!(altering["detail"]
        .as_str()
        .unwrap()
        .contains("elf.constitutional_compliance"));
    let rollbacks = of("CONFIG_ROLLBACK");
    let auto: Vec<_> = rollbacks
        .iter()
        .filter(|r| r["payload"]["source"] == "WATCHDOG")
        .collect();
    assert_eq!(auto.len(), 1, "{rollbacks:#?}");
    let r = &auto[0]["payload"]["request"];
    eprintln!("applied: {}", first["request"]);
    eprintln!("operator's apply: {}", accepted[1]["payload"]["request"]);
    eprintln!("rolled back: {r}");
    assert_eq!(r["cause"], "KPI_DEGRADED");
    assert!(
        r["evidence"]["degradation_pct"].as_f64().unwrap() >= 5.0,
        "{r}"
    );
    assert_eq!(
        refused("NOTHING_TO_ROLL_BACK")["path"],
        "/control/config/rollback"
    );
    let schema = common::schema("signed-event");
    for line in common::record_lines(&events.join("bizra.control.jsonl")) {
        common::assert_valid(&schema, "control record", &line);
    }
    // The settings kept for a restart are those the first apply set.
    let state: Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("state/control_state.json")).unwrap(),
    )
    .unwrap();
    for c in first["request"]["changes"].as_array().unwrap() {
        let name = c["setting"].as_str().unwrap().trim_start_matches("elf.");
        assert_eq!(
            state["tuning"][name].to_string(),
            c["to"].as_str().unwrap(),
            "{state}"
        );
    }

    // verify passes over the whole trail, and so does the reference verifier.
    let pubkey = hex::encode(common::verifying_key(&key).as_bytes());
    let out = common::cli_ok(&[
        "verify",
        "--strict",
        "--pubkey",
        &pubkey,
        events.to_str().unwrap(),
        "--json",
    ]);
    let verified: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(verified["failures"], serde_json::json!([]), "{verified}");
    let python = std::process::Command::new("python3")
        .arg(common::repo().join("examples/verify_trail.py"))
        .arg("--pubkey-file")
        .arg(tmp.path().join("signing.key.pub"))
        .arg(&events)
        .output()
        .unwrap();
    assert!(
        python.status.success(),
        "{}{}",
        String::from_utf8_lossy(&python.stdout),
        String::from_utf8_lossy(&python.stderr)
    );
}

#[test]
fn a_change_that_alters_decisions_is_never_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("operator.token");
    write_owner_only(&token_file, OPERATOR);
    // No engine listens at the address: a refused change never reaches it.
    let (out, report) = optimize(
        tmp.path(),
        &[
            "--set",
            "elf.constitutional_compliance=0.97",
            "--runs",
            "1",
            "--apply",
            "--engine",
            "http://127.0.0.1:9",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("DECISIONS_CHANGED"), "{stdout}");
    assert!(stdout.contains("nothing to apply"), "{stdout}");
    let threshold = report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["changes"][0]["setting"] == "elf.constitutional_compliance")
        .unwrap();
    assert_eq!(threshold["verdict"], "DECISIONS_CHANGED", "{report}");
    assert!(threshold["ab"]["decisions_changed"].as_i64().unwrap() > 0);
    assert!(threshold["first_difference"]
        .as_str()
        .unwrap()
        .contains("COMPLIANCE_BELOW_THRESHOLD"));
    assert!(report["applied"].is_null());
}
