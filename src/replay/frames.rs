//! The frames a replay serves to one subscription, in capture order: the captured lines of
//! the subscribed streams, aggregate trades built from the trades that complete them, and
//! the configured faults (skipped trades, dropped depth updates, injected poison). The
//! replay server sends them over WebSocket; the in-process replay feeds them to the engine.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use super::depth_notes::ConnectionNotes;
use super::faults::{agg_frame, skipped, DepthDropper, Injector};
use super::rest::RestIndex;
use super::ReplayOptions;
use crate::market::capture::{group_by_instrument, CaptureError, CaptureLine, CaptureMerge};

/// The streams a subscription wants. The replay server's connection changes it on
/// `SUBSCRIBE` and `UNSUBSCRIBE` while the frame source reads with it.
#[derive(Debug, Clone, Default)]
pub struct Wanted(Arc<WantedStreams>);

#[derive(Debug, Default)]
struct WantedStreams {
    streams: RwLock<HashSet<String>>,
    /// Counts changes, so a reader notices one without comparing sets.
    version: AtomicU64,
    /// When the first change the reader has not followed yet was made: a stream it adds
    /// starts from the captured time the connection was at then.
    unfollowed_since: Mutex<Option<Instant>>,
}

impl Wanted {
    pub fn new(streams: HashSet<String>) -> Self {
        Self(Arc::new(WantedStreams {
            streams: RwLock::new(streams),
            version: AtomicU64::new(0),
            unfollowed_since: Mutex::new(None),
        }))
    }

    pub fn contains(&self, stream: &str) -> bool {
        self.0.streams.read().is_ok_and(|s| s.contains(stream))
    }

    /// Whether any wanted stream is of the instrument `prefix` (`btcusdt`).
    fn any_of(&self, prefix: &str) -> bool {
        self.0.streams.read().is_ok_and(|s| {
            s.iter()
                .any(|w| w.split_once('@').is_some_and(|(p, _)| p == prefix))
        })
    }

    pub(super) fn version(&self) -> u64 {
        self.0.version.load(Ordering::Acquire)
    }

