//! A local order book kept in step with Binance's diff-depth stream (`<symbol>@depth@100ms`)
//! and a REST snapshot (`GET /api/v3/depth`), by Binance's documented rules:
//!
//! 1. buffer diff updates until a snapshot is loaded;
//! 2. drop updates with `u <= lastUpdateId` (already in the snapshot);
//! 3. the first update applied must bridge the snapshot: `U <= lastUpdateId + 1 <= u`;
//! 4. after that every update must continue the last: `U <= last u + 1` (Binance sends
//!    exactly `U == last u + 1`); otherwise updates were lost and the book must be resynced.
//!
//! Quantities are absolute, so re-applying an update the book already holds is harmless.
//! Pure: no I/O, bounded by `max_levels` per side and `max_buffered` pending updates.

use std::collections::VecDeque;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::Symbol;

/// One price level: a quantity of zero removes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    pub price: f64,
    pub qty: f64,
}

impl<'de> Deserialize<'de> for Level {
    /// Binance sends a level as `["price","qty"]` decimal strings.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (Decimal(price), Decimal(qty)) = Deserialize::deserialize(d)?;
        Ok(Self { price, qty })
    }
}

/// A decimal string parsed straight to `f64`, borrowed or not.
struct Decimal(f64);

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Decimal;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a decimal string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Decimal, E> {
                s.parse::<f64>()
                    .map(Decimal)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(s), &self))
            }
        }
        d.deserialize_str(V)
    }
}

/// A diff-depth update (`depthUpdate`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DepthUpdate {
    #[serde(rename = "E")]
    pub event_time_ms: i64,
    #[serde(rename = "s")]
    pub symbol: Symbol,
    #[serde(rename = "U")]
    pub first_update_id: u64,
    #[serde(rename = "u")]
    pub final_update_id: u64,
    #[serde(rename = "b")]
    pub bids: Vec<Level>,
    #[serde(rename = "a")]
    pub asks: Vec<Level>,
}

/// A REST depth snapshot (`GET /api/v3/depth`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepthSnapshot {
    pub last_update_id: u64,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
}

/// What one diff update did to the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepthOutcome {
    /// No snapshot yet: kept until one is loaded.
    Buffered,
    /// Applied; the book is in step with the exchange.
    Applied,
    /// Already contained in the book (`u` not after the book's last update): dropped.
    AlreadyApplied,
    /// Updates `expected..got` were lost: the book reset itself, kept this update and
    /// needs a snapshot.
    Gap { expected: u64, got: u64 },
    /// Applying the update left the best bid at or above the best ask: the book is wrong
    /// and needs a snapshot (the caller resets it).
    Crossed,
}

/// Whether the book can be relied on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookSync {
    /// No snapshot loaded (at start, or after a gap): updates are buffered.
    AwaitingSnapshot,
    /// A snapshot is loaded but no update has bridged it yet.
    Bridging,
    /// Snapshot bridged and every update since applied in order.
    InSync,
}

/// Price levels keyed by the price's IEEE bits: for positive finite prices the bit
/// patterns order like the prices, and the same decimal string always gives the same key.
type Side = super::book_side::BookSide;

#[derive(Debug, Clone)]
pub struct OrderBook {
    bids: Side,
    asks: Side,
    last_update_id: Option<u64>,
    bridged: bool,
    pending: VecDeque<DepthUpdate>,
    max_levels: usize,
    max_buffered: usize,
}

impl OrderBook {
    pub fn new(max_levels: usize, max_buffered: usize) -> Self {
        Self {
            bids: Side::default(),
            asks: Side::default(),
            last_update_id: None,
            bridged: false,
            pending: VecDeque::new(),
            max_levels: max_levels.max(1),
            max_buffered: max_buffered.max(1),
        }
    }

    pub fn sync(&self) -> BookSync {
        match (self.last_update_id, self.bridged) {
            (None, _) => BookSync::AwaitingSnapshot,
            (Some(_), false) => BookSync::Bridging,
            (Some(_), true) => BookSync::InSync,
        }
    }

    pub fn last_update_id(&self) -> Option<u64> {
        self.last_update_id
    }

    pub fn best_bid(&self) -> Option<Level> {
        self.bids.last().map(|(k, qty)| Level {
            price: f64::from_bits(k),
            qty,
        })
    }

    pub fn best_ask(&self) -> Option<Level> {
        self.asks.first().map(|(k, qty)| Level {
            price: f64::from_bits(k),
            qty,
        })
    }

    /// Levels held per side (bids, asks).
    pub fn depth(&self) -> (usize, usize) {
        (self.bids.len(), self.asks.len())
    }

    /// Forget the book (after a gap): updates are buffered until the next snapshot.
    pub fn reset(&mut self) {
        self.bids.clear();
        self.asks.clear();
        self.last_update_id = None;
        self.bridged = false;
        self.pending.clear();
    }

