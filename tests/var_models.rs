//! Both VaR models in the running engine: warm start from the replay server's klines,
//! snapshot and restart, warm-up blocking; and the `backtest` command on real series.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bizra_risk::audit::wire::{parse_record, ModelRecord, Payload};
use bizra_risk::market::rest::{fetch_klines, Http};
use bizra_risk::replay::{spawn_in_thread, ReplayOptions, Speed};

/// (model_warming_up, FHS warm-up remaining) of every decision in a chain file, in order.
fn warmup_flags(file: &Path) -> Vec<(bool, u64)> {
    let bytes = fs::read(file).unwrap();
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let rec = parse_record(line).unwrap_or_else(|e| panic!("{e:?}"));
            let Payload::RiskDecision(d) = rec.payload else {
                panic!("not a decision")
            };
            let remaining = match &*d.model {
                ModelRecord::Symbol { fhs_aci, .. } => fhs_aci.warmup_remaining,
                ModelRecord::Portfolio { fhs_aci, .. } => {
                    fhs_aci.as_ref().map_or(u64::MAX, |f| f.warmup_remaining)
                }
                ModelRecord::NoData => u64::MAX,
            };
            (d.evidence.model_warming_up, remaining)
        })
        .collect()
}

fn replay(history: bool) -> bizra_risk::replay::RunningReplay {
    let mut opts = ReplayOptions::new(common::capture_files_of_day("20240809"), Speed::Max);
    if history {
        opts.history = common::capture_files_of_day("20240808");
    }
    spawn_in_thread("127.0.0.1:0".parse().unwrap(), opts).unwrap()
}

#[test]
fn replay_server_serves_klines_built_from_its_history() {
    let server = replay(true);
    let base = format!("http://{}", server.addr);
    let k = fetch_klines(
        &Http::new(&base, Duration::from_secs(5), 5000),
        "BTCUSDT",
        "1s",
        1000,
    )
    .unwrap();
    // 2024-08-08 23:54:13 .. 23:59:59 at one bar per second with trades
    assert!(k.len() > 300 && k.len() <= 346, "{}", k.len());
    assert!(k.windows(2).all(|w| w[0].open_time_ms < w[1].open_time_ms));
    // History ends where the stream starts: the capture's clock ran about 1.3 s behind
    // the exchange, so the first day's last trades carry 00:00:01 exchange times.
    assert!(k.last().unwrap().close_time_ms < 1_723_161_602_000);
    assert!(k.iter().all(|k| k.close > 50_000.0 && k.close < 70_000.0));
    let minute = fetch_klines(
        &Http::new(&base, Duration::from_secs(5), 5000),
        "ETHUSDT",
        "1m",
        3,
    )
    .unwrap();
    assert_eq!(minute.len(), 3);
    let err = fetch_klines(
        &Http::new(&base, Duration::from_secs(5), 5000),
        "XRPUSDT",
        "1s",
        10,
    )
    .unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
}

#[test]
fn warm_start_gives_var_from_the_first_live_bar_and_snapshots_continue_it() {
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());

    // With history: FHS is ready at the first live bar, nothing waits for a warm-up.
    let server = replay(true);
    let warm_dir = tmp.path().join("warm");
    let summary = common::run(common::test_config(&server.url(), &warm_dir, &key));
    drop(server);
    for s in &summary.symbols {
        assert!(
            s.warm_start_returns >= 250,
            "{}: {}",
            s.symbol,
            s.warm_start_returns
        );
        assert!(!s.restored_from_snapshot);
        assert_eq!(s.fhs_latest.len(), 2);
    }
    let flags = warmup_flags(&warm_dir.join("events/bizra.BTCUSDT.jsonl"));
    assert!(
        flags.iter().all(|(w, r)| !w && *r == 0),
        "{:?}",
        &flags[..3]
    );
    assert!(warm_dir.join("state/BTCUSDT.json").exists());
    assert!(warm_dir.join("state/PORTFOLIO.json").exists());

    // No history, no snapshot: the first bars are marked as warming up and only
    // snapshots are proposed until FHS has 250 returns.
    let server = replay(false);
    let cold_dir = tmp.path().join("cold");
    let summary = common::run(common::test_config(&server.url(), &cold_dir, &key));
    drop(server);
    let flags = warmup_flags(&cold_dir.join("events/bizra.BTCUSDT.jsonl"));
    assert!(flags[0].0 && flags[0].1 > 200, "{:?}", flags[0]);
    let warm_from = flags.iter().position(|(w, _)| !w).unwrap();
    assert!(flags[..warm_from].iter().all(|(w, r)| *w && *r > 0));
    assert!(flags[warm_from..].iter().all(|(w, _)| !w));
    assert_eq!(summary.symbols[0].warm_start_returns, 0);

    // Restart from the warm run's snapshots, without history: ready at once.
    let server = replay(false);
    let mut config = common::test_config(&server.url(), &tmp.path().join("restart"), &key);
    config.var.snapshot.dir = warm_dir.join("state");
    let summary = common::run(config);
    drop(server);
    for s in &summary.symbols {
        assert!(s.restored_from_snapshot, "{}", s.symbol);
    }
    assert!(summary.portfolio.as_ref().unwrap().restored_from_snapshot);
    let flags = warmup_flags(&tmp.path().join("restart/events/bizra.ETHUSDT.jsonl"));
    assert!(flags.iter().all(|(w, _)| !w));
}

