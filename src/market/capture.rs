//! Capture files: one `<local_timestamp_ns> <combined-stream JSON>` per line, optionally gzip.
//!
//! `CaptureMerge` streams several files in local-timestamp order with one line per file in
//! memory, so replaying a day of data never loads it whole.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    BadLine {
        path: String,
        line: u64,
        reason: &'static str,
    },
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureLine {
    pub local_ns: u64,
    pub json: String,
}

impl CaptureLine {
    /// The `stream` name of a combined-stream message, or `None` (e.g. a REST snapshot).
    pub fn stream(&self) -> Option<&str> {
        stream_of(&self.json)
    }
}

/// The `stream` name of a combined-stream message as captured, or `None`.
pub fn stream_of(json: &str) -> Option<&str> {
    let rest = json.strip_prefix("{\"stream\":\"")?;
    rest.split_once('"').map(|(name, _)| name)
}

/// Split `<ns> <json>`.
pub fn parse_line(line: &str) -> Result<CaptureLine, &'static str> {
    let (local_ns, json_at) = split_stamp(line)?;
    Ok(CaptureLine {
        local_ns,
        json: line[json_at..].to_string(),
    })
}

/// The timestamp of `<ns> <json>` and where its JSON starts.
fn split_stamp(line: &str) -> Result<(u64, usize), &'static str> {
    let (ns, json) = line
        .split_once(' ')
        .ok_or("missing space between timestamp and JSON")?;
    let local_ns = ns
        .parse::<u64>()
        .map_err(|_| "timestamp is not a decimal integer")?;
    if !json.starts_with('{') {
        return Err("payload is not a JSON object");
    }
    Ok((local_ns, ns.len() + 1))
}

/// Lines of one file (gzip when the name ends in `.gz`).
pub struct CaptureReader {
    path: String,
    reader: Box<dyn BufRead + Send>,
    line_no: u64,
}

impl CaptureReader {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(|source| CaptureError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let reader: Box<dyn BufRead + Send> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(file)))
        } else {
            Box::new(BufReader::with_capacity(1 << 16, file))
        };
        Ok(Self {
            path: path.display().to_string(),
            reader,
            line_no: 0,
        })
    }

    /// The next line (blank lines skipped), in a string of its own.
    pub fn next_line(&mut self) -> Result<Option<CaptureLine>, CaptureError> {
        self.next_line_into(String::new())
    }

    /// As [`next_line`](Self::next_line), the line read into `text` (a line handed back
    /// by the reader's user, whose room is used again): no allocation per line.
    pub fn next_line_into(
        &mut self,
        mut text: String,
    ) -> Result<Option<CaptureLine>, CaptureError> {
        loop {
            text.clear();
            let n = self
                .reader
                .read_line(&mut text)
                .map_err(|source| CaptureError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            text.truncate(text.trim_end_matches(['\n', '\r']).len());
            if text.is_empty() {
                continue;
            }
            let (local_ns, json_at) = split_stamp(&text).map_err(|reason| self.bad_line(reason))?;
            text.drain(..json_at);
            return Ok(Some(CaptureLine {
                local_ns,
                json: text,
            }));
        }
    }

    fn bad_line(&self, reason: &'static str) -> CaptureError {
        CaptureError::BadLine {
            path: self.path.clone(),
            line: self.line_no,
            reason,
        }
    }
}

/// Several files merged by local timestamp; files with equal timestamps keep argument order.
/// A reader may park a group whose lines it does not want: its files are closed (their
/// buffers and gunzip state freed) until it is resumed, then reopened past the lines it
/// had given, the lines before the point the merge has reached going to the resumer.
pub struct CaptureMerge {
    groups: Vec<Vec<PathBuf>>,
    /// Each group's reader; `None` while parked.
    readers: Vec<Option<CaptureReader>>,
    /// Lines each group's reader has given.
    read: Vec<u64>,
    /// Groups whose reader was closed after their first line (`open_closing`), to be
    /// reopened past it if that line is taken and the group is not parked.
    closed_early: Vec<bool>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    pending: Vec<Option<CaptureLine>>,
    /// The group whose line was taken last: refilled on the next call unless parked.
    taken: Option<usize>,
    parked: Vec<usize>,
    /// Local time of the line taken last.
    now_ns: u64,
    /// Lines handed back (`recycle`), read into again.
    spare: Vec<String>,
}

