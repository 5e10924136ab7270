//! One symbol's captured trades as the replay server keeps them for its REST answers and
//! the aggregate trades it streams.
//!
//! The trades live in a temporary file, 25 bytes each in trade-ID order; memory holds only
//! what finds them: the ID of every 256th trade and a bit a trade marking where aggregates
//! start (about a third of a byte a trade). Days of captures cost the server disk and page
//! cache, not resident memory. Trade IDs within a block that follow on without a gap are
//! found without reading the file, so streaming aggregates reads it once per aggregate.
//!
//! IDs and times are stored as 32-bit offsets from the base of the segment a trade falls
//! in; a trade whose offsets would not fit starts a new segment, so any span of IDs and
//! times is held exactly.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

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

/// A trade from a capture, before the log is sealed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Captured {
    pub trade: TradePoint,
    /// Read from a history capture (before the replayed stream): served as klines too.
    pub history: bool,
}

/// A record: price f64, quantity f64, ID offset u32, time offset u32, flags u8 (little
/// endian).
const RECORD_BYTES: usize = 25;
const FLAG_MAKER: u8 = 1;
const FLAG_HISTORY: u8 = 2;
/// One ID in memory per this many trades.
const SAMPLE_EVERY: usize = 256;
/// Records read at a time when scanning a whole log.
const SCAN_CHUNK: usize = 4096;

/// The file the logs of one index append their records to; removed by the system when the
/// last log holding it is dropped.
#[derive(Debug, Clone)]
pub struct TradeStore {
    file: Arc<File>,
    end: u64,
}

impl TradeStore {
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            file: Arc::new(tempfile::tempfile()?),
            end: 0,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Index of the segment's first trade.
    start: usize,
    base_id: u64,
    base_time_ms: i64,
}

/// Trades by ID (duplicates across captures kept once), their aggregates and which were
/// history.
#[derive(Debug)]
pub struct TradeLog {
    file: Arc<File>,
    /// Byte offset of trade 0's record.
    at: u64,
    len: usize,
    segments: Vec<Segment>,
    /// The ID of trade `k * SAMPLE_EVERY`.
    samples: Vec<u64>,
    last_id: u64,
    /// Bit `i`: trade `i` starts an aggregate (consecutive trades by ID with the same time,
    /// price and side form one).
    agg_starts: Vec<u64>,
    /// Aggregates starting before each word of `agg_starts`.
    agg_rank: Vec<u64>,
    agg_count: usize,
}

fn bit(bits: &[u64], i: usize) -> bool {
    bits.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
}

