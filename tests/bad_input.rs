//! A real WebSocket server on loopback sends malformed, hostile and oversized frames between
//! good ones: each bad frame is rejected with its reason and counted, and the stream goes on.

mod common;

use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

fn trade(symbol: &str, id: u64, t_ms: i64, price: &str) -> String {
    format!(
        r#"{{"stream":"{}@trade","data":{{"e":"trade","E":{t_ms},"s":"{symbol}","t":{id},"p":"{price}","q":"0.01000000","T":{t_ms},"m":false,"M":true}}}}"#,
        symbol.to_lowercase()
    )
}

/// A loopback listener for a hand-written test server, and its address.
fn listen(rt: &tokio::runtime::Runtime) -> (tokio::net::TcpListener, std::net::SocketAddr) {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

#[test]
fn bad_frames_are_counted_and_the_stream_continues() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (listener, addr) = listen(&rt);
    let t0 = 1_723_161_600_000i64;
    let server = rt.spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        for i in 0..400i64 {
            // one good trade per 250 ms, prices wobbling
            let price = format!("{:.2}", 60_000.0 + ((i * 37) % 11) as f64 - 5.0);
            ws.send(Message::text(trade(
                "BTCUSDT",
                i as u64 + 1,
                t0 + i * 250,
                &price,
            )))
            .await
            .unwrap();
            let bad = match i % 8 {
                0 => Message::text("{not json"),
                1 => Message::text(trade("BTCUSDT", 0, t0, "NaN")),
                2 => Message::text(trade("BTCUSDT", 0, t0, "-1.5")),
                3 => Message::text(trade("XRPUSDT", 0, t0, "0.5")),
                4 => Message::text(format!("{{\"pad\":\"{}\"}}", "x".repeat(100_000))),
                5 => Message::binary(vec![0u8, 159, 146, 150]),
                6 => Message::text(r#"{"stream":"btcusdt@trade","data":{"e":"trade""#),
                _ => Message::text(r#"{"stream":"btcusdt@kline_1m","data":{}}"#),
            };
            ws.send(bad).await.unwrap();
        }
        ws.close(None).await.unwrap();
    });

    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let mut config = common::test_config(&format!("ws://{addr}"), tmp.path(), &key);
    config.portfolio.enabled = false;
    // This bare server speaks WebSocket only and accepts one connection: no klines.
    config.var.warm_start.enabled = false;
    let summary = common::run(config);
    rt.block_on(server).unwrap();

    let rej = &summary.ingest.rejected;
    assert_eq!(
        summary.ingest.accepted.get("trade"),
        Some(&400),
        "every good trade got through"
    );
    for (code, n) in [
        ("MALFORMED_JSON", 100),
        ("NON_FINITE_NUMBER", 50),
        ("NON_POSITIVE_PRICE", 50),
        ("UNKNOWN_SYMBOL", 50),
        ("OVERSIZED_FRAME", 50),
        ("BINARY_FRAME", 50),
        ("UNKNOWN_STREAM", 50),
    ] {
        assert_eq!(rej.get(code), Some(&n), "{code}: {rej:?}");
    }
    let report =
        bizra_risk::report::verify_path(&tmp.path().join("events"), &[common::verifying_key(&key)])
            .unwrap();
    assert!(report.ok(), "{:?}", report.failures);
    assert!(
        report.records >= 90,
        "bars kept closing: {}",
        report.records
    );
}

