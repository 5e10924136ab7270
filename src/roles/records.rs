//! The records the roles exchange over Kafka (not signed: what is signed is the decisions
//! they cause, each naming its source record). JSON, one record per message, `v` = 1.
//!
//! Market topic (`roles.market_topic`, key = symbol): `START` (the symbol's warm-start
//! history, published by `ingest` before its first trade) and `TRADE` (a validated trade
//! with its engine time, feed health and the connection's input mark). Bars topic
//! (`roles.bars_topic`, key = symbol or `PORTFOLIO`): `PORTFOLIO_START` (every symbol's
//! history, in configuration order) and `BAR` (a symbol's closed bar). `docs/scale-out.md`
//! is the contract.

use serde::{Deserialize, Serialize};

use crate::engine::BarClosed;
use crate::market::feed::digest::InputMark;
use crate::market::{Kline, Trade};

pub const RECORD_VERSION: u32 = 1;

/// The largest record a role reads; anything longer is refused unread.
pub const MAX_RECORD_BYTES: usize = 4 << 20;

/// One kline as `[open_time_ms, close_time_ms, close, trades]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KlineRecord(pub i64, pub i64, pub f64, pub u64);

impl From<&Kline> for KlineRecord {
    fn from(k: &Kline) -> Self {
        Self(k.open_time_ms, k.close_time_ms, k.close, k.trades)
    }
}

impl From<KlineRecord> for Kline {
    fn from(k: KlineRecord) -> Self {
        Self {
            open_time_ms: k.0,
            close_time_ms: k.1,
            close: k.2,
            trades: k.3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradeRecord {
    pub id: u64,
    pub price: f64,
    pub qty: f64,
    pub time_ms: i64,
    pub event_time_ms: i64,
    pub buyer_is_maker: bool,
}

/// The input mark of the ingest connection once it had consumed the trade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputMarkRecord {
    pub connection: u32,
    pub position: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub enum MarketRecord {
    Start {
        v: u32,
        symbol: String,
        klines: Vec<KlineRecord>,
    },
    Trade {
        v: u32,
        symbol: String,
        received_at_ms: i64,
        feed_healthy: bool,
        input: Option<InputMarkRecord>,
        trade: TradeRecord,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub enum BarRecord {
    PortfolioStart {
        v: u32,
        /// Per symbol, in configuration order.
        klines: Vec<Vec<KlineRecord>>,
    },
    Bar {
        v: u32,
        symbol: String,
        bar: BarClosed,
    },
}

/// Why a record was not taken. `code()` is the stable label of logs and metrics.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecordError {
    #[error("record of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("malformed record: {0}")]
    Malformed(String),
    #[error("record version {0} is not 1")]
    Version(u32),
    #[error("symbol {0} is not configured")]
    UnknownSymbol(String),
    #[error("record key {key:?} does not name its symbol {symbol}")]
    KeyMismatch { key: String, symbol: String },
    #[error("impossible trade: {0}")]
    Implausible(String),
}

impl RecordError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge(_) => "RECORD_TOO_LARGE",
            Self::Malformed(_) => "RECORD_MALFORMED",
            Self::Version(_) => "RECORD_VERSION",
            Self::UnknownSymbol(_) => "UNKNOWN_SYMBOL",
            Self::KeyMismatch { .. } => "KEY_MISMATCH",
            Self::Implausible(_) => "RECORD_IMPLAUSIBLE",
        }
    }
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, RecordError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge(bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))
}

fn version(v: u32) -> Result<(), RecordError> {
    if v == RECORD_VERSION {
        Ok(())
    } else {
        Err(RecordError::Version(v))
    }
}

impl MarketRecord {
    pub fn start(symbol: &str, klines: &[Kline]) -> Self {
        Self::Start {
            v: RECORD_VERSION,
            symbol: symbol.to_string(),
            klines: klines.iter().map(KlineRecord::from).collect(),
        }
    }

    pub fn trade(
        trade: &Trade,
        received_at_ms: i64,
        feed_healthy: bool,
        input: Option<InputMark>,
    ) -> Self {
        Self::Trade {
            v: RECORD_VERSION,
            symbol: trade.symbol.to_string(),
            received_at_ms,
            feed_healthy,
            input: input.map(|m| InputMarkRecord {
                connection: m.connection,
                position: m.position,
                sha256: hex::encode(m.sha256),
            }),
            trade: TradeRecord {
                id: trade.trade_id,
                price: trade.price,
                qty: trade.qty,
                time_ms: trade.trade_time_ms,
                event_time_ms: trade.event_time_ms,
                buyer_is_maker: trade.buyer_is_maker,
            },
        }
    }

