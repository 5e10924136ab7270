//! The signed trail an auditor holds, indexed by chain and sequence number.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::audit::wire::{self, RecordKind};
use crate::audit::{head_after, ChainHead};
use crate::trail::files::record_files;

#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{at}: not a signed record: {reason}")]
    Malformed { at: String, reason: String },
    #[error(transparent)]
    Kafka(#[from] crate::sink::SinkError),
    #[error("chain {chain}: the trail does not hold event {seq}, where a recorded run continued")]
    Missing { chain: String, seq: u64 },
}

#[derive(Default)]
pub struct Trail {
    /// Events (decisions and key rotations) by chain and sequence number.
    pub events: HashMap<String, BTreeMap<u64, Vec<u8>>>,
    /// Checkpoints by chain and last sequence number.
    pub checkpoints: HashMap<String, BTreeMap<u64, Vec<u8>>>,
}

impl Trail {
    /// Every record of the `*.jsonl` files of `paths`. Signatures and links are `verify`'s
    /// business; here a record only has to parse.
    pub fn load(paths: &[PathBuf]) -> Result<Self, TrailError> {
        let mut trail = Self::default();
        let files = record_files(paths).map_err(|source| TrailError::Io {
            path: paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            source,
        })?;
        for file in files {
            let path = file.path.display().to_string();
            let bytes = std::fs::read(&file.path).map_err(|source| TrailError::Io {
                path: path.clone(),
                source,
            })?;
            for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                if !line.is_empty() {
                    trail.push(line, &format!("{path}:{}", i + 1))?;
                }
            }
        }
        Ok(trail)
    }

    /// Every record of the decisions topic and, when named, the checkpoints topic.
    pub fn from_kafka(
        brokers: &crate::sink::KafkaEndpoint,
        decisions: &str,
        checkpoints: Option<&str>,
        timeout: std::time::Duration,
    ) -> Result<Self, TrailError> {
        let mut trail = Self::default();
        let mut failed = None;
        for topic in std::iter::once(decisions).chain(checkpoints) {
            crate::sink::KafkaSource::new(brokers, topic)?.read_all(timeout, |pos, line| {
                if failed.is_none() {
                    failed = trail.push(line, pos).err();
                }
            })?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(trail),
        }
    }

    /// One record line; `at` names where it was read.
    fn push(&mut self, line: &[u8], at: &str) -> Result<(), TrailError> {
        let malformed = |reason: String| TrailError::Malformed {
            at: at.to_string(),
            reason,
        };
        match wire::record_kind(line) {
            Some(RecordKind::Checkpoint) => {
                let cp = wire::parse_checkpoint(line)
                    .map_err(|e| malformed(format!("{e:?}")))?
                    .checkpoint;
                self.checkpoints
                    .entry(cp.chain)
                    .or_default()
                    .insert(cp.last_seq, line.to_vec());
            }
            Some(RecordKind::Event) => {
                let env = wire::parse_envelope(line).map_err(|e| malformed(format!("{e:?}")))?;
                self.events
                    .entry(env.chain.into_owned())
                    .or_default()
                    .insert(env.seq, line.to_vec());
            }
            None => return Err(malformed("unknown record kind".into())),
        }
        Ok(())
    }

    pub fn event(&self, chain: &str, seq: u64) -> Option<&[u8]> {
        self.events.get(chain)?.get(&seq).map(Vec::as_slice)
    }

    pub fn checkpoint(&self, chain: &str, last_seq: u64) -> Option<&[u8]> {
        self.checkpoints
            .get(chain)?
            .get(&last_seq)
            .map(Vec::as_slice)
    }

    /// Where `chain` stood before its event `next_seq`, as the engine's signer stood when it
    /// continued there: the link to that event and to the newest checkpoint before it.
    pub fn head_before(&self, chain: &str, next_seq: u64) -> Result<ChainHead, TrailError> {
        if next_seq == 0 {
            return Ok(ChainHead::genesis());
        }
        let missing = || TrailError::Missing {
            chain: chain.to_string(),
            seq: next_seq - 1,
        };
        let line = self.event(chain, next_seq - 1).ok_or_else(missing)?;
        let mut head = head_after(line).map_err(|_| missing())?;
        head.checkpoint = self
            .checkpoints
            .get(chain)
            .and_then(|c| c.range(..next_seq).next_back())
            .and_then(|(_, line)| crate::audit::checkpoint_head(line).ok())
            .map(|(_, c)| c);
        Ok(head)
    }

    /// The start-state hash signed by `chain`'s first checkpoint in `next_seq..until` (a
    /// run's first: it starts at `next_seq`, or one before after a rotation at start), with
    /// that checkpoint's last sequence number.
    pub fn run_start_signed(
        &self,
        chain: &str,
        next_seq: u64,
        until: u64,
    ) -> Option<(u64, String)> {
        let (seq, line) = self.checkpoints.get(chain)?.range(next_seq..until).next()?;
        let cp = wire::parse_checkpoint(line).ok()?.checkpoint;
        if cp.first_seq + 1 < next_seq {
            return None;
        }
        Some((*seq, cp.run_start_sha256?))
    }

    pub fn has_checkpoints(&self) -> bool {
        !self.checkpoints.is_empty()
    }

    /// The sequence numbers of `chain`'s events in `from..`.
    pub fn seqs_from(&self, chain: &str, from: u64) -> Vec<u64> {
        self.events
            .get(chain)
            .map(|e| e.range(from..).map(|(s, _)| *s).collect())
            .unwrap_or_default()
    }
}
