//! Append-only files, one per chain: `<dir>/<chain>.jsonl`, and its checkpoints in
//! `<dir>/<chain>.checkpoints.jsonl`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::SinkError;
use crate::audit::wire::RecordKind;
use crate::audit::{checkpoint_head, head_after, ChainHead, SignedEvent};

/// Each open file's write buffer. A buffer's memory is touched up to the most it ever held
/// between two flushes, so a larger one lets a thousand chains' three files each creep
/// towards it over hours; a second of a chain's records is a few KB.
const WRITE_BUFFER_BYTES: usize = 16 << 10;

/// File name ending of a chain's checkpoint file.
pub const CHECKPOINT_SUFFIX: &str = ".checkpoints.jsonl";

pub struct FileSink {
    dir: PathBuf,
    files: HashMap<PathBuf, OpenFile>,
}

/// One appended file: buffered writes, and whether it was written since its last fsync.
struct OpenFile {
    writer: BufWriter<SharedFile>,
    dirty: bool,
}

/// A file written through a buffer on one thread and fsynced from another
/// (`PendingSync::sync`), so that a flush of many chains does not hold up the writer.
struct SharedFile(Arc<File>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The files a flush must fsync: everything appended before `FileSink::begin_flush` is in
/// them. Syncing blocks; it may run on any thread while the sink goes on appending.
#[must_use = "nothing is durable until the files are synced"]
#[derive(Default)]
pub struct PendingSync(Vec<(PathBuf, Arc<File>)>);

impl PendingSync {
    /// Add the files `more` names (a flush written out in parts).
    pub fn append(&mut self, mut more: PendingSync) {
        self.0.append(&mut more.0);
    }

    pub fn sync(self) -> Result<(), SinkError> {
        for (path, file) in self.0 {
            file.sync_data().map_err(|source| SinkError::Io {
                path: path.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }

    /// Files to sync.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FileSink {
    pub fn open(dir: &Path) -> Result<Self, SinkError> {
        fs::create_dir_all(dir).map_err(|source| SinkError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            files: HashMap::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_for(dir: &Path, chain: &str) -> PathBuf {
        dir.join(format!("{chain}.jsonl"))
    }

    pub fn checkpoint_path_for(dir: &Path, chain: &str) -> PathBuf {
        dir.join(format!("{chain}{CHECKPOINT_SUFFIX}"))
    }

    pub fn append(&mut self, event: &SignedEvent) -> Result<(), SinkError> {
        let path = match event.kind {
            RecordKind::Event => Self::path_for(&self.dir, &event.chain),
            RecordKind::Checkpoint => Self::checkpoint_path_for(&self.dir, &event.chain),
        };
        self.append_line(path, &event.line)
    }

    /// Dashboard snapshots beside the trail: `<dir>/var_snapshots/<symbol>.jsonl`.
    pub fn append_var_snapshot(&mut self, v: &super::VarSnapshot) -> Result<(), SinkError> {
        let path = self
            .dir
            .join("var_snapshots")
            .join(format!("{}.jsonl", v.symbol));
        self.append_line(path, &v.to_json())
    }

    /// Append `line` and a newline to `path`, opening it (and its folder) on first use.
    fn append_line(&mut self, path: PathBuf, line: &[u8]) -> Result<(), SinkError> {
        let io = |source| SinkError::Io {
            path: path.display().to_string(),
            source,
        };
        if !self.files.contains_key(&path) {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(io)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io)?;
            let writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, SharedFile(Arc::new(f)));
            self.files.insert(
                path.clone(),
                OpenFile {
                    writer,
                    dirty: false,
                },
            );
        }
        if let Some(open) = self.files.get_mut(&path) {
            open.dirty = true;
            open.writer
                .write_all(line)
                .and_then(|_| open.writer.write_all(b"\n"))
                .map_err(io)?;
        }
        Ok(())
    }

    /// The files appended to since they were last written out.
    pub fn dirty_files(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .filter(|(_, open)| open.dirty)
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// Hand the buffered records of `paths` to their files, and name those files for
    /// syncing. A flush of many files can be written out a few at a time (the publisher
    /// does, so that one flush does not hold up the records behind it).
    pub fn write_out(&mut self, paths: &[PathBuf]) -> Result<PendingSync, SinkError> {
        let mut pending = Vec::with_capacity(paths.len());
        for path in paths {
            let Some(open) = self.files.get_mut(path) else {
                continue;
            };
            open.writer.flush().map_err(|source| SinkError::Io {
                path: path.display().to_string(),
                source,
            })?;
            open.dirty = false;
            pending.push((path.clone(), open.writer.get_ref().0.clone()));
        }
        Ok(PendingSync(pending))
    }

    /// Hand every buffered record to its file, and name the files written since the last
    /// flush: once they are synced, everything appended so far is durable.
    pub fn begin_flush(&mut self) -> Result<PendingSync, SinkError> {
        let dirty = self.dirty_files();
        self.write_out(&dirty)
    }

    /// Sync every file at the next flush (after a failed sync).
    pub fn resync_all(&mut self) {
        for open in self.files.values_mut() {
            open.dirty = true;
        }
    }

    /// Everything appended so far made durable, on this thread.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.begin_flush()?.sync()
    }

    /// A crash can leave a record half-written at the end of a file. It was never
    /// complete, so never flushed or read as a record: move its bytes to `<file>.torn`
    /// (kept for inspection) and cut the file back to its last whole record.
    fn repair_torn_tail(path: &Path) -> Result<(), SinkError> {
        let io = |source| SinkError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut f = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        let len = f.metadata().map_err(io)?.len();
        let tail_len = len.min(1 << 20);
        let mut tail = vec![0u8; tail_len as usize];
        f.seek(SeekFrom::Start(len - tail_len))
            .and_then(|_| f.read_exact(&mut tail))
            .map_err(io)?;
        if tail.is_empty() || tail.last() == Some(&b'\n') {
            return Ok(());
        }
        let keep = match tail.iter().rposition(|b| *b == b'\n') {
            Some(i) => len - tail_len + i as u64 + 1,
            None if tail_len == len => 0,
            None => {
                return Err(SinkError::Damaged {
                    path: path.display().to_string(),
                    reason: "last record longer than 1 MiB and unterminated".into(),
                })
            }
        };
        let torn = &tail[(keep - (len - tail_len)) as usize..];
        let mut side = path.as_os_str().to_owned();
        side.push(".torn");
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&side)
            .and_then(|mut t| t.write_all(torn).and_then(|_| t.write_all(b"\n")))
            .map_err(io)?;
        f.set_len(keep).and_then(|_| f.sync_all()).map_err(io)?;
        tracing::warn!(
            file = %path.display(),
            bytes = torn.len(),
            "cut a half-written last record left by a crash (kept in .torn)"
        );
        Ok(())
    }

    /// Where an existing chain file left off, so a restart continues the chain (and its
    /// checkpoints' links) instead of forking it. A half-written last record (a crash
    /// mid-write) is cut first.
    pub fn recover_head(dir: &Path, chain: &str) -> Result<ChainHead, SinkError> {
        let path = Self::path_for(dir, chain);
        let cp_path = Self::checkpoint_path_for(dir, chain);
        Self::repair_torn_tail(&path)?;
        Self::repair_torn_tail(&cp_path)?;
        let damaged = |path: &Path, reason: String| SinkError::Damaged {
            path: path.display().to_string(),
            reason,
        };
        let Some(last) = Self::last_line(&path)? else {
            return Ok(ChainHead::genesis());
        };
        let mut head = head_after(&last)
            .map_err(|e| damaged(&path, format!("last record unreadable: {e}")))?;
        if let Some(cp) = Self::last_line(&cp_path)? {
            let (_, cp_head) = checkpoint_head(&cp)
                .map_err(|e| damaged(&cp_path, format!("last checkpoint unreadable: {e}")))?;
            head.checkpoint = Some(cp_head);
        }
        Ok(head)
    }

    /// The last newline-terminated record of a file; None when it is missing or empty.
    fn last_line(path: &Path) -> Result<Option<Vec<u8>>, SinkError> {
        let io = |source| SinkError::Io {
            path: path.display().to_string(),
            source,
        };
        let damaged = |reason: &str| SinkError::Damaged {
            path: path.display().to_string(),
            reason: reason.to_string(),
        };
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io(source)),
        };
        let len = f.metadata().map_err(io)?.len();
        if len == 0 {
            return Ok(None);
        }
        // Records are a few KiB; read a bounded tail.
        let tail_len = len.min(1 << 20);
        let mut tail = vec![0u8; tail_len as usize];
        f.seek(SeekFrom::Start(len - tail_len))
            .and_then(|_| f.read_exact(&mut tail))
            .map_err(io)?;
        if tail.last() != Some(&b'\n') {
            return Err(damaged(
                "last record has no terminating newline (truncated write)",
            ));
        }
        let body = &tail[..tail.len() - 1];
        let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if start == 0 && tail_len < len {
            return Err(damaged("last record longer than 1 MiB"));
        }
        Ok(Some(body[start..].to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_syncs_only_the_files_written_since_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
        let mut sink = FileSink::open(dir.path()).unwrap();
        sink.append_line(a.clone(), b"1").unwrap();
        sink.append_line(b.clone(), b"2").unwrap();
        let first = sink.begin_flush().unwrap();
        assert_eq!(first.len(), 2);
        // The records are in the files before the sync, which may run anywhere later.
        assert_eq!(fs::read(&a).unwrap(), b"1\n");
        sink.append_line(b.clone(), b"3").unwrap();
        let second = sink.begin_flush().unwrap();
        assert_eq!(second.len(), 1);
        std::thread::spawn(move || first.sync())
            .join()
            .unwrap()
            .unwrap();
        second.sync().unwrap();
        assert!(sink.begin_flush().unwrap().is_empty());
        sink.resync_all();
        assert_eq!(sink.begin_flush().unwrap().len(), 2);
        assert_eq!(fs::read(&b).unwrap(), b"2\n3\n");
    }

    #[test]
    fn a_flush_written_out_in_parts_keeps_what_came_in_meanwhile_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
        let mut sink = FileSink::open(dir.path()).unwrap();
        sink.append_line(a.clone(), b"1").unwrap();
        sink.append_line(b.clone(), b"2").unwrap();
        let mut todo = sink.dirty_files();
        todo.sort();
        let mut written = sink.write_out(&todo[..1]).unwrap();
        // Appended between the parts: to a file already written out, and to one not yet.
        sink.append_line(a.clone(), b"3").unwrap();
        sink.append_line(b.clone(), b"4").unwrap();
        written.append(sink.write_out(&todo[1..]).unwrap());
        assert_eq!(written.len(), 2);
        written.sync().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"1\n");
        assert_eq!(fs::read(&b).unwrap(), b"2\n4\n");
        // Only the file written out before its last append is left for the next flush.
        assert_eq!(sink.dirty_files(), vec![a.clone()]);
        sink.begin_flush().unwrap().sync().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"1\n3\n");
    }
}