#[test]
fn clock_skew_is_measured_against_the_live_clock() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (listener, addr) = listen(&rt);
    let server = rt.spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        for i in 0..200i64 {
            // Exchange time 3 s behind our clock for the first half, 20 ms for the rest.
            let lag = if i < 100 { 3_000 } else { 20 };
            let e = bizra_risk::clock::system_now_ms() - lag;
            ws.send(Message::text(trade("BTCUSDT", i as u64 + 1, e, "60000.00")))
                .await
                .unwrap();
        }
        ws.close(None).await.unwrap();
    });
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let mut config = common::test_config(&format!("ws://{addr}"), tmp.path(), &key);
    config.engine.clock = bizra_risk::config::ClockMode::System;
    config.portfolio.enabled = false;
    config.var.warm_start.enabled = false;
    let summary = common::run(config);
    rt.block_on(server).unwrap();
    let skew = summary
        .ingest
        .clock_skew
        .expect("measured with the live clock");
    assert_eq!(skew.samples, 200);
    assert_eq!(skew.over_threshold, 100, "{skew:?}");
    assert!((2_990..3_500).contains(&skew.max_ms), "{skew:?}");
    assert!((0..1_000).contains(&skew.min_ms), "{skew:?}");
}

#[test]
fn a_silent_connection_is_replaced_and_the_overlap_is_not_doubled() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (listener, addr) = listen(&rt);
    let t0 = 1_723_161_600_000i64;
    let server = rt.spawn(async move {
        // First connection: trades 1..=30, then silence with the socket left open.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut first = tokio_tungstenite::accept_async(tcp).await.unwrap();
        for i in 1..=30u64 {
            let t = t0 + i as i64 * 100;
            first
                .send(Message::text(trade("BTCUSDT", i, t, "60000.00")))
                .await
                .unwrap();
        }
        // Second connection: replays 21..=30 (overlap), skips 31..=35, then 36..=60.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut second = tokio_tungstenite::accept_async(tcp).await.unwrap();
        for i in (21..=30u64).chain(36..=60) {
            let t = t0 + i as i64 * 100;
            second
                .send(Message::text(trade("BTCUSDT", i, t, "60001.00")))
                .await
                .unwrap();
        }
        second.close(None).await.unwrap();
        drop(first);
    });
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let mut config = common::test_config(&format!("ws://{addr}"), tmp.path(), &key);
    config.feed.idle_timeout_ms = 1000;
    config.feed.reconnect_initial_backoff_ms = 10;
    // This bare server has no REST side to backfill from.
    config.feed.backfill_gaps = false;
    config.portfolio.enabled = false;
    config.var.warm_start.enabled = false;
    let summary = common::run(config);
    rt.block_on(server).unwrap();
    let ing = &summary.ingest;
    assert_eq!(ing.connections, 2);
    assert_eq!(ing.idle_reconnects, 1, "{}", ing.ended_by);
    assert_eq!(ing.accepted.get("trade"), Some(&55), "30 + 25 new trades");
    assert_eq!(ing.duplicate_trades, 10);
    assert_eq!((ing.trade_gaps, ing.missing_trades), (1, 5));
    // Reconnect (backoff of at most 10 ms, loopback) to the first event of the new stream.
    assert_eq!(ing.reconnect_to_first_event_us.len(), 1);
    assert!(
        ing.reconnect_to_first_event_us[0] < 1_000_000,
        "{:?}",
        ing.reconnect_to_first_event_us
    );
    eprintln!(
        "reconnect to first event: {:?} us",
        ing.reconnect_to_first_event_us
    );
}