/// Lines a merge keeps for reading into again: enough for the lines in flight between
/// reading one and handing it back.
const SPARE_LINES: usize = 64;
/// A handed-back line with more room than this is dropped, not kept: a rare long line (a
/// deep book's diff) should not hold its room for ever.
const SPARE_LINE_MAX_BYTES: usize = 8 << 10;
/// The room a line starts with when none was handed back: most lines fit.
const NEW_LINE_BYTES: usize = 512;

impl CaptureMerge {
    /// Files of one instrument split by day should be passed as one group (`groups`), so they
    /// are read one after the other; groups are merged with each other.
    pub fn open(groups: &[Vec<PathBuf>]) -> Result<Self, CaptureError> {
        Self::open_closing(groups, |_| true)
    }

    /// As [`open`](Self::open), but a group whose first line `keep_open` refuses has its
    /// files closed again once that line is read, so a reader that will park most groups
    /// never holds all their buffers and gunzip state at once. The line still comes in its
    /// turn; taking it reopens the group unless it is parked then.
    pub fn open_closing(
        groups: &[Vec<PathBuf>],
        mut keep_open: impl FnMut(&CaptureLine) -> bool,
    ) -> Result<Self, CaptureError> {
        let mut merge = Self {
            groups: groups.to_vec(),
            readers: Vec::new(),
            read: vec![0; groups.len()],
            closed_early: vec![false; groups.len()],
            heap: BinaryHeap::new(),
            pending: Vec::new(),
            taken: None,
            parked: Vec::new(),
            now_ns: 0,
            spare: Vec::new(),
        };
        for (i, group) in groups.iter().enumerate() {
            merge.readers.push(Some(CaptureReader::chain(group)?));
            merge.pending.push(None);
            merge.refill(i, 0, &mut |_| ())?;
            if merge.pending[i].as_ref().is_some_and(|l| !keep_open(l)) {
                merge.readers[i] = None;
                merge.closed_early[i] = true;
            }
        }
        Ok(merge)
    }

    /// A reader for group `i` past the lines it has given.
    fn reopen(&self, i: usize) -> Result<CaptureReader, CaptureError> {
        let mut reader = CaptureReader::chain(&self.groups[i])?;
        for _ in 0..self.read[i] {
            if reader.next_line()?.is_none() {
                break;
            }
        }
        Ok(reader)
    }

    /// Queue group `i`'s next line at or after `from_ns`; the lines before it go to
    /// `skipped`.
    fn refill(
        &mut self,
        i: usize,
        from_ns: u64,
        skipped: &mut impl FnMut(&CaptureLine),
    ) -> Result<(), CaptureError> {
        let Some(reader) = self.readers.get_mut(i).and_then(Option::as_mut) else {
            return Ok(());
        };
        loop {
            let room = self
                .spare
                .pop()
                .unwrap_or_else(|| String::with_capacity(NEW_LINE_BYTES));
            let Some(line) = reader.next_line_into(room)? else {
                break;
            };
            self.read[i] += 1;
            if line.local_ns >= from_ns {
                self.heap.push(Reverse((line.local_ns, i)));
                self.pending[i] = Some(line);
                break;
            }
            skipped(&line);
        }
        Ok(())
    }

    /// Hand back a line taken from the merge: its room is read into again.
    pub fn recycle(&mut self, line: CaptureLine) {
        if self.spare.len() < SPARE_LINES && line.json.capacity() <= SPARE_LINE_MAX_BYTES {
            self.spare.push(line.json);
        }
    }

    pub fn next_line(&mut self) -> Result<Option<CaptureLine>, CaptureError> {
        Ok(self.next_entry()?.map(|(_, line)| line))
    }

    /// The next line and the index of its group.
    pub fn next_entry(&mut self) -> Result<Option<(usize, CaptureLine)>, CaptureError> {
        self.refill_taken()?;
        let Some(Reverse((ns, i))) = self.heap.pop() else {
            return Ok(None);
        };
        self.now_ns = ns;
        self.taken = Some(i);
        Ok(self.pending[i].take().map(|line| (i, line)))
    }

