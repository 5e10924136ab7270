//! Streaming verification of signed records: signatures (in batches), chain links,
//! sequence, key rotations and Merkle checkpoints.

use std::collections::{BTreeMap, HashMap, VecDeque};

use ed25519_dalek::{Signature, VerifyingKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::keys;
use super::merkle::{self, TreeBuilder};
use super::wire::{self, ParseFailure, PayloadKind, RecordKind};

/// Why a record failed. Codes are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureReason {
    /// The last record has no terminating newline or ends mid-JSON.
    Truncated,
    Malformed,
    NonCanonical,
    UnsupportedVersion,
    /// Signed by a key that is not trusted, or by a key retired by a rotation.
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
    /// A checkpoint whose tree head or last event does not match the events it covers,
    /// whose signature fails, or whose events are not all present.
    CheckpointMismatch,
    /// The payload is not the one its (authentic) envelope commits to by hash.
    PayloadMismatch,
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
    /// Checkpoints whose tree head matched the events.
    pub checkpoints_verified: u64,
    /// Key IDs in the order the chain used them (rotations append).
    pub key_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    pub records: u64,
    pub chains: BTreeMap<String, ChainSummary>,
    /// Checkpoints that could not be checked because their events precede where
    /// verification started (`--from-offset`, `--from-time`).
    pub checkpoints_unchecked: u64,
    /// Exact copies skipped under `allow_duplicates`.
    pub duplicates_skipped: u64,
    pub failures: Vec<VerifyFailure>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.records > 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Verify every signature on its own with RFC 8032's strict (cofactorless) equation
    /// and re-encode every event to check it is canonical. Otherwise signatures are
    /// checked in batches (cofactored equation, weak keys refused) and payloads are
    /// checked for JSON syntax only: their bytes are covered by the signature.
    pub strict: bool,
    /// Chains must start at their genesis event. Off when reading from an offset or a
    /// time: the first record seen of each chain is then taken as its anchor.
    pub from_genesis: bool,
    /// Count byte-identical copies of a record (at-least-once delivery after a producer
    /// restart) instead of failing on them. A different record with a sequence number
    /// already seen is still a `FORK`.
    pub allow_duplicates: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            strict: false,
            from_genesis: true,
            allow_duplicates: false,
        }
    }
}

/// Sequence numbers whose hashes are remembered to classify duplicates and late arrivals.
const RECENT: usize = 4096;
/// Signatures verified together.
const BATCH: usize = 512;

struct PendingCheckpoint {
    position: String,
    cp: wire::Checkpoint,
    signing_input: Vec<u8>,
    sig: [u8; 64],
}

struct ChainState {
    next_seq: u64,
    /// None after a record that could not be trusted: the next link is not checked.
    last_hash: Option<[u8; 32]>,
    recent: VecDeque<(u64, [u8; 32])>,
    /// Open gaps: (first missing, last missing, index of the GAP failure).
    gaps: Vec<(u64, u64, usize)>,
    /// Keys introduced by rotations on this chain.
    introduced: HashMap<String, VerifyingKey>,
    /// Keys retired by a rotation: valid up to and including that event's seq.
    retired: HashMap<String, u64>,
    /// Tree being rebuilt for the checkpoints that start at `.0`.
    tree: Option<(u64, TreeBuilder)>,
    summary: ChainSummary,
}

impl ChainState {
    fn new(seq: u64, prev: [u8; 32], from_genesis: bool) -> Self {
        let (next_seq, last_hash) = if from_genesis {
            (0, Some([0u8; 32]))
        } else {
            (seq, Some(prev))
        };
        Self {
            next_seq,
            last_hash,
            recent: VecDeque::new(),
            gaps: Vec::new(),
            introduced: HashMap::new(),
            retired: HashMap::new(),
            tree: None,
            summary: ChainSummary {
                events: 0,
                first_seq: seq,
                last_seq: seq,
                head_sha256: String::new(),
                checkpoints_verified: 0,
                key_ids: Vec::new(),
            },
        }
    }
}

/// An event waiting for its signature to be checked with the rest of its batch.
struct Pending {
    position: String,
    chain: String,
    seq: u64,
    prev: [u8; 32],
    key_id: String,
    kind: PayloadKind,
    sig: [u8; 64],
    /// Domain prefix followed by the event bytes.
    signing_input: Vec<u8>,
    /// The payload hashes to the envelope's `payload_sha256`.
    payload_ok: bool,
    /// The payload bytes of a key rotation, decoded once its signature holds.
    rotation: Option<Vec<u8>>,
}