#[test]
fn server_shutdown_is_met_make_before_break_with_nothing_lost_or_doubled() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (listener, addr) = listen(&rt);
    let t0 = 1_723_161_600_000i64;
    let server = rt.spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut old = tokio_tungstenite::accept_async(tcp).await.unwrap();
        for i in 1..=40u64 {
            let t = t0 + i as i64 * 100;
            old.send(Message::text(trade("BTCUSDT", i, t, "60000.00")))
                .await
                .unwrap();
        }
        old.send(Message::text(format!(
            r#"{{"e":"serverShutdown","E":{}}}"#,
            t0 + 4_100
        )))
        .await
        .unwrap();
        // The replacement must arrive while the old connection is still open.
        let (tcp, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("no replacement connection before the old one closed")
            .unwrap();
        let mut new = tokio_tungstenite::accept_async(tcp).await.unwrap();
        // The old connection still delivers 41..=50, the new one starts at 45.
        for i in 41..=50u64 {
            let t = t0 + i as i64 * 100;
            old.send(Message::text(trade("BTCUSDT", i, t, "60000.00")))
                .await
                .unwrap();
        }
        old.close(None).await.unwrap();
        for i in 45..=80u64 {
            let t = t0 + i as i64 * 100;
            new.send(Message::text(trade("BTCUSDT", i, t, "60001.00")))
                .await
                .unwrap();
        }
        new.close(None).await.unwrap();
    });
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let mut config = common::test_config(&format!("ws://{addr}"), tmp.path(), &key);
    config.feed.backfill_gaps = false;
    config.portfolio.enabled = false;
    config.var.warm_start.enabled = false;
    let summary = common::run(config);
    rt.block_on(server).unwrap();
    let ing = &summary.ingest;
    assert_eq!(
        (ing.server_shutdowns, ing.rotations, ing.connections),
        (1, 1, 2)
    );
    assert_eq!(ing.accepted.get("trade"), Some(&80), "every trade once");
    assert_eq!(ing.duplicate_trades, 6, "45..=50 seen on both connections");
    assert_eq!((ing.trade_gaps, ing.missing_trades), (0, 0));
}

