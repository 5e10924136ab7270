//! Streaming verification of signed records: signatures, chain links and sequence.

use std::collections::{BTreeMap, HashMap, VecDeque};

use ed25519_dalek::{Signature, VerifyingKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::keys;
use super::wire::{self, ParseFailure, GENESIS_PREV};

/// Why a record failed. Codes are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureReason {
    /// The last record has no terminating newline or ends mid-JSON.
    Truncated,
    Malformed,
    NonCanonical,
    UnsupportedVersion,
    UnknownKey,
    BadSignature,
    BadGenesis,
    BrokenLink,
    /// Sequence numbers missing.
    Gap,
    /// Missing sequence numbers that arrived later, out of order.
    Reordered,
    /// The same record twice.
    Duplicate,
    /// A different record with a sequence number already seen.
    Fork,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyFailure {
    /// `file:line` or `topic/partition@offset`.
    pub position: String,
    pub chain: Option<String>,
    pub seq: Option<u64>,
    pub reason: FailureReason,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainSummary {
    pub events: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub head_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    pub records: u64,
    pub chains: BTreeMap<String, ChainSummary>,
    pub failures: Vec<VerifyFailure>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.records > 0
    }
}

/// Sequence numbers whose hashes are remembered to classify duplicates and late arrivals.
const RECENT: usize = 4096;

struct ChainState {
    next_seq: u64,
    /// None after a record that could not be trusted: the next link is not checked.
    last_hash: Option<String>,
    recent: VecDeque<(u64, String)>,
    /// Open gaps: (first missing, last missing, index of the GAP failure).
    gaps: Vec<(u64, u64, usize)>,
    summary: ChainSummary,
}

pub struct Verifier {
    keys: HashMap<String, VerifyingKey>,
    chains: HashMap<String, ChainState>,
    failures: Vec<VerifyFailure>,
    records: u64,
}

impl Verifier {
    pub fn new(trusted: &[VerifyingKey]) -> Self {
        let keys = trusted.iter().map(|k| (keys::key_id(k), *k)).collect();
        Self {
            keys,
            chains: HashMap::new(),
            failures: Vec::new(),
            records: 0,
        }
    }

    fn fail(
        &mut self,
        position: &str,
        chain: Option<&str>,
        seq: Option<u64>,
        reason: FailureReason,
        detail: String,
    ) {
        self.failures.push(VerifyFailure {
            position: position.to_string(),
            chain: chain.map(str::to_string),
            seq,
            reason,
            detail,
        });
    }

    /// A record whose bytes ended before its newline.
    pub fn truncated(&mut self, position: &str, len: usize) {
        self.fail(
            position,
            None,
            None,
            FailureReason::Truncated,
            format!("{len} bytes without a terminating newline"),
        );
    }

    /// Check one record (without its newline).
    pub fn push(&mut self, position: &str, line: &[u8]) {
        self.records += 1;
        let rec = match wire::parse_record(line) {
            Ok(r) => r,
            Err(ParseFailure::Malformed(m)) => {
                return self.fail(position, None, None, FailureReason::Malformed, m)
            }
            Err(ParseFailure::NonCanonical) => {
                return self.fail(
                    position,
                    None,
                    None,
                    FailureReason::NonCanonical,
                    "record is not in canonical form (altered bytes)".into(),
                )
            }
            Err(ParseFailure::UnsupportedVersion(v)) => {
                return self.fail(
                    position,
                    None,
                    None,
                    FailureReason::UnsupportedVersion,
                    format!("format version {v}"),
                )
            }
        };
        let chain = rec.event.chain.clone();
        let seq = rec.event.seq;
        let input = wire::signing_input(rec.event_bytes);
        let Some(vk) = self.keys.get(&rec.event.key_id) else {
            let detail = format!("key_id {} is not trusted", rec.event.key_id);
            self.fail(
                position,
                Some(&chain),
                Some(seq),
                FailureReason::UnknownKey,
                detail,
            );
            return self.untrusted(&chain, seq);
        };
        if vk
            .verify_strict(&input, &Signature::from_bytes(&rec.sig))
            .is_err()
        {
            self.fail(
                position,
                Some(&chain),
                Some(seq),
                FailureReason::BadSignature,
                "Ed25519 signature does not verify".into(),
            );
            return self.untrusted(&chain, seq);
        }
        let hash = hex::encode(Sha256::digest(&input));
        let prev = rec.event.prev;

        let state = self
            .chains
            .entry(chain.clone())
            .or_insert_with(|| ChainState {
                next_seq: 0,
                last_hash: Some(GENESIS_PREV.to_string()),
                recent: VecDeque::new(),
                gaps: Vec::new(),
                summary: ChainSummary {
                    events: 0,
                    first_seq: seq,
                    last_seq: seq,
                    head_sha256: String::new(),
                },
            });
        let mut found: Vec<(FailureReason, String)> = Vec::new();
        if seq == 0 && prev != GENESIS_PREV {
            found.push((
                FailureReason::BadGenesis,
                "seq 0 must link to the all-zero hash".into(),
            ));
        }
        if seq >= state.next_seq {
            if seq > state.next_seq {
                let detail = format!("seq {} to {} missing", state.next_seq, seq - 1);
                state
                    .gaps
                    .push((state.next_seq, seq - 1, self.failures.len() + found.len()));
                found.push((FailureReason::Gap, detail));
            } else if let Some(expected) = &state.last_hash {
                if *expected != prev && seq != 0 {
                    found.push((
                        FailureReason::BrokenLink,
                        format!("prev {prev} but the previous record hashes to {expected}"),
                    ));
                }
            }
            state.next_seq = seq + 1;
            state.last_hash = Some(hash.clone());
            state.summary.last_seq = seq;
            state.summary.head_sha256 = hash.clone();
        } else if let Some((_, h)) = state.recent.iter().find(|(s, _)| *s == seq) {
            if *h == hash {
                found.push((FailureReason::Duplicate, format!("seq {seq} seen before")));
            } else {
                found.push((
                    FailureReason::Fork,
                    format!("seq {seq} seen before with different content"),
                ));
            }
        } else if let Some(i) = state
            .gaps
            .iter()
            .position(|(a, b, _)| (*a..=*b).contains(&seq))
        {
            // A record that was missing arrives late: the gap was a reordering.
            let (a, b, idx) = state.gaps[i];
            if let Some(linked) = state
                .recent
                .iter()
                .find(|(s, _)| *s + 1 == seq)
                .map(|(_, h)| h.clone())
            {
                if linked != prev {
                    found.push((
                        FailureReason::BrokenLink,
                        format!("late seq {seq} does not link to seq {}", seq - 1),
                    ));
                }
            }
            if let Some(f) = self.failures.get_mut(idx) {
                f.reason = FailureReason::Reordered;
                f.detail = format!("seq {seq} arrived after later records");
            }
            state.gaps.remove(i);
            if seq > a {
                state.gaps.push((a, seq - 1, idx));
            }
            if seq < b {
                state.gaps.push((seq + 1, b, idx));
            }
        } else {
            found.push((
                FailureReason::Fork,
                format!("seq {seq} is older than the remembered window"),
            ));
        }
        state.summary.events += 1;
        state.summary.first_seq = state.summary.first_seq.min(seq);
        state.recent.push_back((seq, hash));
        if state.recent.len() > RECENT {
            state.recent.pop_front();
        }
        for (reason, detail) in found {
            self.fail(position, Some(&chain), Some(seq), reason, detail);
        }
    }

    /// After a record that failed its signature: keep counting, skip the next link check.
    fn untrusted(&mut self, chain: &str, seq: u64) {
        if let Some(s) = self.chains.get_mut(chain) {
            if seq >= s.next_seq {
                s.next_seq = seq + 1;
                s.last_hash = None;
            }
        }
    }

    /// Check a whole byte stream of newline-terminated records.
    pub fn push_stream(&mut self, name: &str, bytes: &[u8]) {
        let mut line_no = 0usize;
        let mut rest = bytes;
        while !rest.is_empty() {
            line_no += 1;
            let position = format!("{name}:{line_no}");
            match rest.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    self.push(&position, &rest[..i]);
                    rest = &rest[i + 1..];
                }
                None => {
                    self.records += 1;
                    self.truncated(&position, rest.len());
                    break;
                }
            }
        }
    }

    pub fn finish(self) -> VerifyReport {
        VerifyReport {
            records: self.records,
            chains: self
                .chains
                .into_iter()
                .map(|(k, v)| (k, v.summary))
                .collect(),
            failures: self.failures,
        }
    }
}
