//! Typed Binance spot WebSocket events and a parser that never panics.
//!
//! Only the combined-stream envelope `{"stream": "...", "data": {...}}` is parsed here;
//! the stream suffix picks the typed payload.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::depth::DepthUpdate;
use super::Symbol;

/// Streams the engine understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Trade,
    /// Trades aggregated by taker order and price (`aggTrade`).
    AggTrade,
    BookTicker,
    /// Diff-depth updates every 100 ms (`depth@100ms`), kept in a local book.
    Depth,
}

impl StreamKind {
    /// From the part after `@` in a stream name (`btcusdt@trade` -> `trade`).
    pub fn from_suffix(suffix: &str) -> Option<Self> {
        match suffix {
            "trade" => Some(Self::Trade),
            "aggTrade" => Some(Self::AggTrade),
            "bookTicker" => Some(Self::BookTicker),
            "depth@100ms" => Some(Self::Depth),
            _ => None,
        }
    }

    /// How many kinds there are, and each one's place among them (tables by kind).
    pub const COUNT: usize = 4;
    pub const ALL: [StreamKind; Self::COUNT] =
        [Self::Trade, Self::AggTrade, Self::BookTicker, Self::Depth];

    pub fn index(self) -> usize {
        match self {
            Self::Trade => 0,
            Self::AggTrade => 1,
            Self::BookTicker => 2,
            Self::Depth => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trade => "trade",
            Self::AggTrade => "aggTrade",
            Self::BookTicker => "bookTicker",
            Self::Depth => "depth@100ms",
        }
    }
}

/// One kline (candlestick): open time and close price are what the models need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kline {
    pub open_time_ms: i64,
    pub close_time_ms: i64,
    pub close: f64,
    pub trades: u64,
}

/// One executed trade (`<symbol>@trade`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Trade {
    #[serde(rename = "E")]
    pub event_time_ms: i64,
    #[serde(rename = "s")]
    pub symbol: Symbol,
    #[serde(rename = "t")]
    pub trade_id: u64,
    #[serde(rename = "p", deserialize_with = "decimal_str")]
    pub price: f64,
    #[serde(rename = "q", deserialize_with = "decimal_str")]
    pub qty: f64,
    #[serde(rename = "T")]
    pub trade_time_ms: i64,
    #[serde(rename = "m")]
    pub buyer_is_maker: bool,
}

/// Trades of one taker order at one price (`<symbol>@aggTrade`): trades `f..=l`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AggTrade {
    #[serde(rename = "E")]
    pub event_time_ms: i64,
    #[serde(rename = "s")]
    pub symbol: Symbol,
    #[serde(rename = "a")]
    pub agg_id: u64,
    #[serde(rename = "p", deserialize_with = "decimal_str")]
    pub price: f64,
    #[serde(rename = "q", deserialize_with = "decimal_str")]
    pub qty: f64,
    #[serde(rename = "f")]
    pub first_trade_id: u64,
    #[serde(rename = "l")]
    pub last_trade_id: u64,
    #[serde(rename = "T")]
    pub trade_time_ms: i64,
    #[serde(rename = "m")]
    pub buyer_is_maker: bool,
}

impl AggTrade {
    /// As one trade for the models: its last trade ID, the total quantity.
    pub fn as_trade(&self) -> Trade {
        Trade {
            event_time_ms: self.event_time_ms,
            symbol: self.symbol.clone(),
            trade_id: self.last_trade_id,
            price: self.price,
            qty: self.qty,
            trade_time_ms: self.trade_time_ms,
            buyer_is_maker: self.buyer_is_maker,
        }
    }
}

/// Best bid and offer (`<symbol>@bookTicker`). This stream carries no event time.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BookTicker {
    #[serde(rename = "u")]
    pub update_id: u64,
    #[serde(rename = "s")]
    pub symbol: Symbol,
    #[serde(rename = "b", deserialize_with = "decimal_str")]
    pub bid_price: f64,
    #[serde(rename = "B", deserialize_with = "decimal_str")]
    pub bid_qty: f64,
    #[serde(rename = "a", deserialize_with = "decimal_str")]
    pub ask_price: f64,
    #[serde(rename = "A", deserialize_with = "decimal_str")]
    pub ask_qty: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MarketEvent {
    Trade(Trade),
    AggTrade(AggTrade),
    BookTicker(BookTicker),
    Depth(DepthUpdate),
}

impl MarketEvent {
    pub fn symbol(&self) -> &str {
        match self {
            Self::Trade(t) => &t.symbol,
            Self::AggTrade(a) => &a.symbol,
            Self::BookTicker(b) => &b.symbol,
            Self::Depth(d) => &d.symbol,
        }
    }

