//! `record` against a real WebSocket server on loopback (the replay server): the recording
//! holds exactly the messages that were sent, in order, rotates, and replays again.
//! `import-trades`: a public trades CSV becomes a capture the replay server can serve.

mod common;

use std::time::Duration;

use bizra_risk::market::capture::{group_by_instrument, CaptureMerge, CaptureReader};
use bizra_risk::market::{parse_combined, MarketEvent};
use bizra_risk::record::{import_trades_csv, record, RecordOptions};
use bizra_risk::replay::{spawn_in_thread, ReplayOptions, Speed};

fn read_all(files: &[std::path::PathBuf]) -> Vec<(u64, String)> {
    let mut merge = CaptureMerge::open(&group_by_instrument(files)).unwrap();
    let mut out = Vec::new();
    while let Some(line) = merge.next_line().unwrap() {
        out.push((line.local_ns, line.json));
    }
    out
}

fn options(url: String, dir: &std::path::Path) -> RecordOptions {
    RecordOptions {
        url,
        dir: dir.to_path_buf(),
        prefix: "rec".into(),
        rotate_bytes: 4 * 1024 * 1024,
        rotate_after: Duration::from_secs(3600),
        duration: None,
        connect_timeout: Duration::from_secs(5),
    }
}

#[test]
fn records_exactly_what_was_sent_and_replays_it() {
    let files = common::capture_files_of_day("20240809");
    let server = spawn_in_thread(
        "127.0.0.1:0".parse().unwrap(),
        ReplayOptions::new(files.clone(), Speed::Max),
    )
    .unwrap();
    let url = bizra_risk::actors::ingest::stream_url(
        &server.url(),
        &["BTCUSDT".to_string(), "ETHUSDT".to_string()],
        &["trade".to_string(), "bookTicker".to_string()],
    );
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(record(options(url, tmp.path()))).unwrap();
    drop(server);

    // What the server sent: every trade and bookTicker message of the capture, in order.
    let sent: Vec<String> = read_all(&files)
        .into_iter()
        .map(|(_, json)| json)
        .filter(|j| j.contains("@trade\"") || j.contains("@bookTicker\""))
        .collect();
    let recorded = read_all(&report.files);
    assert_eq!(report.frames as usize, sent.len(), "{}", report.ended_by);
    assert_eq!(recorded.len(), sent.len());
    assert!(
        recorded.iter().map(|(_, j)| j).eq(sent.iter()),
        "recorded JSON differs from what was sent"
    );
    assert!(
        recorded.windows(2).all(|w| w[0].0 <= w[1].0),
        "local times in order"
    );
    assert!(
        report.files.len() >= 2,
        "rotated at 4 MiB: {:?}",
        report.files
    );
    assert!(report.files.iter().all(|f| f.exists()));

    // The recording replays: the pipeline sees every trade of it.
    let server = spawn_in_thread(
        "127.0.0.1:0".parse().unwrap(),
        ReplayOptions::new(report.files.clone(), Speed::Max),
    )
    .unwrap();
    let key = common::new_key(tmp.path());
    let summary = common::run(common::test_config(&server.url(), tmp.path(), &key));
    let trades = sent.iter().filter(|j| j.contains("@trade\"")).count() as u64;
    assert_eq!(summary.ingest.accepted.get("trade"), Some(&trades));
}

#[test]
fn imported_trades_csv_is_a_replayable_capture() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("BTCUSDT-trades-2025-01-01.csv");
    let rows: String = (0..300u64)
        .map(|i| {
            format!(
                "{},{:.2},0.01000000,1.0,{},{},True\n",
                4_000_000 + i,
                93_000.0 + (i % 7) as f64,
                (1_735_689_600_000 + i * 250) * 1000,
                i % 3 == 0
            )
        })
        .collect();
    std::fs::write(&csv, rows).unwrap();
    let out = tmp.path().join("btcusdt_import.gz");
    assert_eq!(import_trades_csv(&csv, "btcusdt", &out).unwrap(), 300);
    let mut reader = CaptureReader::open(&out).unwrap();
    let mut n = 0;
    while let Some(line) = reader.next_line().unwrap() {
        let MarketEvent::Trade(t) = parse_combined(&line.json).unwrap() else {
            panic!("not a trade")
        };
        assert_eq!(t.symbol, "BTCUSDT");
        assert_eq!(t.trade_id, 4_000_000 + n);
        assert_eq!(t.trade_time_ms, 1_735_689_600_000 + n as i64 * 250);
        assert_eq!(line.local_ns, t.trade_time_ms as u64 * 1_000_000);
        n += 1;
    }
    assert_eq!(n, 300);

    let server = spawn_in_thread(
        "127.0.0.1:0".parse().unwrap(),
        ReplayOptions::new(vec![out], Speed::Max),
    )
    .unwrap();
    let key = common::new_key(tmp.path());
    let mut config = common::test_config(&server.url(), tmp.path(), &key);
    config.var.warm_start.enabled = false;
    let summary = common::run(config);
    assert_eq!(summary.ingest.accepted.get("trade"), Some(&300));

    std::fs::write(&csv, "1,93000,0.01,1,1735689600000,maybe,true\n").unwrap();
    let err = import_trades_csv(&csv, "BTCUSDT", &tmp.path().join("x.gz")).unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
}