    pub fn on_update(&mut self, update: DepthUpdate) -> DepthOutcome {
        let Some(last) = self.last_update_id else {
            if self.pending.len() == self.max_buffered {
                // The snapshot will be newer than the oldest buffered updates anyway.
                self.pending.pop_front();
            }
            self.pending.push_back(update);
            return DepthOutcome::Buffered;
        };
        if update.final_update_id <= last {
            return DepthOutcome::AlreadyApplied;
        }
        if update.first_update_id > last + 1 {
            // Out of step: start over and keep this update for after the next snapshot.
            let gap = DepthOutcome::Gap {
                expected: last + 1,
                got: update.first_update_id,
            };
            self.reset();
            self.pending.push_back(update);
            return gap;
        }
        apply(&mut self.bids, &update.bids, self.max_levels, true);
        apply(&mut self.asks, &update.asks, self.max_levels, false);
        self.last_update_id = Some(update.final_update_id);
        self.bridged = true;
        match (self.best_bid(), self.best_ask()) {
            (Some(b), Some(a)) if b.price >= a.price => DepthOutcome::Crossed,
            _ => DepthOutcome::Applied,
        }
    }

    /// Load a snapshot and apply the buffered updates after it. Returns the first outcome
    /// that needs another snapshot (a gap: the snapshot is older than what was buffered,
    /// or updates were lost while buffering), if any.
    pub fn load_snapshot(&mut self, snapshot: &DepthSnapshot) -> Option<DepthOutcome> {
        self.bids.clear();
        self.asks.clear();
        apply(&mut self.bids, &snapshot.bids, self.max_levels, true);
        apply(&mut self.asks, &snapshot.asks, self.max_levels, false);
        self.last_update_id = Some(snapshot.last_update_id);
        self.bridged = false;
        let mut pending = std::mem::take(&mut self.pending);
        while let Some(update) = pending.pop_front() {
            match self.on_update(update) {
                DepthOutcome::Applied | DepthOutcome::AlreadyApplied | DepthOutcome::Buffered => {}
                DepthOutcome::Crossed => {
                    self.reset();
                    return Some(DepthOutcome::Crossed);
                }
                gap @ DepthOutcome::Gap { .. } => {
                    // The book reset itself and kept the update; keep the rest behind it.
                    self.pending.extend(pending);
                    return Some(gap);
                }
            }
        }
        None
    }
}

fn apply(side: &mut Side, levels: &[Level], max_levels: usize, bids: bool) {
    for l in levels {
        if !(l.price > 0.0 && l.price.is_finite() && l.qty.is_finite()) {
            continue;
        }
        if l.qty <= 0.0 {
            side.remove(l.price.to_bits());
        } else {
            side.insert(l.price.to_bits(), l.qty);
        }
    }
    // Bounded: drop the levels farthest from the touch.
    while side.len() > max_levels {
        if bids {
            side.pop_first();
        } else {
            side.pop_last();
        }
    }
}

