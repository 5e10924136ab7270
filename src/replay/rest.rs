//! The replay server's Binance-compatible REST side, answered from its captures.
//!
//! `GET /api/v3/klines` serves bars built from the trades that happened before the
//! replayed stream starts (the "history" captures), as Binance would have at that moment.
//! `GET /api/v3/historicalTrades` serves any trade of the history and streamed captures by
//! ID, so a client can fill gaps in what it received.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::depth::DepthIndex;
use crate::market::binance::{parse_combined, MarketEvent};
use crate::market::capture::{CaptureError, CaptureReader};
use crate::market::rest::{interval_ms, MAX_KLINES};

#[derive(Debug, Clone, Copy)]
struct TradePoint {
    id: u64,
    time_ms: i64,
    price: f64,
    qty: f64,
    buyer_is_maker: bool,
}

/// One kline being built from trades.
struct KlineBar {
    open_ms: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    quote_volume: f64,
    trades: u64,
    taker_base: f64,
}

/// Trades of one taker order at one price and time, as Binance aggregates them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggPoint {
    pub agg_id: u64,
    pub price: f64,
    pub qty: f64,
    pub first_trade_id: u64,
    pub last_trade_id: u64,
    pub time_ms: i64,
    pub buyer_is_maker: bool,
}

impl AggPoint {
    fn json(&self) -> String {
        format!(
            "{{\"a\":{},\"p\":\"{:.8}\",\"q\":\"{:.8}\",\"f\":{},\"l\":{},\"T\":{},\"m\":{},\"M\":true}}",
            self.agg_id,
            self.price,
            self.qty,
            self.first_trade_id,
            self.last_trade_id,
            self.time_ms,
            self.buyer_is_maker
        )
    }

    /// The `<symbol>@aggTrade` combined-stream frame.
    pub fn frame(&self, symbol: &str) -> String {
        format!(
            "{{\"stream\":\"{}@aggTrade\",\"data\":{{\"e\":\"aggTrade\",\"E\":{},\"s\":\"{symbol}\",{}",
            symbol.to_ascii_lowercase(),
            self.time_ms,
            &self.json()[1..]
        ) + "}"
    }
}

/// Trades per symbol: the history captures' in time order (klines), every capture's by
/// trade ID (historical trades) and aggregated (aggTrades: consecutive trades with the same
/// time, price and side; aggregate IDs count on from the first trade ID of the captures).
#[derive(Debug, Default)]
pub struct RestIndex {
    trades: HashMap<String, Vec<TradePoint>>,
    by_id: HashMap<String, Vec<TradePoint>>,
    aggs: HashMap<String, Vec<AggPoint>>,
    pub depth: DepthIndex,
}

/// An HTTP answer: status code and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestResponse {
    pub status: u16,
    pub body: String,
}

impl RestResponse {
    fn error(status: u16, code: i32, msg: &str) -> Self {
        Self {
            status,
            body: format!("{{\"code\":{code},\"msg\":\"{msg}\"}}"),
        }
    }
}

impl RestIndex {
    /// Index `history` (captures that precede the replayed stream) and `streamed` captures.
    pub fn build(history: &[PathBuf], streamed: &[PathBuf]) -> Result<Self, CaptureError> {
        let mut index = Self::default();
        for (path, before_stream) in history
            .iter()
            .map(|p| (p, true))
            .chain(streamed.iter().map(|p| (p, false)))
        {
            let mut reader = CaptureReader::open(path)?;
            // A capture file holds one symbol; its REST snapshot line does not name it.
            let mut file_symbol: Option<String> = None;
            let mut unnamed_snapshot: Option<String> = None;
            while let Some(line) = reader.next_line()? {
                let Some(stream) = line.stream() else {
                    match &file_symbol {
                        Some(sym) => {
                            index
                                .depth
                                .add_line(Some(sym), &line.json, false, before_stream)
                        }
                        None => unnamed_snapshot = Some(line.json),
                    }
                    continue;
                };
                if file_symbol.is_none() {
                    let sym = stream
                        .split('@')
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    if let Some(json) = unnamed_snapshot.take() {
                        index
                            .depth
                            .add_line(Some(&sym), &json, false, before_stream);
                    }
                    file_symbol = Some(sym);
                }
                if stream.contains("@depth") {
                    index.depth.add_line(None, &line.json, true, before_stream);
                    continue;
                }
                if !stream.ends_with("@trade") {
                    continue;
                }
                if let Ok(MarketEvent::Trade(t)) = parse_combined(&line.json) {
                    let point = TradePoint {
                        id: t.trade_id,
                        time_ms: t.trade_time_ms,
                        price: t.price,
                        qty: t.qty,
                        buyer_is_maker: t.buyer_is_maker,
                    };
                    if before_stream {
                        index
                            .trades
                            .entry(t.symbol.clone())
                            .or_default()
                            .push(point);
                    }
                    index.by_id.entry(t.symbol).or_default().push(point);
                }
            }
            index.depth.finish_file();
        }
        // Sorted and trimmed to their length: the index lives as long as the replay.
        for v in index.trades.values_mut() {
            v.sort_by_key(|t| t.time_ms);
            v.shrink_to_fit();
        }
        for v in index.by_id.values_mut() {
            v.sort_by_key(|t| t.id);
            v.dedup_by_key(|t| t.id);
            v.shrink_to_fit();
        }
        index.aggs = index
            .by_id
            .iter()
            .map(|(symbol, trades)| (symbol.clone(), aggregate(trades)))
            .collect();
        Ok(index)
    }

