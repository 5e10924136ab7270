//! Closed segments compressed with gzip in the background: a recording of Binance frames
//! shrinks about 4.5 times at the fastest level, so at a hundred symbols it takes ~4 GB an
//! hour instead of ~18 GB. `conn-<k>-<n>.rec` becomes `conn-<k>-<n>.rec.gz` (written as
//! `.rec.gz.tmp`, fsynced and renamed, then the `.rec` removed), so at every moment one
//! complete copy of the segment exists; the reader takes either. At most
//! [`MAX_IN_FLIGHT`] segments are compressed at once: a segment closed while that many are
//! under way stays plain (said in the log), so the recording never waits for compression.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::write::GzEncoder;
use flate2::Compression;

use super::{io_error, RecordingError};

pub const MAX_IN_FLIGHT: usize = 2;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// The compressed name of a segment: `<segment>.gz`.
pub fn compressed_path(segment: &Path) -> PathBuf {
    let mut name = segment.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

/// Compress `segment` on a thread of its own; false (nothing done) when
/// [`MAX_IN_FLIGHT`] compressions are under way.
pub fn compress_in_background(segment: PathBuf) -> bool {
    let taken = IN_FLIGHT.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
        (n < MAX_IN_FLIGHT).then_some(n + 1)
    });
    if taken.is_err() {
        tracing::warn!(segment = %segment.display(), "recording segment left uncompressed: compressions still under way");
        return false;
    }
    let spawned = std::thread::Builder::new()
        .name("recording-gzip".into())
        .spawn(move || {
            if let Err(e) = compress(&segment) {
                tracing::warn!(error = %e, "recording segment left uncompressed");
            }
            IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    true
}

/// Compress a closed segment in place of itself; returns the compressed path.
pub fn compress(segment: &Path) -> Result<PathBuf, RecordingError> {
    let done = compressed_path(segment);
    let mut tmp = done.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut input =
        BufReader::with_capacity(1 << 16, File::open(segment).map_err(io_error(segment))?);
    let out = File::create(&tmp).map_err(io_error(&tmp))?;
    let mut gz = GzEncoder::new(BufWriter::with_capacity(1 << 16, out), Compression::fast());
    std::io::copy(&mut input, &mut gz).map_err(io_error(&tmp))?;
    let out = gz
        .finish()
        .map_err(io_error(&tmp))?
        .into_inner()
        .map_err(|e| io_error(&tmp)(e.into_error()))?;
    out.sync_all().map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, &done).map_err(io_error(&done))?;
    if let Some(dir) = done.parent() {
        // The rename reaches the disk before the plain copy goes.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    std::fs::remove_file(segment).map_err(io_error(segment))?;
    Ok(done)
}

/// Wait until no compression is under way.
#[cfg(test)]
pub(crate) fn wait_idle(timeout: std::time::Duration) -> bool {
    let until = std::time::Instant::now() + timeout;
    while IN_FLIGHT.load(Ordering::Acquire) > 0 {
        if std::time::Instant::now() >= until {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_compressed_segment_holds_the_same_bytes_and_replaces_the_plain_one() {
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path().join("conn-0-000000000001.rec");
        let text = "1 {\"a\":1}\n2 #binary 3\n".repeat(1000);
        std::fs::write(&seg, &text).unwrap();
        let done = compress(&seg).unwrap();
        assert!(!seg.exists());
        assert_eq!(done, dir.path().join("conn-0-000000000001.rec.gz"));
        let mut back = String::new();
        flate2::read::MultiGzDecoder::new(File::open(&done).unwrap())
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, text);
        assert!(std::fs::metadata(&done).unwrap().len() < text.len() as u64 / 5);
    }
}