/// Levels must be finite with positive prices and non-negative quantities, and `U <= u`.
pub fn validate_update(u: &DepthUpdate) -> Result<(), super::MarketDataError> {
    use super::MarketDataError as E;
    if u.first_update_id > u.final_update_id {
        return Err(E::Malformed(format!(
            "depth update U {} after u {}",
            u.first_update_id, u.final_update_id
        )));
    }
    for l in u.bids.iter().chain(&u.asks) {
        if !l.price.is_finite() || !l.qty.is_finite() {
            return Err(E::NonFinite("depth level"));
        }
        if l.price <= 0.0 {
            return Err(E::NonPositivePrice("depth level"));
        }
        if l.qty < 0.0 {
            return Err(E::NegativeQuantity("depth level"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(price: f64, qty: f64) -> Level {
        Level { price, qty }
    }

    fn upd(first: u64, last: u64, bids: Vec<Level>, asks: Vec<Level>) -> DepthUpdate {
        DepthUpdate {
            event_time_ms: 0,
            symbol: "BTCUSDT".into(),
            first_update_id: first,
            final_update_id: last,
            bids,
            asks,
        }
    }

    fn snap(last: u64) -> DepthSnapshot {
        DepthSnapshot {
            last_update_id: last,
            bids: vec![lv(100.0, 1.0), lv(99.0, 2.0)],
            asks: vec![lv(101.0, 1.0), lv(102.0, 2.0)],
        }
    }

    #[test]
    fn buffered_updates_bridge_the_snapshot_and_continue() {
        let mut b = OrderBook::new(100, 100);
        assert_eq!(
            b.on_update(upd(5, 8, vec![], vec![])),
            DepthOutcome::Buffered
        );
        assert_eq!(
            b.on_update(upd(9, 12, vec![lv(100.0, 3.0)], vec![])),
            DepthOutcome::Buffered
        );
        assert_eq!(b.sync(), BookSync::AwaitingSnapshot);
        // Snapshot at 10: update 5..8 is in it, 9..12 bridges it.
        assert_eq!(b.load_snapshot(&snap(10)), None);
        assert_eq!(b.sync(), BookSync::InSync);
        assert_eq!(b.best_bid(), Some(lv(100.0, 3.0)));
        assert_eq!(
            b.on_update(upd(13, 13, vec![lv(100.0, 0.0)], vec![])),
            DepthOutcome::Applied
        );
        assert_eq!(b.best_bid(), Some(lv(99.0, 2.0)), "zero removes the level");
        assert_eq!(
            b.on_update(upd(10, 13, vec![], vec![])),
            DepthOutcome::AlreadyApplied
        );
        assert_eq!(b.last_update_id(), Some(13));
    }

    #[test]
    fn a_snapshot_newer_than_the_buffer_waits_for_the_bridging_update() {
        let mut b = OrderBook::new(100, 100);
        b.on_update(upd(1, 4, vec![], vec![]));
        assert_eq!(b.load_snapshot(&snap(20)), None);
        assert_eq!(b.sync(), BookSync::Bridging);
        assert_eq!(
            b.on_update(upd(15, 20, vec![], vec![])),
            DepthOutcome::AlreadyApplied
        );
        assert_eq!(
            b.on_update(upd(21, 25, vec![], vec![])),
            DepthOutcome::Applied
        );
        assert_eq!(b.sync(), BookSync::InSync);
    }

    #[test]
    fn lost_updates_are_a_gap_and_a_reset_starts_over() {
        let mut b = OrderBook::new(100, 100);
        b.load_snapshot(&snap(10));
        assert_eq!(
            b.on_update(upd(11, 12, vec![], vec![])),
            DepthOutcome::Applied
        );
        assert_eq!(
            b.on_update(upd(14, 15, vec![], vec![])),
            DepthOutcome::Gap {
                expected: 13,
                got: 14
            }
        );
        assert_eq!(b.sync(), BookSync::AwaitingSnapshot, "a gap starts over");
        assert_eq!(
            b.pending.len(),
            1,
            "and keeps the update for the next snapshot"
        );
        assert_eq!(
            b.on_update(upd(16, 16, vec![], vec![])),
            DepthOutcome::Buffered
        );
        // A snapshot older than the first buffered update cannot be bridged.
        assert_eq!(
            b.load_snapshot(&snap(11)),
            Some(DepthOutcome::Gap {
                expected: 12,
                got: 14
            })
        );
        assert_eq!(b.pending.len(), 2, "both updates wait for a newer snapshot");
        assert_eq!(b.load_snapshot(&snap(14)), None);
        assert_eq!(b.sync(), BookSync::InSync);
        assert_eq!(b.last_update_id(), Some(16));
    }

    #[test]
    fn a_crossed_book_is_reported_and_levels_are_bounded() {
        let mut b = OrderBook::new(3, 2);
        b.load_snapshot(&snap(1));
        assert_eq!(
            b.on_update(upd(2, 2, vec![lv(101.5, 1.0)], vec![])),
            DepthOutcome::Crossed
        );
        let mut b = OrderBook::new(3, 2);
        b.load_snapshot(&snap(1));
        b.on_update(upd(
            2,
            2,
            vec![lv(98.0, 1.0), lv(97.0, 1.0)],
            vec![lv(103.0, 1.0), lv(104.0, 1.0)],
        ));
        assert_eq!(b.depth(), (3, 3));
        assert_eq!(b.best_bid(), Some(lv(100.0, 1.0)), "the farthest bids go");
        assert_eq!(b.best_ask(), Some(lv(101.0, 1.0)), "the farthest asks go");
        // The pending buffer is bounded too.
        b.reset();
        for i in 0..10 {
            b.on_update(upd(10 + i, 10 + i, vec![], vec![]));
        }
        assert_eq!(b.pending.len(), 2);
    }

    #[test]
    fn parses_binance_depth_messages() {
        let u: DepthUpdate = serde_json::from_str(
            r#"{"e":"depthUpdate","E":1723161254000,"s":"BTCUSDT","U":157,"u":160,"b":[["61556.04000000","0.00000000"]],"a":[["61556.05000000","1.25000000"]]}"#,
        )
        .unwrap();
        assert_eq!((u.first_update_id, u.final_update_id), (157, 160));
        assert_eq!(u.asks, vec![lv(61556.05, 1.25)]);
        assert!(validate_update(&u).is_ok());
        let s: DepthSnapshot = serde_json::from_str(
            r#"{"lastUpdateId":160,"bids":[["1.0","2.0"]],"asks":[["3.0","4.0"]]}"#,
        )
        .unwrap();
        assert_eq!(s.last_update_id, 160);
        let mut bad = u.clone();
        bad.bids[0].qty = -1.0;
        assert_eq!(
            validate_update(&bad).unwrap_err().code(),
            "NEGATIVE_QUANTITY"
        );
        bad.bids[0].price = f64::NAN;
        assert_eq!(
            validate_update(&bad).unwrap_err().code(),
            "NON_FINITE_NUMBER"
        );
    }
}
