//! The replay server behaves like Binance towards clients: URL forms, envelopes, pings, and
//! dropping a client that stops answering them.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use bizra_risk::replay::{spawn_in_thread, ReplayOptions, Speed};

fn server(speed: Speed, ping_ms: u64, pong_timeout_ms: u64) -> bizra_risk::replay::RunningReplay {
    let mut opts = ReplayOptions::new(common::capture_files(), speed);
    opts.ping_interval = Duration::from_millis(ping_ms);
    opts.pong_timeout = Duration::from_millis(pong_timeout_ms);
    spawn_in_thread("127.0.0.1:0".parse().unwrap(), opts).unwrap()
}

#[tokio::test]
async fn serves_raw_and_combined_forms() {
    let s = server(Speed::Max, 20_000, 60_000);
    let (mut raw, _) = tokio_tungstenite::connect_async(format!("{}/ws/ethusdt@trade", s.url()))
        .await
        .unwrap();
    let first = loop {
        match raw.next().await.unwrap().unwrap() {
            Message::Text(t) => break t.to_string(),
            _ => continue,
        }
    };
    assert!(
        first.starts_with("{\"e\":\"trade\""),
        "raw form sends data only: {first}"
    );

    let url = format!(
        "{}/stream?streams=btcusdt@trade/btcusdt@bookTicker",
        s.url()
    );
    let (mut combined, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut seen_trade = false;
    let mut seen_book = false;
    while !(seen_trade && seen_book) {
        if let Message::Text(t) = combined.next().await.unwrap().unwrap() {
            assert!(!t.contains("ethusdt"));
            seen_trade |= t.starts_with("{\"stream\":\"btcusdt@trade\"");
            seen_book |= t.starts_with("{\"stream\":\"btcusdt@bookTicker\"");
        }
    }
    let bad = tokio_tungstenite::connect_async(format!("{}/nope", s.url())).await;
    assert!(bad.is_err(), "unknown paths are refused");
}

#[tokio::test]
async fn drops_clients_that_do_not_answer_pings() {
    let s = server(Speed::Factor(1.0), 50, 300);
    // A client that keeps reading answers pings automatically and stays connected.
    let (mut live, _) = tokio_tungstenite::connect_async(format!("{}/ws/btcusdt@trade", s.url()))
        .await
        .unwrap();
    // A client that never reads never answers.
    let (mut silent, _) = tokio_tungstenite::connect_async(format!("{}/ws/btcusdt@trade", s.url()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1_200);
    let mut pings = 0;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(100), live.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Close(f)))) => panic!("live client was dropped: {f:?}"),
            Ok(Some(Err(e))) => panic!("live client error: {e}"),
            _ => {}
        }
    }
    assert!(pings >= 5, "server pings regularly: {pings}");
    // The silent client finds its connection closed by the server: either the close frame
    // ("pong timeout") or, when its own queued pongs hit the closed socket first, an error.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            tokio::time::Instant::now() < give_up,
            "the silent client was not dropped"
        );
        match tokio::time::timeout(Duration::from_secs(5), silent.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                assert_eq!(f.code, CloseCode::Policy);
                assert_eq!(f.reason.as_str(), "pong timeout");
                break;
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => panic!("the silent client was not dropped"),
        }
    }
}

