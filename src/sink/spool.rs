//! The write-ahead spool of records bound for Kafka: every record is appended here before
//! it is handed to the producer and stays until the broker has acknowledged it and every
//! record before it. Bounded by bytes on disk; a full spool makes the caller wait.
//!
//! Layout: `<dir>/<16-digit id>.seg` files of frames `len u32 LE | crc32 u32 LE | body`,
//! oldest first, and `<dir>/acked` holding the acknowledged prefix (`<id> <offset>`). A
//! crash can leave a torn last frame, which is cut at open; a lost or stale `acked` file
//! only means that some acknowledged records are sent again (consumers drop them by
//! chain and sequence).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Which topic a spooled record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    Decisions = 0,
    Checkpoints = 1,
    VarSnapshots = 2,
}

impl TopicKind {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Decisions),
            1 => Some(Self::Checkpoints),
            2 => Some(Self::VarSnapshots),
            _ => None,
        }
    }
}

/// One record with what the producer needs to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    pub topic: TopicKind,
    pub partition_key: String,
    pub chain: String,
    pub seq: u64,
    pub key_id: String,
    pub payload: Vec<u8>,
}

/// A position in the spool: segment and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spool record of {0} bytes is larger than the whole spool")]
    TooLarge(usize),
}

const HEADER: u64 = 8;
/// Largest frame accepted when reading back (a signed record is a few KiB).
const MAX_FRAME: u32 = 16 << 20;

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Live segments, oldest first: (id, length).
    segments: VecDeque<(u64, u64)>,
    writer: BufWriter<File>,
    /// Everything before this has been handed to the producer.
    read: Cursor,
    reader: Option<(u64, BufReader<File>)>,
    /// Where the record `next_unsent` returned last begins.
    last_start: Cursor,
    /// Everything before this has been acknowledged.
    acked: Cursor,
    /// Acknowledged records from here on are kept on disk, so that what a broker loses
    /// after acknowledging it can be sent again; everything before was read back from the
    /// topic (or given up for the bound).
    retain_from: Cursor,
    /// Bytes of acknowledged records kept at most.
    retain_max_bytes: u64,
    unsynced: bool,
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.seg"))
}

fn encode(rec: &SpoolRecord) -> Vec<u8> {
    let mut body = Vec::with_capacity(rec.payload.len() + 64);
    body.push(rec.topic as u8);
    body.extend_from_slice(&rec.seq.to_le_bytes());
    for s in [&rec.partition_key, &rec.chain, &rec.key_id] {
        let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
    }
    body.extend_from_slice(&rec.payload);
    let mut frame = Vec::with_capacity(body.len() + HEADER as usize);
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    frame.extend_from_slice(&body);
    frame
}

fn decode(body: &[u8]) -> Option<SpoolRecord> {
    let topic = TopicKind::from_byte(*body.first()?)?;
    let seq = u64::from_le_bytes(body.get(1..9)?.try_into().ok()?);
    let mut at = 9;
    let mut strings = Vec::with_capacity(3);
    for _ in 0..3 {
        let len = usize::from(u16::from_le_bytes(body.get(at..at + 2)?.try_into().ok()?));
        at += 2;
        strings.push(String::from_utf8(body.get(at..at + len)?.to_vec()).ok()?);
        at += len;
    }
    let key_id = strings.pop()?;
    let chain = strings.pop()?;
    let partition_key = strings.pop()?;
    Some(SpoolRecord {
        topic,
        partition_key,
        chain,
        seq,
        key_id,
        payload: body.get(at..)?.to_vec(),
    })
}

/// Read one frame; None at a clean end or a torn / corrupt frame.
fn read_frame(r: &mut impl Read) -> std::io::Result<Option<(u64, SpoolRecord)>> {
    let mut header = [0u8; HEADER as usize];
    match r.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_FRAME {
        return Ok(None);
    }
    let mut body = vec![0u8; len as usize];
    match r.read_exact(&mut body) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    if crc32fast::hash(&body) != crc {
        return Ok(None);
    }
    Ok(decode(&body).map(|rec| (HEADER + u64::from(len), rec)))
}

