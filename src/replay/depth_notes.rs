//! How the streamed diffs reach the server's depth books (`replay::depth`, what
//! `GET /api/v3/depth` is answered from): applied at once by whoever reads them, or, in the
//! in-process replay, counted and applied only when a snapshot is asked for
//! (`replay::depth_reread`). There, applying every diff is the replay server's work, not
//! the engine's, and took about a seventh of the replay's CPU. Either way a snapshot
//! answer holds every diff noted before it, applied in the order noted, so the answers are
//! the same.

use std::sync::Arc;

use super::depth_reread::DepthReread;
use super::rest::RestIndex;
use crate::market::capture::CaptureError;

/// The reader's end.
pub struct DepthNotes {
    index: Arc<RestIndex>,
    /// Counting the diffs until a snapshot is asked for; `None` when each is applied as
    /// it is noted.
    reread: Option<DepthReread>,
}

impl DepthNotes {
    /// Every diff applied as it is noted.
    pub fn at_once(index: Arc<RestIndex>) -> Self {
        Self {
            index,
            reread: None,
        }
    }

    /// The diffs counted as they are noted and applied when a snapshot is asked for
    /// (`caught_up`), until reading them again costs more than applying them would: from
    /// then on each is applied as it is noted.
    pub fn on_request(index: Arc<RestIndex>) -> Self {
        Self {
            reread: Some(DepthReread::new(index.clone())),
            index,
        }
    }

    /// As `on_request`, judging reading again costlier after `lines` lines.
    #[cfg(test)]
    fn on_request_for(index: Arc<RestIndex>, lines: u64) -> Self {
        Self {
            reread: Some(DepthReread::new(index.clone()).with_free_lines(lines)),
            index,
        }
    }

    /// A diff-depth frame (combined envelope) was streamed, or passed over: snapshots from
    /// now on include it.
    pub fn note(&mut self, json: &str) {
        match &mut self.reread {
            Some(reread) => reread.note(json),
            None => self.index.depth.note_streamed(json),
        }
    }

    /// Before a snapshot of `symbol` is answered: its book holds every diff of it noted so
    /// far.
    pub fn caught_up(&mut self, symbol: &str) -> Result<(), CaptureError> {
        let Some(reread) = &mut self.reread else {
            return Ok(());
        };
        reread.catch_up(symbol)?;
        if reread.costlier_than_following() {
            reread.catch_up_all()?;
            tracing::info!(
                "depth snapshots are asked for often: the server's books now follow every diff"
            );
            self.reread = None;
        }
        Ok(())
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

    /// A book without a snapshot line applies whatever comes, so only which diffs it has
    /// been given, and in what order, decides what it holds.
    #[test]
    fn snapshots_on_request_equal_those_of_every_diff_applied_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("btcusdt_20240809.txt");
        let mut lines = Vec::new();
        for k in 0..300u64 {
            lines.push(diff(
                2 * k + 1,
                2 * k + 2,
                &format!(r#"[["{}.00","{}.0"]]"#, 100 + k % 7, k % 3),
            ));
            // More lines between diffs than reading again may cost per diff (mode 2).
            lines.extend((0..5).map(|j| trade(5 * k + j)));
        }
        let mut file = std::fs::File::create(&path).unwrap();
        for (k, line) in lines.iter().enumerate() {
            writeln!(file, "{} {line}", 1_000 + k).unwrap();
        }
        drop(file);
        // At once; on request; on request until reading again turns costlier (at once
        // from the first request on that reads more than four lines a diff noted).
        let answers = |mode: u8| {
            let index = Arc::new(RestIndex::build(&[], std::slice::from_ref(&path)).unwrap());
            let mut notes = match mode {
                0 => DepthNotes::at_once(index.clone()),
                1 => DepthNotes::on_request(index.clone()),
                _ => DepthNotes::on_request_for(index.clone(), 0),
            };
            let mut seen = Vec::new();
            for (k, line) in lines.iter().enumerate() {
                if line.contains("@depth") {
                    notes.note(line);
                }
                if k % 37 == 0 || (200..230).contains(&k) {
                    notes.caught_up("BTCUSDT").unwrap();
                    seen.push(index.depth.snapshot_json("BTCUSDT", 10));
                }
            }
            notes.caught_up("btcusdt").unwrap();
            seen.push(index.depth.snapshot_json("BTCUSDT", 10));
            (seen, notes.reread.is_some())
        };
        let (at_once, _) = answers(0);
        assert_eq!(answers(1), (at_once.clone(), true));
        assert_eq!(answers(2), (at_once.clone(), false));
        assert!(at_once
            .last()
            .and_then(|s| s.as_deref())
            .is_some_and(|s| s.contains("\"lastUpdateId\":600")));
    }
}