/// Fault injection: the replay server leaves a range of trade IDs out of the stream; the
/// engine detects the gap and fetches the trades from the server's historicalTrades
/// endpoint, so no trade is lost and none is doubled.
#[test]
fn skipped_trades_are_backfilled_from_rest() {
    use bizra_risk::market::capture::CaptureReader;
    use bizra_risk::replay::SkipTrades;

    let files = common::capture_files_of_day("20240809");
    let btc = files
        .iter()
        .find(|f| f.to_string_lossy().contains("btcusdt"))
        .unwrap();
    let mut ids = Vec::new();
    let mut reader = CaptureReader::open(btc).unwrap();
    while let Some(line) = reader.next_line().unwrap() {
        if let Ok(bizra_risk::market::MarketEvent::Trade(t)) =
            bizra_risk::market::parse_combined(&line.json)
        {
            ids.push(t.trade_id);
        }
    }
    let (first, last) = (ids[1000], ids[1049]);
    let mut opts = bizra_risk::replay::ReplayOptions::new(files, bizra_risk::replay::Speed::Max);
    opts.skip_trades = vec![SkipTrades {
        symbol: "BTCUSDT".into(),
        first,
        last,
    }];
    let server = bizra_risk::replay::spawn_in_thread("127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let summary = common::run(common::test_config(&server.url(), tmp.path(), &key));
    let ing = &summary.ingest;
    assert_eq!(ing.trade_gaps, 1);
    assert_eq!(ing.backfilled_trades, last - first + 1);
    assert_eq!(ing.missing_trades, 0);
    assert_eq!(ing.duplicate_trades, 0);
    assert_eq!(ing.accepted.get("trade"), Some(&18_556), "every trade once");
    // No snapshot line in this day's captures: the server rebuilds books from the diffs.
    assert_eq!((ing.depth_snapshots, ing.depth_gaps), (2, 0));
    assert!(ing.books_out_of_sync.is_empty());
    let btc_trades = summary
        .symbols
        .iter()
        .find(|s| s.symbol == "BTCUSDT")
        .unwrap()
        .trades;
    assert_eq!(btc_trades, ids.len() as u64);
}

/// A diff-depth update left out of the stream breaks the book's U/u chain: the engine sees
/// the gap, marks the book out of step and resyncs it from the REST depth snapshot, which
/// the replay server builds from the capture's snapshot line and the diffs replayed so far.
/// Trades are untouched: none lost, none doubled.
#[test]
fn a_lost_depth_update_breaks_the_book_and_it_is_resynced_from_rest() {
    use bizra_risk::replay::DropDepth;

    let files = common::capture_files_of_day("20240808");
    let mut opts = ReplayOptions::new(files, Speed::Factor(50.0));
    opts.drop_depth = vec![DropDepth {
        symbol: "BTCUSDT".into(),
        nth: 200,
    }];
    let server = spawn_in_thread("127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let metrics = std::sync::Arc::new(bizra_risk::metrics::Metrics::new().unwrap());
    let summary = common::run_with_metrics(
        common::test_config(&server.url(), tmp.path(), &key),
        metrics.clone(),
    );
    let ing = &summary.ingest;
    assert_eq!(ing.depth_gaps, 1, "the dropped update is seen as a gap");
    assert_eq!(ing.depth_crossed, 0);
    assert_eq!(ing.depth_snapshot_failures, 0);
    assert!(
        ing.depth_snapshots >= 3,
        "one first sync per symbol and at least one resync: {}",
        ing.depth_snapshots
    );
    assert!(
        ing.books_out_of_sync.is_empty(),
        "resynced by the end: {:?}",
        ing.books_out_of_sync
    );
    // 3,451 + 3,434 diff updates captured, one dropped.
    assert_eq!(ing.accepted.get("depth@100ms"), Some(&6_884));
    assert_eq!(ing.accepted.get("trade"), Some(&15_863), "every trade once");
    assert_eq!((ing.missing_trades, ing.duplicate_trades), (0, 0));
    let text = metrics.render();
    assert!(
        text.contains("bizra_feed_depth_sync_total{event=\"gap\"} 1"),
        "{text}"
    );
    assert!(text.contains("bizra_feed_book_in_sync{symbol=\"BTCUSDT\"} 1"));
}

/// Subscribed to `aggTrade` instead of `trade`, the engine checks aggregate-ID continuity;
/// aggregates left out of the stream are fetched from `GET /api/v3/aggTrades`. Every
/// aggregate reaches the models once: none lost, none doubled.
#[test]
fn agg_trades_drive_the_models_and_their_gaps_are_backfilled() {
    use bizra_risk::market::capture::CaptureReader;
    use bizra_risk::replay::SkipTrades;

    let files = common::capture_files_of_day("20240809");
    // The oracle: consecutive trades with the same time, price and side form one aggregate.
    let mut groups: std::collections::HashMap<String, u64> = Default::default();
    let mut btc_ids = Vec::new();
    for f in &files {
        let mut reader = CaptureReader::open(f).unwrap();
        let mut last: Option<(u64, i64, f64, bool)> = None;
        while let Some(line) = reader.next_line().unwrap() {
            if let Ok(bizra_risk::market::MarketEvent::Trade(t)) =
                bizra_risk::market::parse_combined(&line.json)
            {
                let same = last.is_some_and(|(id, time, price, maker)| {
                    id + 1 == t.trade_id
                        && time == t.trade_time_ms
                        && price == t.price
                        && maker == t.buyer_is_maker
                });
                if !same {
                    *groups.entry(t.symbol.to_string()).or_default() += 1;
                }
                last = Some((t.trade_id, t.trade_time_ms, t.price, t.buyer_is_maker));
                if t.symbol == "BTCUSDT" {
                    btc_ids.push(t.trade_id);
                }
            }
        }
    }
    let mut opts = ReplayOptions::new(files, Speed::Max);
    opts.skip_trades = vec![SkipTrades {
        symbol: "BTCUSDT".into(),
        first: btc_ids[2000],
        last: btc_ids[2299],
    }];
    let server = spawn_in_thread("127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let mut config = common::test_config(&server.url(), tmp.path(), &key);
    config.feed.streams = vec!["aggTrade".into(), "bookTicker".into()];
    let summary = common::run(config);
    let ing = &summary.ingest;
    let total: u64 = groups.values().sum();
    assert_eq!(ing.agg_trade_gaps, 1);
    assert!(ing.backfilled_agg_trades > 0);
    assert_eq!((ing.missing_agg_trades, ing.duplicate_agg_trades), (0, 0));
    assert_eq!(
        ing.accepted.get("aggTrade"),
        Some(&total),
        "every aggregate once"
    );
    assert_eq!(ing.accepted.get("trade"), None);
    for s in &summary.symbols {
        assert_eq!(
            s.trades, groups[&s.symbol],
            "{} aggregates to the models",
            s.symbol
        );
    }
}

/// Well-formed but impossible events injected mid-stream (singly and in bursts, on both
/// symbols, each taking the ID of the next real trade where it can) are quarantined and
/// counted; no real trade is lost, no clock moves, and every signed record (VaR figures and
/// verdicts of every chain) is byte-identical to a clean run's. A run whose trades were
/// partly missing from the stream and filled from REST signs the same records too.
#[test]
fn impossible_events_and_backfilled_gaps_leave_the_signed_decisions_as_a_clean_run_signs_them() {
    use bizra_risk::replay::{Inject, SkipTrades};
    let files = common::capture_files_of_day("20240808");
    let key_dir = tempfile::tempdir().unwrap();
    let key = common::new_key(key_dir.path());
    let run = |opts: ReplayOptions| {
        let server =
            bizra_risk::replay::spawn_in_thread("127.0.0.1:0".parse().unwrap(), opts).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let summary = common::run(common::test_config(&server.url(), tmp.path(), &key));
        let mut trail = std::collections::BTreeMap::new();
        for e in std::fs::read_dir(tmp.path().join("events")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "jsonl") {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                trail.insert(name, std::fs::read(&p).unwrap());
            }
        }
        let quarantine =
            std::fs::read_to_string(tmp.path().join("events/quarantine/quarantine.jsonl"))
                .unwrap_or_default();
        (trail, summary, quarantine)
    };
    let (clean, clean_summary, _) = run(ReplayOptions::new(files.clone(), Speed::Max));
    assert!(clean.len() >= 6, "{:?}", clean.keys());

    let mut opts = ReplayOptions::new(files.clone(), Speed::Max);
    let specs = [
        "BTCUSDT:300:huge-price",
        "BTCUSDT:600:zero-qty",
        "BTCUSDT:900:time-ahead",
        "BTCUSDT:1200:time-behind",
        "BTCUSDT:1500:id-jump",
        "BTCUSDT:1800:huge-price:5",
        "BTCUSDT:2100:crossed-quote",
        "ETHUSDT:400:time-ahead:5",
        "ETHUSDT:800:id-jump:5",
        "ETHUSDT:1200:zero-qty",
    ];
    opts.inject = specs.iter().map(|s| s.parse::<Inject>().unwrap()).collect();
    let (poisoned, summary, quarantine) = run(opts);
    let q = &summary.ingest.quarantined;
    assert_eq!(q.get("IMPLAUSIBLE_PRICE"), Some(&6), "{q:?}");
    assert_eq!(q.get("ZERO_QUANTITY"), Some(&2), "{q:?}");
    assert_eq!(q.get("EVENT_TIME_AHEAD"), Some(&6), "{q:?}");
    assert_eq!(q.get("EVENT_TIME_BEHIND"), Some(&1), "{q:?}");
    assert_eq!(q.get("IMPLAUSIBLE_TRADE_ID"), Some(&6), "{q:?}");
    assert_eq!(summary.ingest.rejected.get("CROSSED_BOOK"), Some(&1));
    assert_eq!(
        quarantine.lines().count(),
        21,
        "every quarantined event recorded"
    );
    let (ing, clean_ing) = (&summary.ingest, &clean_summary.ingest);
    assert_eq!(ing.accepted.get("trade"), clean_ing.accepted.get("trade"));
    assert_eq!((ing.trade_gaps, ing.duplicate_trades), (0, 0));
    // Every decision is the same; the checkpoints cover the same events with the same
    // Merkle roots, but sign another input digest: the injected frames were consumed too.
    let covered = |bytes: &[u8]| -> Vec<serde_json::Value> {
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut cp: serde_json::Value = serde_json::from_slice(l).unwrap();
                let cp = cp["checkpoint"].take();
                serde_json::json!([
                    cp["first_seq"],
                    cp["last_seq"],
                    cp["tree_size"],
                    cp["root_sha256"],
                    cp["last_event_sha256"],
                    cp["ts_ms"]
                ])
            })
            .collect()
    };
    for (name, bytes) in &clean {
        let other = poisoned
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        if name.ends_with(".checkpoints.jsonl") {
            assert_eq!(covered(bytes), covered(other), "{name}");
        } else {
            assert!(other == bytes, "{name} differs from the clean run");
        }
    }

    let mut btc_ids = Vec::new();
    let btc_file = files
        .iter()
        .find(|f| f.to_string_lossy().contains("btcusdt"))
        .unwrap();
    let mut reader = bizra_risk::market::capture::CaptureReader::open(btc_file).unwrap();
    while let Some(line) = reader.next_line().unwrap() {
        if let Ok(bizra_risk::market::MarketEvent::Trade(t)) =
            bizra_risk::market::parse_combined(&line.json)
        {
            btc_ids.push(t.trade_id);
        }
    }
    let mut opts = ReplayOptions::new(files, Speed::Max);
    opts.skip_trades = vec![SkipTrades {
        symbol: "BTCUSDT".into(),
        first: btc_ids[2000],
        last: btc_ids[2400],
    }];
    let (gapped, summary, _) = run(opts);
    assert_eq!(summary.ingest.backfilled_trades, 401);
    // Decision times follow the data, so every verdict and every signed figure is the
    // clean run's (only the times, and the freshness computed from them, may differ by
    // the few milliseconds the other symbol's stream was ahead).
    let outcomes = |bytes: &[u8]| -> Vec<serde_json::Value> {
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_slice(l).unwrap();
                let p = &v["payload"];
                serde_json::json!([
                    p["action"],
                    p["verdict"],
                    p["layer"],
                    p["reasons"],
                    p["evidence"],
                    p["model"]
                ])
            })
            .collect()
    };
    for (name, bytes) in clean.iter().filter(|(n, _)| !n.contains("checkpoints")) {
        assert_eq!(outcomes(bytes), outcomes(&gapped[name]), "{name}");
    }
}