    /// The aggregate trade that `trade_id` of `symbol` completes, if it is the last of one.
    pub fn agg_completed_by(&self, symbol: &str, trade_id: u64) -> Option<&AggPoint> {
        let aggs = self.aggs.get(symbol)?;
        let i = aggs.partition_point(|a| a.last_trade_id < trade_id);
        aggs.get(i).filter(|a| a.last_trade_id == trade_id)
    }

    /// Answer `path?query`.
    pub fn handle(&self, target: &str) -> RestResponse {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let params: HashMap<&str, &str> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        match path {
            "/api/v3/ping" => RestResponse {
                status: 200,
                body: "{}".into(),
            },
            "/api/v3/klines" => self.klines(&params),
            "/api/v3/historicalTrades" => self.historical_trades(&params),
            "/api/v3/depth" => self.depth(&params),
            "/api/v3/aggTrades" => self.agg_trades(&params),
            _ => RestResponse::error(404, -1000, "Unknown endpoint."),
        }
    }

    /// Binance `depth`: the book at the point the replay has reached, `limit` levels per
    /// side (default 100; above 5000 it is cut to 5000, as Binance does).
    fn depth(&self, params: &HashMap<&str, &str>) -> RestResponse {
        let Some(symbol) = params.get("symbol") else {
            return RestResponse::error(400, -1102, "Mandatory parameter 'symbol' was not sent.");
        };
        let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
            None => 100,
            Some(Ok(l)) if l >= 1 => l.min(5000),
            Some(_) => return RestResponse::error(400, -1130, "Invalid limit."),
        };
        match self.depth.snapshot_json(symbol, limit) {
            Some(body) => RestResponse { status: 200, body },
            None => RestResponse::error(400, -1121, "Invalid symbol."),
        }
    }

    /// Binance `aggTrades`: up to `limit` (default 500, max 1000) aggregate trades from
    /// `fromId` (default: the most recent ones).
    fn agg_trades(&self, params: &HashMap<&str, &str>) -> RestResponse {
        match page_by_id(params, &self.aggs, |a| a.agg_id) {
            Ok(page) => json_array(page.iter().map(AggPoint::json)),
            Err(e) => e,
        }
    }

    /// Binance `historicalTrades`: up to `limit` (default 500, max 1000) trades from
    /// `fromId` (default: the most recent ones).
    fn historical_trades(&self, params: &HashMap<&str, &str>) -> RestResponse {
        match page_by_id(params, &self.by_id, |t| t.id) {
            Ok(page) => json_array(page.iter().map(|t| {
                format!(
                    "{{\"id\":{},\"price\":\"{:.8}\",\"qty\":\"{:.8}\",\"quoteQty\":\"{:.8}\",\"time\":{},\"isBuyerMaker\":{},\"isBestMatch\":true}}",
                    t.id,
                    t.price,
                    t.qty,
                    t.price * t.qty,
                    t.time_ms,
                    t.buyer_is_maker
                )
            })),
            Err(e) => e,
        }
    }

    fn klines(&self, params: &HashMap<&str, &str>) -> RestResponse {
        let Some(symbol) = params.get("symbol") else {
            return RestResponse::error(400, -1102, "Mandatory parameter 'symbol' was not sent.");
        };
        let Some(step) = params.get("interval").and_then(|i| interval_ms(i)) else {
            return RestResponse::error(400, -1120, "Invalid interval.");
        };
        let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
            None => 500,
            Some(Ok(l)) if (1..=MAX_KLINES).contains(&l) => l,
            Some(_) => return RestResponse::error(400, -1130, "Invalid limit."),
        };
        let bound = |name: &str| params.get(name).and_then(|v| v.parse::<i64>().ok());
        let (start, end) = (bound("startTime"), bound("endTime"));
        let Some(trades) = self.trades.get(&symbol.to_ascii_uppercase()) else {
            return RestResponse::error(400, -1121, "Invalid symbol.");
        };
        let mut bars: Vec<KlineBar> = Vec::new();
        for t in trades {
            let open = t.time_ms.div_euclid(step) * step;
            if start.is_some_and(|s| open < s) || end.is_some_and(|e| open > e) {
                continue;
            }
            let taker_base = if t.buyer_is_maker { 0.0 } else { t.qty };
            match bars.last_mut() {
                Some(b) if b.open_ms == open => {
                    b.high = b.high.max(t.price);
                    b.low = b.low.min(t.price);
                    b.close = t.price;
                    b.volume += t.qty;
                    b.quote_volume += t.price * t.qty;
                    b.trades += 1;
                    b.taker_base += taker_base;
                }
                _ => bars.push(KlineBar {
                    open_ms: open,
                    open: t.price,
                    high: t.price,
                    low: t.price,
                    close: t.price,
                    volume: t.qty,
                    quote_volume: t.price * t.qty,
                    trades: 1,
                    taker_base,
                }),
            }
        }
        let skip = bars.len().saturating_sub(limit);
        let mut body = String::from("[");
        for (i, b) in bars.iter().skip(skip).enumerate() {
            if i > 0 {
                body.push(',');
            }
            let _ = write!(
                body,
                "[{},\"{:.8}\",\"{:.8}\",\"{:.8}\",\"{:.8}\",\"{:.8}\",{},\"{:.8}\",{},\"{:.8}\",\"{:.8}\",\"0\"]",
                b.open_ms,
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume,
                b.open_ms + step - 1,
                b.quote_volume,
                b.trades,
                b.taker_base,
                b.taker_base * b.close
            );
        }
        body.push(']');
        RestResponse { status: 200, body }
    }
}

