//! What one connection's feed saw: frames accepted and rejected by reason, duplicates,
//! gaps and backfills, quarantined events, depth syncs, reconnects.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::market::skew::SkewSummary;

#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    pub connections: u32,
    pub frames: u64,
    pub accepted: BTreeMap<&'static str, u64>,
    pub rejected: BTreeMap<&'static str, u64>,
    pub elapsed: Duration,
    pub ended_by: String,
    /// Trades already seen (e.g. replayed by a new connection), dropped.
    pub duplicate_trades: u64,
    /// Trade-ID gaps (missing trades) seen, and how many trades they miss.
    pub trade_gaps: u64,
    /// Trades of those gaps fetched from the REST endpoint and delivered in order.
    pub backfilled_trades: u64,
    /// Trades of those gaps that could not be fetched.
    pub missing_trades: u64,
    /// The same for aggregate trades (`aggTrade`, continuity by aggregate ID).
    pub duplicate_agg_trades: u64,
    pub agg_trade_gaps: u64,
    pub backfilled_agg_trades: u64,
    pub missing_agg_trades: u64,
    /// Connections replaced because they went silent.
    pub idle_reconnects: u32,
    /// Make-before-break replacements (age or `serverShutdown`), and the notices seen.
    pub rotations: u32,
    pub server_shutdowns: u32,
    /// Events delivered while their symbol was unhealthy (stale stream or lost trades).
    pub unhealthy_ticks: u64,
    /// For every connection after the first: from the moment the previous one ended to the
    /// first market event of the new one (backoff and handshake included), microseconds
    /// (bounded: the last 64).
    pub reconnect_to_first_event_us: Vec<u64>,
    /// Local receive time minus exchange event time of trades (live clock only).
    pub clock_skew: Option<SkewSummary>,
    /// Depth snapshots loaded into local books (the first sync and every resync).
    pub depth_snapshots: u64,
    /// Breaks in the diff-depth sequence (lost updates) and crossed books, each followed
    /// by a resync.
    pub depth_gaps: u64,
    pub depth_crossed: u64,
    /// Snapshot requests that failed (retried at most once a second per symbol).
    pub depth_snapshot_failures: u64,
    /// Symbols whose local book was not in step when ingest ended.
    pub books_out_of_sync: Vec<String>,
    /// Well-formed but implausible events, by reason: quarantined, never delivered.
    pub quarantined: BTreeMap<&'static str, u64>,
}

impl IngestReport {
    /// Add the report of another connection shard.
    pub fn merge(&mut self, other: IngestReport) {
        self.connections += other.connections;
        self.frames += other.frames;
        for (k, v) in other.accepted {
            *self.accepted.entry(k).or_default() += v;
        }
        for (k, v) in other.rejected {
            *self.rejected.entry(k).or_default() += v;
        }
        self.elapsed = self.elapsed.max(other.elapsed);
        if !other.ended_by.is_empty() && !self.ended_by.contains(&other.ended_by) {
            if !self.ended_by.is_empty() {
                self.ended_by.push_str("; ");
            }
            self.ended_by.push_str(&other.ended_by);
        }
        self.duplicate_trades += other.duplicate_trades;
        self.trade_gaps += other.trade_gaps;
        self.backfilled_trades += other.backfilled_trades;
        self.missing_trades += other.missing_trades;
        self.duplicate_agg_trades += other.duplicate_agg_trades;
        self.agg_trade_gaps += other.agg_trade_gaps;
        self.backfilled_agg_trades += other.backfilled_agg_trades;
        self.missing_agg_trades += other.missing_agg_trades;
        self.idle_reconnects += other.idle_reconnects;
        self.rotations += other.rotations;
        self.server_shutdowns += other.server_shutdowns;
        self.unhealthy_ticks += other.unhealthy_ticks;
        self.reconnect_to_first_event_us
            .extend(other.reconnect_to_first_event_us);
        self.depth_snapshots += other.depth_snapshots;
        self.depth_gaps += other.depth_gaps;
        self.depth_crossed += other.depth_crossed;
        self.depth_snapshot_failures += other.depth_snapshot_failures;
        self.books_out_of_sync.extend(other.books_out_of_sync);
        for (k, v) in other.quarantined {
            *self.quarantined.entry(k).or_default() += v;
        }
        self.clock_skew = match (self.clock_skew.take(), other.clock_skew) {
            (Some(a), Some(b)) => Some(a.combine(&b)),
            (a, b) => a.or(b),
        };
    }
}
