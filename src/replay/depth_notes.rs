//! How the streamed diffs reach the server's depth books (`replay::depth`, what
//! `GET /api/v3/depth` is answered from). Every connection notes the diffs it streams or
//! passes over; they are counted by instrument and applied only when a snapshot is asked
//! for (`replay::depth_reread`): the engine asks for a book when it (re)synchronises its
//! own, once per instrument in a capture without gaps, while applying every diff as it
//! passed took about a seventh of the in-process replay's CPU and a quarter of the replay
//! server's at hundreds of symbols. An instrument's count is the most diffs any one
//! connection has noted of it (each connection replays from the start, and the server's
//! "now" is the furthest any has got), so a snapshot holds what applying every diff as it
//! was first noted would have made, once a connection has noted every diff before it: its
//! reader hands the diffs it leaves out (`--drop-depth`) or passes over to the sender in
//! their turn (`FrameSource::notes_in_turn`). Only the diffs of an instrument a client
//! stops and starts again may be counted a moment before those still on their way to it.
//! In the in-process replay, which notes each diff as it reads it, once reading again
//! costs more than following would, the books are brought up to date and every diff is
//! applied as it is noted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::depth::streamed_diff_instrument;
use super::depth_reread::{instrument_key, DepthReread};
use super::rest::{RestIndex, RestResponse};
use crate::fast_hash::FastMap;
use crate::market::capture::CaptureError;
use crate::market::Symbol;

/// The server's notes, shared by its connections and its REST answers.
pub struct DepthNotes {
    index: Arc<RestIndex>,
    next_connection: AtomicU64,
    /// Whether the books may switch to following every diff once reading again costs more
    /// (`on_request_in_order`).
    may_follow: bool,
    /// Each diff applied as it is noted (the books follow the stream). Set once, with
    /// `counts` held, when the switch to following is complete: a note that waited for
    /// `counts` meanwhile sees it.
    following: AtomicBool,
    /// Reading again; taken before `counts` by whoever takes both.
    reread: Mutex<DepthReread>,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Diffs noted by each connection, by the instrument their stream names (lower case).
    by_connection: FastMap<u64, FastMap<Symbol, u64>>,
    /// The most noted of each instrument by connections since closed.
    closed: FastMap<Symbol, u64>,
    noted_total: u64,
}

impl DepthNotes {
    /// Every diff applied as it is noted.
    #[cfg(test)]
    pub fn at_once(index: Arc<RestIndex>) -> Arc<Self> {
        Self::with(index.clone(), true, true, DepthReread::new(index))
    }

    /// The diffs counted as they are noted and applied when a snapshot is asked for
    /// (`caught_up`): the replay server, whose connections read ahead of what they send.
    /// A book brought up to date reads on from where it stopped if its reader is among the
    /// last few kept open, else from the start of its files.
    pub fn on_request(index: Arc<RestIndex>) -> Arc<Self> {
        Self::with(index.clone(), false, false, DepthReread::new(index))
    }

    /// As `on_request`, for a host that notes every diff as it reads it, in capture order
    /// (the in-process replay): once reading again has cost more than applying every diff
    /// would have, every book is brought up to date and each diff is applied as it is
    /// noted from then on.
    pub fn on_request_in_order(index: Arc<RestIndex>) -> Arc<Self> {
        Self::with(index.clone(), false, true, DepthReread::new(index))
    }

    /// As `on_request_in_order`, judging reading again costlier after `lines` lines.
    #[cfg(test)]
    fn on_request_in_order_for(index: Arc<RestIndex>, lines: u64) -> Arc<Self> {
        let reread = DepthReread::new(index.clone()).with_free_lines(lines);
        Self::with(index, false, true, reread)
    }

    fn with(
        index: Arc<RestIndex>,
        following: bool,
        may_follow: bool,
        reread: DepthReread,
    ) -> Arc<Self> {
        Arc::new(Self {
            index,
            next_connection: AtomicU64::new(0),
            may_follow,
            following: AtomicBool::new(following),
            reread: Mutex::new(reread),
            counts: Mutex::new(Counts::default()),
        })
    }

    /// The notes of one more connection (a WebSocket client, or the in-process reader).
    pub fn connection(self: &Arc<Self>) -> ConnectionNotes {
        ConnectionNotes(Arc::new(Connection {
            id: self.next_connection.fetch_add(1, Ordering::Relaxed),
            notes: self.clone(),
        }))
    }