    pub fn symbol(&self) -> &str {
        match self {
            Self::Start { symbol, .. } | Self::Trade { symbol, .. } => symbol,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A record read from the topic under `key`.
    pub fn parse(key: Option<&[u8]>, bytes: &[u8]) -> Result<Self, RecordError> {
        let r: Self = decode(bytes)?;
        let v = match &r {
            Self::Start { v, .. } | Self::Trade { v, .. } => *v,
        };
        version(v)?;
        // The key decides the partition, and the partition the chain's one writer.
        if key != Some(r.symbol().as_bytes()) {
            return Err(RecordError::KeyMismatch {
                key: key
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default(),
                symbol: r.symbol().to_string(),
            });
        }
        if let Self::Trade { trade, .. } = &r {
            if !(trade.price.is_finite() && trade.price > 0.0) {
                return Err(RecordError::Implausible(format!("price {}", trade.price)));
            }
            if !(trade.qty.is_finite() && trade.qty >= 0.0) {
                return Err(RecordError::Implausible(format!("quantity {}", trade.qty)));
            }
        }
        Ok(r)
    }
}

impl TradeRecord {
    pub fn to_trade(&self, symbol: &str) -> Trade {
        Trade {
            event_time_ms: self.event_time_ms,
            symbol: symbol.into(),
            trade_id: self.id,
            price: self.price,
            qty: self.qty,
            trade_time_ms: self.time_ms,
            buyer_is_maker: self.buyer_is_maker,
        }
    }
}

impl InputMarkRecord {
    pub fn to_mark(&self) -> Option<InputMark> {
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(&self.sha256, &mut sha256).ok()?;
        Some(InputMark {
            connection: self.connection,
            position: self.position,
            sha256,
        })
    }
}

impl BarRecord {
    pub fn portfolio_start(klines: &[Vec<Kline>]) -> Self {
        Self::PortfolioStart {
            v: RECORD_VERSION,
            klines: klines
                .iter()
                .map(|k| k.iter().map(KlineRecord::from).collect())
                .collect(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, RecordError> {
        let r: Self = decode(bytes)?;
        let v = match &r {
            Self::PortfolioStart { v, .. } | Self::Bar { v, .. } => *v,
        };
        version(v)?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trade_round_trips_exactly() {
        let trade = Trade {
            event_time_ms: 1_700_000_000_123,
            symbol: "BTCUSDT".into(),
            trade_id: 42,
            price: 43_210.123_456_789,
            qty: 0.000_123,
            trade_time_ms: 1_700_000_000_120,
            buyer_is_maker: true,
        };
        let mark = InputMark {
            connection: 1,
            position: 7,
            sha256: [9; 32],
        };
        let r = MarketRecord::trade(&trade, 5, true, Some(mark));
        let back = MarketRecord::parse(Some(b"BTCUSDT"), &r.to_json()).expect("parses");
        let MarketRecord::Trade {
            trade: t, input, ..
        } = back
        else {
            panic!("not a trade");
        };
        assert_eq!(t.to_trade("BTCUSDT"), trade);
        assert_eq!(input.and_then(|i| i.to_mark()), Some(mark));
    }

    #[test]
    fn bad_records_are_refused_with_their_code() {
        let start = MarketRecord::start("BTCUSDT", &[]).to_json();
        assert_eq!(
            MarketRecord::parse(Some(b"ETHUSDT"), &start).map_err(|e| e.code()),
            Err("KEY_MISMATCH")
        );
        assert_eq!(
            MarketRecord::parse(None, &start).map_err(|e| e.code()),
            Err("KEY_MISMATCH")
        );
        assert_eq!(
            MarketRecord::parse(None, b"{\"type\":\"TRADE\"").map_err(|e| e.code()),
            Err("RECORD_MALFORMED")
        );
        let trade = Trade {
            event_time_ms: 1,
            symbol: "BTCUSDT".into(),
            trade_id: 1,
            price: -1.0,
            qty: 1.0,
            trade_time_ms: 1,
            buyer_is_maker: false,
        };
        assert_eq!(
            MarketRecord::parse(
                Some(b"BTCUSDT"),
                &MarketRecord::trade(&trade, 1, true, None).to_json()
            )
            .map_err(|e| e.code()),
            Err("RECORD_IMPLAUSIBLE")
        );
        let v2 = String::from_utf8(start)
            .expect("utf8")
            .replace("\"v\":1", "\"v\":2");
        assert_eq!(
            MarketRecord::parse(Some(b"BTCUSDT"), v2.as_bytes()).map_err(|e| e.code()),
            Err("RECORD_VERSION")
        );
        assert_eq!(
            BarRecord::parse(&vec![b' '; MAX_RECORD_BYTES + 1]).map_err(|e| e.code()),
            Err("RECORD_TOO_LARGE")
        );
    }
}
