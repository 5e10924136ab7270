//! The witness: a process apart from the engine that copies every checkpoint record it has
//! not seen yet to the end of its own file, never rewriting it. An auditor keeps that file
//! as the anchor a shortened trail cannot match (`verify --anchor`).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::audit::wire::{self, RecordKind};

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("witness file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("witness file {path} line {line} is not a checkpoint record: refusing to extend it")]
    Damaged { path: PathBuf, line: usize },
}

/// The witness file, open for appending, with the hashes of the records it holds.
pub struct Witness {
    path: PathBuf,
    file: File,
    seen: HashSet<[u8; 32]>,
}

impl Witness {
    pub fn open(path: &Path) -> Result<Self, WitnessError> {
        let io = |source| WitnessError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut seen = HashSet::new();
        match std::fs::read(path) {
            Ok(bytes) => {
                for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                    if line.is_empty() {
                        continue;
                    }
                    if wire::parse_checkpoint(line).is_err() {
                        return Err(WitnessError::Damaged {
                            path: path.to_path_buf(),
                            line: i + 1,
                        });
                    }
                    seen.insert(Sha256::digest(line).into());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            seen,
        })
    }

    /// Append `line` when it is a well-formed checkpoint record not witnessed yet; true
    /// when it was appended. Other records are ignored.
    pub fn offer(&mut self, line: &[u8]) -> Result<bool, WitnessError> {
        if wire::record_kind(line) != Some(RecordKind::Checkpoint)
            || wire::parse_checkpoint(line).is_err()
            || !self.seen.insert(Sha256::digest(line).into())
        {
            return Ok(false);
        }
        let mut record = Vec::with_capacity(line.len() + 1);
        record.extend_from_slice(line);
        record.push(b'\n');
        self.file
            .write_all(&record)
            .map_err(|source| WitnessError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(true)
    }

    /// Make what was appended durable.
    pub fn sync(&mut self) -> Result<(), WitnessError> {
        self.file.sync_data().map_err(|source| WitnessError::Io {
            path: self.path.clone(),
            source,
        })
    }

    pub fn records(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{ChainHead, ChainSigner, CheckpointPolicy};
    use ed25519_dalek::SigningKey;

    #[test]
    fn appends_each_checkpoint_once_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("witness.jsonl");
        let config = crate::config::Config::embedded().unwrap();
        let payload = wire::Payload::RiskDecision(Box::new(
            crate::elf_demo::sample_decision(&config).unwrap(),
        ));
        let policy = CheckpointPolicy {
            every_events: 2,
            every_ms: i64::MAX,
        };
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut s = ChainSigner::new(key, "e.BTC".into(), ChainHead::genesis(), policy);
        let mut lines = Vec::new();
        for i in 0..6 {
            lines.push(s.sign(i, "BTC", &payload).unwrap().line);
            if let Some(cp) = s.checkpoint_if_due("BTC").unwrap() {
                lines.push(cp.line);
            }
        }
        let mut w = Witness::open(&path).unwrap();
        let appended = lines.iter().filter(|l| w.offer(l).unwrap()).count();
        assert_eq!(appended, 3);
        w.sync().unwrap();
        let mut w = Witness::open(&path).unwrap();
        assert_eq!(w.records(), 3);
        assert!(lines.iter().all(|l| !w.offer(l).unwrap()));
        std::fs::write(&path, b"not a checkpoint\n").unwrap();
        assert!(matches!(
            Witness::open(&path),
            Err(WitnessError::Damaged { .. })
        ));
    }
}