/// Binance's live subscription requests: SUBSCRIBE adds streams to an open connection,
/// LIST_SUBSCRIPTIONS names them, UNSUBSCRIBE removes them, bad requests get Binance's error
/// codes, and a client sending more than 5 messages a second is cut.
#[tokio::test]
async fn subscriptions_change_on_an_open_connection_as_binance_answers_them() {
    use futures_util::SinkExt;
    let s = server(Speed::Factor(2.0), 20_000, 60_000);
    let url = format!("{}/stream?streams=btcusdt@trade", s.url());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    async fn next_answer(
        ws: &mut tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        seen: &mut Vec<String>,
    ) -> serde_json::Value {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    if t.starts_with("{\"stream\"") {
                        seen.push(t.to_string());
                    } else {
                        return serde_json::from_str(&t).unwrap();
                    }
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("no answer: {other:?}"),
            }
        }
    }
    let mut frames = Vec::new();
    ws.send(Message::text(
        r#"{"method":"SUBSCRIBE","params":["ethusdt@trade"],"id":1}"#,
    ))
    .await
    .unwrap();
    assert_eq!(
        next_answer(&mut ws, &mut frames).await,
        serde_json::json!({"result": null, "id": 1})
    );
    ws.send(Message::text(r#"{"method":"LIST_SUBSCRIPTIONS","id":2}"#))
        .await
        .unwrap();
    assert_eq!(
        next_answer(&mut ws, &mut frames).await["result"],
        serde_json::json!(["btcusdt@trade", "ethusdt@trade"])
    );
    // Frames of the new stream arrive on the same connection.
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while !frames
        .iter()
        .any(|f| f.starts_with("{\"stream\":\"ethusdt@trade\""))
    {
        assert!(tokio::time::Instant::now() < until, "no ethusdt frame");
        if let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_secs(10), ws.next()).await
        {
            frames.push(t.to_string());
        }
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(next_answer(&mut ws, &mut frames).await["error"]["code"], 3);
    ws.send(Message::text(
        r#"{"method":"UNSUBSCRIBE","params":["BTCUSDT@trade"],"id":3}"#,
    ))
    .await
    .unwrap();
    assert_eq!(next_answer(&mut ws, &mut frames).await["error"]["code"], 2);
    // Six messages in one second: the connection is closed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for id in 10..16 {
        let _ = ws
            .send(Message::text(format!(
                r#"{{"method":"LIST_SUBSCRIPTIONS","id":{id}}}"#
            )))
            .await;
    }
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("not closed: {other:?}"),
        }
    };
    assert_eq!(closed.map(|f| f.code), Some(CloseCode::Policy));
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Subscribe `stream` on the open connection `ws`: when the request went, and the `data`
/// of the stream's first frame.
async fn subscribe_and_await_first(
    ws: &mut Client,
    stream: &str,
) -> (tokio::time::Instant, serde_json::Value) {
    use futures_util::SinkExt;
    let request = format!(r#"{{"method":"SUBSCRIBE","params":["{stream}"],"id":1}}"#);
    ws.send(Message::text(request)).await.unwrap();
    let asked = tokio::time::Instant::now();
    let envelope = format!("{{\"stream\":\"{stream}\"");
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
        let Ok(Some(Ok(Message::Text(t)))) = msg else {
            panic!("no {stream} frame: {msg:?}");
        };
        if t.starts_with(&envelope) {
            let frame: serde_json::Value = serde_json::from_str(&t).unwrap();
            return (asked, frame["data"].clone());
        }
    }
}