#[test]
fn a_snapshot_from_other_parameters_is_ignored_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let server = replay(true);
    let first = tmp.path().join("a");
    common::run(common::test_config(&server.url(), &first, &key));
    drop(server);

    let copy = tmp.path().join("state-copy");
    fs::create_dir_all(&copy).unwrap();
    for f in fs::read_dir(first.join("state")).unwrap() {
        let f = f.unwrap().path();
        fs::copy(&f, copy.join(f.file_name().unwrap())).unwrap();
    }
    let server = replay(false);
    let mut config = common::test_config(&server.url(), &tmp.path().join("b"), &key);
    config.var.snapshot.dir = copy;
    config.var.fhs.kappa = 0.5;
    let summary = common::run(config);
    drop(server);
    assert!(summary.symbols.iter().all(|s| !s.restored_from_snapshot));

    // A torn snapshot file is reported and skipped: the engine still runs.
    fs::write(first.join("state/BTCUSDT.json"), b"{torn").unwrap();
    let server = replay(false);
    let mut config = common::test_config(&server.url(), &tmp.path().join("c"), &key);
    config.var.snapshot.dir = first.join("state");
    let summary = common::run(config);
    drop(server);
    assert!(!summary.symbols[0].restored_from_snapshot);
    assert!(summary.symbols[1].restored_from_snapshot);
}

fn backtest(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_bizra-risk"))
        .arg("backtest")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn verdict(report: &serde_json::Value, model: &str, alpha: f64) -> bool {
    report["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == model)
        .unwrap_or_else(|| panic!("no model {model}"))["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| (l["alpha"].as_f64().unwrap() - alpha).abs() < 1e-12)
        .unwrap()["pass"]
        .as_bool()
        .unwrap()
}

#[test]
fn backtest_on_long_real_series_fhs_passes_where_textbook_models_fail() {
    for series in ["sp500_daily.csv.gz", "wti_daily.csv.gz"] {
        let path = common::repo().join("data/series").join(series);
        let report = backtest(&[path.to_str().unwrap()]);
        assert!(report["returns"].as_u64().unwrap() > 8000);
        for alpha in [0.01, 0.025, 0.05] {
            assert!(
                verdict(&report, "fhs_aci", alpha),
                "{series} FHS+ACI at {alpha}"
            );
        }
        for model in ["nig_0.97", "nig_0.99", "nig_0.995", "ewma_0.94", "hs_250"] {
            assert!(!verdict(&report, model, 0.01), "{series} {model} at 1 %");
        }
    }
}

#[test]
fn backtest_reads_captures_and_trades_csv_and_writes_forecasts() {
    let tmp = tempfile::tempdir().unwrap();
    let capture = common::repo().join("data/binance/btcusdt_20240809.gz");
    let forecasts = tmp.path().join("f.csv");
    let report = backtest(&[
        capture.to_str().unwrap(),
        "--bar",
        "1s",
        "--forecasts",
        forecasts.to_str().unwrap(),
    ]);
    assert!(report["returns"].as_u64().unwrap() > 250);
    let csv = fs::read_to_string(&forecasts).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(header.starts_with("index,label,return,fhs_aci_var_0.01,fhs_aci_es_0.01"));
    assert!(csv.lines().count() > 200);

    // The public trades CSV (µs times, as published from 2025) -> 1 s bars.
    let trades: String = (0..600)
        .map(|i: u64| {
            let price = 60_000.0 + ((i * 7919) % 101) as f64 - 50.0;
            format!(
                "{},{price:.2},0.01,{:.4},{},true,true\n",
                1000 + i,
                price * 0.01,
                (1_735_689_600_000 + i * 1000) * 1000
            )
        })
        .collect();
    let file = tmp.path().join("BTCUSDT-trades-2025-01-01.csv");
    fs::write(&file, trades).unwrap();
    let report = backtest(&[file.to_str().unwrap(), "--bar", "1s"]);
    assert_eq!(report["returns"].as_u64(), Some(599));
    assert_eq!(
        report["first_label"].as_str(),
        Some("2025-01-01T00:00:01.000Z")
    );

    // Bad input is a clear error naming the line.
    fs::write(&file, "1,abc,0.01,1,1735689600000,true,true\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bizra-risk"))
        .args(["backtest", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 1") && err.contains("not a number"),
        "{err}"
    );
}