    pub fn snapshot(&self) -> HashSet<String> {
        self.0.streams.read().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.0.streams.read().map_or(0, |s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Apply `change` to the set.
    pub fn update<T>(&self, change: impl FnOnce(&mut HashSet<String>) -> T) -> Option<T> {
        if let Ok(mut since) = self.0.unfollowed_since.lock() {
            since.get_or_insert_with(Instant::now);
        }
        let out = self.0.streams.write().ok().map(|mut s| change(&mut s));
        self.0.version.fetch_add(1, Ordering::AcqRel);
        out
    }

    /// When the first change not followed yet was made.
    fn unfollowed_since(&self) -> Option<Instant> {
        self.0.unfollowed_since.lock().ok().and_then(|since| *since)
    }

    fn followed(&self) {
        if let Ok(mut since) = self.0.unfollowed_since.lock() {
            *since = None;
        }
    }
}

/// What a source has next, up to a captured time.
pub enum Upcoming {
    Frame(CaptureLine),
    /// A depth diff passed over or left out of the stream, for the host to note in its
    /// turn (`notes_in_turn`).
    Passed(CaptureLine),
    /// No frame up to that time; the next line is at this captured time.
    After(u64),
    /// The capture is read.
    End,
}

pub struct FrameSource {
    merge: CaptureMerge,
    index: Arc<RestIndex>,
    wanted: Wanted,
    opts_skips: Vec<super::SkipTrades>,
    depth_drops: DepthDropper,
    /// Where the diffs this source passes over or leaves out are noted for the server's
    /// books.
    depth_notes: ConnectionNotes,
    injector: Injector,
    ready: VecDeque<Queued>,
    /// Passed-over diffs go to the host in their turn instead of being noted on reading.
    notes_in_turn: bool,
    /// The `Wanted` version the parked groups were parked under ...
    parked_under: u64,
    /// ... and, under it, whether each capture group's instrument is wanted ...
    group_wanted: Vec<Option<bool>>,
    /// ... and what of each stream a group has had (a few per group, compared as found).
    stream_wanted: Vec<Vec<StreamWanted>>,
    /// The instrument of each parked group, so a change of subscription reopens only the
    /// groups it wants.
    parked_instrument: Vec<Option<String>>,
    /// Where the connection has got to in captured time (`connection_at`); 0 when only
    /// the lines read say.
    connection_ns: u64,
}

/// Whether a subscription wants a stream's frames, and the aggregates its trades complete.
struct StreamWanted {
    stream: String,
    sent: bool,
    aggregates: bool,
}

impl FrameSource {
    /// The frames of `opts.files` for the streams `wanted` (e.g. `btcusdt@trade`); the
    /// depth diffs it passes over or leaves out are noted in `depth_notes` (by the host in
    /// their turn, after `notes_in_turn`), as are those its host sends (`note_sent_depth`).
    pub(crate) fn open(
        opts: &ReplayOptions,
        index: Arc<RestIndex>,
        wanted: HashSet<String>,
        depth_notes: ConnectionNotes,
    ) -> Result<Self, CaptureError> {
        Self::open_shared(opts, index, Wanted::new(wanted), depth_notes)
    }

    /// The frames for the streams `wanted` holds as each line is read.
    pub(crate) fn open_shared(
        opts: &ReplayOptions,
        index: Arc<RestIndex>,
        wanted: Wanted,
        depth_notes: ConnectionNotes,
    ) -> Result<Self, CaptureError> {
        let groups = group_by_instrument(&opts.files);
        let injector = Injector::new(opts.inject.clone(), &wanted.snapshot());
        // A group whose first instrument nobody here wants is closed again at once: with
        // many instruments over many connections, each would otherwise hold every file's
        // buffers until its first line came round.
        let merge = CaptureMerge::open_closing(&groups, |line| {
            instrument_of(line).is_none_or(|prefix| serves(&wanted, &injector, prefix))
        })?;
        Ok(Self {
            merge,
            depth_notes,
            index,
            injector,
            wanted,
            opts_skips: opts.skip_trades.clone(),
            depth_drops: DepthDropper::new(opts.drop_depth.clone()),
            ready: VecDeque::new(),
            notes_in_turn: false,
            parked_under: 0,
            group_wanted: Vec::new(),
            stream_wanted: Vec::new(),
            parked_instrument: Vec::new(),
            connection_ns: 0,
        })
    }

    /// The next frame (the combined-stream envelope as captured), or `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<CaptureLine>, CaptureError> {
        loop {
            match self.next_frame_by(u64::MAX)? {
                Upcoming::Frame(line) => return Ok(Some(line)),
                Upcoming::Passed(line) => {
                    self.depth_notes.note(&line.json);
                    self.recycle(line);
                }
                Upcoming::After(_) | Upcoming::End => return Ok(None),
            }
        }
    }

    /// The next frame if it is read from the lines up to captured time `horizon_ns`; no
    /// line after it is taken from the capture, so a subscription change made meanwhile
    /// filters it.
    pub fn next_frame_by(&mut self, horizon_ns: u64) -> Result<Upcoming, CaptureError> {
        loop {
            // Frames built from a line already taken are never beyond the horizon.
            match self.peek_ns()? {
                None => return Ok(Upcoming::End),
                Some(ns) if ns > horizon_ns => return Ok(Upcoming::After(ns)),
                Some(_) => {}
            }
            match self.ready.pop_front() {
                Some(Queued::Frame(line)) => return Ok(Upcoming::Frame(line)),
                Some(Queued::Passed(line)) => return Ok(Upcoming::Passed(line)),
                None => {}
            }
            let Some((group, line)) = self.merge.next_entry()? else {
                return Ok(Upcoming::End);
            };
            // An instrument nobody here wants is not read on (nor gunzipped) until the
            // subscription changes; one with injected faults counts every trade.
            if let Some(prefix) = instrument_of(&line) {
                if self.group_wanted.len() <= group {
                    self.group_wanted.resize(group + 1, None);
                }
                let wanted = *self.group_wanted[group]
                    .get_or_insert_with(|| serves(&self.wanted, &self.injector, prefix));
                if !wanted {
                    note_depth(&self.depth_notes, &line);
                    self.merge.park_last();
                    if self.parked_instrument.len() <= group {
                        self.parked_instrument.resize(group + 1, None);
                    }
                    self.parked_instrument[group] = Some(prefix.to_string());
                    continue;
                }
            }
            let (sent, aggregates) = match line.stream() {
                Some(stream) => self.stream_wanted(group, stream),
                None => (false, false),
            };
            // Aggregate trades are built from the trades that complete them.
            if aggregates {
                if let Some(agg) = agg_frame(&self.index, &self.opts_skips, &line) {
                    self.ready.push_back(Queued::Frame(CaptureLine {
                        local_ns: line.local_ns,
                        json: agg,
                    }));
                }
            }
            let poison = self.injector.after(&line);
            if sent && !skipped(&self.opts_skips, &line) {
                if self.depth_drops.drops(&line) {
                    // Left out of the stream, not out of the server's book.
                    self.pass(line);
                } else {
                    self.ready.push_back(Queued::Frame(line));
                }
            } else if !sent && is_depth(&line) {
                self.pass(line);
            }
            self.ready.extend(poison.into_iter().map(Queued::Frame));
        }
    }
}

impl FrameSource {
    /// A diff passed over or left out: noted now, or queued for the host to note in turn.
    fn pass(&mut self, line: CaptureLine) {
        if self.notes_in_turn {
            self.ready.push_back(Queued::Passed(line));
        } else {
            self.depth_notes.note(&line.json);
            self.merge.recycle(line);
        }
    }

    /// The capture time of the next frame or of the next line read for one (`None` at the
    /// end), taking nothing.
    pub fn peek_ns(&mut self) -> Result<Option<u64>, CaptureError> {
        if let Some(Queued::Frame(line) | Queued::Passed(line)) = self.ready.front() {
            return Ok(Some(line.local_ns));
        }
        self.follow_subscription()?;
        self.merge.peek_ns()
    }