/// A stream subscribed on an open, paced connection starts from where the connection has
/// got to, at once: not after the frames of its other streams the server has read ahead
/// (at the start of the bundled capture, 1 500 Bitcoin trades span over a minute).
#[tokio::test]
async fn a_stream_subscribed_on_a_paced_connection_starts_where_it_has_got_to() {
    let s = server(Speed::Factor(2.0), 20_000, 60_000);
    let url = format!("{}/stream?streams=btcusdt@trade", s.url());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let event_ms = |frame: &str| -> i64 {
        let v: serde_json::Value = serde_json::from_str(frame).unwrap();
        v["data"]["E"].as_i64().unwrap()
    };
    // Time for the server to read ahead as far as it will.
    let mut last_btc_ms = None;
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(until, ws.next()).await {
        if let Message::Text(t) = msg {
            last_btc_ms = Some(event_ms(&t));
        }
    }
    let last_btc_ms = last_btc_ms.expect("Bitcoin trades in the first two seconds");
    let (asked, eth) = subscribe_and_await_first(&mut ws, "ethusdt@trade").await;
    let first_eth_ms = eth["E"].as_i64().unwrap();
    let waited = asked.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "first ethusdt frame after {waited:?}"
    );
    // Within seconds of capture time of the last frame before the change.
    assert!(
        (first_eth_ms - last_btc_ms).abs() < 5_000,
        "ethusdt starts at {first_eth_ms}, the connection was at {last_btc_ms}"
    );
}