pub struct Verifier {
    options: VerifyOptions,
    keys: HashMap<String, VerifyingKey>,
    chains: HashMap<String, ChainState>,
    batch: Vec<Pending>,
    /// Per chain, checkpoints by first_seq.
    checkpoints: HashMap<String, BTreeMap<u64, Vec<PendingCheckpoint>>>,
    checkpoints_unchecked: u64,
    duplicates_skipped: u64,
    failures: Vec<VerifyFailure>,
    records: u64,
}

impl Verifier {
    pub fn new(trusted: &[VerifyingKey]) -> Self {
        Self::with_options(trusted, VerifyOptions::default())
    }

    /// Weak (small-order) keys are never trusted.
    pub fn with_options(trusted: &[VerifyingKey], options: VerifyOptions) -> Self {
        let keys = trusted
            .iter()
            .filter(|k| !k.is_weak())
            .map(|k| (keys::key_id(k), *k))
            .collect();
        Self {
            options,
            keys,
            chains: HashMap::new(),
            batch: Vec::with_capacity(BATCH),
            checkpoints: HashMap::new(),
            checkpoints_unchecked: 0,
            duplicates_skipped: 0,
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

    fn parse_failure(&mut self, position: &str, e: ParseFailure) {
        let (reason, detail) = match e {
            ParseFailure::Malformed(m) => (FailureReason::Malformed, m),
            ParseFailure::NonCanonical => (
                FailureReason::NonCanonical,
                "record is not in canonical form (altered bytes)".into(),
            ),
            ParseFailure::UnsupportedVersion(v) => (
                FailureReason::UnsupportedVersion,
                format!("format version {v}"),
            ),
            ParseFailure::PayloadMismatch => (
                FailureReason::PayloadMismatch,
                "payload does not hash to the envelope's payload_sha256".into(),
            ),
        };
        self.fail(position, None, None, reason, detail);
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

    /// Check one record (without its newline): an event or a checkpoint. Checkpoints
    /// must be pushed before the events they cover (files: checkpoint files first).
    pub fn push(&mut self, position: &str, line: &[u8]) {
        self.records += 1;
        if wire::record_kind(line) == Some(RecordKind::Checkpoint) {
            return self.push_checkpoint(position, line);
        }
        let mut parsed = wire::parse_envelope(line);
        if self.options.strict {
            // Full decode and canonical check; a payload that does not match its hash is
            // still reported against its (authentic) envelope below.
            match wire::parse_record(line) {
                Ok(_) | Err(ParseFailure::PayloadMismatch) => {}
                Err(e) => parsed = Err(e),
            }
        }
        let pending = parsed.map(|env| {
            let payload_hash: [u8; 32] = Sha256::digest(env.payload_bytes).into();
            Pending {
                position: position.to_string(),
                chain: env.chain.into_owned(),
                seq: env.seq,
                prev: env.prev,
                key_id: env.key_id.into_owned(),
                kind: env.kind,
                sig: env.sig,
                signing_input: wire::signing_input(env.event_bytes),
                payload_ok: payload_hash == env.payload_sha256,
                rotation: (env.kind == PayloadKind::KeyRotation)
                    .then(|| env.payload_bytes.to_vec()),
            }
        });
        match pending {
            Ok(p) => {
                // A rotation changes which keys later records may use: settle it now.
                let rotation = p.kind == PayloadKind::KeyRotation;
                self.batch.push(p);
                if rotation || self.batch.len() >= BATCH {
                    self.flush_batch();
                }
            }
            Err(e) => {
                self.flush_batch();
                self.parse_failure(position, e);
            }
        }
    }

    /// Check one record now (no batching) and return the failures it raised: for
    /// consumers that act on each record as it arrives.
    pub fn push_now(&mut self, position: &str, line: &[u8]) -> Vec<VerifyFailure> {
        let before = self.failures.len();
        self.push(position, line);
        self.flush_batch();
        self.failures[before..].to_vec()
    }

    fn push_checkpoint(&mut self, position: &str, line: &[u8]) {
        match wire::parse_checkpoint(line) {
            Ok(p) => {
                let cp = p.checkpoint;
                let entry = PendingCheckpoint {
                    position: position.to_string(),
                    signing_input: wire::checkpoint_signing_input(p.bytes),
                    sig: p.sig,
                    cp,
                };
                self.checkpoints
                    .entry(entry.cp.chain.clone())
                    .or_default()
                    .entry(entry.cp.first_seq)
                    .or_default()
                    .push(entry);
            }
            Err(e) => self.parse_failure(position, e),
        }
    }

    /// The key a record of `chain` at `seq` may be signed with, or why not.
    fn key_for(&self, chain: &str, seq: u64, key_id: &str) -> Result<VerifyingKey, String> {
        let state = self.chains.get(chain);
        if let Some(&at) = state.and_then(|s| s.retired.get(key_id)) {
            if seq > at {
                return Err(format!(
                    "key_id {key_id} was retired by the rotation at seq {at}"
                ));
            }
        }
        self.keys
            .get(key_id)
            .or_else(|| state.and_then(|s| s.introduced.get(key_id)))
            .copied()
            .ok_or_else(|| format!("key_id {key_id} is not trusted"))
    }

    fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let keys: Vec<Result<VerifyingKey, String>> = batch
            .iter()
            .map(|p| self.key_for(&p.chain, p.seq, &p.key_id))
            .collect();
        let mut sig_ok = vec![false; batch.len()];
        let idx: Vec<usize> = (0..batch.len()).filter(|i| keys[*i].is_ok()).collect();
        let batch_passed = !self.options.strict && idx.len() > 1 && {
            let msgs: Vec<&[u8]> = idx
                .iter()
                .map(|i| batch[*i].signing_input.as_slice())
                .collect();
            let sigs: Vec<Signature> = idx
                .iter()
                .map(|i| Signature::from_bytes(&batch[*i].sig))
                .collect();
            let vks: Vec<VerifyingKey> = idx
                .iter()
                .filter_map(|i| keys[*i].as_ref().ok().copied())
                .collect();
            ed25519_dalek::verify_batch(&msgs, &sigs, &vks).is_ok()
        };
        for i in idx {
            sig_ok[i] = batch_passed
                || keys[i].as_ref().is_ok_and(|vk| {
                    vk.verify_strict(
                        &batch[i].signing_input,
                        &Signature::from_bytes(&batch[i].sig),
                    )
                    .is_ok()
                });
        }
        for ((p, key), ok) in batch.into_iter().zip(keys).zip(sig_ok) {
            match key {
                Err(detail) => {
                    self.fail(
                        &p.position,
                        Some(&p.chain),
                        Some(p.seq),
                        FailureReason::UnknownKey,
                        detail,
                    );
                    self.untrusted(&p.chain, p.seq);
                }
                Ok(_) if !ok => {
                    self.fail(
                        &p.position,
                        Some(&p.chain),
                        Some(p.seq),
                        FailureReason::BadSignature,
                        "Ed25519 signature does not verify".into(),
                    );
                    self.untrusted(&p.chain, p.seq);
                }
                Ok(_) => {
                    if !p.payload_ok {
                        self.fail(
                            &p.position,
                            Some(&p.chain),
                            Some(p.seq),
                            FailureReason::PayloadMismatch,
                            "payload does not hash to the envelope's payload_sha256".into(),
                        );
                    }
                    self.link(p)
                }
            }
        }
    }

    /// Check a record with a valid signature against its chain.
    fn link(&mut self, p: Pending) {
        let hash: [u8; 32] = Sha256::digest(&p.signing_input).into();
        let (chain, seq, prev) = (p.chain.as_str(), p.seq, p.prev);
        let from_genesis = self.options.from_genesis;
        let failures_len = self.failures.len();
        let state = self
            .chains
            .entry(chain.to_string())
            .or_insert_with(|| ChainState::new(seq, prev, from_genesis));
        let mut found: Vec<(FailureReason, String)> = Vec::new();
        let mut in_order = false;
        if seq == 0 && prev != [0u8; 32] {
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
                    .push((state.next_seq, seq - 1, failures_len + found.len()));
                found.push((FailureReason::Gap, detail));
            } else if let Some(expected) = &state.last_hash {
                if *expected != prev && seq != 0 {
                    found.push((
                        FailureReason::BrokenLink,
                        format!(
                            "prev {} but the previous record hashes to {}",
                            hex::encode(prev),
                            hex::encode(expected)
                        ),
                    ));
                } else {
                    in_order = true;
                }
            }
            state.next_seq = seq + 1;
            state.last_hash = Some(hash);
            state.summary.last_seq = seq;
            state.summary.head_sha256 = super::hex32(&hash);
        } else if let Some((_, h)) = state.recent.iter().find(|(s, _)| *s == seq) {
            if *h == hash && self.options.allow_duplicates {
                self.duplicates_skipped += 1;
                return;
            } else if *h == hash {
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
                .map(|(_, h)| *h)
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
        if state.summary.key_ids.last() != Some(&p.key_id) {
            state.summary.key_ids.push(p.key_id.clone());
        }
        state.recent.push_back((seq, hash));
        if state.recent.len() > RECENT {
            state.recent.pop_front();
        }
        if !in_order {
            // The checkpoint being rebuilt cannot match any more.
            state.tree = None;
        }
        for (reason, detail) in found {
            self.fail(&p.position, Some(chain), Some(seq), reason, detail);
        }
        if in_order {
            self.extend_tree(chain, seq, hash);
        }
        if p.kind == PayloadKind::KeyRotation && p.payload_ok {
            self.rotate(&p);
        }
    }

    /// Feed an in-order event to the checkpoint tree of its chain and settle every
    /// checkpoint that ends at it.
    fn extend_tree(&mut self, chain: &str, seq: u64, hash: [u8; 32]) {
        let Some(by_first) = self.checkpoints.get_mut(chain) else {
            return;
        };
        let Some(state) = self.chains.get_mut(chain) else {
            return;
        };
        if state.tree.is_none() && by_first.contains_key(&seq) {
            state.tree = Some((seq, TreeBuilder::default()));
        }
        let Some((first, tree)) = &mut state.tree else {
            return;
        };
        let first = *first;
        tree.push(merkle::leaf_hash(&hash));
        let root = tree.root();
        let Some(list) = by_first.get_mut(&first) else {
            state.tree = None;
            return;
        };
        let (done, open): (Vec<_>, Vec<_>) = std::mem::take(list)
            .into_iter()
            .partition(|c| c.cp.last_seq <= seq);
        *list = open;
        if list.is_empty() {
            by_first.remove(&first);
            state.tree = None;
        }
        let mut settled = Vec::new();
        for c in done {
            let key = self.key_for(chain, seq, &c.cp.key_id);
            settled.push(check_checkpoint(&c, key, seq, &root, &hash));
            if settled.last().is_some_and(Option::is_none) {
                if let Some(s) = self.chains.get_mut(chain) {
                    s.summary.checkpoints_verified += 1;
                }
            }
            if let Some(Some(detail)) = settled.last() {
                let detail = detail.clone();
                self.fail(
                    &c.position,
                    Some(chain),
                    Some(c.cp.last_seq),
                    FailureReason::CheckpointMismatch,
                    detail,
                );
            }
        }
    }

    /// A verified KEY_ROTATION event: trust its new key on this chain from the next event,
    /// retire the key that signed it.
    fn rotate(&mut self, p: &Pending) {
        let parsed: Result<wire::Payload, String> =
            serde_json::from_slice(p.rotation.as_deref().unwrap_or_default())
                .map_err(|e| e.to_string());
        let result = parsed.and_then(|payload| match payload {
            wire::Payload::KeyRotation(r) => {
                let vk = keys::parse_verifying_key(&r.new_public_key)?;
                if keys::key_id(&vk) != r.new_key_id {
                    return Err("new_key_id is not the ID of new_public_key".into());
                }
                Ok((r.new_key_id, vk))
            }
            wire::Payload::RiskDecision(_) => Err("not a rotation".into()),
        });
        match result {
            Ok((id, vk)) => {
                if let Some(s) = self.chains.get_mut(&p.chain) {
                    s.introduced.insert(id, vk);
                    s.retired.insert(p.key_id.clone(), p.seq);
                }
            }
            Err(detail) => self.fail(
                &p.position,
                Some(&p.chain),
                Some(p.seq),
                FailureReason::Malformed,
                format!("key rotation: {detail}"),
            ),
        }
    }

    /// After a record that failed its signature: keep counting, skip the next link check.
    fn untrusted(&mut self, chain: &str, seq: u64) {
        let from_genesis = self.options.from_genesis;
        let s = self
            .chains
            .entry(chain.to_string())
            .or_insert_with(|| ChainState::new(seq, [0u8; 32], from_genesis));
        if seq >= s.next_seq {
            s.next_seq = seq + 1;
            s.last_hash = None;
        }
        s.tree = None;
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
                    self.flush_batch();
                    self.records += 1;
                    self.truncated(&position, rest.len());
                    break;
                }
            }
        }
        self.flush_batch();
    }

