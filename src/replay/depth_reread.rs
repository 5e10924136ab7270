//! The server's depth books brought up to a count of diffs noted (`replay::depth_notes`)
//! when a snapshot is asked for: the streamed files holding an instrument's diffs (the
//! index knows which) are read again, applying them from the last one applied up to the
//! count. The books then hold exactly what applying each diff as it was noted would have
//! made, since an instrument's diffs are noted in the order those files, merged, hold them.
//!
//! Reading again costs one pass over an instrument's files for each request not served by
//! a reader still open (a few are kept); once the lines read again outnumber what applying
//! every diff would have cost (`costlier_than_following`), the owner brings every book up
//! to date and applies the diffs as they are noted from then on.

use std::collections::VecDeque;
use std::sync::Arc;

use super::depth::streamed_diff_instrument;
use super::rest::RestIndex;
use crate::fast_hash::FastMap;
use crate::market::capture::{CaptureError, CaptureMerge};
use crate::market::Symbol;

/// Readers kept open between requests, most recently used last: an instrument the engine
/// resynchronises often goes on from where its reader stopped instead of from the start.
const OPEN_READERS: usize = 8;

/// Lines read again before reading again is judged costlier than following: a diff costs
/// several lines' reading to apply, and the first requests of a run (each instrument's
/// first sync) read a few lines each.
const LINES_PER_DIFF: u64 = 4;
const FREE_LINES: u64 = 1 << 20;

pub struct DepthReread {
    index: Arc<RestIndex>,
    /// Diffs applied to the books, by the instrument their stream names.
    applied: FastMap<Symbol, u64>,
    open: VecDeque<Rereader>,
    lines_read_again: u64,
    free_lines: u64,
}

/// A reader of one instrument's files, and how many of its diffs it has passed.
struct Rereader {
    instrument: Symbol,
    merge: CaptureMerge,
    passed: u64,
}

impl DepthReread {
    pub fn new(index: Arc<RestIndex>) -> Self {
        Self {
            index,
            applied: FastMap::default(),
            open: VecDeque::new(),
            lines_read_again: 0,
            free_lines: FREE_LINES,
        }
    }

    /// Bring the book of `instrument` (lower case, as streams name it) up to its first
    /// `target` diffs.
    pub fn catch_up(&mut self, instrument: &Symbol, target: u64) -> Result<(), CaptureError> {
        let done = self.applied.get(instrument).copied().unwrap_or(0);
        if target <= done {
            return Ok(());
        }
        let kept = (self.open.iter())
            .position(|r| r.instrument == *instrument)
            .and_then(|at| self.open.remove(at))
            .filter(|r| r.passed == done);
        let mut reader = match kept {
            Some(reader) => reader,
            None => Rereader {
                merge: CaptureMerge::open(&self.index.diff_files(instrument))?,
                instrument: instrument.clone(),
                passed: 0,
            },
        };
        while reader.passed < target {
            let Some(line) = reader.merge.next_line()? else {
                break;
            };
            self.lines_read_again += 1;
            let ours = streamed_diff_instrument(&line.json)
                .is_some_and(|i| i.eq_ignore_ascii_case(instrument));
            if ours {
                reader.passed += 1;
                if reader.passed > done {
                    self.index.depth.note_streamed(&line.json);
                }
            }
            reader.merge.recycle(line);
        }
        // A file cut short since it was first read leaves the book where it got to.
        self.applied.insert(instrument.clone(), target);
        if self.open.len() >= OPEN_READERS {
            self.open.pop_front();
        }
        self.open.push_back(reader);
        Ok(())
    }

    /// Whether reading again has cost more than applying each of `noted` diffs as it was
    /// noted would have.
    pub fn costlier_than_following(&self, noted: u64) -> bool {
        self.lines_read_again > self.free_lines + LINES_PER_DIFF * noted
    }

    /// Judge reading again costlier after fewer lines than `FREE_LINES`.
    #[cfg(test)]
    pub fn with_free_lines(mut self, lines: u64) -> Self {
        self.free_lines = lines;
        self
    }
}

/// Instruments are counted in lower case, as streams name them.
pub(super) fn instrument_key(instrument: &str) -> Symbol {
    let mut k = Symbol::from(instrument);
    k.make_ascii_lowercase();
    k
}