impl Spool {
    /// Open (or create) the spool; cut a torn last frame left by a crash. At most
    /// `max_bytes` of records wait for acknowledgement; acknowledged ones are kept until
    /// read back from the topic, up to `retain_max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64, retain_max_bytes: u64) -> Result<Self, SpoolError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut ids: Vec<u64> = fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut segments = VecDeque::new();
        for (i, id) in ids.iter().enumerate() {
            let path = seg_path(dir, *id);
            let mut valid = 0u64;
            let mut r = BufReader::new(File::open(&path).map_err(io(&path))?);
            while let Some((n, _)) = read_frame(&mut r).map_err(io(&path))? {
                valid += n;
            }
            let len = fs::metadata(&path).map_err(io(&path))?.len();
            if valid < len {
                // Only the newest segment can end torn; an older one is cut the same way.
                tracing::warn!(
                    segment = %path.display(),
                    cut_bytes = len - valid,
                    last = i + 1 == ids.len(),
                    "spool: cut a torn or corrupt tail"
                );
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(valid).and_then(|_| f.sync_all()))
                    .map_err(io(&path))?;
            }
            segments.push_back((*id, valid));
        }
        let first = segments.front().map_or(0, |s| s.0);
        let acked = fs::read_to_string(dir.join("acked"))
            .ok()
            .and_then(|t| {
                let mut it = t.split_whitespace().map(str::parse::<u64>);
                Some(Cursor {
                    segment: it.next()?.ok()?,
                    offset: it.next()?.ok()?,
                })
            })
            .filter(|c| {
                segments
                    .iter()
                    .any(|(id, len)| *id == c.segment && c.offset <= *len)
            })
            .unwrap_or(Cursor {
                segment: first,
                offset: 0,
            });
        let newest = segments.back().map_or(0, |s| s.0);
        if segments.is_empty() {
            segments.push_back((0, 0));
        }
        let retain_from = Cursor {
            segment: segments.front().map_or(0, |s| s.0),
            offset: 0,
        };
        let path = seg_path(dir, newest);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(1 << 16, 64 << 20),
            segments,
            writer: BufWriter::with_capacity(1 << 16, file),
            read: acked,
            reader: None,
            last_start: acked,
            acked,
            retain_from,
            retain_max_bytes,
            unsynced: false,
        })
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError {
        let path = path.to_path_buf();
        move |source| SpoolError::Io { path, source }
    }

    /// Bytes on disk in live segments.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.1).sum()
    }

    /// The position after the last appended record.
    pub fn end(&self) -> Cursor {
        let (segment, offset) = self.segments.back().copied().unwrap_or((0, 0));
        Cursor { segment, offset }
    }

    /// Nothing left that the broker has not acknowledged.
    pub fn is_drained(&self) -> bool {
        self.acked >= self.end()
    }

    /// Records handed out but not acknowledged, or not handed out yet, exist.
    pub fn has_unsent(&self) -> bool {
        self.read < self.end()
    }

    /// Whether a record of `len` payload bytes fits under the byte bound now.
    pub fn has_room(&self, rec: &SpoolRecord) -> bool {
        self.pending_bytes() + rec.payload.len() as u64 + 128 <= self.max_bytes
    }

    /// Bytes from `from` to the end of the spool.
    fn bytes_after(&self, from: Cursor) -> u64 {
        self.segments
            .iter()
            .map(|&(id, len)| match id.cmp(&from.segment) {
                std::cmp::Ordering::Less => 0,
                std::cmp::Ordering::Equal => len.saturating_sub(from.offset),
                std::cmp::Ordering::Greater => len,
            })
            .sum()
    }

    /// Bytes of records not yet acknowledged (what the bound limits).
    pub fn pending_bytes(&self) -> u64 {
        self.bytes_after(self.acked)
    }

    /// Bytes of acknowledged records kept for repair.
    pub fn retained_bytes(&self) -> u64 {
        self.bytes_after(self.retain_from)
            .saturating_sub(self.pending_bytes())
    }

    /// Where the records kept for repair begin.
    pub fn retained_from(&self) -> Cursor {
        self.retain_from
    }

    /// Append a record (write-ahead). The caller waits for room first.
    pub fn append(&mut self, rec: &SpoolRecord) -> Result<(), SpoolError> {
        let frame = encode(rec);
        if frame.len() as u64 > self.max_bytes {
            return Err(SpoolError::TooLarge(frame.len()));
        }
        let (id, len) = self.end().into();
        if len > 0 && len + frame.len() as u64 > self.segment_bytes {
            self.roll(id + 1)?;
        }
        let path = seg_path(&self.dir, self.end().segment);
        self.writer.write_all(&frame).map_err(self.io(&path))?;
        if let Some(last) = self.segments.back_mut() {
            last.1 += frame.len() as u64;
        }
        self.unsynced = true;
        Ok(())
    }

    fn roll(&mut self, id: u64) -> Result<(), SpoolError> {
        self.sync()?;
        let path = seg_path(&self.dir, id);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(self.io(&path))?;
        self.writer = BufWriter::with_capacity(1 << 16, file);
        self.segments.push_back((id, 0));
        Ok(())
    }

    /// Make every appended record durable (group commit).
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if !self.unsynced {
            return Ok(());
        }
        let path = seg_path(&self.dir, self.end().segment);
        self.writer
            .flush()
            .and_then(|_| self.writer.get_ref().sync_data())
            .map_err(self.io(&path))?;
        self.unsynced = false;
        Ok(())
    }

    /// The next record not yet handed to the producer, and the cursor just after it.
    pub fn next_unsent(&mut self) -> Result<Option<(Cursor, SpoolRecord)>, SpoolError> {
        while self.read < self.end() {
            let seg_len = self
                .segments
                .iter()
                .find(|s| s.0 == self.read.segment)
                .map(|s| s.1);
            let Some(seg_len) = seg_len else {
                // The read segment is gone (fully acknowledged): move to the next one.
                let next = self.segments.iter().find(|s| s.0 > self.read.segment);
                self.read = Cursor {
                    segment: next.map_or(self.end().segment, |s| s.0),
                    offset: 0,
                };
                self.reader = None;
                continue;
            };
            if self.read.offset >= seg_len {
                let next = self.segments.iter().find(|s| s.0 > self.read.segment);
                let Some(&(id, _)) = next else {
                    return Ok(None);
                };
                self.read = Cursor {
                    segment: id,
                    offset: 0,
                };
                self.reader = None;
                continue;
            }
            if self.read.segment == self.end().segment {
                let path = seg_path(&self.dir, self.read.segment);
                self.writer.flush().map_err(self.io(&path))?;
            }
            if self.reader.as_ref().map(|r| r.0) != Some(self.read.segment) {
                let path = seg_path(&self.dir, self.read.segment);
                let mut f = File::open(&path).map_err(self.io(&path))?;
                f.seek(SeekFrom::Start(self.read.offset))
                    .map_err(self.io(&path))?;
                self.reader = Some((self.read.segment, BufReader::new(f)));
            }
            let path = seg_path(&self.dir, self.read.segment);
            let Some((_, r)) = self.reader.as_mut() else {
                return Ok(None);
            };
            let io = {
                let path = path.clone();
                move |source| SpoolError::Io { path, source }
            };
            match read_frame(r).map_err(io)? {
                Some((n, rec)) => {
                    self.last_start = self.read;
                    self.read.offset += n;
                    return Ok(Some((self.read, rec)));
                }
                None => {
                    // A frame we wrote cannot be read back: the file was changed under us.
                    return Err(SpoolError::Io {
                        path,
                        source: std::io::Error::other("unreadable frame"),
                    });
                }
            }
        }
        Ok(None)
    }

    /// Where the record `next_unsent` returned last begins.
    pub fn last_start(&self) -> Cursor {
        self.last_start
    }

    /// Every record up to `upto` is acknowledged (it stays on disk, retained, until it
    /// has been read back from the topic or the retention bound drops it).
    pub fn ack_through(&mut self, upto: Cursor) -> Result<(), SpoolError> {
        if upto > self.acked {
            self.acked = upto;
        }
        self.drop_released()
    }

    /// Every record up to `upto` was read back from the topic: it need not be kept.
    pub fn verified_through(&mut self, upto: Cursor) -> Result<(), SpoolError> {
        let upto = upto.min(self.acked);
        if upto > self.retain_from {
            self.retain_from = upto;
        }
        self.drop_released()
    }

    /// Send everything from `from` again (records a broker acknowledged and then lost);
    /// false when `from` is no longer retained.
    pub fn resend_from(&mut self, from: Cursor) -> bool {
        if from < self.retain_from || from > self.acked {
            return false;
        }
        self.acked = from;
        self.read = from;
        self.reader = None;
        true
    }

    /// Delete segments that hold only records that are verified, or acknowledged beyond
    /// the retention bound (the oldest first).
    fn drop_released(&mut self) -> Result<(), SpoolError> {
        while self.segments.len() > 1 {
            let (id, len) = self.segments[0];
            let before = |c: Cursor| c.segment > id || (c.segment == id && c.offset >= len);
            let verified = before(self.retain_from);
            let over_bound = before(self.acked) && self.retained_bytes() > self.retain_max_bytes;
            if !(verified || over_bound) {
                break;
            }
            let path = seg_path(&self.dir, id);
            fs::remove_file(&path).map_err(self.io(&path))?;
            self.segments.pop_front();
            let first = Cursor {
                segment: self.segments[0].0,
                offset: 0,
            };
            self.acked = self.acked.max(first);
            self.retain_from = self.retain_from.max(first);
        }
        Ok(())
    }

    /// When everything is acknowledged, start over in a fresh, empty segment (called at
    /// most once a second and at shutdown: it costs an fsync and a file).
    pub fn compact_if_drained(&mut self) -> Result<(), SpoolError> {
        let released =
            self.retain_from >= self.end() || self.retained_bytes() > self.retain_max_bytes;
        if self.is_drained() && released && self.bytes() > 0 {
            let next = self.end().segment + 1;
            self.roll(next)?;
            let old: Vec<u64> = self
                .segments
                .iter()
                .map(|s| s.0)
                .filter(|id| *id != next)
                .collect();
            for id in old {
                let path = seg_path(&self.dir, id);
                fs::remove_file(&path).map_err(self.io(&path))?;
            }
            self.segments.retain(|s| s.0 == next);
            self.acked = Cursor {
                segment: next,
                offset: 0,
            };
            self.retain_from = self.acked;
            self.read = self.acked;
            self.reader = None;
        }
        Ok(())
    }

    /// Hand out again everything not acknowledged (after a failed delivery).
    pub fn rewind(&mut self) {
        self.read = self.acked;
        self.reader = None;
    }

    /// Persist the acknowledged prefix so a restart re-sends less.
    pub fn save_acked(&self) -> Result<(), SpoolError> {
        let path = self.dir.join("acked");
        let tmp = self.dir.join("acked.tmp");
        fs::write(
            &tmp,
            format!("{} {}\n", self.acked.segment, self.acked.offset),
        )
        .and_then(|_| fs::rename(&tmp, &path))
        .map_err(self.io(&path))
    }

    /// Every record still in the spool (acknowledged or not), oldest first.
    pub fn scan(&mut self, mut f: impl FnMut(&SpoolRecord)) -> Result<(), SpoolError> {
        self.sync()?;
        for (id, _) in self.segments.clone() {
            let path = seg_path(&self.dir, id);
            let mut r = BufReader::new(File::open(&path).map_err(self.io(&path))?);
            while let Some((_, rec)) = read_frame(&mut r).map_err(self.io(&path))? {
                f(&rec);
            }
        }
        Ok(())
    }
}

