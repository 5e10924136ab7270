//! The in-process replay host drives the same engine core as the socket pipeline: for the
//! same capture, key, configuration and seed, every signed file (chains, checkpoints, VaR
//! snapshots) and every model snapshot is byte-identical, with and without faults that make
//! the engine fetch from REST (trades backfilled, books resynced) and quarantine events.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bizra_risk::replay::{
    in_process, spawn_in_thread, DropDepth, Inject, ReplayOptions, SkipTrades, Speed,
};

const BIN: &str = env!("CARGO_BIN_EXE_bizra-risk");

/// Every file under `dir` (relative path -> bytes), the quarantine record and the input
/// recording aside: they say when each event was received, which is the host's own clock.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name()
                    .is_some_and(|n| n != "quarantine" && n != "recording")
                {
                    walk(root, &p, out);
                }
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn assert_same(a: &Path, b: &Path) {
    let (fa, fb) = (files_under(a), files_under(b));
    assert_eq!(
        fa.keys().collect::<Vec<_>>(),
        fb.keys().collect::<Vec<_>>(),
        "same files"
    );
    for (name, bytes) in &fa {
        assert!(
            bytes == &fb[name],
            "{name} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

fn demo(out: &Path, key: &Path, in_process: bool) {
    let mut cmd = Command::new(BIN);
    cmd.args(["demo", "--out"])
        .arg(out)
        .arg("--key")
        .arg(key)
        .current_dir(common::repo());
    // The engine reads every BIZRA_* variable as configuration; the harness's own are not.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BIZRA_") {
            cmd.env_remove(&name);
        }
    }
    if in_process {
        cmd.arg("--in-process");
    }
    let run = cmd.output().unwrap();
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn demo_and_demo_in_process_write_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let (sockets, in_proc) = (tmp.path().join("sockets"), tmp.path().join("in-process"));
    demo(&sockets, &key, false);
    demo(&in_proc, &key, true);
    let signed = files_under(&sockets.join("events"));
    assert!(
        signed.keys().filter(|k| k.ends_with(".jsonl")).count() >= 9,
        "chains, checkpoints and VaR snapshots: {:?}",
        signed.keys()
    );
    assert_same(&sockets.join("events"), &in_proc.join("events"));
    assert_same(&sockets.join("state"), &in_proc.join("state"));
}

/// Trades missing from the stream (filled from REST) and impossible events (quarantined)
/// on the socket pipeline and in process: the same signed bytes and the same feed report.
#[test]
fn faults_and_rest_backfill_give_the_same_bytes_in_process() {
    let files = common::capture_files_of_day("20240808");
    let key_dir = tempfile::tempdir().unwrap();
    let key = common::new_key(key_dir.path());
    let faults = |opts: &mut ReplayOptions| {
        opts.inject = ["BTCUSDT:300:huge-price", "ETHUSDT:400:time-ahead:5"]
            .iter()
            .map(|s| s.parse::<Inject>().unwrap())
            .collect();
        let first = 3_735_685_000;
        opts.skip_trades = vec![SkipTrades {
            symbol: "BTCUSDT".into(),
            first,
            last: first + 40,
        }];
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| -> PathBuf { tmp.path().join(name) };

    let mut opts = ReplayOptions::new(files.clone(), Speed::Max);
    faults(&mut opts);
    let server = spawn_in_thread("127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let socket = common::run(common::test_config(&server.url(), &dir("sockets"), &key));
    drop(server);

    let mut opts = ReplayOptions::new(files, Speed::Max);
    faults(&mut opts);
    let config = common::test_config("ws://unused.invalid", &dir("in-process"), &key);
    let (local, throughput) = in_process::run(config, &opts).unwrap();

    assert!(socket.ingest.backfilled_trades > 0, "{:?}", socket.ingest);
    for (a, b) in [
        (
            socket.ingest.backfilled_trades,
            local.ingest.backfilled_trades,
        ),
        (socket.ingest.missing_trades, local.ingest.missing_trades),
        (
            socket.ingest.duplicate_trades,
            local.ingest.duplicate_trades,
        ),
        (socket.ingest.depth_snapshots, local.ingest.depth_snapshots),
        (socket.ingest.unhealthy_ticks, local.ingest.unhealthy_ticks),
    ] {
        assert_eq!(a, b, "socket {:?}\nlocal {:?}", socket.ingest, local.ingest);
    }
    assert_eq!(socket.ingest.quarantined, local.ingest.quarantined);
    assert_eq!(socket.ingest.accepted, local.ingest.accepted);
    assert!(throughput.market_events > 0 && throughput.decisions > 0);
    assert_same(
        &dir("sockets").join("events"),
        &dir("in-process").join("events"),
    );
}

/// Diffs left out of the depth stream make the engine resynchronise its books mid-run. In
/// process the server's books take the streamed diffs only when a snapshot is asked for, by
/// reading the capture again: each snapshot must hold every diff streamed before it, so
/// each resync bridges at its first snapshot (a stale one would be asked for again), every
/// book ends in step, and a second run writes the same bytes.
#[test]
fn books_resynchronised_mid_run_in_process_bridge_at_their_first_snapshot() {
    let files = common::capture_files_of_day("20240808");
    let key_dir = tempfile::tempdir().unwrap();
    let key = common::new_key(key_dir.path());
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let mut opts = ReplayOptions::new(files.clone(), Speed::Max);
        opts.drop_depth = ["BTCUSDT:700", "ETHUSDT:400", "BTCUSDT:1200", "ETHUSDT:2500"]
            .iter()
            .map(|s| s.parse::<DropDepth>().unwrap())
            .collect();
        let config = common::test_config("ws://unused.invalid", &tmp.path().join(name), &key);
        in_process::run(config, &opts).unwrap().0.ingest
    };
    let ingest = run("first");
    assert!(ingest.depth_gaps >= 3, "{ingest:?}");
    assert_eq!(ingest.depth_snapshots, 2 + ingest.depth_gaps, "{ingest:?}");
    assert_eq!(ingest.depth_snapshot_failures, 0, "{ingest:?}");
    assert!(ingest.books_out_of_sync.is_empty(), "{ingest:?}");
    let again = run("second");
    assert_eq!(again.depth_snapshots, ingest.depth_snapshots);
    assert_same(
        &tmp.path().join("first").join("events"),
        &tmp.path().join("second").join("events"),
    );
}

/// The socket pipeline with one connection per symbol, each connection (its ingest, its
/// symbol's models and gate) on a thread of its own: the same signed bytes as in process,
/// where one thread steps everything in order.
#[test]
fn connections_on_their_own_threads_give_the_same_bytes_in_process() {
    let files = common::capture_files_of_day("20240808");
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let dir = |name: &str| -> PathBuf { tmp.path().join(name) };
    let two_connections = |url: &str, out: &Path| {
        let mut c = common::test_config(url, out, &key);
        c.feed.max_streams_per_connection = c.feed.streams.len();
        c.engine.worker_threads = 2;
        c
    };

    let server = spawn_in_thread(
        "127.0.0.1:0".parse().unwrap(),
        ReplayOptions::new(files.clone(), Speed::Max),
    )
    .unwrap();
    let socket = common::run(two_connections(&server.url(), &dir("sockets")));
    drop(server);
    assert_eq!(socket.ingest.connections, 2, "{:?}", socket.ingest);

    let config = two_connections("ws://unused.invalid", &dir("in-process"));
    let (local, _) = in_process::run(config, &ReplayOptions::new(files, Speed::Max)).unwrap();
    assert_eq!(socket.ingest.accepted, local.ingest.accepted);
    assert!(socket.gates.iter().map(|g| g.gate_ns.len()).sum::<u64>() > 0);
    assert_same(
        &dir("sockets").join("events"),
        &dir("in-process").join("events"),
    );
    assert_same(
        &dir("sockets").join("state"),
        &dir("in-process").join("state"),
    );
}

/// `synth --passes`: each repeated pass of the day follows on from the one before without
/// a break the engine has to repair. The pass's depth diffs leave levels of the pass before
/// (prices moved during the day) that would cross the next pass's book and make the engine
/// resync on every diff, so the passes are joined by diffs that empty the book.
#[test]
fn synthetic_passes_follow_on_without_resyncs_or_gaps() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("synth");
    let run = |args: &[&std::ffi::OsStr]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(common::repo());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("BIZRA_") {
                cmd.env_remove(&name);
            }
        }
        let o = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        text
    };
    run(&[
        "synth".as_ref(),
        "--symbols".as_ref(),
        "2".as_ref(),
        "--passes".as_ref(),
        "3".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let data = out.join("data");
    let mut args: Vec<std::ffi::OsString> = ["replay", "--config"].map(Into::into).to_vec();
    args.push(out.join("config.toml").into());
    args.push("--out".into());
    args.push(tmp.path().join("out").into());
    // S0000USDT copies BTCUSDT, S0001USDT ETHUSDT (whose book tickers reach past its last
    // diff's update ID).
    for symbol in ["s0000usdt", "s0001usdt"] {
        let day = data.join(format!("{symbol}_20240809.gz"));
        // Every diff of the three passes follows on from the one before, reset diffs
        // included: the replay server's book never waits for a diff that never comes.
        let mut reader = bizra_risk::market::capture::CaptureReader::open(&day).unwrap();
        let mut last: Option<u64> = None;
        let mut diffs = 0;
        while let Some(line) = reader.next_line().unwrap() {
            if !line.stream().is_some_and(|s| s.contains("@depth")) {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&line.json).unwrap();
            let (first, to) = (
                v["data"]["U"].as_u64().unwrap(),
                v["data"]["u"].as_u64().unwrap(),
            );
            if let Some(last) = last {
                assert_eq!(first, last + 1, "{symbol}: diff {diffs}");
            }
            last = Some(to);
            diffs += 1;
        }
        assert!(diffs > 3 * 3000, "{symbol}: {diffs}");
        args.push("--data".into());
        args.push(day.into());
        args.push("--history".into());
        args.push(data.join(format!("{symbol}_20240808.gz")).into());
    }
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let summary = run(&args);
    assert!(
        summary.contains("order books: 2 snapshots loaded, 0 depth gaps and 0 crossed books"),
        "{summary}"
    );
    assert!(summary.contains(", 0 trade-ID gaps"), "{summary}");
    assert!(summary.contains("rejected {}"), "{summary}");
}

/// `synth` shares its symbols out over threads: the files and the configuration it writes
/// are the same byte for byte whatever the number of threads.
#[test]
fn synthetic_captures_do_not_depend_on_how_many_threads_derive_them() {
    let tmp = tempfile::tempdir().unwrap();
    let derive = |jobs: &str| {
        let out = tmp.path().join(format!("jobs{jobs}"));
        let o = Command::new(BIN)
            .args([
                "synth",
                "--symbols",
                "3",
                "--passes",
                "2",
                "--jobs",
                jobs,
                "--out",
            ])
            .arg(&out)
            .current_dir(common::repo())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    };
    let (one, three) = (derive("1"), derive("3"));
    let (a, b) = (files_under(&one), files_under(&three));
    assert_eq!(a.len(), 7, "{:?}", a.keys().collect::<Vec<_>>());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(b[name] == *bytes, "{name} differs");
    }
}