    pub fn kind(&self) -> StreamKind {
        match self {
            Self::Trade(_) => StreamKind::Trade,
            Self::AggTrade(_) => StreamKind::AggTrade,
            Self::BookTicker(_) => StreamKind::BookTicker,
            Self::Depth(_) => StreamKind::Depth,
        }
    }
}

/// Why a frame was rejected. `code()` is the stable label used in logs and metrics.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MarketDataError {
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error("unsupported stream {0:?}")]
    UnknownStream(String),
    #[error("unknown symbol {0:?}")]
    UnknownSymbol(String),
    #[error("stream {stream:?} does not match symbol {symbol:?}")]
    SymbolMismatch { stream: String, symbol: String },
    #[error("non-finite number in field {0}")]
    NonFinite(&'static str),
    #[error("non-positive price in field {0}")]
    NonPositivePrice(&'static str),
    #[error("negative quantity in field {0}")]
    NegativeQuantity(&'static str),
    #[error("crossed book: bid {bid} >= ask {ask}")]
    CrossedBook { bid: f64, ask: f64 },
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    Oversized { size: usize, limit: usize },
    #[error("binary frame where text was expected")]
    BinaryFrame,
}

impl MarketDataError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "MALFORMED_JSON",
            Self::UnknownStream(_) => "UNKNOWN_STREAM",
            Self::UnknownSymbol(_) => "UNKNOWN_SYMBOL",
            Self::SymbolMismatch { .. } => "SYMBOL_MISMATCH",
            Self::NonFinite(_) => "NON_FINITE_NUMBER",
            Self::NonPositivePrice(_) => "NON_POSITIVE_PRICE",
            Self::NegativeQuantity(_) => "NEGATIVE_QUANTITY",
            Self::CrossedBook { .. } => "CROSSED_BOOK",
            Self::Oversized { .. } => "OVERSIZED_FRAME",
            Self::BinaryFrame => "BINARY_FRAME",
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    stream: &'a str,
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(serde::Deserialize)]
struct Notice<'a> {
    #[serde(borrow)]
    e: std::borrow::Cow<'a, str>,
}

#[derive(serde::Deserialize)]
struct WrappedNotice<'a> {
    #[serde(borrow)]
    data: Notice<'a>,
}