    /// Whether the books follow every diff as it is noted.
    #[cfg(test)]
    pub fn following(&self) -> bool {
        self.following.load(Ordering::Acquire)
    }

    fn note(&self, connection: u64, json: &str) {
        let Some(instrument) = streamed_diff_instrument(json) else {
            return;
        };
        if self.following.load(Ordering::Acquire) {
            self.index.depth.note_streamed(json);
            return;
        }
        let mut counts = self.lock_counts();
        if self.following.load(Ordering::Acquire) {
            // The switch ended while this note waited for the lock.
            drop(counts);
            self.index.depth.note_streamed(json);
            return;
        }
        let mine = counts.by_connection.entry(connection).or_default();
        let n = match mine.get_mut(instrument) {
            Some(n) => n,
            None => mine.entry(instrument_key(instrument)).or_default(),
        };
        *n += 1;
        counts.noted_total += 1;
    }

    /// Before a snapshot of `symbol` (any case) is answered: its book holds every diff of
    /// it noted so far.
    pub fn caught_up(&self, symbol: &str) -> Result<(), CaptureError> {
        let mut reread = self.reread.lock().unwrap_or_else(|e| e.into_inner());
        let instrument = instrument_key(symbol);
        let target = {
            let counts = self.lock_counts();
            if self.following.load(Ordering::Acquire) {
                return Ok(());
            }
            most_noted(&counts, &instrument)
        };
        reread.catch_up(&instrument, target)?;
        if self.may_follow {
            let mut counts = self.lock_counts();
            if reread.costlier_than_following(counts.noted_total) {
                // The notes come in order from the thread asking: none can pass the switch.
                for (instrument, target) in &all_noted(&counts) {
                    reread.catch_up(instrument, *target)?;
                }
                counts.by_connection.clear();
                counts.closed.clear();
                self.following.store(true, Ordering::Release);
                tracing::info!(
                    "depth snapshots are asked for often: the books now follow every diff"
                );
            }
        }
        Ok(())
    }

    /// The answer to a REST request (`path?query`), the asked book brought up to date
    /// first. A capture that cannot be read again leaves the book where it got to.
    pub fn answer(&self, target: &str) -> RestResponse {
        if let Some(symbol) = RestIndex::depth_symbol(target) {
            if let Err(e) = self.caught_up(symbol) {
                tracing::warn!(error = %e, symbol, "depth snapshot answered from a book behind the stream");
            }
        }
        self.index.handle(target)
    }

    /// A connection closed: what it noted still counts.
    fn forget(&self, connection: u64) {
        let mut counts = self.lock_counts();
        if let Some(mine) = counts.by_connection.remove(&connection) {
            raise(&mut counts.closed, mine);
        }
    }

    fn lock_counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The most diffs of `instrument` any connection has noted.
fn most_noted(counts: &Counts, instrument: &str) -> u64 {
    counts
        .by_connection
        .values()
        .chain(std::iter::once(&counts.closed))
        .filter_map(|mine| mine.get(instrument))
        .copied()
        .max()
        .unwrap_or(0)
}

/// The most diffs of each instrument any connection has noted.
fn all_noted(counts: &Counts) -> FastMap<Symbol, u64> {
    let mut most = counts.closed.clone();
    for mine in counts.by_connection.values() {
        raise(&mut most, mine.iter().map(|(i, n)| (i.clone(), *n)));
    }
    most
}

/// Each instrument of `into` raised to its count in `from`.
fn raise(into: &mut FastMap<Symbol, u64>, from: impl IntoIterator<Item = (Symbol, u64)>) {
    for (instrument, n) in from {
        let most = into.entry(instrument).or_default();
        *most = (*most).max(n);
    }
}

/// One connection's end of the notes; its clones are the same connection, forgotten when
/// the last is dropped.
#[derive(Clone)]
pub struct ConnectionNotes(Arc<Connection>);

struct Connection {
    id: u64,
    notes: Arc<DepthNotes>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.notes.forget(self.id);
    }
}

impl ConnectionNotes {
    /// A captured line was streamed to this connection's client, or passed over: if it is
    /// a diff, snapshots from now on include it.
    pub fn note(&self, json: &str) {
        self.0.notes.note(self.0.id, json);
    }

