//! Trade-ID continuity per symbol: duplicates (e.g. the overlap of two connections) are
//! dropped, gaps are reported. Bounded: one entry per configured symbol.

use crate::fast_hash::FastMap;
use crate::market::Symbol;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeOrder {
    /// The next trade (or the first one seen).
    Next,
    /// Already seen: drop it.
    Duplicate,
    /// Trades `first..=last` were never seen.
    Gap { first: u64, last: u64 },
}

#[derive(Debug, Clone, Default)]
pub struct TradeSequence {
    last: FastMap<Symbol, u64>,
}

impl TradeSequence {
    /// Classify trade `id` of `symbol` without moving the cursor.
    pub fn classify(&self, symbol: &str, id: u64) -> TradeOrder {
        match self.last.get(symbol) {
            None => TradeOrder::Next,
            Some(last) if id <= *last => TradeOrder::Duplicate,
            Some(last) if id == *last + 1 => TradeOrder::Next,
            Some(last) => TradeOrder::Gap {
                first: *last + 1,
                last: id - 1,
            },
        }
    }

    /// Move the cursor of `symbol` to `id` (never back).
    pub fn accept(&mut self, symbol: &str, id: u64) {
        match self.last.get_mut(symbol) {
            Some(last) => *last = (*last).max(id),
            None => {
                self.last.insert(symbol.into(), id);
            }
        }
    }

    /// Classify trade `id` of `symbol` and remember it unless it is a duplicate.
    pub fn observe(&mut self, symbol: &str, id: u64) -> TradeOrder {
        let order = self.classify(symbol, id);
        if order != TradeOrder::Duplicate {
            self.accept(symbol, id);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_next_duplicate_and_gap_per_symbol() {
        let mut s = TradeSequence::default();
        assert_eq!(s.observe("BTC", 10), TradeOrder::Next);
        assert_eq!(s.observe("BTC", 11), TradeOrder::Next);
        assert_eq!(s.observe("ETH", 3), TradeOrder::Next);
        assert_eq!(s.observe("BTC", 11), TradeOrder::Duplicate);
        assert_eq!(s.observe("BTC", 9), TradeOrder::Duplicate);
        assert_eq!(
            s.observe("BTC", 15),
            TradeOrder::Gap {
                first: 12,
                last: 14
            }
        );
        assert_eq!(s.observe("BTC", 16), TradeOrder::Next);
        assert_eq!(s.observe("ETH", 4), TradeOrder::Next);
    }
}
