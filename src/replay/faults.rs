//! Fault injection of the replay server: trades left out of the stream (REST still has
//! them), diff-depth updates left out, and well-formed but impossible events added.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use super::rest::RestIndex;
use crate::market::capture::CaptureLine;
use crate::market::Symbol;

/// The `nth` (1-based) diff-depth update of `symbol` in each client's stream is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropDepth {
    pub symbol: String,
    pub nth: u64,
}

impl FromStr for DropDepth {
    type Err = String;
    /// `BTCUSDT:200`
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected SYMBOL:N (N >= 1), got {s:?}");
        let (symbol, n) = s.split_once(':').ok_or_else(bad)?;
        let nth: u64 = n.parse().map_err(|_| bad())?;
        if nth == 0 || symbol.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            symbol: symbol.to_ascii_uppercase(),
            nth,
        })
    }
}

/// Counts each symbol's depth updates in one client's stream and picks those to drop.
#[derive(Default)]
pub(super) struct DepthDropper {
    drops: Vec<DropDepth>,
    seen: HashMap<String, u64>,
}

impl DepthDropper {
    pub(super) fn new(drops: Vec<DropDepth>) -> Self {
        Self {
            drops,
            seen: HashMap::new(),
        }
    }

    pub(super) fn drops(&mut self, line: &CaptureLine) -> bool {
        if self.drops.is_empty() {
            return false;
        }
        let Some(stream) = line.stream().filter(|s| s.contains("@depth")) else {
            return false;
        };
        let symbol = stream
            .split('@')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let n = self.seen.entry(symbol.clone()).or_default();
        *n += 1;
        let n = *n;
        self.drops.iter().any(|d| d.symbol == symbol && d.nth == n)
    }
}

/// Trades `first..=last` of `symbol` left out of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipTrades {
    pub symbol: String,
    pub first: u64,
    pub last: u64,
}

impl FromStr for SkipTrades {
    type Err = String;
    /// `BTCUSDT:100-120`
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected SYMBOL:FIRST-LAST, got {s:?}");
        let (symbol, range) = s.split_once(':').ok_or_else(bad)?;
        let (a, b) = range.split_once('-').ok_or_else(bad)?;
        let (first, last) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if first > last || symbol.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            symbol: symbol.to_ascii_uppercase(),
            first,
            last,
        })
    }
}

/// The `aggTrade` frame a trade line completes, when none of its trades is left out by
/// `skips` (the caller knows the client subscribed to it).
pub(super) fn agg_frame(
    index: &RestIndex,
    skips: &[SkipTrades],
    line: &CaptureLine,
) -> Option<String> {
    line.stream()?.strip_suffix("@trade")?;
    let Ok(crate::market::MarketEvent::Trade(t)) = crate::market::parse_combined(&line.json) else {
        return None;
    };
    let agg = match index.agg_completed_by(&t.symbol, t.trade_id) {
        Ok(agg) => agg?,
        Err(e) => {
            tracing::error!(error = %e, symbol = %t.symbol, "replay trade store unreadable; aggregate not sent");
            return None;
        }
    };
    let lost = skips.iter().any(|k| {
        k.symbol == t.symbol && k.first <= agg.last_trade_id && agg.first_trade_id <= k.last
    });
    (!lost).then(|| agg.frame(&t.symbol))
}

pub(super) fn skipped(skips: &[SkipTrades], line: &CaptureLine) -> bool {
    if skips.is_empty() || !line.stream().is_some_and(|s| s.ends_with("@trade")) {
        return false;
    }
    match crate::market::parse_combined(&line.json) {
        Ok(crate::market::MarketEvent::Trade(t)) => skips
            .iter()
            .any(|k| k.symbol == t.symbol && (k.first..=k.last).contains(&t.trade_id)),
        _ => false,
    }
}

/// What an injected event gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poison {
    /// A trade at a price of 1e308.
    HugePrice,
    /// A trade of zero quantity.
    ZeroQty,
    /// A trade stamped an hour ahead of the stream.
    TimeAhead,
    /// A trade stamped a day behind the stream.
    TimeBehind,
    /// A trade 10^13 IDs ahead of the stream.
    IdJump,
    /// A best bid above the best ask (when bookTicker is subscribed).
    CrossedQuote,
}

impl FromStr for Poison {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "huge-price" => Self::HugePrice,
            "zero-qty" => Self::ZeroQty,
            "time-ahead" => Self::TimeAhead,
            "time-behind" => Self::TimeBehind,
            "id-jump" => Self::IdJump,
            "crossed-quote" => Self::CrossedQuote,
            _ => {
                return Err(format!(
                    "unknown poison {s:?}: huge-price, zero-qty, time-ahead, time-behind, \
                     id-jump or crossed-quote"
                ))
            }
        })
    }
}

