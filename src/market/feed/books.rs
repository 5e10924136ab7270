//! The local order books of one connection's symbols: diff updates applied by Binance's
//! rules (`market::depth`), and when a snapshot is needed, whether to ask for one now
//! (failed or unusable snapshots are retried after 1 s, doubling up to 60 s). Pure: the
//! receive time comes in.

use std::collections::{HashMap, HashSet};

use crate::market::depth::{BookSync, DepthOutcome, DepthSnapshot, DepthUpdate, OrderBook};

/// Pending updates kept per book while a snapshot is awaited.
const MAX_BUFFERED_DEPTH_UPDATES: usize = 1000;
const SNAPSHOT_RETRY_MS: i64 = 1_000;
const SNAPSHOT_RETRY_MAX_MS: i64 = 60_000;

/// What happened to a book, for logs and metrics (`event` label).
#[derive(Debug, Clone, PartialEq)]
pub enum DepthSyncEvent {
    /// Updates `expected..got` were lost: the book resyncs.
    Gap {
        expected: u64,
        got: u64,
    },
    /// The book crossed: it resyncs.
    Crossed,
    SnapshotLoaded,
    /// The snapshot is older than what was buffered: asked again later.
    SnapshotUnbridged {
        last_update_id: u64,
    },
    SnapshotFailed {
        error: String,
        retry_in_ms: i64,
    },
}

impl DepthSyncEvent {
    /// The `bizra_feed_depth_sync_total{event}` label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Gap { .. } => "gap",
            Self::Crossed => "crossed",
            Self::SnapshotLoaded => "snapshot_loaded",
            Self::SnapshotUnbridged { .. } => "snapshot_unbridged",
            Self::SnapshotFailed { .. } => "snapshot_failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Books {
    books: HashMap<String, OrderBook>,
    /// After a failed or unusable snapshot, no new request before `.0`; `.1` is the wait
    /// that led there (doubling while requests keep failing).
    retry_at: HashMap<String, (i64, i64)>,
    /// Books that broke (gap or crossed) and have not been bridged since.
    recovering: HashSet<String>,
    max_levels: usize,
}

impl Books {
    pub fn new(max_levels: usize) -> Self {
        Self {
            books: HashMap::new(),
            retry_at: HashMap::new(),
            recovering: HashSet::new(),
            max_levels,
        }
    }

    fn retry_later(&mut self, symbol: &str, now_ms: i64) -> i64 {
        let wait = self
            .retry_at
            .get(symbol)
            .map_or(SNAPSHOT_RETRY_MS, |(_, last)| {
                (last * 2).min(SNAPSHOT_RETRY_MAX_MS)
            });
        self.retry_at
            .insert(symbol.to_string(), (now_ms.saturating_add(wait), wait));
        wait
    }

    /// Apply one diff update; returns whether a snapshot should be fetched now.
    pub fn on_update(
        &mut self,
        update: DepthUpdate,
        now_ms: i64,
        events: &mut Vec<DepthSyncEvent>,
    ) -> bool {
        let symbol = update.symbol.clone();
        let book = self
            .books
            .entry(symbol.clone())
            .or_insert_with(|| OrderBook::new(self.max_levels, MAX_BUFFERED_DEPTH_UPDATES));
        match book.on_update(update) {
            DepthOutcome::Applied | DepthOutcome::AlreadyApplied | DepthOutcome::Buffered => {}
            DepthOutcome::Gap { expected, got } => {
                self.recovering.insert(symbol.clone());
                events.push(DepthSyncEvent::Gap { expected, got });
            }
            DepthOutcome::Crossed => {
                self.recovering.insert(symbol.clone());
                book.reset();
                events.push(DepthSyncEvent::Crossed);
            }
        }
        book.sync() == BookSync::AwaitingSnapshot
            && self.retry_at.get(&symbol).is_none_or(|(t, _)| now_ms >= *t)
    }

    /// The answer to a snapshot request.
    pub fn on_snapshot(
        &mut self,
        symbol: &str,
        snapshot: Result<DepthSnapshot, String>,
        now_ms: i64,
        events: &mut Vec<DepthSyncEvent>,
    ) {
        match snapshot {
            Ok(snapshot) => {
                events.push(DepthSyncEvent::SnapshotLoaded);
                let unbridged = self
                    .books
                    .get_mut(symbol)
                    .and_then(|b| b.load_snapshot(&snapshot))
                    .is_some();
                if unbridged {
                    self.retry_later(symbol, now_ms);
                    events.push(DepthSyncEvent::SnapshotUnbridged {
                        last_update_id: snapshot.last_update_id,
                    });
                } else {
                    self.retry_at.remove(symbol);
                }
            }
            Err(error) => {
                let retry_in_ms = self.retry_later(symbol, now_ms);
                events.push(DepthSyncEvent::SnapshotFailed { error, retry_in_ms });
            }
        }
    }

    /// Whether the book can be relied on: a snapshot is loaded and no break has been seen
    /// since, or the break has been bridged. (A freshly loaded snapshot counts before its
    /// bridging update arrives: nothing is known to be missing, and replays must not
    /// depend on how far ahead of the client the server is.)
    pub fn reliable(&mut self, symbol: &str) -> bool {
        match self.books.get(symbol).map(OrderBook::sync) {
            Some(BookSync::InSync) => {
                self.recovering.remove(symbol);
                true
            }
            Some(BookSync::Bridging) => !self.recovering.contains(symbol),
            Some(BookSync::AwaitingSnapshot) | None => false,
        }
    }

    pub fn out_of_sync(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .books
            .iter()
            .filter(|(s, b)| {
                b.sync() == BookSync::AwaitingSnapshot
                    || (b.sync() == BookSync::Bridging && self.recovering.contains(*s))
            })
            .map(|(s, _)| s.clone())
            .collect();
        v.sort();
        v
    }
}
