//! The frames a replay serves to one subscription, in capture order: the captured lines of
//! the subscribed streams, aggregate trades built from the trades that complete them, and
//! the configured faults (skipped trades, dropped depth updates, injected poison). The
//! replay server sends them over WebSocket; the in-process replay feeds them to the engine.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use super::faults::{agg_frame, skipped, DepthDropper, Injector};
use super::rest::RestIndex;
use super::ReplayOptions;
use crate::market::capture::{group_by_instrument, CaptureError, CaptureLine, CaptureMerge};

pub struct FrameSource {
    merge: CaptureMerge,
    index: Arc<RestIndex>,
    wanted: HashSet<String>,
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
        let groups = group_by_instrument(&opts.files);
        Ok(Self {
            merge: CaptureMerge::open(&groups)?,
            index,
            injector: Injector::new(opts.inject.clone(), &wanted),
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
                && !self.depth_drops.drops(&line)
            {
                self.ready.push_back(line);
            }
            self.ready.extend(poison);
        }
    }
}
