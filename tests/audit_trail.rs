//! The audit trail as an auditor meets it: real signed output of the pipeline, tampered
//! with in every way the format must catch; checkpoints and inclusion proofs through the
//! CLI; key rotation; a damaged head file; and a kill -9 in mid-stream followed by a
//! restart.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bizra_risk::audit::wire;
use bizra_risk::audit::{keys, FailureReason, Verifier, VerifyOptions, VerifyReport};
use bizra_risk::metrics::Metrics;
use bizra_risk::replay::Speed;
use bizra_risk::report::verify_path;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

const BIN: &str = env!("CARGO_BIN_EXE_bizra-risk");

fn run_day(config: bizra_risk::config::Config) -> anyhow::Result<()> {
    common::try_run(
        config,
        std::sync::Arc::new(Metrics::new().expect("metrics")),
    )
    .map(|_| ())
}

fn config_for(day: &str, dir: &Path, key: &Path) -> (bizra_risk::config::Config, impl Drop) {
    let server = common::replay_day(day, Speed::Max);
    (common::test_config(&server.url(), dir, key), server)
}

/// Verify records as a stream that starts mid-chain.
fn verify_window(records: &[Vec<u8>], vk: VerifyingKey) -> VerifyReport {
    let options = VerifyOptions {
        strict: false,
        from_genesis: false,
        allow_duplicates: false,
    };
    let mut v = Verifier::with_options(&[vk], options);
    for (i, r) in records.iter().enumerate() {
        v.push(&format!("w:{i}"), r);
    }
    v.finish()
}

fn first_reason(records: &[Vec<u8>], vk: VerifyingKey) -> FailureReason {
    let r = verify_window(records, vk);
    assert!(!r.ok());
    r.failures[0].reason
}

