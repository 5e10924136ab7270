//! Scripted frames through the feed step, no sockets: each case is frames (and REST
//! answers) in, deliveries, fetches and quarantines out.

use super::*;
use crate::market::depth::Level;

const T0: i64 = 1_723_161_600_000;

fn settings(time: TimeSource) -> FeedSettings {
    FeedSettings {
        streams: vec![StreamKind::Trade, StreamKind::BookTicker],
        time,
        max_frame_bytes: 65_536,
        stale_after_ms: 10_000,
        gap_unhealthy_ms: 60_000,
        backfill_gaps: true,
        backfill_max_trades: 5_000,
        clock_skew_warn_ms: 1_000,
        depth_snapshot_limit: 1_000,
        max_book_levels: 5_000,
        plausibility: PlausibilitySettings::default(),
    }
}

fn step(time: TimeSource) -> FeedStep {
    FeedStep::new(
        settings(time),
        &["BTCUSDT".to_string(), "ETHUSDT".to_string()],
    )
}

fn trade(symbol: &str, id: u64, price: f64, qty: f64, t: i64) -> String {
    format!(
        r#"{{"stream":"{}@trade","data":{{"e":"trade","E":{t},"s":"{symbol}","t":{id},"p":"{price}","q":"{qty}","T":{t},"m":false}}}}"#,
        symbol.to_lowercase()
    )
}

fn btc(id: u64, t: i64) -> String {
    trade("BTCUSDT", id, 60_000.0 + id as f64 % 7.0, 0.5, t)
}

fn quote(symbol: &str, bid: f64, ask: f64) -> String {
    format!(
        r#"{{"stream":"{}@bookTicker","data":{{"u":1,"s":"{symbol}","b":"{bid}","B":"1","a":"{ask}","A":"1"}}}}"#,
        symbol.to_lowercase()
    )
}

fn depth(first: u64, last: u64, bid: f64, ask: f64, t: i64) -> String {
    format!(
        r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":{t},"s":"BTCUSDT","U":{first},"u":{last},"b":[["{bid}","1.0"]],"a":[["{ask}","1.0"]]}}}}"#
    )
}

/// Feed `frame`; answer every fetch with `answer(request)`; return all outputs.
fn feed(
    s: &mut FeedStep,
    frame: &str,
    received_ms: i64,
    answer: &mut dyn FnMut(&FetchRequest) -> FetchAnswer,
) -> Vec<FeedOutput> {
    let mut all = Vec::new();
    let mut out = Vec::new();
    s.on_frame(frame, received_ms, &mut out).unwrap();
    loop {
        let fetch = out.iter().find_map(|o| match o {
            FeedOutput::Fetch(r) => Some(r.clone()),
            _ => None,
        });
        all.append(&mut out);
        let Some(request) = fetch else {
            return all;
        };
        s.on_fetched(answer(&request), received_ms, &mut out);
    }
}

/// REST that knows nothing (the exchange has no such trade).
fn rest_empty(_: &FetchRequest) -> FetchAnswer {
    FetchAnswer::Trades(Ok(Vec::new()))
}

/// REST that is down.
fn rest_down(r: &FetchRequest) -> FetchAnswer {
    match r {
        FetchRequest::Trades { .. } => FetchAnswer::Trades(Err("connection refused".into())),
        FetchRequest::DepthSnapshot { .. } => {
            FetchAnswer::DepthSnapshot(Err("connection refused".into()))
        }
    }
}

fn delivered(outputs: &[FeedOutput]) -> Vec<(u64, i64)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            FeedOutput::Deliver(FeedTick {
                event: MarketEvent::Trade(t),
                received_at_ms,
                ..
            }) => Some((t.trade_id, *received_at_ms)),
            _ => None,
        })
        .collect()
}