fn io_error(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl TradeLog {
    /// Seal `captured` (any order) into a log whose records `store` keeps.
    pub fn build(mut captured: Vec<Captured>, store: &mut TradeStore) -> io::Result<Self> {
        captured.sort_by_key(|c| (c.trade.id, !c.history));
        captured.dedup_by_key(|c| c.trade.id);
        let len = captured.len();
        let mut log = Self {
            file: store.file.clone(),
            at: store.end,
            len,
            segments: Vec::new(),
            samples: Vec::with_capacity(len.div_ceil(SAMPLE_EVERY)),
            last_id: captured.last().map_or(0, |c| c.trade.id),
            agg_starts: vec![0; len.div_ceil(64)],
            agg_rank: Vec::with_capacity(len.div_ceil(64)),
            agg_count: 0,
        };
        let mut records = Vec::with_capacity(len * RECORD_BYTES);
        let mut previous: Option<TradePoint> = None;
        for (i, c) in captured.iter().enumerate() {
            let t = c.trade;
            let (id_offset, time_offset) = log.offsets(i, &t);
            records.extend_from_slice(&t.price.to_le_bytes());
            records.extend_from_slice(&t.qty.to_le_bytes());
            records.extend_from_slice(&id_offset.to_le_bytes());
            records.extend_from_slice(&time_offset.to_le_bytes());
            let maker = if t.buyer_is_maker { FLAG_MAKER } else { 0 };
            let history = if c.history { FLAG_HISTORY } else { 0 };
            records.push(maker | history);
            if i % SAMPLE_EVERY == 0 {
                log.samples.push(t.id);
            }
            let continues = previous.is_some_and(|p| {
                p.id + 1 == t.id
                    && p.time_ms == t.time_ms
                    && p.price == t.price
                    && p.buyer_is_maker == t.buyer_is_maker
            });
            if !continues {
                log.agg_starts[i / 64] |= 1 << (i % 64);
            }
            previous = Some(t);
        }
        drop(captured);
        store.file.write_all_at(&records, store.end)?;
        store.end += records.len() as u64;
        let mut count = 0u64;
        for word in &log.agg_starts {
            log.agg_rank.push(count);
            count += u64::from(word.count_ones());
        }
        log.agg_count = count as usize;
        log.segments.shrink_to_fit();
        Ok(log)
    }

    /// Trade `i`'s ID and time as offsets from its segment's base, starting a segment when
    /// they would not fit.
    fn offsets(&mut self, i: usize, t: &TradePoint) -> (u32, u32) {
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
        if let Some(offsets) = self.segments.last().and_then(fits) {
            return offsets;
        }
        // Times within a segment may step back a little: base a new segment's times a
        // minute early.
        self.segments.push(Segment {
            start: i,
            base_id: t.id,
            base_time_ms: t.time_ms.saturating_sub(60_000),
        });
        self.segments.last().and_then(fits).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Trades `range` (in ID order) and whether each came from a history capture.
    pub fn read(&self, range: Range<usize>) -> io::Result<Vec<(TradePoint, bool)>> {
        let range = range.start.min(self.len)..range.end.min(self.len);
        let mut bytes = vec![0u8; range.len() * RECORD_BYTES];
        self.file
            .read_exact_at(&mut bytes, self.at + (range.start * RECORD_BYTES) as u64)?;
        let mut segment = self.segments.partition_point(|s| s.start <= range.start);
        let mut out = Vec::with_capacity(range.len());
        for (i, record) in range.zip(bytes.chunks_exact(RECORD_BYTES)) {
            while self.segments.get(segment).is_some_and(|s| s.start <= i) {
                segment += 1;
            }
            let s = segment
                .checked_sub(1)
                .and_then(|k| self.segments.get(k))
                .ok_or_else(|| io_error("trade log record outside its segments"))?;
            let field = |from: usize, to: usize| &record[from..to];
            let f64_at = |from: usize| {
                f64::from_le_bytes(field(from, from + 8).try_into().unwrap_or_default())
            };
            let u32_at = |from: usize| {
                u32::from_le_bytes(field(from, from + 4).try_into().unwrap_or_default())
            };
            let flags = record[24];
            out.push((
                TradePoint {
                    id: s.base_id + u64::from(u32_at(16)),
                    time_ms: s.base_time_ms + i64::from(u32_at(20)),
                    price: f64_at(0),
                    qty: f64_at(8),
                    buyer_is_maker: flags & FLAG_MAKER != 0,
                },
                flags & FLAG_HISTORY != 0,
            ));
        }
        Ok(out)
    }

    /// Every trade in ID order, read a chunk at a time.
    pub fn scan(&self, mut each: impl FnMut(TradePoint, bool)) -> io::Result<()> {
        for start in (0..self.len).step_by(SCAN_CHUNK) {
            for (t, history) in self.read(start..start + SCAN_CHUNK)? {
                each(t, history);
            }
        }
        Ok(())
    }

    /// Index of the first trade with an ID at or above `id`.
    pub fn first_at_or_after(&self, id: u64) -> io::Result<usize> {
        if self.len == 0 || id > self.last_id {
            return Ok(self.len);
        }
        let k = self.samples.partition_point(|s| *s < id);
        if k == 0 {
            return Ok(0);
        }
        let block = (k - 1) * SAMPLE_EVERY..(k * SAMPLE_EVERY).min(self.len);
        let first = self.samples[k - 1];
        let span = match self.samples.get(k) {
            Some(next) => Some(next - first),
            None => (self.last_id - first).checked_add(1),
        };
        // IDs are strictly increasing: a block spanning as many IDs as it holds trades has
        // no gap, and the trade is found by its distance from the block's first.
        if span == Some(block.len() as u64) {
            return Ok(block.start + (id - first) as usize);
        }
        let trades = self.read(block.clone())?;
        Ok(block.start + trades.partition_point(|(t, _)| t.id < id))
    }

    pub fn agg_count(&self) -> usize {
        self.agg_count
    }

    fn agg_base(&self) -> u64 {
        self.samples.first().copied().unwrap_or(0)
    }

    /// Index of aggregate `k`'s first trade.
    fn agg_start(&self, k: usize) -> usize {
        let k = k as u64;
        let word = self.agg_rank.partition_point(|r| *r <= k).saturating_sub(1);
        let mut bits = self.agg_starts.get(word).copied().unwrap_or(0);
        for _ in 0..k.saturating_sub(self.agg_rank.get(word).copied().unwrap_or(0)) {
            bits &= bits.wrapping_sub(1);
        }
        word * 64 + bits.trailing_zeros() as usize
    }

    /// Aggregate `k` in ID order.
    pub fn agg(&self, k: usize) -> io::Result<AggPoint> {
        let start = self.agg_start(k);
        let end = if k + 1 < self.agg_count {
            self.agg_start(k + 1)
        } else {
            self.len
        };
        let trades = self.read(start..end)?;
        let (first, _) = trades
            .first()
            .copied()
            .ok_or_else(|| io_error("aggregate without trades"))?;
        Ok(AggPoint {
            agg_id: self.agg_base() + k as u64,
            price: first.price,
            qty: trades.iter().skip(1).fold(first.qty, |q, (t, _)| q + t.qty),
            first_trade_id: first.id,
            last_trade_id: first.id + (trades.len() - 1) as u64,
            time_ms: first.time_ms,
            buyer_is_maker: first.buyer_is_maker,
        })
    }

    /// Index of the first aggregate with an ID at or above `agg_id`.
    pub fn first_agg_at_or_after(&self, agg_id: u64) -> usize {
        (agg_id.saturating_sub(self.agg_base()) as usize).min(self.agg_count)
    }

    /// The aggregate that trade `trade_id` completes, if it is the last of one.
    pub fn agg_completed_by(&self, trade_id: u64) -> io::Result<Option<AggPoint>> {
        let i = self.first_at_or_after(trade_id)?;
        if i >= self.len || (i + 1 < self.len && !bit(&self.agg_starts, i + 1)) {
            return Ok(None);
        }
        // Aggregates starting at or before trade i.
        let word = i / 64;
        let below = self.agg_starts[word] & (u64::MAX >> (63 - i % 64));
        let rank = self.agg_rank[word] + u64::from(below.count_ones());
        let agg = self.agg(rank as usize - 1)?;
        // `i` is the trade after `trade_id` when the log has no such trade.
        Ok((agg.last_trade_id == trade_id).then_some(agg))
    }

    /// The trades back as captured, in ID order.
    pub fn captured(&self) -> io::Result<Vec<Captured>> {
        let mut out = Vec::with_capacity(self.len);
        self.scan(|trade, history| out.push(Captured { trade, history }))?;
        Ok(out)
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

    fn build(captured: Vec<Captured>) -> TradeLog {
        TradeLog::build(captured, &mut TradeStore::new().unwrap()).unwrap()
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
        let log = build(captured.clone());
        let ids: Vec<u64> = log
            .read(0..log.len())
            .unwrap()
            .iter()
            .map(|(t, _)| t.id)
            .collect();
        assert_eq!(ids, vec![1, 2, 5, 5 + (1 << 33), 6 + (1 << 33)]);
        for c in &captured {
            let i = log.first_at_or_after(c.trade.id).unwrap();
            assert_eq!(log.read(i..i + 1).unwrap(), vec![(c.trade, c.history)]);
        }
        assert_eq!(log.first_at_or_after(3).unwrap(), 2);
        assert_eq!(log.first_at_or_after(0).unwrap(), 0);
        assert_eq!(log.first_at_or_after(u64::MAX).unwrap(), log.len());
        assert_eq!(log.captured().unwrap().len(), 5);
    }

    #[test]
    fn aggregates_group_consecutive_trades_of_one_time_price_and_side() {
        let log = build(vec![
            trade(10, 5, 1.0, true),
            trade(11, 5, 1.0, true),
            trade(12, 5, 1.0, false),
            trade(14, 5, 1.0, false),
        ]);
        assert_eq!(log.agg_count(), 3);
        let a = log.agg(0).unwrap();
        assert_eq!(
            (a.agg_id, a.first_trade_id, a.last_trade_id, a.qty),
            (10, 10, 11, 2.0)
        );
        assert!(log.agg_completed_by(10).unwrap().is_none());
        assert_eq!(log.agg_completed_by(11).unwrap(), Some(a));
        assert_eq!(
            log.agg_completed_by(14).unwrap().map(|a| a.agg_id),
            Some(12)
        );
        assert!(log.agg_completed_by(13).unwrap().is_none());
        assert_eq!(log.first_agg_at_or_after(11), 1);
        assert_eq!(log.first_agg_at_or_after(99), 3);
    }

    /// Many trades, with gaps in some blocks and aggregates across word and block edges:
    /// every lookup agrees with a plain search of the trades in memory.
    #[test]
    fn lookups_agree_with_a_search_in_memory_across_blocks_and_gaps() {
        let mut captured = Vec::new();
        let mut id = 1_000u64;
        for i in 0..3_000u64 {
            // A gap every so often, but whole blocks without one.
            id += if i % 700 == 699 { 3 } else { 1 };
            let price = 100.0 + (i / 5 % 3) as f64;
            captured.push(trade(id, (i / 5) as i64, price, i % 11 == 0));
        }
        let log = build(captured.clone());
        let all = log.read(0..log.len()).unwrap();
        assert_eq!(all.len(), captured.len());
        // Aggregates by the same rule, in memory.
        let mut aggs: Vec<Range<usize>> = Vec::new();
        for i in 0..all.len() {
            let (t, _) = all[i];
            let continues = i > 0 && {
                let (p, _) = all[i - 1];
                p.id + 1 == t.id
                    && p.time_ms == t.time_ms
                    && p.price == t.price
                    && p.buyer_is_maker == t.buyer_is_maker
            };
            match aggs.last_mut() {
                Some(r) if continues => r.end = i + 1,
                _ => aggs.push(i..i + 1),
            }
        }
        assert_eq!(log.agg_count(), aggs.len());
        for (k, r) in aggs.iter().enumerate() {
            let a = log.agg(k).unwrap();
            assert_eq!(
                (a.first_trade_id, a.last_trade_id),
                (all[r.start].0.id, all[r.end - 1].0.id)
            );
            assert_eq!(a.qty, r.len() as f64);
        }
        for probe in 990..id + 3 {
            let expected = all.partition_point(|(t, _)| t.id < probe);
            assert_eq!(
                log.first_at_or_after(probe).unwrap(),
                expected,
                "id {probe}"
            );
            let completes = aggs
                .iter()
                .position(|r| all[r.end - 1].0.id == probe)
                .map(|k| log.agg(k).unwrap());
            assert_eq!(
                log.agg_completed_by(probe).unwrap(),
                completes,
                "id {probe}"
            );
        }
    }
}