#[test]
fn connections_are_rotated_by_age_make_before_break_with_every_trade_once() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (listener, addr) = listen(&rt);
    let t0 = 1_723_161_600_000i64;
    let last_sent = Arc::new(AtomicU64::new(0));
    let replaced = Arc::new(AtomicBool::new(false));
    let server = rt.spawn(async move {
        // A live-like stream: a trade every 20 ms on the first connection ...
        let (tcp, _) = listener.accept().await.unwrap();
        let mut old = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let (last, stop) = (last_sent.clone(), replaced.clone());
        let old_stream = tokio::spawn(async move {
            let (mut i, mut after) = (1u64, 0);
            while after < 5 {
                let t = t0 + i as i64 * 100;
                old.send(Message::text(trade("BTCUSDT", i, t, "60000.00")))
                    .await
                    .unwrap();
                last.store(i, Ordering::SeqCst);
                i += 1;
                after += u32::from(stop.load(Ordering::SeqCst));
                assert!(i < 1_000, "no replacement connection came");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            old.close(None).await.unwrap();
            i - 1
        });
        // ... until the engine, at the connection's age limit, opens the replacement,
        // which starts a few trades back, as a new live subscription would overlap.
        let (tcp, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("no replacement connection")
            .unwrap();
        let mut new = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let from = last_sent.load(Ordering::SeqCst).saturating_sub(2).max(1);
        replaced.store(true, Ordering::SeqCst);
        let old_last = old_stream.await.unwrap();
        for i in from..=from + 50 {
            let t = t0 + i as i64 * 100;
            new.send(Message::text(trade("BTCUSDT", i, t, "60001.00")))
                .await
                .unwrap();
        }
        new.close(None).await.unwrap();
        (from, old_last)
    });
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let mut config = common::test_config(&format!("ws://{addr}"), tmp.path(), &key);
    config.feed.rotate_after_s = 1;
    config.feed.backfill_gaps = false;
    config.portfolio.enabled = false;
    config.var.warm_start.enabled = false;
    let summary = common::run(config);
    let (from, old_last) = rt.block_on(server).unwrap();
    let ing = &summary.ingest;
    assert_eq!(
        (ing.rotations, ing.connections, ing.server_shutdowns),
        (1, 2, 0)
    );
    assert_eq!(
        ing.accepted.get("trade"),
        Some(&(from + 50)),
        "every trade once"
    );
    assert_eq!(
        ing.duplicate_trades,
        old_last - from + 1,
        "the overlap, dropped"
    );
    assert_eq!((ing.trade_gaps, ing.missing_trades), (0, 0));
}

#[test]
fn symbols_are_sharded_over_connections_within_the_stream_limit() {
    let server = bizra_risk::replay::spawn_in_thread(
        "127.0.0.1:0".parse().unwrap(),
        bizra_risk::replay::ReplayOptions::new(
            common::capture_files_of_day("20240809"),
            bizra_risk::replay::Speed::Max,
        ),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let mut config = common::test_config(&server.url(), tmp.path(), &key);
    // Two symbols with two streams each, at most two streams per connection.
    config.feed.max_streams_per_connection = 2;
    config.var.warm_start.enabled = false;
    let summary = common::run(config);
    let ing = &summary.ingest;
    assert_eq!(ing.connections, 2, "one connection per symbol");
    assert_eq!(ing.accepted.get("trade"), Some(&18_556), "every trade once");
    assert_eq!(ing.accepted.get("bookTicker"), Some(&79_815));
    assert_eq!((ing.duplicate_trades, ing.missing_trades), (0, 0));
}

#[test]
fn a_stale_stream_marks_its_symbol_unhealthy_until_it_is_fresh_again() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (listener, addr) = listen(&rt);
    let t0 = 1_723_161_600_000i64;
    let quote = |u: i64| {
        format!(
            r#"{{"stream":"btcusdt@bookTicker","data":{{"u":{u},"s":"BTCUSDT","b":"60000.00","B":"1.0","a":"60000.01","A":"1.0"}}}}"#
        )
    };
    let server = rt.spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        // 1 trade per second for 60 s; quotes stop between 20 s and 40 s.
        for i in 0..60i64 {
            let price = format!("{:.2}", 60_000.0 + (i % 5) as f64);
            ws.send(Message::text(trade(
                "BTCUSDT",
                i as u64 + 1,
                t0 + i * 1000,
                &price,
            )))
            .await
            .unwrap();
            if !(20..40).contains(&i) {
                ws.send(Message::text(quote(i))).await.unwrap();
            }
        }
        ws.close(None).await.unwrap();
    });
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let mut config = common::test_config(&format!("ws://{addr}"), tmp.path(), &key);
    config.feed.stale_after_ms = 5_000;
    // This server sends no depth: a subscribed but silent stream would itself be stale.
    config.feed.streams = vec!["trade".into(), "bookTicker".into()];
    config.portfolio.enabled = false;
    config.var.warm_start.enabled = false;
    let summary = common::run(config);
    rt.block_on(server).unwrap();
    // Trades at 25..=40 s find the last quote (19 s) more than 5 s old; the quote sent
    // right after trade 40 makes the symbol fresh again.
    assert_eq!(summary.ingest.unhealthy_ticks, 16);
    let text = std::fs::read_to_string(tmp.path().join("events/bizra.BTCUSDT.jsonl")).unwrap();
    let flags: Vec<bool> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["payload"]["feed_healthy"].as_bool().unwrap()
        })
        .collect();
    let first_bad = flags
        .iter()
        .position(|h| !h)
        .expect("some decisions on stale data");
    let recovered = flags[first_bad..]
        .iter()
        .position(|h| *h)
        .expect("recovers")
        + first_bad;
    assert!(flags[recovered..].iter().all(|h| *h), "{flags:?}");
    assert!(first_bad > 0);
}

