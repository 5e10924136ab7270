//! The frames a replay serves to one subscription, in capture order: the captured lines of
//! the subscribed streams, aggregate trades built from the trades that complete them, and
//! the configured faults (skipped trades, dropped depth updates, injected poison). The
//! replay server sends them over WebSocket; the in-process replay feeds them to the engine.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, RwLock};

use super::faults::{agg_frame, skipped, DepthDropper, Injector};
use super::rest::RestIndex;
use super::ReplayOptions;
use crate::market::capture::{group_by_instrument, CaptureError, CaptureLine, CaptureMerge};

/// The streams a subscription wants. The replay server's connection changes it on
/// `SUBSCRIBE` and `UNSUBSCRIBE` while the frame source reads with it.
#[derive(Debug, Clone, Default)]
pub struct Wanted(Arc<RwLock<HashSet<String>>>);

impl Wanted {
    pub fn new(streams: HashSet<String>) -> Self {
        Self(Arc::new(RwLock::new(streams)))
    }

    pub fn contains(&self, stream: &str) -> bool {
        self.0.read().is_ok_and(|s| s.contains(stream))
    }

    pub fn snapshot(&self) -> HashSet<String> {
        self.0.read().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.0.read().map_or(0, |s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Apply `change` to the set.
    pub fn update<T>(&self, change: impl FnOnce(&mut HashSet<String>) -> T) -> Option<T> {
        self.0.write().ok().map(|mut s| change(&mut s))
    }
}

pub struct FrameSource {
    merge: CaptureMerge,
    index: Arc<RestIndex>,
    wanted: Wanted,
    opts_skips: Vec<super::SkipTrades>,
    depth_drops: DepthDropper,
    injector: Injector,
    ready: VecDeque<CaptureLine>,
}

impl FrameSource {
    /// The frames of `opts.files` for the streams `wanted` (e.g. `btcusdt@trade`).
    pub fn open(
        opts: &ReplayOptions,
        index: Arc<RestIndex>,
        wanted: HashSet<String>,
    ) -> Result<Self, CaptureError> {
        Self::open_shared(opts, index, Wanted::new(wanted))
    }

    /// The frames for the streams `wanted` holds as each line is read.
    pub fn open_shared(
        opts: &ReplayOptions,
        index: Arc<RestIndex>,
        wanted: Wanted,
    ) -> Result<Self, CaptureError> {
        let groups = group_by_instrument(&opts.files);
        Ok(Self {
            merge: CaptureMerge::open(&groups)?,
            index,
            injector: Injector::new(opts.inject.clone(), &wanted.snapshot()),
            wanted,
            opts_skips: opts.skip_trades.clone(),
            depth_drops: DepthDropper::new(opts.drop_depth.clone()),
            ready: VecDeque::new(),
        })
    }

    /// The next frame (the combined-stream envelope as captured), or `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<CaptureLine>, CaptureError> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Ok(Some(line));
            }
            let Some(line) = self.merge.next_line()? else {
                return Ok(None);
            };
            // Aggregate trades are built from the trades that complete them.
            if let Some(agg) = agg_frame(&self.index, &self.wanted, &self.opts_skips, &line) {
                self.ready.push_back(CaptureLine {
                    local_ns: line.local_ns,
                    json: agg,
                });
            }
            let poison = self.injector.after(&line);
            if line.stream().is_some_and(|s| self.wanted.contains(s))
                && !skipped(&self.opts_skips, &line)
            {
                if self.depth_drops.drops(&line) {
                    // Left out of the stream, not out of the server's book.
                    self.index.depth.note_streamed(&line.json);
                } else {
                    self.ready.push_back(line);
                }
            }
            self.ready.extend(poison);
        }
    }
}