#[test]
fn tampering_with_a_real_trail_is_caught_with_the_right_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let key_path = common::new_key(tmp.path());
    let vk = common::verifying_key(&key_path);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for (day, dir) in [("20240808", &a), ("20240809", &b)] {
        let (config, _server) = config_for(day, dir, &key_path);
        run_day(config).unwrap();
        let r = verify_path(&dir.join("events"), &[vk]).unwrap();
        assert!(r.ok(), "{:?}", r.failures);
        assert!(r.chains.values().all(|c| c.checkpoints_verified > 0));
    }
    let btc = common::record_lines(&a.join("events/bizra.BTCUSDT.jsonl"));
    assert!(btc.len() > 100);
    let window = |mid: Vec<u8>| vec![btc[9].clone(), mid, btc[11].clone()];
    assert!(verify_window(&window(btc[10].clone()), vk).ok());

    // Every single-bit change anywhere in a record is caught.
    for pos in 0..btc[10].len() {
        let mut m = btc[10].clone();
        m[pos] ^= 0x01;
        assert!(
            !verify_window(&window(m), vk).ok(),
            "flip at byte {pos} undetected"
        );
    }
    // ...with the reason that names what was changed.
    let text = String::from_utf8(btc[10].clone()).unwrap();
    let flip_at = |needle: &str| {
        let mut m = btc[10].clone();
        let p = text.find(needle).unwrap() + needle.len();
        m[p] = if m[p] == b'1' { b'2' } else { b'1' };
        m
    };
    assert_eq!(
        first_reason(&window(flip_at("\"ts_ms\":")), vk),
        FailureReason::BadSignature
    );
    assert_eq!(
        first_reason(&window(flip_at("\"price\":")), vk),
        FailureReason::PayloadMismatch
    );

    // Delete, duplicate, reorder, truncate.
    assert_eq!(
        first_reason(&[btc[9].clone(), btc[11].clone()], vk),
        FailureReason::Gap
    );
    assert_eq!(
        first_reason(&[btc[9].clone(), btc[10].clone(), btc[10].clone()], vk),
        FailureReason::Duplicate
    );
    assert_eq!(
        first_reason(&[btc[9].clone(), btc[11].clone(), btc[10].clone()], vk),
        FailureReason::Reordered
    );
    let f = tmp.path().join("cut.jsonl");
    fs::write(&f, [btc[0].as_slice(), b"\n", &btc[1][..100]].concat()).unwrap();
    assert_eq!(
        verify_path(&f, &[vk]).unwrap().failures[0].reason,
        FailureReason::Truncated
    );

    // Splice two chains of the same name (two runs): the seam breaks the link.
    let other = common::record_lines(&b.join("events/bizra.BTCUSDT.jsonl"));
    let spliced: Vec<Vec<u8>> = btc[..50].iter().chain(&other[50..100]).cloned().collect();
    assert_eq!(first_reason(&spliced, vk), FailureReason::BrokenLink);

    // A record re-signed by someone else: under the trusted key ID the signature fails,
    // under the forger's own key ID the key is unknown.
    let forger = SigningKey::from_bytes(&[42; 32]);
    let env = wire::parse_envelope(&btc[10]).unwrap();
    let resigned = {
        let sig = forger
            .sign(&wire::signing_input(env.event_bytes))
            .to_bytes();
        wire::record_line(env.event_bytes, env.payload_bytes, &sig)
    };
    assert_eq!(
        first_reason(&window(resigned), vk),
        FailureReason::BadSignature
    );
    let own_id = {
        let mut e: wire::Event = serde_json::from_slice(env.event_bytes).unwrap();
        e.key_id = keys::key_id(&forger.verifying_key());
        let bytes = wire::canonical_event(&e).unwrap();
        let sig = forger.sign(&wire::signing_input(&bytes)).to_bytes();
        wire::record_line(&bytes, env.payload_bytes, &sig)
    };
    assert_eq!(first_reason(&window(own_id), vk), FailureReason::UnknownKey);

    // Checkpoints: a changed checkpoint, and events missing under a checkpoint.
    let events_dir = a.join("events");
    let cp_file = events_dir.join("bizra.BTCUSDT.checkpoints.jsonl");
    let cps = fs::read(&cp_file).unwrap();
    let mut bad = cps.clone();
    let p = cps
        .windows(12)
        .position(|w| w == b"\"tree_size\":")
        .unwrap()
        + 12;
    bad[p] = if bad[p] == b'1' { b'2' } else { b'1' };
    let t = tmp.path().join("t");
    fs::create_dir_all(&t).unwrap();
    fs::write(t.join("bizra.BTCUSDT.checkpoints.jsonl"), &bad).unwrap();
    fs::copy(
        events_dir.join("bizra.BTCUSDT.jsonl"),
        t.join("bizra.BTCUSDT.jsonl"),
    )
    .unwrap();
    let r = verify_path(&t, &[vk]).unwrap();
    let reasons: Vec<_> = r.failures.iter().map(|f| f.reason).collect();
    // The altered checkpoint no longer verifies, and the next one no longer links to it.
    assert_eq!(
        reasons,
        [
            FailureReason::CheckpointBadSignature,
            FailureReason::CheckpointBrokenLink
        ],
        "{:?}",
        r.failures
    );
    fs::write(t.join("bizra.BTCUSDT.checkpoints.jsonl"), &cps).unwrap();
    let mut gap = btc.clone();
    gap.remove(3);
    fs::write(
        t.join("bizra.BTCUSDT.jsonl"),
        [gap.join(&b'\n'), b"\n".to_vec()].concat(),
    )
    .unwrap();
    let r = verify_path(&t, &[vk]).unwrap();
    let reasons: Vec<_> = r.failures.iter().map(|f| f.reason).collect();
    assert_eq!(
        reasons,
        [FailureReason::Gap, FailureReason::CheckpointMismatch],
        "{:?}",
        r.failures
    );

    // An inclusion proof printed by `verify --prove` verifies; an altered one does not.
    let pubkey = hex::encode(vk.as_bytes());
    let proof_text = common::cli_ok(&[
        std::ffi::OsStr::new("verify"),
        "--pubkey".as_ref(),
        pubkey.as_ref(),
        "--prove".as_ref(),
        "42".as_ref(),
        "--chain".as_ref(),
        "bizra.BTCUSDT".as_ref(),
        events_dir.as_os_str(),
    ]);
    let proof_file = tmp.path().join("proof.json");
    fs::write(&proof_file, &proof_text).unwrap();
    let check = |file: &Path| {
        Command::new(BIN)
            .args(["verify", "--pubkey", &pubkey, "--check-proof"])
            .arg(file)
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(check(&proof_file), Some(0));
    let mut proof: serde_json::Value = serde_json::from_slice(&proof_text).unwrap();
    let path0 = proof["audit_path"][0].as_str().unwrap().to_string();
    let altered = format!(
        "{}{}",
        if path0.starts_with('0') { "1" } else { "0" },
        &path0[1..]
    );
    proof["audit_path"][0] = serde_json::Value::String(altered);
    fs::write(&proof_file, proof.to_string()).unwrap();
    assert_eq!(check(&proof_file), Some(1));
}