    /// The local time of the line `next_entry` gives next, without taking it.
    pub fn peek_ns(&mut self) -> Result<Option<u64>, CaptureError> {
        self.refill_taken()?;
        Ok(self.heap.peek().map(|Reverse((ns, _))| *ns))
    }

    /// Queue the next line of the group whose line was taken last (unless it was parked).
    fn refill_taken(&mut self) -> Result<(), CaptureError> {
        if let Some(i) = self.taken.take() {
            if std::mem::take(&mut self.closed_early[i]) {
                self.readers[i] = Some(self.reopen(i)?);
            }
            self.refill(i, 0, &mut |_| ())?;
        }
        Ok(())
    }

    /// Stop reading the group of the line taken last: call it right after `next_entry`
    /// gave that line, before anything else reads on (`peek_ns` does).
    pub fn park_last(&mut self) {
        debug_assert!(self.taken.is_some(), "park_last without a line just taken");
        if let Some(i) = self.taken.take() {
            self.readers[i] = None;
            self.closed_early[i] = false;
            self.parked.push(i);
        }
    }

    /// Read the parked groups again from the point the merge has reached; the lines they
    /// hold before it go to `skipped`.
    pub fn resume_parked(&mut self, skipped: impl FnMut(&CaptureLine)) -> Result<(), CaptureError> {
        self.resume_parked_where(|_| true, 0, skipped)
    }

    /// As [`resume_parked`](Self::resume_parked), for the parked groups `resume` names (the
    /// others stay parked and closed), from `from_ns` if the merge has not got that far: a
    /// reader that has taken nothing for a while may be further on than its last line.
    pub fn resume_parked_where(
        &mut self,
        mut resume: impl FnMut(usize) -> bool,
        from_ns: u64,
        mut skipped: impl FnMut(&CaptureLine),
    ) -> Result<(), CaptureError> {
        let (now, later): (Vec<usize>, Vec<usize>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|&i| resume(i));
        self.parked = later;
        let from_ns = from_ns.max(self.now_ns);
        for i in now {
            self.readers[i] = Some(self.reopen(i)?);
            self.refill(i, from_ns, &mut skipped)?;
        }
        Ok(())
    }
}

impl CaptureReader {
    /// Reads the files of `group` back to back.
    fn chain(group: &[PathBuf]) -> Result<Self, CaptureError> {
        let mut readers = Vec::with_capacity(group.len());
        for p in group {
            readers.push(Self::open(p)?);
        }
        let path = group
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join("+");
        let chained = readers
            .into_iter()
            .map(|r| r.reader)
            .reduce(|a, b| Box::new(std::io::Read::chain(a, b)) as Box<dyn BufRead + Send>)
            .ok_or(CaptureError::BadLine {
                path: path.clone(),
                line: 0,
                reason: "empty file group",
            })?;
        Ok(Self {
            path,
            reader: chained,
            line_no: 0,
        })
    }
}

