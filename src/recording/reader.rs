//! Reads one connection's inputs back from its segments, plain or gzipped, in order,
//! checking that no segment is missing.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::{io_error, RecordingError, RestUse};

/// One input of a connection's feed step.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Frame(String),
    Binary(usize),
    Rest(RestUse),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Receive time, nanoseconds since the Unix epoch.
    pub ns: u128,
    /// 1 for the connection's first input.
    pub position: u64,
    pub input: Input,
}

pub struct ConnectionReader {
    segments: std::vec::IntoIter<(u64, PathBuf)>,
    current: Option<(PathBuf, Box<dyn BufRead + Send>)>,
    position: u64,
    line_no: u64,
    peeked: Option<Recorded>,
    buf: String,
    torn: bool,
}

/// The connections recorded in `run`, by index.
pub fn connections(run: &Path) -> Result<Vec<u32>, RecordingError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(run).map_err(io_error(run))? {
        let name = entry.map_err(io_error(run))?.file_name();
        if let Some((k, _, _)) = parse_name(&name.to_string_lossy()) {
            if !found.contains(&k) {
                found.push(k);
            }
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// `conn-<k>-<first>.rec` or `conn-<k>-<first>.rec.gz`: (k, first, gzipped).
fn parse_name(name: &str) -> Option<(u32, u64, bool)> {
    let rest = name.strip_prefix("conn-")?;
    let (rest, gz) = match rest.strip_suffix(".rec.gz") {
        Some(r) => (r, true),
        None => (rest.strip_suffix(".rec")?, false),
    };
    let (k, first) = rest.split_once('-')?;
    Some((k.parse().ok()?, first.parse().ok()?, gz))
}

impl ConnectionReader {
    pub fn open(run: &Path, connection: u32) -> Result<Self, RecordingError> {
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(run).map_err(io_error(run))? {
            let path = entry.map_err(io_error(run))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if let Some((k, first, gz)) = name.as_deref().and_then(parse_name) {
                if k == connection {
                    segments.push((first, gz, path));
                }
            }
        }
        // A segment found both plain and gzipped (its compression was finishing): the
        // plain one, which sorts first.
        segments.sort();
        segments.dedup_by_key(|(first, _, _)| *first);
        let segments: Vec<(u64, PathBuf)> = segments
            .into_iter()
            .map(|(first, _, path)| (first, path))
            .collect();
        Ok(Self {
            segments: segments.into_iter(),
            current: None,
            position: 0,
            line_no: 0,
            peeked: None,
            buf: String::new(),
            torn: false,
        })
    }

    /// The recording ended in a cut line (left out).
    pub fn torn(&self) -> bool {
        self.torn
    }

    pub fn peek(&mut self) -> Result<Option<&Recorded>, RecordingError> {
        if self.peeked.is_none() {
            self.peeked = self.read()?;
        }
        Ok(self.peeked.as_ref())
    }

    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Recorded>, RecordingError> {
        match self.peeked.take() {
            Some(r) => Ok(Some(r)),
            None => self.read(),
        }
    }

    fn read(&mut self) -> Result<Option<Recorded>, RecordingError> {
        loop {
            if self.current.is_none() {
                let Some((first, path)) = self.segments.next() else {
                    return Ok(None);
                };
                if first != self.position + 1 {
                    return Err(RecordingError::Malformed {
                        path: path.display().to_string(),
                        line: 0,
                        reason: format!(
                            "segment starts at input {first}, but {} inputs came before it: \
                             a segment is missing or cut",
                            self.position
                        ),
                    });
                }
                let file = File::open(&path).map_err(io_error(&path))?;
                let reader: Box<dyn BufRead + Send> = if path.extension().is_some_and(|e| e == "gz")
                {
                    Box::new(BufReader::with_capacity(
                        1 << 16,
                        flate2::read::MultiGzDecoder::new(file),
                    ))
                } else {
                    Box::new(BufReader::with_capacity(1 << 16, file))
                };
                self.current = Some((path, reader));
                self.line_no = 0;
            }
            let Some((path, reader)) = &mut self.current else {
                continue;
            };
            self.buf.clear();
            let n = reader.read_line(&mut self.buf).map_err(io_error(path))?;
            if n == 0 {
                self.current = None;
                continue;
            }
            self.line_no += 1;
            if !self.buf.ends_with('\n') && self.segments.len() == 0 {
                // The last line of the last segment, cut by a hard stop: the end.
                self.torn = true;
                self.current = None;
                return Ok(None);
            }
            let malformed = |reason: String| RecordingError::Malformed {
                path: path.display().to_string(),
                line: self.line_no,
                reason,
            };
            let line = self.buf.strip_suffix('\n').unwrap_or(&self.buf);
            let (ns, body) = line.split_once(' ').unwrap_or((line, ""));
            let ns: u128 = ns
                .parse()
                .map_err(|_| malformed(format!("bad receive time {ns:?}")))?;
            let input = if let Some(json) = body.strip_prefix("#rest ") {
                Input::Rest(serde_json::from_str(json).map_err(|e| malformed(e.to_string()))?)
            } else if let Some(len) = body.strip_prefix("#binary ") {
                Input::Binary(
                    len.parse()
                        .map_err(|_| malformed(format!("bad length {len:?}")))?,
                )
            } else if let Some(quoted) = body.strip_prefix("#frame ") {
                Input::Frame(serde_json::from_str(quoted).map_err(|e| malformed(e.to_string()))?)
            } else if body.starts_with('#') {
                return Err(malformed(format!("unknown annotation {body:.40}")));
            } else {
                Input::Frame(body.to_string())
            };
            self.position += 1;
            return Ok(Some(Recorded {
                ns,
                position: self.position,
                input,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::writer::ConnectionWriter;
    use super::super::RestGet;
    use super::*;

    #[test]
    fn what_is_written_reads_back_across_segments_and_a_missing_segment_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let rest = RestUse {
            used_ms: 7,
            gets: vec![RestGet {
                target: "/api/v3/depth?symbol=X".into(),
                body: Some("{}".into()),
                error: None,
            }],
        };
        {
            let mut w = ConnectionWriter::new(dir.path(), 3, 40, false);
            w.frame(1, r#"{"stream":"x@trade","data":{}}"#).unwrap();
            w.frame(2, "# odd\nframe").unwrap();
            w.binary(3, 12).unwrap();
            w.rest(4, &rest).unwrap();
            w.frame(5, "").unwrap();
        }
        assert_eq!(connections(dir.path()).unwrap(), vec![3]);
        let mut r = ConnectionReader::open(dir.path(), 3).unwrap();
        let mut got = Vec::new();
        while let Some(x) = r.next().unwrap() {
            got.push((x.ns, x.position, x.input));
        }
        assert_eq!(
            got,
            vec![
                (
                    1,
                    1,
                    Input::Frame(r#"{"stream":"x@trade","data":{}}"#.into())
                ),
                (2, 2, Input::Frame("# odd\nframe".into())),
                (3, 3, Input::Binary(12)),
                (4, 4, Input::Rest(rest)),
                (5, 5, Input::Frame(String::new())),
            ]
        );
        // A hard stop cuts the last line of the last segment: it is left out, and said.
        let cut = tempfile::tempdir().unwrap();
        std::fs::write(
            cut.path().join(super::super::writer::segment_name(0, 1)),
            "1 {\"a\":1}\n2 #rest {\"used",
        )
        .unwrap();
        let mut r = ConnectionReader::open(cut.path(), 0).unwrap();
        assert!(r.next().unwrap().is_some());
        assert!(r.next().unwrap().is_none());
        assert!(r.torn());

        // Segments start at inputs 1, 3 and 5.
        std::fs::remove_file(dir.path().join(super::super::writer::segment_name(3, 3))).unwrap();
        let mut r = ConnectionReader::open(dir.path(), 3).unwrap();
        r.next().unwrap();
        r.next().unwrap();
        assert!(matches!(r.next(), Err(RecordingError::Malformed { .. })));
    }

    #[test]
    fn closed_segments_are_gzipped_and_read_back_with_the_open_one_plain() {
        let dir = tempfile::tempdir().unwrap();
        let frames: Vec<String> = (0..200)
            .map(|i| format!(r#"{{"stream":"x@trade","data":{{"t":{i}}}}}"#))
            .collect();
        {
            let mut w = ConnectionWriter::new(dir.path(), 0, 1000, true);
            for (i, f) in frames.iter().enumerate() {
                w.frame(i as u128, f).unwrap();
            }
        }
        assert!(super::super::compress::wait_idle(
            std::time::Duration::from_secs(20)
        ));
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let plain: Vec<&String> = names.iter().filter(|n| n.ends_with(".rec")).collect();
        // Every segment but the newest is compressed, unless a compression was refused
        // while two were under way (other tests compress too): those stay plain.
        assert!(names.len() > 3, "{names:?}");
        assert!(plain.contains(&names.last().unwrap()), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with(".rec.gz")), "{names:?}");
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        let mut r = ConnectionReader::open(dir.path(), 0).unwrap();
        let mut got = Vec::new();
        while let Some(x) = r.next().unwrap() {
            match x.input {
                Input::Frame(f) => got.push(f),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, frames);
        assert!(!r.torn());
        // Both copies of a segment (a compression finishing): read once.
        let first_gz = names.iter().find(|n| n.ends_with(".rec.gz")).unwrap();
        let gz_path = dir.path().join(first_gz);
        let plain_path = dir.path().join(first_gz.trim_end_matches(".gz"));
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::MultiGzDecoder::new(File::open(&gz_path).unwrap()),
            &mut text,
        )
        .unwrap();
        std::fs::write(plain_path, text).unwrap();
        let mut r = ConnectionReader::open(dir.path(), 0).unwrap();
        let mut n = 0;
        while r.next().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, frames.len());
    }
}
