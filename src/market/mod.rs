//! Market data: Binance wire types (`binance`) and capture files (`capture`).

pub mod backoff;
pub mod binance;
pub mod book_side;
pub mod capture;
pub mod compact;
pub mod depth;
pub mod feed;
pub mod fetch;
pub mod health;
pub mod rest;
pub mod sequence;
pub mod skew;
pub mod subscription;
pub mod synthetic;
pub mod tls;
pub mod trades_csv;
pub mod weight;

/// An instrument's name as market events carry it: held inline (Binance's names are far
/// shorter than its 24 bytes), so neither parsing an event nor copying its name allocates.
pub type Symbol = compact_str::CompactString;

pub use binance::{
    parse_combined, AggTrade, BookTicker, Kline, MarketDataError, MarketEvent, StreamKind, Trade,
};