/// The page a Binance ID-paged endpoint answers: `symbol` (required), `limit` (default
/// 500, 1..=1000) items from `fromId` (default: the most recent ones), by `id` order.
fn page_by_id<'a, T>(
    params: &HashMap<&str, &str>,
    index: &'a HashMap<String, Vec<T>>,
    id: impl Fn(&T) -> u64,
) -> Result<&'a [T], RestResponse> {
    let Some(symbol) = params.get("symbol") else {
        return Err(RestResponse::error(
            400,
            -1102,
            "Mandatory parameter 'symbol' was not sent.",
        ));
    };
    let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => 500,
        Some(Ok(l)) if (1..=MAX_KLINES).contains(&l) => l,
        Some(_) => return Err(RestResponse::error(400, -1130, "Invalid limit.")),
    };
    let Some(items) = index.get(&symbol.to_ascii_uppercase()) else {
        return Err(RestResponse::error(400, -1121, "Invalid symbol."));
    };
    let start = match params.get("fromId").map(|v| v.parse::<u64>()) {
        None => items.len().saturating_sub(limit),
        Some(Ok(from)) => items.partition_point(|t| id(t) < from),
        Some(Err(_)) => {
            return Err(RestResponse::error(
                400,
                -1100,
                "Illegal characters found in parameter 'fromId'.",
            ))
        }
    };
    let end = items.len().min(start + limit);
    Ok(&items[start..end])
}

fn json_array(items: impl Iterator<Item = String>) -> RestResponse {
    let items: Vec<String> = items.collect();
    RestResponse {
        status: 200,
        body: format!("[{}]", items.join(",")),
    }
}

