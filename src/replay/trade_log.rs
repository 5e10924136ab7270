//! One symbol's captured trades as the replay server keeps them for its REST answers: by
//! trade ID, 24 bytes a trade and 4 bytes an aggregate, so a symbol-day of trades costs
//! well under a megabyte.
//!
//! IDs and times are stored as 32-bit offsets from the base of the segment a trade falls
//! in; a trade whose offsets would not fit starts a new segment, so any span of IDs and
//! times is held exactly.

/// A trade as the REST endpoints serve it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TradePoint {
    pub id: u64,
    pub time_ms: i64,
    pub price: f64,
    pub qty: f64,
    pub buyer_is_maker: bool,
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

#[derive(Debug, Clone, Copy)]
struct Packed {
    price: f64,
    qty: f64,
    id_offset: u32,
    time_offset: u32,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Index of the segment's first trade.
    start: usize,
    base_id: u64,
    base_time_ms: i64,
}

/// A trade from a capture, before the log is sealed.
#[derive(Debug, Clone, Copy)]
pub struct Captured {
    pub trade: TradePoint,
    /// Read from a history capture (before the replayed stream): served as klines too.
    pub history: bool,
}

/// Trades by ID (duplicates across captures kept once), their aggregates and which were
/// history.
#[derive(Debug, Default)]
pub struct TradeLog {
    trades: Vec<Packed>,
    segments: Vec<Segment>,
    /// Bit `i`: trade `i`'s buyer was the maker.
    maker: Vec<u64>,
    /// Bit `i`: trade `i` came from a history capture.
    history: Vec<u64>,
    /// Index of each aggregate's first trade; aggregate IDs count on from the first trade ID.
    agg_starts: Vec<u32>,
}

fn bit(bits: &[u64], i: usize) -> bool {
    bits.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
}

fn set_bit(bits: &mut Vec<u64>, i: usize) {
    if bits.len() <= i / 64 {
        bits.resize(i / 64 + 1, 0);
    }
    bits[i / 64] |= 1 << (i % 64);
}

impl TradeLog {
    /// Seal `captured` (any order) into a log.
    pub fn build(mut captured: Vec<Captured>) -> Self {
        captured.sort_by_key(|c| (c.trade.id, !c.history));
        captured.dedup_by_key(|c| c.trade.id);
        let mut log = Self::default();
        log.trades.reserve_exact(captured.len());
        for c in &captured {
            log.push(c);
        }
        drop(captured);
        log.index_aggregates();
        log.maker.shrink_to_fit();
        log.history.shrink_to_fit();
        log.segments.shrink_to_fit();
        log.agg_starts.shrink_to_fit();
        log
    }

    fn push(&mut self, c: &Captured) {
        let t = c.trade;
        let fits = |s: &Segment| {
            let id =
                t.id.checked_sub(s.base_id)
                    .and_then(|d| u32::try_from(d).ok());
            let time = t
                .time_ms
                .checked_sub(s.base_time_ms)
                .and_then(|d| u32::try_from(d).ok());
            id.zip(time)
        };
        let (id_offset, time_offset) = match self.segments.last().and_then(fits) {
            Some(offsets) => offsets,
            None => {
                // Times within a segment may step back a little: base a new segment's times
                // a minute early.
                self.segments.push(Segment {
                    start: self.trades.len(),
                    base_id: t.id,
                    base_time_ms: t.time_ms.saturating_sub(60_000),
                });
                self.segments.last().and_then(fits).unwrap_or_default()
            }
        };
        let i = self.trades.len();
        self.trades.push(Packed {
            price: t.price,
            qty: t.qty,
            id_offset,
            time_offset,
        });
        if t.buyer_is_maker {
            set_bit(&mut self.maker, i);
        }
        if c.history {
            set_bit(&mut self.history, i);
        }
    }

    /// Consecutive trades (by ID) with the same time, price and side form one aggregate.
    fn index_aggregates(&mut self) {
        let mut previous: Option<TradePoint> = None;
        for i in 0..self.trades.len() {
            let t = self.get(i);
            let continues = previous.is_some_and(|p| {
                p.id + 1 == t.id
                    && p.time_ms == t.time_ms
                    && p.price == t.price
                    && p.buyer_is_maker == t.buyer_is_maker
            });
            if !continues {
                // Indices fit: a log over 4 billion trades is not built from captures.
                self.agg_starts.push(u32::try_from(i).unwrap_or(u32::MAX));
            }
            previous = Some(t);
        }
    }

    pub fn len(&self) -> usize {
        self.trades.len()
    }

    pub fn is_empty(&self) -> bool {
        self.trades.is_empty()
    }

    /// Trade `i` in ID order.
    pub fn get(&self, i: usize) -> TradePoint {
        let s = self.segments[self.segments.partition_point(|s| s.start <= i) - 1];
        let p = self.trades[i];
        TradePoint {
            id: s.base_id + u64::from(p.id_offset),
            time_ms: s.base_time_ms + i64::from(p.time_offset),
            price: p.price,
            qty: p.qty,
            buyer_is_maker: bit(&self.maker, i),
        }
    }

