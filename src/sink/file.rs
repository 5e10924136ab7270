//! Append-only files, one per chain: `<dir>/<chain>.jsonl`, and its checkpoints in
//! `<dir>/<chain>.checkpoints.jsonl`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::SinkError;
use crate::audit::wire::RecordKind;
use crate::audit::{checkpoint_head, head_after, ChainHead, SignedEvent};

/// File name ending of a chain's checkpoint file.
pub const CHECKPOINT_SUFFIX: &str = ".checkpoints.jsonl";

pub struct FileSink {
    dir: PathBuf,
    files: HashMap<PathBuf, BufWriter<File>>,
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
            self.files
                .insert(path.clone(), BufWriter::with_capacity(1 << 16, f));
        }
        if let Some(w) = self.files.get_mut(&path) {
            w.write_all(line)
                .and_then(|_| w.write_all(b"\n"))
                .map_err(io)?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), SinkError> {
        for (path, w) in &mut self.files {
            w.flush()
                .and_then(|_| w.get_ref().sync_data())
                .map_err(|source| SinkError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
        }
        Ok(())
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