/// A WebSocket server sending, each second for 60 s, a trade, a quote and depth update i
/// (U = u = i) of BTCUSDT, leaving out update `lost`.
fn depth_feed(
    rt: &tokio::runtime::Runtime,
    lost: Option<i64>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let (listener, addr) = listen(rt);
    let t0 = 1_723_161_600_000i64;
    let server = rt.spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        for i in 1..=60i64 {
            let t = t0 + i * 1000;
            let price = format!("{:.2}", 60_000.0 + (i % 5) as f64);
            ws.send(Message::text(trade("BTCUSDT", i as u64, t, &price)))
                .await
                .unwrap();
            ws.send(Message::text(format!(
                r#"{{"stream":"btcusdt@bookTicker","data":{{"u":{i},"s":"BTCUSDT","b":"60000.00","B":"1.0","a":"60000.01","A":"1.0"}}}}"#
            )))
            .await
            .unwrap();
            if lost != Some(i) {
                ws.send(Message::text(format!(
                    r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":{t},"s":"BTCUSDT","U":{i},"u":{i},"b":[["59999.00","0.5"]],"a":[]}}}}"#
                )))
                .await
                .unwrap();
            }
        }
        ws.close(None).await.unwrap();
    });
    (addr, server)
}

/// The signed decisions of a run's BTCUSDT chain, payloads only.
fn btc_decisions(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("events/bizra.BTCUSDT.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["payload"].clone())
        .collect()
}

/// Every decision made while the feed was unhealthy: desks still get the risk snapshot
/// (signed with feed_healthy false); every other action is blocked by the data-health gate.
fn assert_unhealthy_blocked(decisions: &[serde_json::Value]) -> usize {
    let unhealthy: Vec<&serde_json::Value> = decisions
        .iter()
        .filter(|d| d["feed_healthy"] == false)
        .collect();
    for d in &unhealthy {
        if d["action"]["type"] != "PUBLISH_RISK_SNAPSHOT" {
            assert_eq!(d["verdict"], "BLOCK", "{d}");
            assert!(d["reasons"].to_string().contains("DATA_UNHEALTHY"), "{d}");
        }
    }
    unhealthy.len()
}

/// A lost depth update makes the symbol unhealthy from the moment the gap is seen until the
/// resynced book is bridged by the diff stream; actions meanwhile are blocked by L2
/// (DATA_UNHEALTHY) and pass again afterwards. The REST snapshot server answers the first
/// request with lastUpdateId 30 and later ones with 45, so the window is exact.
#[test]
fn a_depth_gap_blocks_actions_until_the_book_is_resynced_and_bridged() {
    use std::io::{Read, Write};
    let rest = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rest_addr = rest.local_addr().unwrap();
    let snapshot_requests = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let served = snapshot_requests.clone();
    std::thread::spawn(move || {
        for mut tcp in rest.incoming().flatten() {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tcp.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            assert!(String::from_utf8_lossy(&head)
                .starts_with("GET /api/v3/depth?symbol=BTCUSDT&limit=1000 "));
            let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let last = if n == 0 { 30 } else { 45 };
            let body = format!(
                r#"{{"lastUpdateId":{last},"bids":[["59990.00","1.0"]],"asks":[["60010.00","1.0"]]}}"#
            );
            let _ = write!(
                tcp,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, server) = depth_feed(&rt, Some(40));
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let mut config = common::test_config(&format!("ws://{addr}"), tmp.path(), &key);
    config.feed.rest_url = format!("http://{rest_addr}");
    // Let every decision reach L2, which holds the data-health gate.
    config.elf.constitutional_compliance = 0.0;
    config.portfolio.enabled = false;
    config.var.warm_start.enabled = false;
    let summary = common::run(config);
    rt.block_on(server).unwrap();
    let ing = &summary.ingest;
    assert_eq!((ing.depth_gaps, ing.depth_snapshots), (1, 2));
    assert!(ing.books_out_of_sync.is_empty());
    assert_eq!(
        snapshot_requests.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    // Gap seen at update 41; the second snapshot (45) is bridged by update 46, which
    // arrives after trade and quote 46: trades and quotes 42..=46 find the book broken.
    assert_eq!(ing.unhealthy_ticks, 10);
    let decisions = btc_decisions(tmp.path());
    assert!(
        assert_unhealthy_blocked(&decisions) > 0,
        "decisions inside the window"
    );
    let last = decisions.last().unwrap();
    assert_eq!(last["feed_healthy"], true, "healthy again after the resync");
}

/// A consumer that stops reading: the engine process is frozen (SIGSTOP) for 3 s in the
/// middle of a paced replay, as a long GC or VM pause would. The server's sends back up
/// into the socket, the bounded reader in the server stops, and when the engine resumes it
/// catches up: every trade arrives once, no gap, the signed trail verifies, and the
/// engine's resident memory stays bounded throughout.
#[test]
fn a_frozen_consumer_catches_up_with_nothing_lost_and_memory_bounded() {
    let server = common::replay_day("20240809", bizra_risk::replay::Speed::Factor(40.0));
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let summary_path = tmp.path().join("summary.txt");
    let mut child = common::engine_command(&server.url(), tmp.path(), &key)
        .stdout(std::fs::File::create(&summary_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let rss_kb = |pid: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let mut max_rss_kb = 0u64;
    let started = std::time::Instant::now();
    let mut frozen = false;
    let mut thawed = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        max_rss_kb = max_rss_kb.max(rss_kb(&pid));
        let t = started.elapsed();
        if !frozen && t >= Duration::from_secs(3) {
            common::send_signal(&pid, "-STOP");
            frozen = true;
        }
        if frozen && !thawed && t >= Duration::from_secs(6) {
            common::send_signal(&pid, "-CONT");
            thawed = true;
        }
        assert!(
            t < Duration::from_secs(120),
            "engine did not finish: {}",
            common::engine_log(tmp.path())
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(thawed, "the run ended before the freeze was over");
    assert!(status.success(), "{}", common::engine_log(tmp.path()));
    let summary = std::fs::read_to_string(&summary_path).unwrap();
    assert!(
        summary.contains("\"trade\": 18556"),
        "every trade once: {summary}"
    );
    assert!(
        summary.contains(
            "0 duplicate trades dropped, 0 trade-ID gaps (0 trades backfilled, 0 missing)"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("out of step at the end: none"),
        "{summary}"
    );
    eprintln!("engine max RSS over the run: {} MiB", max_rss_kb / 1024);
    assert!(
        max_rss_kb < 512 * 1024,
        "engine RSS reached {max_rss_kb} kB"
    );
    let pubkey = hex::encode(common::verifying_key(&key).as_bytes());
    let events = tmp.path().join("events").to_string_lossy().to_string();
    common::cli_ok(&["verify", "--pubkey", pubkey.as_str(), events.as_str()]);
}

/// Depth subscribed but the snapshot endpoint unreachable: the book never syncs, so the
/// symbol stays unhealthy and its actions are blocked (DATA_UNHEALTHY) for the whole run;
/// failed requests are retried after 1 s, doubling, so they never hold ingest up for long.
#[test]
fn a_book_that_cannot_sync_keeps_its_symbol_unhealthy() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, server) = depth_feed(&rt, None);
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let mut config = common::test_config(&format!("ws://{addr}"), tmp.path(), &key);
    // Nothing listens there: every snapshot request is refused.
    config.feed.rest_url = format!("http://127.0.0.1:{}", common::free_port());
    config.elf.constitutional_compliance = 0.0;
    config.portfolio.enabled = false;
    config.var.warm_start.enabled = false;
    let started = std::time::Instant::now();
    let summary = common::run(config);
    rt.block_on(server).unwrap();
    let ing = &summary.ingest;
    assert_eq!(ing.depth_snapshots, 0);
    assert!(
        (1..=2).contains(&ing.depth_snapshot_failures),
        "retries are paced: {} in {:?}",
        ing.depth_snapshot_failures,
        started.elapsed()
    );
    assert_eq!(ing.books_out_of_sync, vec!["BTCUSDT".to_string()]);
    let decisions = btc_decisions(tmp.path());
    assert!(!decisions.is_empty());
    assert_eq!(
        assert_unhealthy_blocked(&decisions),
        decisions.len(),
        "every decision comes after the first depth update"
    );
}