#[test]
fn key_rotation_and_a_damaged_head_file() {
    let tmp = tempfile::tempdir().unwrap();
    let old_key = common::new_key(&tmp.path().join("old"));
    let new_key = common::new_key(&tmp.path().join("new"));
    let dir = tmp.path().join("trail");

    let (config, _s) = config_for("20240808", &dir, &old_key);
    run_day(config).unwrap();

    // A new key without the old one named: refused, the chain would change hands unseen.
    let (config, _s) = config_for("20240809", &dir, &new_key);
    let e = run_day(config).unwrap_err().to_string();
    assert!(e.contains("previous_key_file"), "{e}");

    let (mut config, _s) = config_for("20240809", &dir, &new_key);
    config.signing.previous_key_file = old_key.clone();
    run_day(config).unwrap();

    // The auditor holds only the old key and follows the rotation on every chain.
    let old_vk = common::verifying_key(&old_key);
    let r = verify_path(&dir.join("events"), &[old_vk]).unwrap();
    assert!(r.ok(), "{:?}", r.failures);
    for c in r.chains.values() {
        assert_eq!(c.key_ids.len(), 2, "{c:?}");
        assert_eq!(c.key_ids[1], keys::key_id(&common::verifying_key(&new_key)));
    }
    // Holding only the new key, the events before the rotation are not trusted.
    let r = verify_path(&dir.join("events"), &[common::verifying_key(&new_key)]).unwrap();
    let reasons: std::collections::HashSet<_> = r.failures.iter().map(|f| f.reason).collect();
    assert_eq!(
        reasons,
        [FailureReason::UnknownKey, FailureReason::CheckpointMismatch].into(),
        "{:?}",
        &r.failures[..3]
    );

    // A damaged head file stops start-up with the recovery named ...
    let heads = dir.join("state/chain_heads.json");
    let text = fs::read_to_string(&heads).unwrap();
    fs::write(&heads, &text[..text.len() / 2]).unwrap();
    let (config, _s) = config_for("20240809", &dir, &new_key);
    let e = run_day(config).unwrap_err().to_string();
    assert!(e.contains("damaged") && e.contains("Recovery"), "{e}");
    // ... and after the documented recovery the chains continue from the trail.
    fs::rename(&heads, dir.join("state/chain_heads.json.damaged")).unwrap();
    let (config, _s) = config_for("20240809", &dir, &new_key);
    run_day(config).unwrap();
    let r = verify_path(&dir.join("events"), &[old_vk]).unwrap();
    assert!(r.ok(), "{:?}", r.failures);
}

/// The engine over the file sink, sealing a checkpoint every 50 events.
fn engine(url: &str, dir: &Path, key: &Path) -> Command {
    let mut cmd = common::engine_command(url, dir, key);
    cmd.env("BIZRA_SIGNING__CHECKPOINT_EVERY_EVENTS", "50");
    cmd
}

fn count_lines(path: &PathBuf) -> usize {
    fs::read(path)
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

#[test]
fn killed_mid_stream_and_restarted_the_trail_verifies_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let dir = tmp.path().join("trail");
    let btc = dir.join("events/bizra.BTCUSDT.jsonl");

    // Paced replay so that the engine is mid-stream when it is killed.
    let paced = common::replay_day("20240809", Speed::Factor(20.0));
    fs::create_dir_all(&dir).unwrap();
    let mut cmd = engine(&paced.url(), &dir, &key);
    let mut child = cmd.spawn().unwrap();
    common::wait_while_running(
        &mut child,
        &dir,
        "no events written",
        Duration::from_millis(50),
        || count_lines(&btc) >= 60,
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = count_lines(&btc);

    let fast = common::replay_day("20240809", Speed::Max);
    let mut cmd = engine(&fast.url(), &dir, &key);
    let status = cmd.status().unwrap();
    assert!(status.success(), "restart: {status:?}");
    assert!(count_lines(&btc) > before);

    let r = verify_path(&dir.join("events"), &[common::verifying_key(&key)]).unwrap();
    assert!(r.ok(), "{:?}", r.failures);
    assert_eq!(r.chains.len(), 3);
    for c in r.chains.values() {
        assert_eq!(c.first_seq, 0);
        assert_eq!(c.events, c.last_seq + 1, "no gap, no duplicate");
        assert!(c.checkpoints_verified > 0);
    }
}