impl From<Cursor> for (u64, u64) {
    fn from(c: Cursor) -> Self {
        (c.segment, c.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, size: usize) -> SpoolRecord {
        SpoolRecord {
            topic: TopicKind::Decisions,
            partition_key: "BTCUSDT".into(),
            chain: "e.BTCUSDT".into(),
            seq,
            key_id: "k".into(),
            payload: vec![b'x'; size],
        }
    }

    #[test]
    fn records_come_back_in_order_and_acked_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, 0).unwrap();
        for i in 0..300 {
            s.append(&rec(i, 1000)).unwrap();
        }
        assert!(s.bytes() > 300_000);
        let mut cursors = Vec::new();
        for i in 0..300 {
            let (c, r) = s.next_unsent().unwrap().unwrap();
            assert_eq!(r, rec(i, 1000));
            cursors.push(c);
        }
        assert!(s.next_unsent().unwrap().is_none());
        s.ack_through(cursors[149]).unwrap();
        assert!(!s.is_drained());
        s.save_acked().unwrap();
        s.sync().unwrap();
        drop(s);
        // After a restart the unacknowledged records are handed out again.
        let mut s = Spool::open(dir.path(), 1 << 20, 0).unwrap();
        let (_, first) = s.next_unsent().unwrap().unwrap();
        assert!(first.seq <= 150, "{}", first.seq);
        let mut last = first.seq;
        let mut end = None;
        while let Some((c, r)) = s.next_unsent().unwrap() {
            assert_eq!(r.seq, last + 1);
            last = r.seq;
            end = Some(c);
        }
        assert_eq!(last, 299);
        s.ack_through(end.unwrap()).unwrap();
        assert!(s.is_drained());
        assert_eq!(s.pending_bytes(), 0);
        s.compact_if_drained().unwrap();
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn acknowledged_records_are_kept_until_read_back_and_can_be_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        let mut ends = Vec::new();
        let mut starts = Vec::new();
        for i in 0..300 {
            s.append(&rec(i, 1000)).unwrap();
        }
        while let Some((end, _)) = s.next_unsent().unwrap() {
            starts.push(s.last_start());
            ends.push(end);
        }
        s.ack_through(ends[299]).unwrap();
        assert!(s.is_drained());
        assert!(s.retained_bytes() > 290_000, "{}", s.retained_bytes());
        s.compact_if_drained().unwrap();
        assert!(s.bytes() > 0, "nothing read back yet: kept");
        // The topic lost records 120 and later: they are handed out again.
        assert!(s.resend_from(starts[120]));
        let (_, again) = s.next_unsent().unwrap().unwrap();
        assert_eq!(again.seq, 120);
        s.ack_through(ends[299]).unwrap();
        s.verified_through(ends[299]).unwrap();
        assert_eq!(s.retained_bytes(), 0);
        s.compact_if_drained().unwrap();
        assert_eq!(s.bytes(), 0);
        assert!(
            !s.resend_from(starts[10]),
            "released records cannot be sent again"
        );
    }

    #[test]
    fn a_torn_last_frame_is_cut_and_the_bound_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 20_000, 0).unwrap();
        let mut n = 0;
        while s.has_room(&rec(n, 1000)) {
            s.append(&rec(n, 1000)).unwrap();
            n += 1;
        }
        assert!(n >= 15 && s.bytes() <= 20_000, "{n} {}", s.bytes());
        s.sync().unwrap();
        drop(s);
        let newest = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .max()
            .unwrap();
        let f = OpenOptions::new().append(true).open(&newest).unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len - 10).unwrap();
        let mut s = Spool::open(dir.path(), 20_000, 0).unwrap();
        let mut seen = 0;
        while let Some((_, r)) = s.next_unsent().unwrap() {
            assert_eq!(r.seq, seen);
            seen += 1;
        }
        assert_eq!(seen, n - 1, "only the torn frame is lost");
    }
}