    /// Before a snapshot of `symbol` is answered (a host without a server's REST).
    pub fn caught_up(&self, symbol: &str) -> Result<(), CaptureError> {
        self.0.notes.caught_up(symbol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn diff(first: u64, last: u64, bids: &str) -> String {
        format!(
            r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":{first},"u":{last},"b":{bids},"a":[]}}}}"#
        )
    }

    fn trade(id: u64) -> String {
        format!(
            r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1,"s":"BTCUSDT","t":{id},"p":"100.0","q":"1.0","T":1,"m":false,"M":true}}}}"#
        )
    }

    /// A capture of 300 diffs of one book, five trades after each (more lines between
    /// diffs than reading again may cost per diff), and its lines.
    fn capture(dir: &std::path::Path) -> (std::path::PathBuf, Vec<String>) {
        let path = dir.join("btcusdt_20240809.txt");
        let mut lines = Vec::new();
        for k in 0..300u64 {
            lines.push(diff(
                2 * k + 1,
                2 * k + 2,
                &format!(r#"[["{}.00","{}.0"]]"#, 100 + k % 7, k % 3),
            ));
            lines.extend((0..5).map(|j| trade(5 * k + j)));
        }
        let mut file = std::fs::File::create(&path).unwrap();
        for (k, line) in lines.iter().enumerate() {
            writeln!(file, "{} {line}", 1_000 + k).unwrap();
        }
        (path, lines)
    }

    /// A book without a snapshot line applies whatever comes, so only which diffs it has
    /// been given, and in what order, decides what it holds.
    #[test]
    fn snapshots_on_request_equal_those_of_every_diff_applied_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (path, lines) = capture(dir.path());
        // At once; on request; on request until reading again turns costlier (at once
        // from the first request on that reads more than four lines a diff noted).
        let answers = |mode: u8| {
            let index = Arc::new(RestIndex::build(&[], std::slice::from_ref(&path)).unwrap());
            let notes = match mode {
                0 => DepthNotes::at_once(index.clone()),
                1 => DepthNotes::on_request_in_order(index.clone()),
                _ => DepthNotes::on_request_in_order_for(index.clone(), 0),
            };
            let conn = notes.connection();
            let mut seen = Vec::new();
            for (k, line) in lines.iter().enumerate() {
                if line.contains("@depth") {
                    conn.note(line);
                }
                if k % 37 == 0 || (200..230).contains(&k) {
                    conn.caught_up("BTCUSDT").unwrap();
                    seen.push(index.depth.snapshot_json("BTCUSDT", 10));
                }
            }
            conn.caught_up("btcusdt").unwrap();
            seen.push(index.depth.snapshot_json("BTCUSDT", 10));
            (seen, !notes.following())
        };
        let (at_once, _) = answers(0);
        assert_eq!(answers(1), (at_once.clone(), true));
        assert_eq!(answers(2), (at_once.clone(), false));
        assert!(at_once
            .last()
            .and_then(|s| s.as_deref())
            .is_some_and(|s| s.contains("\"lastUpdateId\":600")));
    }

    /// Each connection replays from the start: a book holds the most diffs any one
    /// connection has noted, a closed connection's included, not the sum of their notes.
    #[test]
    fn a_book_holds_the_most_any_connection_noted() {
        let dir = tempfile::tempdir().unwrap();
        let (path, lines) = capture(dir.path());
        let diffs: Vec<&String> = lines.iter().filter(|l| l.contains("@depth")).collect();
        let snapshot_after = |noted: usize| {
            let index = Arc::new(RestIndex::build(&[], std::slice::from_ref(&path)).unwrap());
            let notes = DepthNotes::at_once(index.clone());
            let conn = notes.connection();
            diffs[..noted].iter().for_each(|d| conn.note(d));
            index.depth.snapshot_json("BTCUSDT", 10)
        };
        let index = Arc::new(RestIndex::build(&[], std::slice::from_ref(&path)).unwrap());
        let notes = DepthNotes::on_request(index.clone());
        let (a, b) = (notes.connection(), notes.connection());
        diffs[..120].iter().for_each(|d| a.note(d));
        diffs[..200].iter().for_each(|d| b.note(d));
        drop(b);
        let c = notes.connection();
        diffs[..50].iter().for_each(|d| c.note(d));
        c.caught_up("BTCUSDT").unwrap();
        assert_eq!(
            index.depth.snapshot_json("BTCUSDT", 10),
            snapshot_after(200)
        );
        diffs[120..250].iter().for_each(|d| a.note(d));
        a.caught_up("btcusdt").unwrap();
        let at_250 = snapshot_after(250);
        assert_eq!(index.depth.snapshot_json("BTCUSDT", 10), at_250);
        assert_ne!(at_250, snapshot_after(200));
    }
}
