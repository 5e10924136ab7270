//! The server's depth books brought up to date only when a snapshot is asked for, in the
//! in-process replay. The engine asks for a book when it (re)synchronises its own, once
//! per instrument in a capture without gaps, while applying every streamed diff as it
//! passes took about a seventh of the replay's CPU. Here a noted diff is only counted; a
//! snapshot request for an instrument reads again the streamed files holding its diffs
//! (the index knows which), applying them from the last one applied up to the count. The
//! books then hold exactly what applying each diff as it was noted would have made, since
//! an instrument's diffs are noted in the order those files, merged, hold them.
//!
//! Reading again costs one pass over an instrument's files for each request not served by
//! a reader still open (a few are kept); once the lines read again outnumber what applying
//! every diff would have cost, the owner brings every book up to date (`catch_up_all`) and
//! applies the diffs as they are noted from then on.

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
    /// Diffs noted, and diffs applied to the books, by the instrument their stream names.
    noted: FastMap<Symbol, u64>,
    applied: FastMap<Symbol, u64>,
    open: VecDeque<Rereader>,
    noted_total: u64,
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
            noted: FastMap::default(),
            applied: FastMap::default(),
            open: VecDeque::new(),
            noted_total: 0,
            lines_read_again: 0,
            free_lines: FREE_LINES,
        }
    }

    /// A streamed diff line was noted; other lines are not counted.
    pub fn note(&mut self, json: &str) {
        let Some(instrument) = streamed_diff_instrument(json) else {
            return;
        };
        self.noted_total += 1;
        match self.noted.get_mut(instrument) {
            Some(n) => *n += 1,
            None => {
                *self.noted.entry(key(instrument)).or_default() += 1;
            }
        }
    }

    /// Bring the book of `symbol` (any case) up to every diff of it noted so far.
    pub fn catch_up(&mut self, symbol: &str) -> Result<(), CaptureError> {
        let instrument = key(symbol);
        let target = self.noted.get(&instrument).copied().unwrap_or(0);
        let done = self.applied.get(&instrument).copied().unwrap_or(0);
        if target <= done {
            return Ok(());
        }
        let kept = (self.open.iter())
            .position(|r| r.instrument == instrument)
            .and_then(|at| self.open.remove(at))
            .filter(|r| r.passed == done);
        let mut reader = match kept {
            Some(reader) => reader,
            None => Rereader {
                merge: CaptureMerge::open(&self.index.diff_files(&instrument))?,
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
                .is_some_and(|i| i.eq_ignore_ascii_case(&instrument));
            if ours {
                reader.passed += 1;
                if reader.passed > done {
                    self.index.depth.note_streamed(&line.json);
                }
            }
            reader.merge.recycle(line);
        }
        // A file cut short since it was first read leaves the book where it got to.
        self.applied.insert(instrument, target);
        if self.open.len() >= OPEN_READERS {
            self.open.pop_front();
        }
        self.open.push_back(reader);
        Ok(())
    }

    /// Whether reading again has cost more than applying each diff as it was noted would
    /// have.
    pub fn costlier_than_following(&self) -> bool {
        self.lines_read_again > self.free_lines + LINES_PER_DIFF * self.noted_total
    }

    /// Judge reading again costlier after fewer lines than `FREE_LINES`.
    #[cfg(test)]
    pub fn with_free_lines(mut self, lines: u64) -> Self {
        self.free_lines = lines;
        self
    }

    /// Bring every book up to the diffs noted so far.
    pub fn catch_up_all(&mut self) -> Result<(), CaptureError> {
        let behind: Vec<Symbol> = self
            .noted
            .iter()
            .filter(|(i, n)| self.applied.get(*i).copied().unwrap_or(0) < **n)
            .map(|(i, _)| i.clone())
            .collect();
        for instrument in behind {
            self.catch_up(&instrument)?;
        }
        Ok(())
    }
}

/// Instruments are counted in lower case, as streams name them.
fn key(instrument: &str) -> Symbol {
    let mut k = Symbol::from(instrument);
    k.make_ascii_lowercase();
    k
}