fn quarantined(outputs: &[FeedOutput]) -> Vec<&'static str> {
    outputs
        .iter()
        .filter_map(|o| match o {
            FeedOutput::Quarantined { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

/// A clean stream of BTC trades 1..=n, one every 100 ms from T0.
fn warm(s: &mut FeedStep, n: u64) {
    for id in 1..=n {
        let t = T0 + id as i64 * 100;
        let out = feed(s, &btc(id, t), t + 10, &mut rest_empty);
        assert_eq!(delivered(&out).len(), 1, "{out:?}");
    }
}

#[test]
fn every_kind_of_impossible_trade_is_quarantined_singly_and_in_bursts() {
    let at = |id: u64| T0 + id as i64 * 100;
    type MakeFrame = Box<dyn Fn(u64) -> String>;
    let poison: Vec<(&str, MakeFrame)> = vec![
        (
            "IMPLAUSIBLE_PRICE",
            Box::new(move |id| trade("BTCUSDT", id, 1e308, 0.5, at(id))),
        ),
        (
            "IMPLAUSIBLE_PRICE",
            Box::new(move |id| trade("BTCUSDT", id, 0.001, 0.5, at(id))),
        ),
        (
            "ZERO_QUANTITY",
            Box::new(move |id| trade("BTCUSDT", id, 60_000.0, 0.0, at(id))),
        ),
        (
            "EVENT_TIME_AHEAD",
            Box::new(move |id| btc(id, at(id) + 3_600_000)),
        ),
        (
            "EVENT_TIME_BEHIND",
            Box::new(move |id| btc(id, at(id) - 86_400_000)),
        ),
        (
            "IMPLAUSIBLE_TRADE_ID",
            Box::new(move |_| btc(10_000_000_000_000, at(20))),
        ),
    ];
    for burst in [1u64, 5] {
        for (code, make) in &poison {
            let mut s = step(TimeSource::Event);
            warm(&mut s, 20);
            let mut out = Vec::new();
            for k in 0..burst {
                out.extend(feed(&mut s, &make(21 + k), 0, &mut rest_empty));
            }
            assert!(delivered(&out).is_empty(), "{code}: {out:?}");
            assert_eq!(quarantined(&out), vec![*code; burst as usize], "{code}");
            // The real stream goes on: nothing lost, the clock where the data is.
            let mut real = Vec::new();
            for id in 21..=30 {
                real.extend(feed(&mut s, &btc(id, at(id)), 0, &mut rest_empty));
            }
            let got = delivered(&real);
            assert_eq!(got.len(), 10, "{code}: real trades lost: {real:?}");
            assert!(got.iter().all(|(id, ts)| *ts == at(*id)), "{code}: {got:?}");
            let r = s.report();
            assert_eq!(
                (r.trade_gaps, r.missing_trades, r.duplicate_trades),
                (0, 0, 0),
                "{code}"
            );
            assert_eq!(r.quarantined[code], burst, "{code}");
        }
    }
}

#[test]
fn a_far_jump_is_believed_only_when_rest_has_the_trade() {
    let mut s = step(TimeSource::Event);
    warm(&mut s, 20);
    let far = 20 + 50_000;
    let mut asked = Vec::new();
    let out = feed(&mut s, &btc(far, T0 + 2_500), 0, &mut |r| {
        asked.push(r.clone());
        match r {
            FetchRequest::Trades { first, last, .. } if first == last => {
                // The exchange has it: the jump is real (a long outage).
                FetchAnswer::Trades(Ok(vec![IdTrade {
                    id: far,
                    trade: Trade {
                        event_time_ms: T0 + 2_500,
                        symbol: "BTCUSDT".into(),
                        trade_id: far,
                        price: 60_000.0 + far as f64 % 7.0,
                        qty: 0.5,
                        trade_time_ms: T0 + 2_500,
                        buyer_is_maker: false,
                    },
                }]))
            }
            _ => FetchAnswer::Trades(Ok(Vec::new())),
        }
    });
    assert_eq!(
        asked,
        [
            FetchRequest::Trades {
                aggregate: false,
                symbol: "BTCUSDT".into(),
                first: far,
                last: far
            },
            // The backfill is bounded by backfill_max_trades.
            FetchRequest::Trades {
                aggregate: false,
                symbol: "BTCUSDT".into(),
                first: 21,
                last: 21 + 4_999
            }
        ]
    );
    assert_eq!(delivered(&out), [(far, T0 + 2_500)]);
    let r = s.report();
    assert_eq!((r.trade_gaps, r.missing_trades), (1, far - 21));
}

#[test]
fn without_rest_a_jump_needs_the_stream_to_confirm_it_and_injected_ids_never_are() {
    let mut s = step(TimeSource::Event);
    warm(&mut s, 20);
    // Single injected IDs between real trades: never believed.
    for id in 21..=40 {
        let poison = btc(10_000_000_000_000 + id, T0 + id as i64 * 100);
        assert!(delivered(&feed(&mut s, &poison, 0, &mut rest_down)).is_empty());
        assert_eq!(
            delivered(&feed(
                &mut s,
                &btc(id, T0 + id as i64 * 100),
                0,
                &mut rest_down
            ))
            .len(),
            1
        );
    }
    // A real jump (after an outage) with REST down: believed after three in a row.
    let far = 100_000;
    let mut got = Vec::new();
    for k in 0..5 {
        got.extend(delivered(&feed(
            &mut s,
            &btc(far + k, T0 + 5_000),
            0,
            &mut rest_down,
        )));
    }
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        [far + 2, far + 3, far + 4]
    );
}

#[test]
fn backfilled_trades_keep_their_own_time_and_decisions_never_precede_their_data() {
    for time in [TimeSource::Event, TimeSource::Receive] {
        let mut s = step(time);
        warm(&mut s, 10);
        let missing: Vec<IdTrade> = (11..=13)
            .map(|id| IdTrade {
                id,
                trade: Trade {
                    event_time_ms: T0 + id as i64 * 100,
                    symbol: "BTCUSDT".into(),
                    trade_id: id,
                    price: 60_000.0,
                    qty: 0.1,
                    trade_time_ms: T0 + id as i64 * 100,
                    buyer_is_maker: true,
                },
            })
            .collect();
        let received = T0 + 1_450;
        let out = feed(&mut s, &btc(14, T0 + 1_400), received, &mut |_| {
            FetchAnswer::Trades(Ok(missing.clone()))
        });
        let got = delivered(&out);
        let expected: Vec<(u64, i64)> = match time {
            TimeSource::Event => (11..=14).map(|id| (id, T0 + id as i64 * 100)).collect(),
            TimeSource::Receive => (11..=14).map(|id| (id, received)).collect(),
        };
        assert_eq!(got, expected, "{time:?}");
        assert!(out
            .iter()
            .any(|o| matches!(o, FeedOutput::TradeGap { filled: 3, .. })));
    }
}

#[test]
fn one_symbols_poison_never_moves_anothers_clock() {
    let mut s = step(TimeSource::Event);
    warm(&mut s, 10);
    let hour_ahead = trade("ETHUSDT", 5, 3_000.0, 1.0, T0 + 3_600_000);
    assert_eq!(
        quarantined(&feed(&mut s, &hour_ahead, 0, &mut rest_empty)),
        ["EVENT_TIME_AHEAD"]
    );
    let eth = feed(
        &mut s,
        &trade("ETHUSDT", 6, 3_000.0, 1.0, T0 + 1_050),
        0,
        &mut rest_empty,
    );
    assert_eq!(delivered(&eth), [(6, T0 + 1_050)]);
    let next = feed(&mut s, &btc(11, T0 + 1_100), 0, &mut rest_empty);
    assert_eq!(delivered(&next), [(11, T0 + 1_100)]);
}

#[test]
fn quotes_and_depth_are_guarded_too() {
    let mut s = step(TimeSource::Event);
    warm(&mut s, 5);
    let ok = feed(
        &mut s,
        &quote("BTCUSDT", 60_000.0, 60_001.0),
        0,
        &mut rest_empty,
    );
    assert!(ok.iter().any(|o| matches!(o, FeedOutput::Deliver(_))));
    let crossed = feed(
        &mut s,
        &quote("BTCUSDT", 60_010.0, 60_000.0),
        0,
        &mut rest_empty,
    );
    assert!(crossed.iter().any(|o| matches!(
        o,
        FeedOutput::Rejected {
            code: "CROSSED_BOOK",
            ..
        }
    )));
    let absurd = feed(&mut s, &quote("BTCUSDT", 1e300, 2e300), 0, &mut rest_empty);
    assert_eq!(quarantined(&absurd), ["IMPLAUSIBLE_PRICE"]);

    // Depth: a snapshot syncs the book; an update from an hour ahead and one with a bid far
    // above the market are quarantined and never reach the book, so the next real update
    // is in step.
    let mut snapshots = 0;
    let mut answer = |r: &FetchRequest| {
        snapshots += 1;
        assert!(matches!(r, FetchRequest::DepthSnapshot { .. }));
        FetchAnswer::DepthSnapshot(Ok(DepthSnapshot {
            last_update_id: 100,
            bids: vec![Level {
                price: 59_999.0,
                qty: 1.0,
            }],
            asks: vec![Level {
                price: 60_002.0,
                qty: 1.0,
            }],
        }))
    };
    let t = T0 + 600;
    feed(
        &mut s,
        &depth(99, 101, 59_998.0, 60_003.0, t),
        0,
        &mut answer,
    );
    let ahead = feed(
        &mut s,
        &depth(102, 102, 59_998.0, 60_003.0, t + 3_600_000),
        0,
        &mut answer,
    );
    assert_eq!(quarantined(&ahead), ["EVENT_TIME_AHEAD"]);
    let across = feed(&mut s, &depth(102, 102, 1e300, 60_003.0, t), 0, &mut answer);
    assert_eq!(quarantined(&across), ["IMPLAUSIBLE_PRICE"]);
    // A far passive level is real.
    let next = feed(
        &mut s,
        &depth(102, 102, 10_000.0, 90_000.0, t),
        0,
        &mut answer,
    );
    assert!(next.contains(&FeedOutput::BookInSync {
        symbol: "BTCUSDT".into(),
        in_sync: true
    }));
    assert_eq!(snapshots, 1);
    assert_eq!(s.report().depth_gaps, 0);
}

#[test]
fn a_frame_while_a_fetch_is_unanswered_is_refused() {
    let mut s = step(TimeSource::Event);
    warm(&mut s, 5);
    let mut out = Vec::new();
    s.on_frame(&btc(9, T0 + 900), 0, &mut out).unwrap();
    assert!(matches!(out.last(), Some(FeedOutput::Fetch(_))));
    assert_eq!(
        s.on_frame(&btc(10, T0 + 1_000), 0, &mut out),
        Err(FetchPending)
    );
    s.on_fetched(FetchAnswer::Trades(Ok(Vec::new())), 0, &mut out);
    assert_eq!(delivered(&out), [(9, T0 + 900)]);
}

fn agg(id: u64, price: f64, t: i64) -> String {
    format!(
        r#"{{"stream":"btcusdt@aggTrade","data":{{"e":"aggTrade","E":{t},"s":"BTCUSDT","a":{id},"p":"{price}","q":"0.5","f":{f},"l":{l},"T":{t},"m":false}}}}"#,
        f = id * 3,
        l = id * 3 + 2
    )
}

#[test]
fn aggregates_that_drive_the_models_are_guarded_like_trades() {
    let mut settings = settings(TimeSource::Event);
    settings.streams = vec![StreamKind::AggTrade];
    let mut s = FeedStep::new(settings, &["BTCUSDT".to_string()]);
    for id in 1..=10 {
        let out = feed(
            &mut s,
            &agg(id, 60_000.0, T0 + id as i64 * 100),
            0,
            &mut rest_empty,
        );
        assert_eq!(delivered(&out).len(), 1, "{out:?}");
    }
    let poison = [
        agg(11, 1e308, T0 + 1_100),
        agg(11, 60_000.0, T0 + 3_600_000),
        agg(10_000_000_000_011, 60_000.0, T0 + 1_100),
    ];
    for p in &poison {
        let out = feed(&mut s, p, 0, &mut rest_empty);
        assert!(delivered(&out).is_empty(), "{out:?}");
        assert_eq!(quarantined(&out).len(), 1, "{out:?}");
    }
    // Aggregates reach the models as trades carrying their last trade ID.
    let out = feed(&mut s, &agg(11, 60_010.0, T0 + 1_100), 0, &mut rest_empty);
    assert_eq!(delivered(&out), [(35, T0 + 1_100)]);
    let r = s.report();
    assert_eq!((r.agg_trade_gaps, r.duplicate_agg_trades), (0, 0));
}

#[test]
fn live_the_first_event_cannot_set_the_clock_into_the_future() {
    let mut s = step(TimeSource::Receive);
    let now = T0 + 50;
    let ahead = feed(&mut s, &btc(1, T0 + 3_600_000), now, &mut rest_empty);
    assert_eq!(quarantined(&ahead), ["EVENT_TIME_AHEAD"]);
    for id in 2..=5 {
        let t = T0 + id as i64 * 100;
        let out = feed(&mut s, &btc(id, t), t + 20, &mut rest_empty);
        assert_eq!(delivered(&out), [(id, t + 20)], "{out:?}");
    }
}