/// Consecutive trades (by ID) with the same time, price and side form one aggregate trade.
fn aggregate(trades: &[TradePoint]) -> Vec<AggPoint> {
    let base = trades.first().map_or(0, |t| t.id);
    let mut out: Vec<AggPoint> = Vec::new();
    for t in trades {
        match out.last_mut() {
            Some(a)
                if a.last_trade_id + 1 == t.id
                    && a.time_ms == t.time_ms
                    && a.price == t.price
                    && a.buyer_is_maker == t.buyer_is_maker =>
            {
                a.last_trade_id = t.id;
                a.qty += t.qty;
            }
            _ => out.push(AggPoint {
                agg_id: base + out.len() as u64,
                price: t.price,
                qty: t.qty,
                first_trade_id: t.id,
                last_trade_id: t.id,
                time_ms: t.time_ms,
                buyer_is_maker: t.buyer_is_maker,
            }),
        }
    }
    out.shrink_to_fit();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::rest::parse_klines;

    fn index() -> RestIndex {
        let mut trades = HashMap::new();
        trades.insert(
            "BTCUSDT".to_string(),
            vec![
                TradePoint {
                    id: 1,
                    time_ms: 1000,
                    price: 10.0,
                    qty: 1.0,
                    buyer_is_maker: false,
                },
                TradePoint {
                    id: 2,
                    time_ms: 1500,
                    price: 12.0,
                    qty: 2.0,
                    buyer_is_maker: true,
                },
                TradePoint {
                    id: 3,
                    time_ms: 3200,
                    price: 11.0,
                    qty: 1.0,
                    buyer_is_maker: true,
                },
            ],
        );
        RestIndex {
            aggs: trades
                .iter()
                .map(|(s, t)| (s.clone(), aggregate(t)))
                .collect(),
            by_id: trades.clone(),
            trades,
            depth: DepthIndex::default(),
        }
    }

    #[test]
    fn klines_are_binance_shaped_and_parse_back() {
        let r = index().handle("/api/v3/klines?symbol=BTCUSDT&interval=1s&limit=1000");
        assert_eq!(r.status, 200);
        let k = parse_klines(&r.body).unwrap();
        assert_eq!(k.len(), 2, "{}", r.body);
        assert_eq!(
            (k[0].open_time_ms, k[0].close, k[0].trades),
            (1000, 12.0, 2)
        );
        assert_eq!((k[1].open_time_ms, k[1].close_time_ms), (3000, 3999));
        let last = index().handle("/api/v3/klines?symbol=BTCUSDT&interval=1s&limit=1");
        assert_eq!(parse_klines(&last.body).unwrap()[0].open_time_ms, 3000);
    }

    #[test]
    fn agg_trades_group_same_time_price_and_side() {
        let mut i = index();
        let btc = i.by_id.get_mut("BTCUSDT").unwrap();
        btc.push(TradePoint {
            id: 4,
            time_ms: 3200,
            price: 11.0,
            qty: 2.0,
            buyer_is_maker: true,
        });
        i.aggs = i
            .by_id
            .iter()
            .map(|(s, t)| (s.clone(), aggregate(t)))
            .collect();
        let r = i.handle("/api/v3/aggTrades?symbol=BTCUSDT&fromId=2");
        let aggs: Vec<crate::market::rest::RestAggTrade> = serde_json::from_str(&r.body).unwrap();
        assert_eq!(aggs.len(), 2, "{}", r.body);
        assert_eq!(
            (
                aggs[1].agg_id,
                aggs[1].first_trade_id,
                aggs[1].last_trade_id
            ),
            (3, 3, 4)
        );
        assert_eq!(aggs[1].qty, "3.00000000");
        assert_eq!(i.agg_completed_by("BTCUSDT", 4).map(|a| a.agg_id), Some(3));
        assert!(
            i.agg_completed_by("BTCUSDT", 3).is_none(),
            "3 does not end its group"
        );
        let frame = i.agg_completed_by("BTCUSDT", 4).unwrap().frame("BTCUSDT");
        match crate::market::parse_combined(&frame).unwrap() {
            MarketEvent::AggTrade(a) => assert_eq!((a.agg_id, a.qty), (3, 3.0)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_requests_get_binance_errors() {
        let i = index();
        assert_eq!(i.handle("/api/v3/klines?symbol=XX&interval=1s").status, 400);
        assert_eq!(
            i.handle("/api/v3/klines?symbol=BTCUSDT&interval=7s").status,
            400
        );
        assert_eq!(
            i.handle("/api/v3/klines?symbol=BTCUSDT&interval=1s&limit=0")
                .status,
            400
        );
        assert_eq!(i.handle("/nope").status, 404);
    }
}
