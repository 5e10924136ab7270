//! The replay server's Binance-compatible REST side, answered from its captures.
//!
//! `GET /api/v3/klines` serves bars built from the trades that happened before the
//! replayed stream starts (the "history" captures), as Binance would have at that moment.
//! `GET /api/v3/historicalTrades` serves any trade of the history and streamed captures by
//! ID, so a client can fill gaps in what it received.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::depth::DepthIndex;
use super::trade_log::{AggPoint, Captured, TradeLog, TradePoint, TradeStore};
use crate::market::binance::{parse_combined, MarketEvent};
use crate::market::capture::{file_instrument, CaptureError, CaptureReader};
use crate::market::rest::{interval_ms, MAX_KLINES};
use crate::market::Symbol;

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

/// Trades per symbol, every capture's by trade ID (historical trades), aggregated
/// (aggTrades: consecutive trades with the same time, price and side; aggregate IDs count
/// on from the first trade ID of the captures) and the history captures' as klines.
#[derive(Debug, Default)]
pub struct RestIndex {
    trades: HashMap<String, TradeLog>,
    pub depth: DepthIndex,
    /// The streamed files holding each instrument's diffs (by the instrument its depth
    /// stream names, lower case), for reading them again (`replay::depth_reread`).
    diff_files: HashMap<Symbol, Vec<PathBuf>>,
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
    ///
    /// Instruments are indexed on as many threads as there are cores, each instrument's
    /// files together on one (history first), its trades sealed before that thread reads
    /// the next instrument: a thread holds one instrument's raw trades at a time. The index
    /// is the same whatever the threads; should one symbol's files be named apart (two
    /// instruments by name), it is built again on one thread.
    pub fn build(history: &[PathBuf], streamed: &[PathBuf]) -> Result<Self, CaptureError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::build_on(history, streamed, cores)
    }

    /// [`build`](Self::build) on at most `cores` threads.
    fn build_on(
        history: &[PathBuf],
        streamed: &[PathBuf],
        cores: usize,
    ) -> Result<Self, CaptureError> {
        let mut files: Vec<(&PathBuf, bool)> = history
            .iter()
            .map(|p| (p, true))
            .chain(streamed.iter().map(|p| (p, false)))
            .collect();
        files.sort_by_key(|(p, history)| (file_instrument(p), !*history));
        let instruments: Vec<&[(&PathBuf, bool)]> = files
            .chunk_by(|a, b| file_instrument(a.0) == file_instrument(b.0))
            .collect();
        let threads = cores.min(instruments.len());
        if threads <= 1 {
            return Self::build_part(&instruments, &AtomicUsize::new(0));
        }
        let next = AtomicUsize::new(0);
        let parts: Vec<Result<Self, CaptureError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| scope.spawn(|| Self::build_part(&instruments, &next)))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join().unwrap_or_else(|_| {
                        Err(CaptureError::Io {
                            path: "replay REST index".into(),
                            source: std::io::Error::other("an indexing thread panicked"),
                        })
                    })
                })
                .collect()
        });
        let mut index = Self::default();
        for part in parts {
            let part = part?;
            for (instrument, files) in part.diff_files {
                index
                    .diff_files
                    .entry(instrument)
                    .or_default()
                    .extend(files);
            }
            let disjoint = index.depth.absorb(part.depth)
                && part
                    .trades
                    .into_iter()
                    .all(|(symbol, log)| index.trades.insert(symbol, log).is_none());
            if !disjoint {
                return Self::build_part(&instruments, &AtomicUsize::new(0));
            }
        }
        release_freed_memory();
        Ok(index)
    }

    /// Index the instruments `next` hands out until there are none left.
    fn build_part(
        instruments: &[&[(&PathBuf, bool)]],
        next: &AtomicUsize,
    ) -> Result<Self, CaptureError> {
        let mut index = Self::default();
        let mut store = TradeStore::new().map_err(store_error)?;
        let mut captured: HashMap<Symbol, Vec<Captured>> = HashMap::new();
        while let Some(files) = instruments.get(next.fetch_add(1, Ordering::Relaxed)) {
            for &(path, before_stream) in files.iter() {
                index.add_file(path, before_stream, &mut captured)?;
            }
            index.seal(&mut captured, &mut store)?;
        }
        Ok(index)
    }

    /// Read one capture file into the depth books and `captured` trades.
    fn add_file(
        &mut self,
        path: &Path,
        before_stream: bool,
        captured: &mut HashMap<Symbol, Vec<Captured>>,
    ) -> Result<(), CaptureError> {
        let mut reader = CaptureReader::open(path)?;
        // A capture file holds one symbol; its REST snapshot line does not name it.
        let mut file_symbol: Option<String> = None;
        let mut unnamed_snapshot: Option<String> = None;
        let mut book_named = false;
        let mut diff_instrument = Symbol::default();
        while let Some(line) = reader.next_line()? {
            let Some(stream) = line.stream() else {
                match &file_symbol {
                    Some(sym) => {
                        self.depth
                            .add_line(Some(sym), &line.json, false, before_stream);
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
                    self.depth.add_line(Some(&sym), &json, false, before_stream);
                }
                file_symbol = Some(sym);
            }
            if stream.contains("@depth") {
                if !before_stream {
                    self.note_diff_file(&line.json, path, &mut diff_instrument);
                }
                // A streamed file's diffs are applied as they are streamed: the first one
                // read names its book, the rest wait for the stream.
                if before_stream || !book_named {
                    book_named = self.depth.add_line(None, &line.json, true, before_stream);
                }
                continue;
            }
            if !stream.ends_with("@trade") {
                continue;
            }
            if let Ok(MarketEvent::Trade(t)) = parse_combined(&line.json) {
                captured.entry(t.symbol).or_default().push(Captured {
                    trade: TradePoint {
                        id: t.trade_id,
                        time_ms: t.trade_time_ms,
                        price: t.price,
                        qty: t.qty,
                        buyer_is_maker: t.buyer_is_maker,
                    },
                    history: before_stream,
                });
            }
        }
        self.depth.finish_file();
        Ok(())
    }

    /// Record that the streamed file `path` holds a diff of the instrument `json`'s stream
    /// names, if it is a diff; `last` is the instrument recorded last for this file.
    fn note_diff_file(&mut self, json: &str, path: &Path, last: &mut Symbol) {
        let Some(instrument) = super::depth::streamed_diff_instrument(json) else {
            return;
        };
        if last.eq_ignore_ascii_case(instrument) {
            return;
        }
        *last = Symbol::from(instrument.to_ascii_lowercase());
        let files = self.diff_files.entry(last.clone()).or_default();
        if !files.iter().any(|f| f == path) {
            files.push(path.to_path_buf());
        }
    }

    /// The streamed files holding the diffs of `instrument` (any case), grouped as the
    /// replay merges them: read in that order, its diffs come in the order it streamed them.
    pub fn diff_files(&self, instrument: &str) -> Vec<Vec<PathBuf>> {
        let files = self
            .diff_files
            .get(instrument.to_ascii_lowercase().as_str())
            .map_or(&[][..], Vec::as_slice);
        crate::market::capture::group_by_instrument(files)
    }

    /// Seal the trades read so far into their symbols' logs (with what a log of the same
    /// symbol already holds, should its files be named apart).
    fn seal(
        &mut self,
        captured: &mut HashMap<Symbol, Vec<Captured>>,
        store: &mut TradeStore,
    ) -> Result<(), CaptureError> {
        for (symbol, mut trades) in captured.drain() {
            if let Some(log) = self.trades.remove(symbol.as_str()) {
                trades.extend(log.captured().map_err(store_error)?);
            }
            let log = TradeLog::build(trades, store).map_err(store_error)?;
            self.trades.insert(symbol.to_string(), log);
        }
        Ok(())
    }

    /// The aggregate trade that `trade_id` of `symbol` completes, if it is the last of one.
    pub fn agg_completed_by(
        &self,
        symbol: &str,
        trade_id: u64,
    ) -> std::io::Result<Option<AggPoint>> {
        match self.trades.get(symbol) {
            Some(log) => log.agg_completed_by(trade_id),
            None => Ok(None),
        }
    }

    /// Answer `path?query`.
    pub fn handle(&self, target: &str) -> RestResponse {
        let (path, params) = split_target(target);
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
        let (log, range) =
            match page_by_id(params, &self.trades, TradeLog::agg_count, |log, from| {
                Ok(log.first_agg_at_or_after(from))
            }) {
                Ok(page) => page,
                Err(e) => return e,
            };
        match range.map(|k| log.agg(k).map(|a| a.json())).collect() {
            Ok(items) => json_array(items),
            Err(e) => internal_error(&e),
        }
    }

    /// Binance `historicalTrades`: up to `limit` (default 500, max 1000) trades from
    /// `fromId` (default: the most recent ones).
    fn historical_trades(&self, params: &HashMap<&str, &str>) -> RestResponse {
        let (log, range) = match page_by_id(
            params,
            &self.trades,
            TradeLog::len,
            TradeLog::first_at_or_after,
        ) {
            Ok(page) => page,
            Err(e) => return e,
        };
        let trades = match log.read(range) {
            Ok(trades) => trades,
            Err(e) => return internal_error(&e),
        };
        json_array(trades.into_iter().map(|(t, _)| {
                format!(
                    "{{\"id\":{},\"price\":\"{:.8}\",\"qty\":\"{:.8}\",\"quoteQty\":\"{:.8}\",\"time\":{},\"isBuyerMaker\":{},\"isBestMatch\":true}}",
                    t.id,
                    t.price,
                    t.qty,
                    t.price * t.qty,
                    t.time_ms,
                    t.buyer_is_maker
                )
            })
            .collect())
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
        let scanned = trades.scan(|t, history| {
            let open = t.time_ms.div_euclid(step) * step;
            if !history || start.is_some_and(|s| open < s) || end.is_some_and(|e| open > e) {
                return;
            }
            let taker_base = if t.buyer_is_maker { 0.0 } else { t.qty };
            // Trades come in ID order, which may step back in time across a bar's edge.
            let at = bars.iter().rposition(|b| b.open_ms <= open);
            match at {
                Some(k) if bars[k].open_ms == open => {
                    let b = &mut bars[k];
                    b.high = b.high.max(t.price);
                    b.low = b.low.min(t.price);
                    b.close = t.price;
                    b.volume += t.qty;
                    b.quote_volume += t.price * t.qty;
                    b.trades += 1;
                    b.taker_base += taker_base;
                }
                other => bars.insert(
                    other.map_or(0, |k| k + 1),
                    KlineBar {
                        open_ms: open,
                        open: t.price,
                        high: t.price,
                        low: t.price,
                        close: t.price,
                        volume: t.qty,
                        quote_volume: t.price * t.qty,
                        trades: 1,
                        taker_base,
                    },
                ),
            }
        });
        if let Err(e) = scanned {
            return internal_error(&e);
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

    /// The symbol of a `GET /api/v3/depth` target, if it is one and names it.
    pub fn depth_symbol(target: &str) -> Option<&str> {
        let (path, params) = split_target(target);
        (path == "/api/v3/depth")
            .then(|| params.get("symbol").copied())
            .flatten()
    }
}

/// A request target's path and query parameters.
fn split_target(target: &str) -> (&str, HashMap<&str, &str>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    (path, params)
}

/// The page a Binance ID-paged endpoint answers: `symbol` (required), `limit` (default
/// 500, 1..=1000) items from `fromId` (default: the most recent ones), as the symbol's log
/// and the range of item positions (`count` items in all; `find` gives the position of the
/// first at or after an ID).
fn page_by_id<'a>(
    params: &HashMap<&str, &str>,
    index: &'a HashMap<String, TradeLog>,
    count: impl Fn(&TradeLog) -> usize,
    find: impl Fn(&TradeLog, u64) -> std::io::Result<usize>,
) -> Result<(&'a TradeLog, std::ops::Range<usize>), RestResponse> {
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
    let Some(log) = index.get(&symbol.to_ascii_uppercase()) else {
        return Err(RestResponse::error(400, -1121, "Invalid symbol."));
    };
    let len = count(log);
    let start = match params.get("fromId").map(|v| v.parse::<u64>()) {
        None => len.saturating_sub(limit),
        Some(Ok(from)) => find(log, from).map_err(|e| internal_error(&e))?,
        Some(Err(_)) => {
            return Err(RestResponse::error(
                400,
                -1100,
                "Illegal characters found in parameter 'fromId'.",
            ))
        }
    };
    Ok((log, start..len.min(start + limit)))
}

/// Hand the memory the build freed (each instrument's raw trades and records) back to the
/// system: glibc keeps it otherwise, and the server would hold the build's high-water mark
/// for as long as it runs.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The trade store could not be read: Binance's answer to an internal failure.
fn internal_error(e: &std::io::Error) -> RestResponse {
    tracing::error!(error = %e, "replay trade store unreadable");
    RestResponse::error(
        500,
        -1000,
        "An unknown error occurred while processing the request.",
    )
}

/// The trade store could not be written while indexing.
fn store_error(source: std::io::Error) -> CaptureError {
    CaptureError::Io {
        path: format!("trade store in {}", std::env::temp_dir().display()),
        source,
    }
}

fn json_array(items: Vec<String>) -> RestResponse {
    RestResponse {
        status: 200,
        body: format!("[{}]", items.join(",")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::rest::parse_klines;

    fn trade(id: u64, time_ms: i64, price: f64, qty: f64, maker: bool) -> Captured {
        Captured {
            trade: TradePoint {
                id,
                time_ms,
                price,
                qty,
                buyer_is_maker: maker,
            },
            history: true,
        }
    }

    fn index_of(trades: Vec<Captured>) -> RestIndex {
        RestIndex {
            trades: HashMap::from([(
                "BTCUSDT".to_string(),
                TradeLog::build(trades, &mut TradeStore::new().unwrap()).unwrap(),
            )]),
            depth: DepthIndex::default(),
            diff_files: HashMap::new(),
        }
    }

    fn three() -> Vec<Captured> {
        vec![
            trade(1, 1000, 10.0, 1.0, false),
            trade(2, 1500, 12.0, 2.0, true),
            trade(3, 3200, 11.0, 1.0, true),
        ]
    }

    fn index() -> RestIndex {
        index_of(three())
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
        let mut trades = three();
        trades.push(trade(4, 3200, 11.0, 2.0, true));
        let i = index_of(trades);
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
        assert_eq!(
            i.agg_completed_by("BTCUSDT", 4).unwrap().map(|a| a.agg_id),
            Some(3)
        );
        assert!(
            i.agg_completed_by("BTCUSDT", 3).unwrap().is_none(),
            "3 does not end its group"
        );
        let frame = i
            .agg_completed_by("BTCUSDT", 4)
            .unwrap()
            .unwrap()
            .frame("BTCUSDT");
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

    fn bundled(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("data/binance")
            .join(name)
    }

    /// What an index answers for a symbol, endpoint by endpoint.
    fn answers(index: &RestIndex, symbol: &str) -> Vec<RestResponse> {
        [
            format!("/api/v3/depth?symbol={symbol}&limit=5000"),
            format!("/api/v3/aggTrades?symbol={symbol}&limit=1000"),
            format!("/api/v3/aggTrades?symbol={symbol}&fromId=1&limit=1000"),
            format!("/api/v3/historicalTrades?symbol={symbol}&limit=1000"),
            format!("/api/v3/klines?symbol={symbol}&interval=1m&limit=1000"),
        ]
        .iter()
        .map(|target| index.handle(target))
        .collect()
    }

    /// Built on several threads, or again on one when a symbol's files are named apart,
    /// the index answers exactly as one built on one thread.
    #[test]
    fn an_index_built_on_several_threads_answers_as_one_built_on_one() {
        let history = vec![
            bundled("btcusdt_20240808.gz"),
            bundled("ethusdt_20240808.gz"),
        ];
        let streamed = vec![
            bundled("btcusdt_20240809.gz"),
            bundled("ethusdt_20240809.gz"),
        ];
        let one = RestIndex::build_on(&history, &streamed, 1).unwrap();
        let many = RestIndex::build(&history, &streamed).unwrap();
        for symbol in ["BTCUSDT", "ETHUSDT"] {
            let expected = answers(&one, symbol);
            assert!(expected.iter().all(|a| a.status == 200 && a.body.len() > 2));
            assert_eq!(answers(&many, symbol), expected, "{symbol}");
        }
        // The second BTCUSDT day under another name: two instruments by name, one symbol.
        let dir = tempfile::tempdir().unwrap();
        let renamed = dir.path().join("xbtc_20240809.gz");
        std::fs::copy(&streamed[0], &renamed).unwrap();
        let apart = RestIndex::build(&history, &[renamed, streamed[1].clone()]).unwrap();
        assert_eq!(answers(&apart, "BTCUSDT"), answers(&one, "BTCUSDT"));
        assert_eq!(answers(&apart, "ETHUSDT"), answers(&one, "ETHUSDT"));
    }
}
