//! The local order books of one connection's symbols: diff updates applied by Binance's
//! rules (`market::depth`), and when a snapshot is needed, whether to ask for one now.
//! Failed or unusable snapshots are retried after 1 s, doubling up to 60 s, and so is the
//! second and every later snapshot in a row that a break follows within 10 s: a server
//! whose snapshots do not hold (a crossed book it keeps serving) is not asked at every
//! diff, which against Binance would spend the request weight (250 for a 5000-level
//! snapshot) and get the IP banned. Pure: the receive time comes in.

use crate::fast_hash::{FastMap, FastSet};

use crate::market::depth::{BookSync, DepthOutcome, DepthSnapshot, DepthUpdate, OrderBook};
use crate::market::Symbol;

/// Pending updates kept per book while a snapshot is awaited: 10 s of a `@100ms` stream.
/// The stream waits while a snapshot is fetched, so only a snapshot put off (its retry
/// wait, or a spent request weight: minutes at many symbols) buffers, and of that only
/// what follows the snapshot is used; 1000 per book held ~1 MB each at 1000 symbols.
const MAX_BUFFERED_DEPTH_UPDATES: usize = 100;
const SNAPSHOT_RETRY_MS: i64 = 1_000;
const SNAPSHOT_RETRY_MAX_MS: i64 = 60_000;
/// A book that breaks sooner than this after its snapshot was loaded asks for the next one
/// only after the retry wait; one that held longer asks at once.
const SNAPSHOT_HOLD_MS: i64 = 10_000;

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
    books: FastMap<Symbol, OrderBook>,
    /// After a failed or unusable snapshot, no new request before `.0`; `.1` is the wait
    /// that led there (doubling while requests keep failing).
    retry_at: FastMap<Symbol, (i64, i64)>,
    /// Books that broke (gap or crossed) and have not been bridged since.
    recovering: FastSet<Symbol>,
    /// When each book's last snapshot was loaded.
    loaded_at: FastMap<Symbol, i64>,
    max_levels: usize,
}

impl Books {
    pub fn new(max_levels: usize) -> Self {
        Self {
            books: FastMap::default(),
            retry_at: FastMap::default(),
            recovering: FastSet::default(),
            loaded_at: FastMap::default(),
            max_levels,
        }
    }

    fn retry_later(&mut self, symbol: &str, now_ms: i64) -> i64 {
        let wait = self
            .retry_at
            .get(symbol)
            .map_or(SNAPSHOT_RETRY_MS, |(_, last)| {
                (last * 2).clamp(SNAPSHOT_RETRY_MS, SNAPSHOT_RETRY_MAX_MS)
            });
        self.retry_at
            .insert(symbol.into(), (now_ms.saturating_add(wait), wait));
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
        let broke = match book.on_update(update) {
            DepthOutcome::Applied | DepthOutcome::AlreadyApplied | DepthOutcome::Buffered => None,
            DepthOutcome::Gap { expected, got } => Some(DepthSyncEvent::Gap { expected, got }),
            DepthOutcome::Crossed => {
                book.reset();
                Some(DepthSyncEvent::Crossed)
            }
        };
        let awaiting = book.sync() == BookSync::AwaitingSnapshot;
        if let Some(event) = broke {
            self.recovering.insert(symbol.clone());
            events.push(event);
            let held = self
                .loaded_at
                .get(&symbol)
                .is_none_or(|t| now_ms.saturating_sub(*t) >= SNAPSHOT_HOLD_MS);
            if held {
                self.retry_at.remove(&symbol);
            } else if self.retry_at.contains_key(&symbol) {
                self.retry_later(&symbol, now_ms);
            } else {
                // The first snapshot that did not hold: asked again at once (a lost update
                // right after a sync happens); from the second on, the wait.
                self.retry_at.insert(symbol.clone(), (now_ms, 0));
            }
        }
        awaiting && self.retry_at.get(&symbol).is_none_or(|(t, _)| now_ms >= *t)
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
                    self.loaded_at.insert(symbol.into(), now_ms);
                    // Free to ask again, but the wait is kept: if this snapshot does not
                    // hold either, the next one waits twice as long.
                    if let Some(retry) = self.retry_at.get_mut(symbol) {
                        retry.0 = now_ms;
                    }
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
            .map(|(s, _)| s.to_string())
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::depth::Level;

    fn level(price: f64) -> Level {
        Level { price, qty: 1.0 }
    }

    /// A diff that crosses the book (bid 101 over ask 100).
    fn crossing(id: u64) -> DepthUpdate {
        DepthUpdate {
            event_time_ms: 0,
            symbol: "BTCUSDT".into(),
            first_update_id: id,
            final_update_id: id,
            bids: vec![level(101.0)],
            asks: vec![],
        }
    }

    /// A snapshot at `id` with bid 99 and ask 100.
    fn snapshot(id: u64) -> Result<DepthSnapshot, String> {
        Ok(DepthSnapshot {
            last_update_id: id,
            bids: vec![level(99.0)],
            asks: vec![level(100.0)],
        })
    }

    /// The times at which the books ask for a snapshot when every snapshot is crossed by
    /// the next diff, one diff every 100 ms over `ms`.
    fn asks_over(books: &mut Books, ms: i64) -> Vec<i64> {
        let mut asked = Vec::new();
        let mut events = Vec::new();
        let mut id = 10;
        for now in (0..ms).step_by(100) {
            id += 1;
            if books.on_update(crossing(id), now, &mut events) {
                asked.push(now);
                books.on_snapshot("BTCUSDT", snapshot(id), now, &mut events);
            }
        }
        asked
    }

    #[test]
    fn snapshots_that_do_not_hold_are_asked_for_less_and_less_often() {
        let mut books = Books::new(100);
        let asked = asks_over(&mut books, 250_000);
        // Without the back-off: at every diff, 2500 requests. With it: once more at once,
        // then after 1, 2, 4 .. 32 s (each break comes 100 ms after its snapshot), then
        // once a minute.
        assert_eq!(
            asked,
            [0, 100, 1_200, 3_300, 7_400, 15_500, 31_600, 63_700, 123_800, 183_900, 244_000]
        );
    }

    #[test]
    fn a_book_that_held_resyncs_at_once() {
        let mut books = Books::new(100);
        let mut events = Vec::new();
        assert!(books.on_update(crossing(11), 0, &mut events));
        books.on_snapshot("BTCUSDT", snapshot(11), 0, &mut events);
        // In step for 20 s, then a hole: asked for at once.
        let mut update = crossing(12);
        update.bids = vec![level(98.0)];
        assert!(!books.on_update(update, 100, &mut events));
        assert!(books.on_update(crossing(20), 20_000, &mut events));
    }
}
