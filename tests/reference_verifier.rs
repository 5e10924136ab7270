//! The Python reference verifier (examples/verify_trail.py, written from
//! docs/audit-format.md) and `bizra-risk verify` give the same verdicts, failure by
//! failure, on a real trail and on tampered copies of it.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use bizra_risk::replay::Speed;

/// (file name, line, chain, seq, reason) of every failure, and whether the report is OK.
type Verdict = (
    bool,
    BTreeSet<(String, Option<String>, Option<u64>, String)>,
);

fn verdict(json: &[u8]) -> Verdict {
    let v: serde_json::Value = serde_json::from_slice(json)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {}", String::from_utf8_lossy(json)));
    let failures = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let position = f["position"].as_str().unwrap_or_default();
            let name = Path::new(position)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                name,
                f["chain"].as_str().map(str::to_string),
                f["seq"].as_u64(),
                f["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect::<BTreeSet<_>>();
    (
        failures.is_empty() && v["records"].as_u64() > Some(0),
        failures,
    )
}

fn both(dir: &Path, key: &Path, extra: &[&str]) -> (Verdict, Verdict) {
    let rust = Command::new(env!("CARGO_BIN_EXE_bizra-risk"))
        .arg("verify")
        .arg(dir)
        .arg("--pubkey-file")
        .arg(key)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    let python = Command::new("python3")
        .arg(common::repo().join("examples/verify_trail.py"))
        .arg("--pubkey-file")
        .arg(key)
        .arg("--json")
        .args(extra)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    assert!(
        python.status.code() != Some(2),
        "the reference verifier refused its arguments: {}",
        String::from_utf8_lossy(&python.stderr)
    );
    (verdict(&rust.stdout), verdict(&python.stdout))
}

/// Whether python3 with `cryptography` is here; in CI it must be (scripts/test installs it).
fn python_with_cryptography() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found || std::env::var_os("CI").is_none(),
        "python3 with `cryptography` is missing in CI: scripts/test installs it"
    );
    if !found {
        eprintln!("skipping: python3 with `cryptography` not found");
    }
    found
}

fn copy_trail(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    fs::write(path, out).unwrap();
}

#[test]
fn the_reference_verifier_agrees_with_verify_on_a_real_trail_and_its_tampered_copies() {
    if !python_with_cryptography() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let public = tmp.path().join("signing.key.pub");
    fs::write(&public, hex::encode(common::verifying_key(&key).as_bytes())).unwrap();
    let server = common::replay_day("20240808", Speed::Max);
    let mut config = common::test_config(&server.url(), tmp.path(), &key);
    config.signing.checkpoint_every_events = 40;
    common::run(config);
    let trail = tmp.path().join("events");
    let btc = "bizra.BTCUSDT.jsonl";
    let btc_cp = "bizra.BTCUSDT.checkpoints.jsonl";

    let mut cases: Vec<(&str, PathBuf, Vec<String>)> = Vec::new();
    let mut case = |name: &'static str, edit: &dyn Fn(&Path), extra: Vec<String>| {
        let dir = tmp.path().join(name);
        copy_trail(&trail, &dir);
        edit(&dir);
        cases.push((name, dir, extra));
    };
    case("clean", &|_| {}, vec![]);
    case(
        "payload_byte_flipped",
        &|d| {
            let mut l = common::record_lines(&d.join(btc));
            let n = l[10].len();
            l[10][n - 200] ^= 1;
            write_lines(&d.join(btc), &l);
        },
        vec![],
    );
    case(
        "event_deleted",
        &|d| {
            let mut l = common::record_lines(&d.join(btc));
            l.remove(30);
            write_lines(&d.join(btc), &l);
        },
        vec![],
    );
    case(
        "event_duplicated",
        &|d| {
            let mut l = common::record_lines(&d.join(btc));
            let copy = l[5].clone();
            l.insert(9, copy);
            write_lines(&d.join(btc), &l);
        },
        vec![],
    );
    case(
        "events_swapped",
        &|d| {
            let mut l = common::record_lines(&d.join(btc));
            l.swap(20, 21);
            write_lines(&d.join(btc), &l);
        },
        vec![],
    );
    case(
        "middle_checkpoint_deleted",
        &|d| {
            let mut l = common::record_lines(&d.join(btc_cp));
            l.remove(1);
            write_lines(&d.join(btc_cp), &l);
        },
        vec![],
    );
    case(
        "truncated_last_line",
        &|d| {
            let bytes = fs::read(d.join(btc)).unwrap();
            fs::write(d.join(btc), &bytes[..bytes.len() - 40]).unwrap();
        },
        vec![],
    );
    case(
        "file_of_another_chain",
        &|d| {
            fs::copy(d.join(btc), d.join("bizra.ETHUSDT.jsonl")).unwrap();
        },
        vec![],
    );
    // The tail cut together with its checkpoints: only the witness (anchor) shows it.
    let witness = tmp.path().join("witness.jsonl");
    common::cli_ok(&[
        std::ffi::OsStr::new("witness"),
        trail.as_os_str(),
        "--out".as_ref(),
        witness.as_os_str(),
    ]);
    let anchor = vec!["--anchor".to_string(), witness.display().to_string()];
    case("clean_with_anchor", &|_| {}, anchor.clone());
    case(
        "tail_cut_with_its_checkpoints",
        &|d| {
            let cps = common::record_lines(&d.join(btc_cp));
            let keep = cps.len() - 2;
            let last_kept: serde_json::Value = serde_json::from_slice(&cps[keep - 1]).unwrap();
            let upto = last_kept["checkpoint"]["last_seq"].as_u64().unwrap() as usize;
            write_lines(&d.join(btc_cp), &cps[..keep]);
            let events = common::record_lines(&d.join(btc));
            write_lines(&d.join(btc), &events[..=upto]);
        },
        anchor.clone(),
    );

    for (name, dir, extra) in &cases {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let (rust, python) = both(dir, &public, &extra);
        assert_eq!(rust, python, "{name}: verify vs the reference verifier");
        assert_eq!(rust.0, name.starts_with("clean"), "{name}: {:?}", rust.1);
    }
}

/// The reference verifier's own self-test: synthetic trails signed exactly as the format
/// document says (rotations, every tamper case, anchors), each also checked with `verify`.
#[test]
fn the_reference_verifier_self_test_passes_and_agrees_with_verify() {
    if !python_with_cryptography() {
        return;
    }
    let out = Command::new("python3")
        .arg(common::repo().join("examples/verify_trail_selftest.py"))
        .env("BIZRA_RISK_BIN", env!("CARGO_BIN_EXE_bizra-risk"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.trim_end().ends_with(" 0 failed"), "{text}");
}