    /// Where the connection has got to in captured time, when it is further on than the
    /// last line read (a paced connection whose streams are quiet): a stream subscribed
    /// from now on starts there, not with the frames of the quiet time.
    pub fn connection_at(&mut self, ns: u64) {
        self.connection_ns = ns;
    }

    /// When the subscription was first changed since the frames read so far were
    /// filtered (`None`: it was not).
    pub fn subscription_changed_at(&self) -> Option<Instant> {
        self.wanted.unfollowed_since()
    }

    /// Whether the subscription changed since the frames read so far were filtered.
    pub fn subscription_changed(&self) -> bool {
        self.wanted.version() != self.parked_under
    }

    /// After a change of subscription, resume the parked groups it now wants from the
    /// earlier of the connection's captured time (`connection_at`) and the next line of
    /// the others, never before the point the merge has reached; look each stream up again.
    fn follow_subscription(&mut self) -> Result<(), CaptureError> {
        let version = self.wanted.version();
        if version == self.parked_under {
            return Ok(());
        }
        self.parked_under = version;
        self.wanted.followed();
        self.group_wanted.clear();
        self.stream_wanted.clear();
        // Not past a line of the other streams still to come: a reader behind its time
        // sends those first, and the subscribed stream from the same point.
        let from_ns = match self.merge.peek_ns()? {
            Some(next) => next.min(self.connection_ns),
            None => self.connection_ns,
        };
        let (depth, wanted, injector) = (&self.depth_notes, &self.wanted, &self.injector);
        let parked = &mut self.parked_instrument;
        self.merge.resume_parked_where(
            |group| {
                let resume = parked
                    .get(group)
                    .and_then(Option::as_deref)
                    .is_none_or(|prefix| serves(wanted, injector, prefix));
                if resume {
                    if let Some(slot) = parked.get_mut(group) {
                        *slot = None;
                    }
                }
                resume
            },
            from_ns,
            |line| note_depth(depth, line),
        )
    }

    /// Hand the diffs this source passes over or leaves out to the host in their turn
    /// (`Upcoming::Passed`), to be noted in capture order with those it sends: a host that
    /// reads ahead of what it sends (the server's connections) would otherwise note them
    /// early.
    pub fn notes_in_turn(&mut self) {
        self.notes_in_turn = true;
    }

    /// A diff-depth frame of this source reached its client, or was passed over: snapshots
    /// from now on include it (the server notes it as it sends; a host without a server,
    /// here).
    pub fn note_sent_depth(&self, json: &str) {
        self.depth_notes.note(json);
    }

    /// Hand back a frame this source gave: its room is read into again.
    pub fn recycle(&mut self, line: CaptureLine) {
        self.merge.recycle(line);
    }

    /// Bring the server's book of `symbol` up to every diff noted so far: before its
    /// snapshot is answered.
    pub fn depth_caught_up(&self, symbol: &str) -> Result<(), CaptureError> {
        self.depth_notes.caught_up(symbol)
    }

    /// The subscription version the frames queued so far were filtered under; frames read
    /// after a change are filtered under a later one.
    pub fn filtered_under(&self) -> u64 {
        self.parked_under
    }

    /// Whether the subscription wants `stream` (of capture group `group`) and the aggregate
    /// trades its trades complete; looked up in the shared set once per stream and version.
    fn stream_wanted(&mut self, group: usize, stream: &str) -> (bool, bool) {
        if self.stream_wanted.len() <= group {
            self.stream_wanted.resize_with(group + 1, Vec::new);
        }
        if let Some(w) = self.stream_wanted[group]
            .iter()
            .find(|w| w.stream == stream)
        {
            return (w.sent, w.aggregates);
        }
        let aggregates = stream
            .strip_suffix("@trade")
            .is_some_and(|symbol| self.wanted.contains(&format!("{symbol}@aggTrade")));
        let w = StreamWanted {
            stream: stream.to_string(),
            sent: self.wanted.contains(stream),
            aggregates,
        };
        let found = (w.sent, w.aggregates);
        self.stream_wanted[group].push(w);
        found
    }
}

/// The instrument of a stream line (`btcusdt` of `btcusdt@trade`).
fn instrument_of(line: &CaptureLine) -> Option<&str> {
    line.stream()
        .and_then(|s| s.split_once('@'))
        .map(|(prefix, _)| prefix)
}

/// Whether this source reads an instrument's lines: a stream of it is wanted, or it has
/// injected faults (which count every trade).
fn serves(wanted: &Wanted, injector: &Injector, prefix: &str) -> bool {
    wanted.any_of(prefix) || injector.watches(prefix)
}

/// A diff-depth line this source passes without sending (an instrument not subscribed
/// yet): it is noted all the same, so the server's books move on with it and a client that
/// subscribes later gets snapshots its diffs follow on from.
fn note_depth(depth: &ConnectionNotes, line: &CaptureLine) {
    if is_depth(line) {
        depth.note(&line.json);
    }
}

fn is_depth(line: &CaptureLine) -> bool {
    line.stream().is_some_and(|s| s.contains("@depth"))
}

/// A line queued for the host.
enum Queued {
    Frame(CaptureLine),
    Passed(CaptureLine),
}
