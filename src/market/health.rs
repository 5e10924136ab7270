//! Feed health per symbol: every subscribed stream must have delivered within
//! `stale_after_ms`, no unfilled trade-ID gap may be recent, and its local order book (when
//! depth is subscribed) must be in step with the exchange. Actions that rely on an
//! unhealthy symbol are blocked by ELF L2 (DATA_UNHEALTHY) and pass again once it is fresh.
//! Pure: times come in. Bounded: one entry per symbol and stream.

use crate::fast_hash::FastMap;
use crate::market::Symbol;

use super::StreamKind;

#[derive(Debug, Clone)]
pub struct FeedHealth {
    streams: Vec<StreamKind>,
    stale_after_ms: i64,
    gap_unhealthy_ms: i64,
    /// Looked up by `&str` at every event: no key is built per lookup.
    symbols: FastMap<Symbol, SymbolHealth>,
}

#[derive(Debug, Clone, Default)]
struct SymbolHealth {
    first_ms: Option<i64>,
    /// Newest event per stream, by `StreamKind::index`.
    last_ms: [Option<i64>; StreamKind::COUNT],
    unhealthy_until_ms: Option<i64>,
    book_out_of_sync: bool,
}

impl FeedHealth {
    pub fn new(streams: Vec<StreamKind>, stale_after_ms: i64, gap_unhealthy_ms: i64) -> Self {
        Self {
            streams,
            stale_after_ms,
            gap_unhealthy_ms,
            symbols: FastMap::default(),
        }
    }

    /// Change `symbol`'s entry, made on its first use (its name copied once).
    fn update(&mut self, symbol: &str, change: impl FnOnce(&mut SymbolHealth)) {
        match self.symbols.get_mut(symbol) {
            Some(h) => change(h),
            None => {
                let mut h = SymbolHealth::default();
                change(&mut h);
                self.symbols.insert(symbol.into(), h);
            }
        }
    }

    pub fn seen(&mut self, symbol: &str, kind: StreamKind, now_ms: i64) {
        self.update(symbol, |h| {
            h.first_ms.get_or_insert(now_ms);
            h.last_ms[kind.index()] = Some(now_ms);
        });
    }

    /// Trades were lost for good: the symbol is unhealthy for a while.
    pub fn gap_unfilled(&mut self, symbol: &str, now_ms: i64) {
        let until = now_ms.saturating_add(self.gap_unhealthy_ms);
        self.update(symbol, |h| h.unhealthy_until_ms = Some(until));
    }

    /// The symbol's local order book is (or is no longer) in step with the exchange.
    pub fn book_in_sync(&mut self, symbol: &str, in_sync: bool) {
        if in_sync {
            if let Some(h) = self.symbols.get_mut(symbol) {
                h.book_out_of_sync = false;
            }
        } else {
            self.update(symbol, |h| h.book_out_of_sync = true);
        }
    }

    pub fn healthy(&self, symbol: &str, now_ms: i64) -> bool {
        let Some(h) = self.symbols.get(symbol) else {
            // Never seen: nothing is stale yet.
            return true;
        };
        if h.book_out_of_sync || h.unhealthy_until_ms.is_some_and(|until| now_ms < until) {
            return false;
        }
        let first = h.first_ms.unwrap_or(now_ms);
        self.streams.iter().all(|kind| {
            // A stream not seen yet is only stale once the symbol has been live that long.
            let last = h.last_ms[kind.index()].unwrap_or(first);
            now_ms.saturating_sub(last) <= self.stale_after_ms
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_streams_and_lost_trades_make_a_symbol_unhealthy_until_fresh() {
        let mut h = FeedHealth::new(
            vec![StreamKind::Trade, StreamKind::BookTicker],
            1_000,
            5_000,
        );
        h.seen("BTC", StreamKind::Trade, 0);
        assert!(
            h.healthy("BTC", 500),
            "quotes not seen yet, but only 500 ms in"
        );
        assert!(!h.healthy("BTC", 1_500), "no quote for 1.5 s");
        h.seen("BTC", StreamKind::BookTicker, 1_600);
        h.seen("BTC", StreamKind::Trade, 1_600);
        assert!(h.healthy("BTC", 1_700));
        assert!(!h.healthy("BTC", 2_700), "both streams silent for 1.1 s");
        h.seen("BTC", StreamKind::BookTicker, 3_000);
        h.seen("BTC", StreamKind::Trade, 3_000);
        h.gap_unfilled("BTC", 3_000);
        assert!(!h.healthy("BTC", 3_100));
        h.seen("BTC", StreamKind::BookTicker, 8_000);
        h.seen("BTC", StreamKind::Trade, 8_000);
        assert!(
            h.healthy("BTC", 8_001),
            "resumes when fresh and the gap is old"
        );
        assert!(h.healthy("ETH", 9_000), "never seen: nothing stale yet");
        h.book_in_sync("BTC", false);
        assert!(!h.healthy("BTC", 8_002), "book out of step");
        h.book_in_sync("BTC", true);
        assert!(h.healthy("BTC", 8_002), "resynced");
    }
}