/// Whether a frame is Binance's `serverShutdown` notice (bare, or wrapped as a combined
/// stream frame): the server will close this connection soon.
pub fn is_server_shutdown(text: &str) -> bool {
    let event = serde_json::from_str::<Notice<'_>>(text)
        .map(|n| n.e)
        .or_else(|_| serde_json::from_str::<WrappedNotice<'_>>(text).map(|w| w.data.e));
    event.is_ok_and(|e| e == "serverShutdown")
}

/// Parse one combined-stream frame into a validated, typed event.
pub fn parse_combined(text: &str) -> Result<MarketEvent, MarketDataError> {
    // Binance writes `{"stream":…,"data":…}` compactly: the data is then parsed once, into
    // its type (trades, quotes and depth written plainly in one pass over the bytes,
    // `market::compact`). Any other layout, and any frame that fails there,
    // takes the general path, so the outcome (errors included) is the general path's.
    if let Some(event) = compact_parts(text).and_then(|(stream, raw)| typed(stream, raw).ok()) {
        return Ok(event);
    }
    let env: Envelope<'_> =
        serde_json::from_str(text).map_err(|e| MarketDataError::Malformed(e.to_string()))?;
    typed(env.stream, env.data.get())
}

/// The stream name and the data's text of a frame laid out exactly as
/// `{"stream":"<name>","data":<data>}`; `None` for any other layout.
pub(crate) fn compact_parts(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("{\"stream\":\"")?;
    let (stream, rest) = rest.split_at(rest.find('"')?);
    if stream.contains('\\') {
        return None;
    }
    let data = rest.strip_prefix("\",\"data\":")?.strip_suffix('}')?;
    Some((stream, data))
}

/// The event of stream `stream` from its data's text `raw`, validated.
fn typed(stream: &str, raw: &str) -> Result<MarketEvent, MarketDataError> {
    let (stream_symbol, suffix) = stream
        .split_once('@')
        .ok_or_else(|| MarketDataError::UnknownStream(stream.to_string()))?;
    let kind = StreamKind::from_suffix(suffix)
        .ok_or_else(|| MarketDataError::UnknownStream(stream.to_string()))?;
    let event = match kind {
        StreamKind::Trade => {
            let t = data(raw, super::compact::trade)?;
            validate_trade(&t)?;
            MarketEvent::Trade(t)
        }
        StreamKind::AggTrade => {
            let a: AggTrade =
                serde_json::from_str(raw).map_err(|e| MarketDataError::Malformed(e.to_string()))?;
            positive_price(a.price, "p")?;
            non_negative_qty(a.qty, "q")?;
            if a.first_trade_id > a.last_trade_id {
                return Err(MarketDataError::Malformed(format!(
                    "aggTrade first trade {} after last {}",
                    a.first_trade_id, a.last_trade_id
                )));
            }
            MarketEvent::AggTrade(a)
        }
        StreamKind::BookTicker => {
            let b = data(raw, super::compact::book_ticker)?;
            validate_book_ticker(&b)?;
            MarketEvent::BookTicker(b)
        }
        StreamKind::Depth => {
            let d = data(raw, super::compact::depth_update)?;
            super::depth::validate_update(&d)?;
            MarketEvent::Depth(d)
        }
    };
    if !event.symbol().eq_ignore_ascii_case(stream_symbol) {
        return Err(MarketDataError::SymbolMismatch {
            stream: stream.to_string(),
            symbol: event.symbol().to_string(),
        });
    }
    Ok(event)
}

/// The data `raw` read in one pass when written plainly, by serde otherwise.
fn data<T: serde::de::DeserializeOwned>(
    raw: &str,
    one_pass: fn(&str) -> Option<T>,
) -> Result<T, MarketDataError> {
    match one_pass(raw) {
        Some(value) => Ok(value),
        None => serde_json::from_str(raw).map_err(|e| MarketDataError::Malformed(e.to_string())),
    }
}

fn validate_trade(t: &Trade) -> Result<(), MarketDataError> {
    positive_price(t.price, "p")?;
    non_negative_qty(t.qty, "q")
}

fn validate_book_ticker(b: &BookTicker) -> Result<(), MarketDataError> {
    positive_price(b.bid_price, "b")?;
    positive_price(b.ask_price, "a")?;
    non_negative_qty(b.bid_qty, "B")?;
    non_negative_qty(b.ask_qty, "A")?;
    if b.bid_price >= b.ask_price {
        return Err(MarketDataError::CrossedBook {
            bid: b.bid_price,
            ask: b.ask_price,
        });
    }
    Ok(())
}

fn positive_price(x: f64, field: &'static str) -> Result<(), MarketDataError> {
    if !x.is_finite() {
        Err(MarketDataError::NonFinite(field))
    } else if x <= 0.0 {
        Err(MarketDataError::NonPositivePrice(field))
    } else {
        Ok(())
    }
}

fn non_negative_qty(x: f64, field: &'static str) -> Result<(), MarketDataError> {
    if !x.is_finite() {
        Err(MarketDataError::NonFinite(field))
    } else if x < 0.0 {
        Err(MarketDataError::NegativeQuantity(field))
    } else {
        Ok(())
    }
}

/// Binance sends prices and quantities as decimal strings ("61556.04000000").
/// Rust's parser also accepts "NaN" and "inf"; the validators above reject those.
fn decimal_str<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let s: &str = Deserialize::deserialize(d)?;
    s.parse::<f64>()
        .map_err(|_| de::Error::invalid_value(de::Unexpected::Str(s), &"a decimal string"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn server_shutdown_notices_are_recognised_bare_and_wrapped() {
        assert!(is_server_shutdown(
            r#"{"e":"serverShutdown","E":1723161600000}"#
        ));
        assert!(is_server_shutdown(
            r#"{"stream":"btcusdt@trade","data":{"e":"serverShutdown","E":1}}"#
        ));
        assert!(!is_server_shutdown(r#"{"e":"trade","E":1}"#));
        assert!(!is_server_shutdown("not json"));
    }

    use super::*;

    const TRADE: &str = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161253900,"s":"BTCUSDT","t":3735683259,"p":"61556.04000000","q":"0.00100000","T":1723161253899,"m":true,"M":true}}"#;
    #[test]
    fn parses_agg_trades() {
        let text = r#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1723161600010,"s":"BTCUSDT","a":900,"p":"61000.10000000","q":"0.50000000","f":100,"l":103,"T":1723161600009,"m":false,"M":true}}"#;
        match parse_combined(text).unwrap() {
            MarketEvent::AggTrade(a) => {
                assert_eq!(
                    (a.agg_id, a.first_trade_id, a.last_trade_id),
                    (900, 100, 103)
                );
                let t = a.as_trade();
                assert_eq!((t.trade_id, t.qty, t.price), (103, 0.5, 61000.1));
            }
            other => panic!("{other:?}"),
        }
        let bad = text.replace("\"f\":100", "\"f\":104");
        assert_eq!(parse_combined(&bad).unwrap_err().code(), "MALFORMED_JSON");
    }

    /// The general path alone, to hold the compact path to it.
    fn general(text: &str) -> Result<MarketEvent, MarketDataError> {
        let env: Envelope<'_> =
            serde_json::from_str(text).map_err(|e| MarketDataError::Malformed(e.to_string()))?;
        typed(env.stream, env.data.get())
    }

    #[test]
    fn the_compact_path_agrees_with_the_general_one_on_every_layout() {
        let data = &TRADE[TRADE.find("{\"e\"").unwrap()..TRADE.len() - 1];
        for text in [
            TRADE.to_string(),
            format!("{{ \"stream\" : \"btcusdt@trade\" , \"data\" : {data} }}"),
            format!("{{\"stream\":\"btcusdt@trade\",\"data\": {data}\n}}"),
            format!("{{\"data\":{data},\"stream\":\"btcusdt@trade\"}}"),
            format!("{{\"stream\":\"btcusdt@trade\",\"data\":{data},\"x\":1}}"),
            format!("{{\"stream\":\"btcusdt@trade\",\"data\":{data},\"stream\":\"x@trade\"}}"),
            format!("{{\"stream\":\"btc\\u0075sdt@trade\",\"data\":{data}}}"),
            format!("{{\"stream\":\"ethusdt@trade\",\"data\":{data}}}"),
            format!("{{\"stream\":\"btcusdt@trade\",\"data\":{data}}}}}"),
            "{\"stream\":\"btcusdt@trade\",\"data\":{}}".to_string(),
            "{\"stream\":\"btcusdt@trade\",\"data\":}".to_string(),
            "{\"stream\":\"".to_string(),
        ] {
            assert_eq!(
                format!("{:?}", parse_combined(&text)),
                format!("{:?}", general(&text)),
                "{text}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn the_compact_path_agrees_with_the_general_one_on_any_byte_changed(
            at in 0usize..TRADE.len(),
            byte in 0x20u8..0x7f,
        ) {
            let mut bytes = TRADE.as_bytes().to_vec();
            bytes[at] = byte;
            let text = String::from_utf8(bytes).unwrap();
            proptest::prop_assert_eq!(
                format!("{:?}", parse_combined(&text)),
                format!("{:?}", general(&text))
            );
        }
    }

    const BOOK: &str = r#"{"stream":"ethusdt@bookTicker","data":{"u":35346513512,"s":"ETHUSDT","b":"2673.60000000","B":"1.00000000","a":"2673.61000000","A":"2.50000000"}}"#;

    #[test]
    fn parses_trade_and_book_ticker() {
        match parse_combined(TRADE).unwrap() {
            MarketEvent::Trade(t) => {
                assert_eq!(t.trade_id, 3735683259);
                assert_eq!(t.price, 61556.04);
                assert_eq!(t.qty, 0.001);
                assert_eq!(t.trade_time_ms, 1723161253899);
                assert!(t.buyer_is_maker);
            }
            other => panic!("{other:?}"),
        }
        match parse_combined(BOOK).unwrap() {
            MarketEvent::BookTicker(b) => {
                assert_eq!(b.bid_price, 2673.6);
                assert_eq!(b.ask_qty, 2.5);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_bad_input_with_codes() {
        let cases = [
            ("{not json", "MALFORMED_JSON"),
            (&TRADE[..TRADE.len() - 5], "MALFORMED_JSON"),
            (
                &TRADE.replace("\"61556.04000000\"", "\"NaN\""),
                "NON_FINITE_NUMBER",
            ),
            (
                &TRADE.replace("\"61556.04000000\"", "\"-1.0\""),
                "NON_POSITIVE_PRICE",
            ),
            (
                &TRADE.replace("\"0.00100000\"", "\"-0.5\""),
                "NEGATIVE_QUANTITY",
            ),
            (
                &TRADE.replace("\"0.00100000\"", "\"inf\""),
                "NON_FINITE_NUMBER",
            ),
            (
                &TRADE.replace("btcusdt@trade", "btcusdt@kline_1m"),
                "UNKNOWN_STREAM",
            ),
            (
                &TRADE.replace("btcusdt@trade", "ethusdt@trade"),
                "SYMBOL_MISMATCH",
            ),
            (
                &BOOK.replace("\"2673.61000000\"", "\"2600.0\""),
                "CROSSED_BOOK",
            ),
            (
                r#"{"lastUpdateId":1,"bids":[],"asks":[]}"#,
                "MALFORMED_JSON",
            ),
        ];
        for (input, code) in cases {
            let err = parse_combined(input).unwrap_err();
            assert_eq!(err.code(), code, "{input}: {err}");
        }
    }
}