/// The same when the connection's own streams are quiet: after a trade of AAA comes none
/// for ten minutes of capture, and a BBB stream subscribed in between starts at once, from
/// the captured time the connection has got to: not after AAA's next trade, nor with the
/// BBB trades of the quiet time before the request.
#[tokio::test]
async fn a_stream_subscribed_during_a_quiet_gap_starts_at_once_where_the_connection_is() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let t0_ns: u64 = 1_723_161_253_000_000_000;
    let trade = |symbol: &str, id: u64, ns: u64| {
        let ms = ns / 1_000_000;
        format!(
            "{ns} {{\"stream\":\"{}@trade\",\"data\":{{\"e\":\"trade\",\"E\":{ms},\"s\":\"{symbol}\",\"t\":{id},\"p\":\"1.00\",\"q\":\"1.00\",\"T\":{ms},\"m\":true,\"M\":true}}}}\n",
            symbol.to_lowercase()
        )
    };
    let mut quiet = std::fs::File::create(tmp.path().join("aaausdt_20240808")).unwrap();
    for (id, s) in [(1, 0), (2, 600)] {
        quiet
            .write_all(trade("AAAUSDT", id, t0_ns + s * 1_000_000_000).as_bytes())
            .unwrap();
    }
    let mut busy = std::fs::File::create(tmp.path().join("bbbusdt_20240808")).unwrap();
    for id in 0..7_000u64 {
        busy.write_all(trade("BBBUSDT", id + 1, t0_ns + id * 100_000_000).as_bytes())
            .unwrap();
    }
    drop((quiet, busy));
    let files = vec![
        tmp.path().join("aaausdt_20240808"),
        tmp.path().join("bbbusdt_20240808"),
    ];
    // 100×: the ten quiet minutes last six seconds.
    let s = spawn_in_thread(
        "127.0.0.1:0".parse().unwrap(),
        ReplayOptions::new(files, Speed::Factor(100.0)),
    )
    .unwrap();
    let url = format!("{}/stream?streams=aaausdt@trade", s.url());
    let connecting = tokio::time::Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let first = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => break t.to_string(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no frame: {other:?}"),
        }
    };
    let first_seen = tokio::time::Instant::now();
    assert!(
        first.contains("\"t\":1,"),
        "AAA's first trade comes first: {first}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (asked, first_bbb) = subscribe_and_await_first(&mut ws, "bbbusdt@trade").await;
    let got = tokio::time::Instant::now();
    let waited = got - asked;
    assert!(
        waited < Duration::from_secs(3),
        "first bbbusdt frame after {waited:?}"
    );
    // In captured ms: the connection was at least this far on when asked, at most this far
    // when the frame came (one BBB trade of leeway either side).
    let at_ms = first_bbb["E"].as_u64().unwrap() - t0_ns / 1_000_000;
    let earliest = (asked - first_seen).as_millis() as u64 * 100;
    let latest = (got - connecting).as_millis() as u64 * 100;
    assert!(
        at_ms + 100 >= earliest && at_ms <= latest + 100,
        "bbbusdt starts {at_ms} ms into the capture, outside {earliest}..={latest}"
    );
}