    pub fn finish(mut self) -> VerifyReport {
        self.flush_batch();
        let from_genesis = self.options.from_genesis;
        let leftover: Vec<PendingCheckpoint> = self
            .checkpoints
            .drain()
            .flat_map(|(_, m)| m.into_values().flatten())
            .collect();
        for c in leftover {
            let first_seen = self.chains.get(&c.cp.chain).map(|s| s.summary.first_seq);
            if !from_genesis && first_seen.is_none_or(|f| c.cp.first_seq < f) {
                self.checkpoints_unchecked += 1;
                continue;
            }
            self.fail(
                &c.position,
                Some(&c.cp.chain),
                Some(c.cp.last_seq),
                FailureReason::CheckpointMismatch,
                format!(
                    "events {}..={} are not all present, valid and in order",
                    c.cp.first_seq, c.cp.last_seq
                ),
            );
        }
        VerifyReport {
            records: self.records,
            chains: self
                .chains
                .into_iter()
                .map(|(k, v)| (k, v.summary))
                .collect(),
            checkpoints_unchecked: self.checkpoints_unchecked,
            duplicates_skipped: self.duplicates_skipped,
            failures: self.failures,
        }
    }
}

/// None when the checkpoint is signed by a valid key and matches the rebuilt tree.
fn check_checkpoint(
    c: &PendingCheckpoint,
    key: Result<VerifyingKey, String>,
    seq: u64,
    root: &merkle::Hash,
    last_event: &[u8; 32],
) -> Option<String> {
    let cp = &c.cp;
    let vk = match key {
        Ok(vk) => vk,
        Err(e) => return Some(format!("checkpoint signature: {e}")),
    };
    if vk
        .verify_strict(&c.signing_input, &Signature::from_bytes(&c.sig))
        .is_err()
    {
        return Some("checkpoint signature does not verify".into());
    }
    if cp.last_seq != seq || cp.tree_size != cp.last_seq - cp.first_seq + 1 {
        return Some(format!(
            "tree_size {} does not cover seq {}..={}",
            cp.tree_size, cp.first_seq, cp.last_seq
        ));
    }
    if cp.root_sha256 != hex::encode(root) {
        return Some(format!(
            "root {} but the events give {}",
            cp.root_sha256,
            hex::encode(root)
        ));
    }
    if cp.last_event_sha256 != hex::encode(last_event) {
        return Some("last_event_sha256 is not the hash of the last event".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{ChainHead, ChainSigner, CheckpointPolicy};
    use crate::config::Config;
    use ed25519_dalek::SigningKey;

    fn decision() -> wire::Payload {
        let config = Config::embedded().unwrap();
        wire::Payload::RiskDecision(Box::new(crate::elf_demo::sample_decision(&config).unwrap()))
    }

    fn signer(key: &SigningKey, every: u64) -> ChainSigner {
        let policy = CheckpointPolicy {
            every_events: every,
            every_ms: i64::MAX,
        };
        ChainSigner::new(key.clone(), "e.BTC".into(), ChainHead::genesis(), policy)
    }

    fn run(
        keys: &[VerifyingKey],
        cps: &[Vec<u8>],
        events: &[Vec<u8>],
        strict: bool,
    ) -> VerifyReport {
        let options = VerifyOptions {
            strict,
            from_genesis: true,
            allow_duplicates: false,
        };
        let mut v = Verifier::with_options(keys, options);
        for (i, c) in cps.iter().enumerate() {
            v.push(&format!("cp:{i}"), c);
        }
        for (i, e) in events.iter().enumerate() {
            v.push(&format!("ev:{i}"), e);
        }
        v.finish()
    }

    #[test]
    fn checkpoints_verify_and_a_wrong_root_is_caught() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut s = signer(&key, 5);
        let payload = decision();
        let (mut events, mut cps) = (Vec::new(), Vec::new());
        for i in 0..12 {
            events.push(s.sign(i, "BTC", &payload).unwrap().line);
            if let Some(c) = s.checkpoint_if_due(i, "BTC").unwrap() {
                cps.push(c.line);
            }
        }
        cps.push(s.checkpoint(12, "BTC").unwrap().unwrap().line);
        assert_eq!(cps.len(), 3);
        let vk = [key.verifying_key()];
        for strict in [false, true] {
            let r = run(&vk, &cps, &events, strict);
            assert!(r.ok(), "{:?}", r.failures);
            assert_eq!(r.chains["e.BTC"].checkpoints_verified, 3);
        }
        // Re-sign a checkpoint over a different root: the signature holds, the root not.
        let mut forged = wire::parse_checkpoint(&cps[1]).unwrap().checkpoint;
        forged.root_sha256 = "ab".repeat(32);
        let bytes = wire::canonical_checkpoint(&forged).unwrap();
        let sig = ed25519_dalek::Signer::sign(&key, &wire::checkpoint_signing_input(&bytes));
        let mut bad = cps.clone();
        bad[1] = wire::checkpoint_line(&bytes, &sig.to_bytes());
        let r = run(&vk, &bad, &events, false);
        assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
        assert_eq!(r.failures[0].reason, FailureReason::CheckpointMismatch);
        // A checkpoint whose events are missing.
        let r = run(&vk, &cps, &events[..7], false);
        assert!(r
            .failures
            .iter()
            .any(|f| f.reason == FailureReason::CheckpointMismatch));
    }

    #[test]
    fn rotation_is_followed_and_the_retired_key_refused() {
        let old = SigningKey::from_bytes(&[7; 32]);
        let new = SigningKey::from_bytes(&[9; 32]);
        let payload = decision();
        let mut s = signer(&old, 1000);
        let mut events: Vec<Vec<u8>> = (0..3)
            .map(|i| s.sign(i, "BTC", &payload).unwrap().line)
            .collect();
        let mut s2 = ChainSigner::new(new.clone(), "e.BTC".into(), s.head().clone(), s.policy());
        events.push(s2.rotate_from(&old, 3, "BTC").unwrap().line);
        for i in 4..8 {
            events.push(s2.sign(i, "BTC", &payload).unwrap().line);
        }
        // The auditor holds only the old key: the rotation introduces the new one.
        let r = run(&[old.verifying_key()], &[], &events, false);
        assert!(r.ok(), "{:?}", r.failures);
        assert_eq!(r.chains["e.BTC"].key_ids.len(), 2);
        // After the rotation the old key may no longer sign.
        let mut s3 = ChainSigner::new(old.clone(), "e.BTC".into(), s2.head().clone(), s.policy());
        events.push(s3.sign(8, "BTC", &payload).unwrap().line);
        let r = run(&[old.verifying_key()], &[], &events, true);
        assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
        assert_eq!(r.failures[0].reason, FailureReason::UnknownKey);
        // Only the new key: the events before the rotation are unknown.
        let r = run(&[new.verifying_key()], &[], &events[..8], false);
        assert_eq!(
            r.failures
                .iter()
                .filter(|f| f.reason == FailureReason::UnknownKey)
                .count(),
            4
        );
    }

    #[test]
    fn exact_copies_can_be_skipped_but_a_fork_cannot() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut s = signer(&key, 1000);
        let payload = decision();
        let mut events: Vec<Vec<u8>> = (0..5)
            .map(|i| s.sign(i, "BTC", &payload).unwrap().line)
            .collect();
        events.insert(3, events[1].clone());
        let options = VerifyOptions {
            strict: false,
            from_genesis: true,
            allow_duplicates: true,
        };
        let mut v = Verifier::with_options(&[key.verifying_key()], options);
        for (i, e) in events.iter().enumerate() {
            v.push(&i.to_string(), e);
        }
        let r = v.finish();
        assert!(r.ok(), "{:?}", r.failures);
        assert_eq!(r.duplicates_skipped, 1);
        let r = run(&[key.verifying_key()], &[], &events, false);
        assert_eq!(r.failures[0].reason, FailureReason::Duplicate);
    }

    #[test]
    fn batch_finds_the_one_bad_signature() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut s = signer(&key, 1000);
        let payload = decision();
        let mut events: Vec<Vec<u8>> = (0..300)
            .map(|i| s.sign(i, "BTC", &payload).unwrap().line)
            .collect();
        let n = events[200].len();
        let c = events[200][n - 5];
        events[200][n - 5] = if c == b'0' { b'1' } else { b'0' };
        let r = run(&[key.verifying_key()], &[], &events, false);
        assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
        assert_eq!(r.failures[0].reason, FailureReason::BadSignature);
        assert_eq!(r.failures[0].seq, Some(200));
    }
}