    pub fn is_history(&self, i: usize) -> bool {
        bit(&self.history, i)
    }

    /// Index of the first trade with an ID at or above `id`.
    pub fn first_at_or_after(&self, id: u64) -> usize {
        let seg = self.segments.partition_point(|s| s.base_id <= id);
        if seg == 0 {
            return 0;
        }
        let s = self.segments[seg - 1];
        let end = self
            .segments
            .get(seg)
            .map_or(self.trades.len(), |n| n.start);
        let within = &self.trades[s.start..end];
        let offset = id - s.base_id;
        s.start + within.partition_point(|p| u64::from(p.id_offset) < offset)
    }

    pub fn agg_count(&self) -> usize {
        self.agg_starts.len()
    }

    fn agg_base(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.base_id)
    }

    /// Aggregate `k` in ID order.
    pub fn agg(&self, k: usize) -> AggPoint {
        let start = self.agg_starts[k] as usize;
        let end = self
            .agg_starts
            .get(k + 1)
            .map_or(self.trades.len(), |e| *e as usize);
        let first = self.get(start);
        let qty = (start + 1..end).fold(first.qty, |q, i| q + self.trades[i].qty);
        AggPoint {
            agg_id: self.agg_base() + k as u64,
            price: first.price,
            qty,
            first_trade_id: first.id,
            last_trade_id: first.id + (end - start - 1) as u64,
            time_ms: first.time_ms,
            buyer_is_maker: first.buyer_is_maker,
        }
    }

    /// Index of the first aggregate with an ID at or above `agg_id`.
    pub fn first_agg_at_or_after(&self, agg_id: u64) -> usize {
        (agg_id.saturating_sub(self.agg_base()) as usize).min(self.agg_starts.len())
    }

    /// The aggregate that trade `trade_id` completes, if it is the last of one.
    pub fn agg_completed_by(&self, trade_id: u64) -> Option<AggPoint> {
        let i = self.first_at_or_after(trade_id);
        if i >= self.trades.len() || self.get(i).id != trade_id {
            return None;
        }
        let k = self.agg_starts.partition_point(|s| (*s as usize) <= i) - 1;
        let next = self
            .agg_starts
            .get(k + 1)
            .map_or(self.trades.len(), |e| *e as usize);
        (next == i + 1).then(|| self.agg(k))
    }

    /// The trades back as captured, in ID order.
    pub fn captured(&self) -> impl Iterator<Item = Captured> + '_ {
        (0..self.len()).map(|i| Captured {
            trade: self.get(i),
            history: self.is_history(i),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(id: u64, time_ms: i64, price: f64, maker: bool) -> Captured {
        Captured {
            trade: TradePoint {
                id,
                time_ms,
                price,
                qty: 1.0,
                buyer_is_maker: maker,
            },
            history: id < 3,
        }
    }

    #[test]
    fn trades_come_back_exactly_across_segments_in_id_order_without_duplicates() {
        let captured = vec![
            trade(5, 10_000, 2.0, true),
            trade(1, 1_000, 1.0, false),
            trade(2, 900, 1.5, true),
            trade(1, 1_000, 1.0, false),
            // Offsets past 32 bits start new segments.
            trade(5 + (1 << 33), 20_000, 3.0, false),
            trade(6 + (1 << 33), 20_000 + (1 << 40), 3.0, false),
        ];
        let log = TradeLog::build(captured.clone());
        let ids: Vec<u64> = (0..log.len()).map(|i| log.get(i).id).collect();
        assert_eq!(ids, vec![1, 2, 5, 5 + (1 << 33), 6 + (1 << 33)]);
        for c in &captured {
            let i = log.first_at_or_after(c.trade.id);
            assert_eq!(log.get(i), c.trade);
            assert_eq!(log.is_history(i), c.history);
        }
        assert_eq!(log.first_at_or_after(3), 2);
        assert_eq!(log.first_at_or_after(0), 0);
        assert_eq!(log.first_at_or_after(u64::MAX), log.len());
    }

    #[test]
    fn aggregates_group_consecutive_trades_of_one_time_price_and_side() {
        let log = TradeLog::build(vec![
            trade(10, 5, 1.0, true),
            trade(11, 5, 1.0, true),
            trade(12, 5, 1.0, false),
            trade(14, 5, 1.0, false),
        ]);
        assert_eq!(log.agg_count(), 3);
        let a = log.agg(0);
        assert_eq!(
            (a.agg_id, a.first_trade_id, a.last_trade_id, a.qty),
            (10, 10, 11, 2.0)
        );
        assert!(log.agg_completed_by(10).is_none());
        assert_eq!(log.agg_completed_by(11), Some(a));
        assert_eq!(log.agg_completed_by(14).map(|a| a.agg_id), Some(12));
        assert!(log.agg_completed_by(13).is_none());
        assert_eq!(log.first_agg_at_or_after(11), 1);
        assert_eq!(log.first_agg_at_or_after(99), 3);
    }
}