/// A client that subscribes to an instrument's diff-depth stream late (here: after a while
/// of its trades only) gets a REST snapshot its first diff follows on from: the server's
/// book moved on with the diffs it read and did not send.
#[tokio::test]
async fn a_depth_stream_subscribed_late_follows_on_from_the_rest_snapshot() {
    use futures_util::SinkExt;
    let s = server(Speed::Factor(20.0), 20_000, 60_000);
    let url = format!("{}/stream?streams=btcusdt@trade", s.url());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let text = |m: Option<Result<Message, _>>| match m {
        Some(Ok(Message::Text(t))) => Some(t.to_string()),
        Some(Ok(_)) => None,
        other => panic!("connection ended: {other:?}"),
    };
    // Two seconds of the capture's time pass with trades only.
    let mut trades = 0;
    while trades < 200 {
        if let Some(t) = text(ws.next().await) {
            trades += usize::from(t.contains("@trade"));
        }
    }
    ws.send(Message::text(
        r#"{"method":"SUBSCRIBE","params":["btcusdt@depth@100ms"],"id":1}"#,
    ))
    .await
    .unwrap();
    let first = loop {
        let Some(t) = text(ws.next().await) else {
            continue;
        };
        if t.contains("@depth") {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            break v["data"]["U"].as_u64().unwrap();
        }
    };
    let port = s.addr.port();
    let (status, _, body) = tokio::task::spawn_blocking(move || {
        common::http_request(port, "GET", "/api/v3/depth?symbol=BTCUSDT&limit=5", &[], "")
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let snapshot: serde_json::Value = serde_json::from_str(&body).unwrap();
    let last = snapshot["lastUpdateId"].as_u64().unwrap();
    assert!(
        last + 1 >= first,
        "snapshot {last} is older than the first diff sent ({first}): the book cannot sync"
    );
}

/// The engine names one stream in its URL and subscribes to the others with SUBSCRIBE
/// messages (two streams each, paced); every symbol is decided and the trail verifies.
#[test]
fn the_engine_subscribes_to_the_streams_its_url_leaves_out() {
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let server = common::replay_day("20240809", Speed::Factor(20.0));
    let status = common::engine_command(&server.url(), tmp.path(), &key)
        .env("BIZRA_FEED__URL_MAX_STREAMS", "1")
        .env("BIZRA_FEED__SUBSCRIBE_BATCH_STREAMS", "2")
        .env("RUST_LOG", "info")
        .status()
        .unwrap();
    assert!(status.success(), "{}", common::engine_log(tmp.path()));
    let log = std::fs::read_to_string(tmp.path().join("engine.log")).unwrap();
    assert!(
        log.contains("SUBSCRIBE confirmed for every stream not in the URL"),
        "{}",
        common::engine_log(tmp.path())
    );
    let events = tmp.path().join("events");
    for chain in ["bizra.BTCUSDT", "bizra.ETHUSDT"] {
        let n = common::record_lines(&events.join(format!("{chain}.jsonl"))).len();
        assert!(n > 10, "{chain}: {n} records");
    }
    let pubkey = hex::encode(common::verifying_key(&key).as_bytes());
    common::cli_ok(&["verify", "--pubkey", &pubkey, events.to_str().unwrap()]);
}

/// The replay server's Binance-like request weight limit and the engine's REST client
/// together: the client stops at the server's 429 and sends nothing more during the pause
/// it asked for (the server would answer 418, Binance's ban), and so does every other
/// client of the same server in the process.
#[test]
fn a_429_from_the_server_stops_every_client_until_its_retry_after() {
    use bizra_risk::market::rest::{Http, RestError, RestTransport};
    use bizra_risk::replay::rest_limit::RestLimit;
    // Three snapshots of weight 50 must fall in one minute of the server's.
    let second_of_minute = bizra_risk::clock::system_now_ms().rem_euclid(60_000);
    if second_of_minute > 50_000 {
        std::thread::sleep(Duration::from_millis(
            (60_000 - second_of_minute) as u64 + 100,
        ));
    }
    let mut opts = ReplayOptions::new(common::capture_files(), Speed::Max);
    opts.rest_limit = Some(std::sync::Arc::new(RestLimit::new(100)));
    let server = spawn_in_thread("127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let base = format!("http://{}", server.addr);
    let depth = "/api/v3/depth?symbol=BTCUSDT&limit=1000";
    let client = Http::new(&base, Duration::from_secs(30), 6000);
    client.get(depth).unwrap();
    client.get(depth).unwrap();
    let third = client.get(depth);
    assert!(
        matches!(third, Err(RestError::RateLimited { .. })),
        "{third:?}"
    );
    assert_eq!(server.rest_refusals(), Some((1, 0)));
    let other = Http::new(&base, Duration::from_secs(30), 6000);
    for target in [depth, "/api/v3/klines?symbol=BTCUSDT&interval=1s&limit=10"] {
        let refused = other.get(target);
        assert!(
            matches!(refused, Err(RestError::RateLimited { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(
        server.rest_refusals(),
        Some((1, 0)),
        "nothing reached the server during its pause"
    );
}
