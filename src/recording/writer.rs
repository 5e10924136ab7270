//! Writes one connection's inputs as segments of its recording, in the order the feed step
//! consumes them. Lines are buffered and reach the file at least every second; a segment is
//! fsynced when it is closed, and then compressed in the background when asked
//! (`recording::compress`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{io_error, RecordingError, RestUse};

const FLUSH_EVERY: Duration = Duration::from_secs(1);

pub struct ConnectionWriter {
    dir: PathBuf,
    connection: u32,
    segment_bytes: u64,
    compress_closed: bool,
    out: Option<(PathBuf, BufWriter<File>)>,
    written: u64,
    position: u64,
    flushed_at: Instant,
}

/// `conn-<k>-<first position>.rec`
pub fn segment_name(connection: u32, first_position: u64) -> String {
    format!("conn-{connection}-{first_position:012}.rec")
}

impl ConnectionWriter {
    /// Segments of connection `connection` in the run directory `dir`, each closed once it
    /// holds `segment_bytes` (and then gzipped in the background if `compress_closed`).
    pub fn new(dir: &Path, connection: u32, segment_bytes: u64, compress_closed: bool) -> Self {
        Self {
            dir: dir.to_path_buf(),
            connection,
            segment_bytes: segment_bytes.max(1),
            compress_closed,
            out: None,
            written: 0,
            position: 0,
            flushed_at: Instant::now(),
        }
    }

    /// A text frame received at `ns` (nanoseconds since the Unix epoch).
    pub fn frame(&mut self, ns: u128, text: &str) -> Result<(), RecordingError> {
        if text.starts_with('#') || text.contains(['\n', '\r']) {
            let quoted = serde_json::to_string(text).unwrap_or_default();
            self.line(ns, &format!("#frame {quoted}"))
        } else {
            self.line(ns, text)
        }
    }

    pub fn binary(&mut self, ns: u128, len: usize) -> Result<(), RecordingError> {
        self.line(ns, &format!("#binary {len}"))
    }

    pub fn rest(&mut self, ns: u128, answer: &RestUse) -> Result<(), RecordingError> {
        let json = serde_json::to_string(answer).unwrap_or_default();
        self.line(ns, &format!("#rest {json}"))
    }

    /// Flush and fsync the open segment (the newest stays plain).
    pub fn close(&mut self) -> Result<(), RecordingError> {
        self.close_segment().map(|_| ())
    }

    fn close_segment(&mut self) -> Result<Option<PathBuf>, RecordingError> {
        let Some((path, mut w)) = self.out.take() else {
            return Ok(None);
        };
        w.flush().map_err(io_error(&path))?;
        w.get_ref().sync_all().map_err(io_error(&path))?;
        Ok(Some(path))
    }

    fn line(&mut self, ns: u128, body: &str) -> Result<(), RecordingError> {
        if self.out.is_none() || self.written >= self.segment_bytes {
            if let Some(closed) = self.close_segment()? {
                if self.compress_closed {
                    super::compress::compress_in_background(closed);
                }
            }
            std::fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
            let path = self
                .dir
                .join(segment_name(self.connection, self.position + 1));
            let file = File::create(&path).map_err(io_error(&path))?;
            self.out = Some((path, BufWriter::with_capacity(1 << 16, file)));
            self.written = 0;
        }
        let Some((path, w)) = &mut self.out else {
            return Ok(());
        };
        self.position += 1;
        let line = format!("{ns} {body}\n");
        w.write_all(line.as_bytes()).map_err(io_error(path))?;
        self.written += line.len() as u64;
        if self.flushed_at.elapsed() >= FLUSH_EVERY {
            w.flush().map_err(io_error(path))?;
            self.flushed_at = Instant::now();
        }
        Ok(())
    }
}

impl Drop for ConnectionWriter {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "recording segment not closed cleanly");
        }
    }
}