/// After the `nth` (1-based) streamed trade of `symbol`, `count` impossible events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inject {
    pub symbol: String,
    pub nth: u64,
    pub poison: Poison,
    pub count: u32,
}

impl FromStr for Inject {
    type Err = String;
    /// `BTCUSDT:500:huge-price` or `BTCUSDT:500:huge-price:5` (a burst of five).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected SYMBOL:N:POISON[:COUNT], got {s:?}");
        let mut parts = s.split(':');
        let (Some(symbol), Some(n), Some(poison)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let nth: u64 = n.parse().map_err(|_| bad())?;
        let count: u32 = match parts.next() {
            Some(c) => c.parse().map_err(|_| bad())?,
            None => 1,
        };
        if nth == 0 || count == 0 || symbol.is_empty() || parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            symbol: symbol.to_ascii_uppercase(),
            nth,
            poison: poison.parse()?,
            count,
        })
    }
}

/// Counts each symbol's trades in one client's stream and makes the injected events.
pub(super) struct Injector {
    injects: Vec<Inject>,
    quotes: HashSet<String>,
    seen: HashMap<Symbol, u64>,
}

impl Injector {
    pub(super) fn new(injects: Vec<Inject>, wanted: &HashSet<String>) -> Self {
        Self {
            injects,
            quotes: wanted
                .iter()
                .filter_map(|s| s.strip_suffix("@bookTicker"))
                .map(str::to_ascii_uppercase)
                .collect(),
            seen: HashMap::new(),
        }
    }

    /// Whether some fault is injected into the instrument `prefix` (`btcusdt`).
    pub(super) fn watches(&self, prefix: &str) -> bool {
        self.injects
            .iter()
            .any(|i| i.symbol.eq_ignore_ascii_case(prefix))
    }

    /// The events to stream after `line`.
    pub(super) fn after(&mut self, line: &CaptureLine) -> Vec<CaptureLine> {
        if self.injects.is_empty() || !line.stream().is_some_and(|s| s.ends_with("@trade")) {
            return Vec::new();
        }
        let Ok(crate::market::MarketEvent::Trade(t)) = crate::market::parse_combined(&line.json)
        else {
            return Vec::new();
        };
        let n = self.seen.entry(t.symbol.clone()).or_default();
        *n += 1;
        let n = *n;
        let mut out = Vec::new();
        for inject in self
            .injects
            .iter()
            .filter(|i| i.symbol == t.symbol && i.nth == n)
        {
            for k in 0..u64::from(inject.count) {
                let json = match inject.poison {
                    Poison::CrossedQuote if self.quotes.contains(t.symbol.as_str()) => {
                        quote_frame(&t.symbol, t.price * 1.001, t.price * 0.999)
                    }
                    Poison::CrossedQuote => continue,
                    // The poison takes the ID of the next real trade: believed, it would
                    // make that trade look like a duplicate.
                    Poison::HugePrice => trade_frame(&t, t.trade_id + 1 + k, 1e308, t.qty, 0),
                    Poison::ZeroQty => trade_frame(&t, t.trade_id + 1 + k, t.price, 0.0, 0),
                    Poison::TimeAhead => {
                        trade_frame(&t, t.trade_id + 1 + k, t.price, t.qty, 3_600_000)
                    }
                    Poison::TimeBehind => {
                        trade_frame(&t, t.trade_id + 1 + k, t.price, t.qty, -86_400_000)
                    }
                    Poison::IdJump => {
                        trade_frame(&t, t.trade_id + 10_000_000_000_000 + k, t.price, t.qty, 0)
                    }
                };
                out.push(CaptureLine {
                    local_ns: line.local_ns,
                    json,
                });
            }
        }
        out
    }
}

fn trade_frame(t: &crate::market::Trade, id: u64, price: f64, qty: f64, shift_ms: i64) -> String {
    format!(
        r#"{{"stream":"{}@trade","data":{{"e":"trade","E":{},"s":"{}","t":{id},"p":"{price:.8}","q":"{qty:.8}","T":{},"m":{},"M":true}}}}"#,
        t.symbol.to_lowercase(),
        t.event_time_ms + shift_ms,
        t.symbol,
        t.trade_time_ms + shift_ms,
        t.buyer_is_maker
    )
}

fn quote_frame(symbol: &str, bid: f64, ask: f64) -> String {
    format!(
        r#"{{"stream":"{}@bookTicker","data":{{"u":1,"s":"{symbol}","b":"{bid:.8}","B":"1.00000000","a":"{ask:.8}","A":"1.00000000"}}}}"#,
        symbol.to_lowercase()
    )
}