/// Groups capture files by the instrument prefix of their name (`btcusdt_20240808.gz`),
/// each group sorted by name (i.e. by day).
pub fn group_by_instrument(files: &[PathBuf]) -> Vec<Vec<PathBuf>> {
    let mut sorted = files.to_vec();
    sorted.sort();
    let mut groups: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for f in sorted {
        let key = file_instrument(&f);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(f),
            None => groups.push((key, vec![f])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// The instrument a capture file holds, by the prefix of its name (`btcusdt` of
/// `btcusdt_20240809.gz`).
pub fn file_instrument(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    name.split('_').next().unwrap_or_default().to_string()
}

/// The capture files (`*.gz`, `*.txt`) in a directory.
pub fn list_capture_files(dir: &Path) -> Result<Vec<PathBuf>, CaptureError> {
    let io = |source| CaptureError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let p = entry.map_err(io)?.path();
        if p.extension().is_some_and(|e| e == "gz" || e == "txt") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A capture file `name` of empty `<name>@trade` lines at the times `lines`.
    fn trade_file(dir: &Path, name: &str, lines: &[u64]) -> PathBuf {
        let p = dir.join(name);
        let mut f = File::create(&p).unwrap();
        for ns in lines {
            writeln!(f, r#"{ns} {{"stream":"{name}@trade","data":{{}}}}"#).unwrap();
        }
        p
    }

    #[test]
    fn parses_lines_and_stream_names() {
        let l = parse_line(r#"17 {"stream":"btcusdt@trade","data":{}}"#).unwrap();
        assert_eq!(l.local_ns, 17);
        assert_eq!(l.stream(), Some("btcusdt@trade"));
        let snap = parse_line(r#"18 {"lastUpdateId":1}"#).unwrap();
        assert_eq!(snap.stream(), None);
        assert!(parse_line("abc {}").is_err());
        assert!(parse_line("12").is_err());
    }

    /// Every line and error `next_line` gives, as `next_line_into` gives them from a room
    /// that held another line.
    #[test]
    fn reading_into_a_handed_back_line_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mixed_1.txt");
        std::fs::write(
            &p,
            "1 {\"stream\":\"a@trade\",\"data\":{}}\r\n\n\r\n2 {\"lastUpdateId\":1}\nbad line\n3 {}",
        )
        .unwrap();
        let all = |into: bool| {
            let mut r = CaptureReader::open(&p).unwrap();
            let mut out = Vec::new();
            loop {
                let room = String::from("a longer line left from before, to be overwritten");
                let next = if into {
                    r.next_line_into(room)
                } else {
                    r.next_line()
                };
                match next {
                    Ok(Some(l)) => out.push(format!("{} {}", l.local_ns, l.json)),
                    Ok(None) => break,
                    Err(e) => out.push(e.to_string()),
                }
            }
            out
        };
        let lines = all(false);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[2].contains("mixed_1.txt:5: "), "{lines:?}");
        assert_eq!(lines, all(true));
    }

    #[test]
    fn merges_groups_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, lines: &[u64]| trade_file(dir.path(), name, lines);
        let a1 = write("aaa_1.txt", &[1, 4]);
        let a2 = write("aaa_2.txt", &[6]);
        let b = write("bbb_1.txt", &[2, 3, 5, 7]);
        let groups = group_by_instrument(&[b, a2, a1]);
        assert_eq!(groups.len(), 2);
        let mut m = CaptureMerge::open(&groups).unwrap();
        let mut seen = Vec::new();
        while let Some(l) = m.next_line().unwrap() {
            seen.push(l.local_ns);
        }
        assert_eq!(seen, vec![1, 2, 3, 4, 5, 6, 7]);
    }

    /// Groups closed after their first line give what an open merge gives: taken, they
    /// reopen past it; parked when taken, they resume like any parked group.
    #[test]
    fn groups_closed_after_their_first_line_give_the_same_lines() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, lines: &[u64]| trade_file(dir.path(), name, lines);
        let files = [
            write("aaa_1.txt", &[1, 4, 8]),
            write("bbb_1.txt", &[2, 3, 5, 7]),
            write("ccc_1.txt", &[3, 6, 9]),
        ];
        let groups = group_by_instrument(&files);
        let all = |m: &mut CaptureMerge| {
            let mut seen = Vec::new();
            while let Some((g, l)) = m.next_entry().unwrap() {
                seen.push((g, l.local_ns));
            }
            seen
        };
        let expected = all(&mut CaptureMerge::open(&groups).unwrap());
        let mut closing =
            CaptureMerge::open_closing(&groups, |l| l.stream() == Some("bbb_1.txt@trade")).unwrap();
        assert_eq!(closing.readers.iter().filter(|r| r.is_some()).count(), 1);
        assert_eq!(all(&mut closing), expected);
        // Parked when its first line is taken, resumed later: its lines from then on.
        let mut m = CaptureMerge::open_closing(&groups, |_| false).unwrap();
        let (g, l) = m.next_entry().unwrap().unwrap();
        assert_eq!((g, l.local_ns), (0, 1));
        m.park_last();
        let mut rest = vec![];
        for _ in 0..4 {
            let (g, l) = m.next_entry().unwrap().unwrap();
            rest.push((g, l.local_ns));
        }
        // Group 2 (ccc) parked too, at 6; only group 0 is asked back.
        let (g, l) = m.next_entry().unwrap().unwrap();
        assert_eq!((g, l.local_ns), (2, 6));
        m.park_last();
        let mut passed = Vec::new();
        m.resume_parked_where(|g| g == 0, 0, |l| passed.push(l.local_ns))
            .unwrap();
        assert_eq!(passed, vec![4]);
        assert_eq!(m.parked, vec![2]);
        rest.extend(all(&mut m));
        assert_eq!(rest, vec![(1, 2), (1, 3), (2, 3), (1, 5), (1, 7), (0, 8)]);
    }

    /// Peeking reads nothing away: the same time again, then the line `next_entry` gives;
    /// a parked group's lines are not looked at; a group resumed from a later point than
    /// the merge's passes what lies before it.
    #[test]
    fn peeking_takes_nothing_and_a_resume_can_start_further_on() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, lines: &[u64]| trade_file(dir.path(), name, lines);
        let files = [
            write("aaa_1.txt", &[1, 2, 9]),
            write("bbb_1.txt", &[1, 3, 5, 7, 8]),
        ];
        let mut m = CaptureMerge::open(&group_by_instrument(&files)).unwrap();
        assert_eq!(m.peek_ns().unwrap(), Some(1));
        assert_eq!(m.peek_ns().unwrap(), Some(1));
        let (g, l) = m.next_entry().unwrap().unwrap();
        assert_eq!((g, l.local_ns), (0, 1));
        let (g, l) = m.next_entry().unwrap().unwrap();
        assert_eq!((g, l.local_ns), (1, 1));
        m.park_last();
        assert_eq!(m.peek_ns().unwrap(), Some(2));
        let (g, l) = m.next_entry().unwrap().unwrap();
        assert_eq!((g, l.local_ns), (0, 2));
        assert_eq!(m.peek_ns().unwrap(), Some(9), "bbb is parked");
        let mut passed = Vec::new();
        m.resume_parked_where(|_| true, 6, |l| passed.push(l.local_ns))
            .unwrap();
        assert_eq!(passed, vec![3, 5]);
        let mut rest = Vec::new();
        while let Some((g, l)) = m.next_entry().unwrap() {
            rest.push((g, l.local_ns));
        }
        assert_eq!(rest, vec![(1, 7), (1, 8), (0, 9)]);
    }

    /// A parked group is closed and, resumed, reopened past what it gave: the lines passed
    /// meanwhile go to the resumer, none is given twice (even at the same timestamp).
    #[test]
    fn a_parked_group_resumes_where_the_merge_is_without_repeating_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, lines: &[(u64, u32)]| {
            let p = dir.path().join(name);
            let mut f = File::create(&p).unwrap();
            for (ns, n) in lines {
                writeln!(f, r#"{ns} {{"stream":"{name}","data":{{"n":{n}}}}}"#).unwrap();
            }
            p
        };
        let a = write("aaa_1.txt", &[(1, 1), (3, 2), (3, 3), (6, 4), (9, 5)]);
        let b = write("bbb_1.txt", &[(2, 1), (3, 2), (4, 3), (8, 4)]);
        let mut m = CaptureMerge::open(&group_by_instrument(&[a, b])).unwrap();
        let mut given = Vec::new();
        let take = |m: &mut CaptureMerge| {
            let (group, line) = m.next_entry().unwrap().unwrap();
            (group, line.local_ns, line.json)
        };
        given.push(take(&mut m)); // a@1
        given.push(take(&mut m)); // b@2
        let (group, ns, _) = take(&mut m); // a@3 (the first), parked
        assert_eq!((group, ns), (0, 3));
        m.park_last();
        given.push(take(&mut m)); // b@3
        given.push(take(&mut m)); // b@4
        let mut passed = Vec::new();
        m.resume_parked(|l| passed.push(l.local_ns)).unwrap();
        // a's second line at 3 is before the merge's point (4); its line at 6 follows on.
        assert_eq!(passed, vec![3]);
        while let Some(entry) = m.next_entry().unwrap() {
            given.push((entry.0, entry.1.local_ns, entry.1.json));
        }
        let order: Vec<(usize, u64)> = given.iter().map(|(g, ns, _)| (*g, *ns)).collect();
        assert_eq!(
            order,
            vec![(0, 1), (1, 2), (1, 3), (1, 4), (0, 6), (1, 8), (0, 9)]
        );
    }
}
