//! Answers the feed step's REST requests (`FetchRequest`) over any transport: the live
//! endpoint over HTTP, or a capture in process. Blocking; hosts run it off their runtime.

use crate::market::feed::{FetchAnswer, FetchRequest, IdTrade};
use crate::market::rest::{self, RestError, RestTransport};
use crate::market::{AggTrade, Trade};

/// Page size of the ID-paged endpoints (Binance's maximum).
const PAGE: usize = 1000;

/// Make one request of the feed step.
pub fn answer(request: FetchRequest, rest: &impl RestTransport) -> FetchAnswer {
    match request {
        FetchRequest::Trades {
            aggregate: false,
            symbol,
            first,
            last,
        } => FetchAnswer::Trades(backfill(rest, &symbol, first, last)),
        FetchRequest::Trades {
            aggregate: true,
            symbol,
            first,
            last,
        } => FetchAnswer::Trades(backfill_agg(rest, &symbol, first, last)),
        FetchRequest::DepthSnapshot { symbol, limit } => FetchAnswer::DepthSnapshot(
            rest::fetch_depth_snapshot(rest, &symbol, limit).map_err(|e| e.to_string()),
        ),
    }
}

/// Items `first..=last` of an ID-paged REST endpoint (`fetch(from_id)` returns a page from
/// that ID), converted, in ID order; fewer when the endpoint has fewer or answers something
/// unusable. An error only when nothing could be fetched at all.
fn backfill_by_id<T>(
    what: &'static str,
    symbol: &str,
    first: u64,
    last: u64,
    fetch: impl Fn(u64) -> Result<Vec<T>, RestError>,
    convert: impl Fn(T) -> Option<IdTrade>,
) -> Result<Vec<IdTrade>, String> {
    let mut out: Vec<IdTrade> = Vec::new();
    let mut from = first;
    while from <= last {
        match fetch(from) {
            Ok(items) => {
                let before = out.len();
                for t in items.into_iter().filter_map(&convert) {
                    if t.id >= from && t.id <= last {
                        from = t.id.saturating_add(1);
                        out.push(t);
                    }
                }
                if out.len() == before {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(%symbol, from, what, error = %e, "REST fetch failed");
                if out.is_empty() {
                    return Err(e.to_string());
                }
                break;
            }
        }
    }
    Ok(out)
}

/// A REST price and quantity, if both are numbers.
fn price_qty(price: &str, qty: &str) -> Option<(f64, f64)> {
    Some((price.parse::<f64>().ok()?, qty.parse::<f64>().ok()?))
}

/// Trades `first..=last` of `symbol` from `GET /api/v3/historicalTrades`.
fn backfill(
    rest: &impl RestTransport,
    symbol: &str,
    first: u64,
    last: u64,
) -> Result<Vec<IdTrade>, String> {
    let fetch = |from| rest::fetch_historical_trades(rest, symbol, from, PAGE);
    backfill_by_id("historicalTrades", symbol, first, last, fetch, |h| {
        let (price, qty) = price_qty(&h.price, &h.qty)?;
        Some(IdTrade {
            id: h.id,
            trade: Trade {
                event_time_ms: h.time,
                symbol: symbol.into(),
                trade_id: h.id,
                price,
                qty,
                trade_time_ms: h.time,
                buyer_is_maker: h.is_buyer_maker,
            },
        })
    })
}

/// Aggregate trades `first..=last` of `symbol` from `GET /api/v3/aggTrades`, as trades.
fn backfill_agg(
    rest: &impl RestTransport,
    symbol: &str,
    first: u64,
    last: u64,
) -> Result<Vec<IdTrade>, String> {
    let fetch = |from| rest::fetch_agg_trades(rest, symbol, from, PAGE);
    backfill_by_id("aggTrades", symbol, first, last, fetch, |a| {
        let (price, qty) = price_qty(&a.price, &a.qty)?;
        let agg = AggTrade {
            event_time_ms: a.time,
            symbol: symbol.into(),
            agg_id: a.agg_id,
            price,
            qty,
            first_trade_id: a.first_trade_id,
            last_trade_id: a.last_trade_id,
            trade_time_ms: a.time,
            buyer_is_maker: a.is_buyer_maker,
        };
        Some(IdTrade {
            id: agg.agg_id,
            trade: agg.as_trade(),
        })
    })
}

/// The answer to `request` when it could not be made at all.
pub fn failed(request: &FetchRequest, reason: String) -> FetchAnswer {
    match request {
        FetchRequest::Trades { .. } => FetchAnswer::Trades(Err(reason)),
        FetchRequest::DepthSnapshot { .. } => FetchAnswer::DepthSnapshot(Err(reason)),
    }
}
