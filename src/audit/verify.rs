//! Streaming verification of signed records: signatures (in batches), chain links,
//! sequence, key rotations and Merkle checkpoints.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::BufRead;

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
    /// A checkpoint whose tree size, root, last event or time does not match the events
    /// it covers, or whose events are not all present, authentic and in order.
    CheckpointMismatch,
    /// A checkpoint signed by a key that does not hold its chain after its last event.
    CheckpointUnknownKey,
    /// A checkpoint whose signature does not verify.
    CheckpointBadSignature,
    /// A checkpoint that does not link to the chain's previous checkpoint (one was
    /// deleted or replaced), or that overlaps it.
    CheckpointBrokenLink,
    /// The payload is not the one its (authentic) envelope commits to by hash.
    PayloadMismatch,
    /// A KEY_ROTATION whose new key is weak, unreadable or not the one `new_key_id` names.
    RotationRefused,
    /// A record in a trail directory's file named for another chain.
    WrongChain,
    /// The trail ends before an anchor the auditor holds (`--expect-head`, `--anchor`).
    TruncatedBeforeAnchor,
    /// The event at an anchor's sequence number has another hash.
    AnchorMismatch,
}

impl FailureReason {
    /// The stable code, as in `--json` and the documentation.
    pub fn code(self) -> &'static str {
        match self {
            Self::Truncated => "TRUNCATED",
            Self::Malformed => "MALFORMED",
            Self::NonCanonical => "NON_CANONICAL",
            Self::UnsupportedVersion => "UNSUPPORTED_VERSION",
            Self::UnknownKey => "UNKNOWN_KEY",
            Self::BadSignature => "BAD_SIGNATURE",
            Self::BadGenesis => "BAD_GENESIS",
            Self::BrokenLink => "BROKEN_LINK",
            Self::Gap => "GAP",
            Self::Reordered => "REORDERED",
            Self::Duplicate => "DUPLICATE",
            Self::Fork => "FORK",
            Self::CheckpointMismatch => "CHECKPOINT_MISMATCH",
            Self::CheckpointUnknownKey => "CHECKPOINT_UNKNOWN_KEY",
            Self::CheckpointBadSignature => "CHECKPOINT_BAD_SIGNATURE",
            Self::CheckpointBrokenLink => "CHECKPOINT_BROKEN_LINK",
            Self::PayloadMismatch => "PAYLOAD_MISMATCH",
            Self::RotationRefused => "ROTATION_REFUSED",
            Self::WrongChain => "WRONG_CHAIN",
            Self::TruncatedBeforeAnchor => "TRUNCATED_BEFORE_ANCHOR",
            Self::AnchorMismatch => "ANCHOR_MISMATCH",
        }
    }
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

/// What the checkpoints' own hash chain needs of each checkpoint.
struct CheckpointLink {
    position: String,
    first_seq: u64,
    last_seq: u64,
    hash: [u8; 32],
    prev_hex: String,
}

/// An event the auditor expects in the trail, obtained apart from it.
struct Anchor {
    seq: u64,
    hash: [u8; 32],
    source: String,
    /// The hash of the authentic event at `seq`, once met.
    seen: Option<[u8; 32]>,
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
    /// Tree being rebuilt for the checkpoints that start at `.0`, and the time of the last
    /// event fed to it.
    tree: Option<(u64, TreeBuilder, i64)>,
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
    ts_ms: i64,
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
    /// Per chain, every distinct checkpoint read, for their own link check.
    checkpoint_links: HashMap<String, Vec<CheckpointLink>>,
    anchors: HashMap<String, Vec<Anchor>>,
    /// The chain the records of the stream being read must name (a trail directory's file).
    expected_chain: Option<String>,
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
            checkpoint_links: HashMap::new(),
            anchors: HashMap::new(),
            expected_chain: None,
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

    /// Expect an event in the trail, as an anchor the auditor obtained apart from it.
    pub fn expect_head(&mut self, head: super::anchor::ExpectedHead) {
        self.anchors.entry(head.chain).or_default().push(Anchor {
            seq: head.seq,
            hash: head.hash,
            source: head.source,
            seen: None,
        });
    }

    /// False (and a `WRONG_CHAIN` failure) when the stream being read is a file named for
    /// another chain than `chain`.
    fn in_expected_chain(&mut self, position: &str, chain: &str, seq: u64) -> bool {
        match self.expected_chain.clone() {
            Some(expected) if expected != chain => {
                self.fail(
                    position,
                    Some(chain),
                    Some(seq),
                    FailureReason::WrongChain,
                    format!("record of chain {chain} in the file of chain {expected}"),
                );
                false
            }
            _ => true,
        }
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
            // Events already read settle first, whatever batch they are in.
            self.flush_batch();
            return self.push_checkpoint(position, line);
        }
        let strict = self.options.strict;
        let pending = wire::parse_envelope(line).and_then(|env| {
            let payload_hash: [u8; 32] = Sha256::digest(env.payload_bytes).into();
            let mut payload_ok = payload_hash == env.payload_sha256;
            if strict && payload_ok {
                // Full decode and canonical check of a payload its envelope commits to; a
                // payload of another kind than the envelope's is refused like one that does
                // not hash right, against its (authentic) envelope.
                match wire::parse_record(line) {
                    Ok(_) => {}
                    Err(ParseFailure::PayloadMismatch) => payload_ok = false,
                    Err(e) => return Err(e),
                }
            }
            Ok(Pending {
                position: position.to_string(),
                chain: env.chain.into_owned(),
                seq: env.seq,
                prev: env.prev,
                key_id: env.key_id.into_owned(),
                ts_ms: env.ts_ms,
                kind: env.kind,
                sig: env.sig,
                signing_input: wire::signing_input(env.event_bytes),
                payload_ok,
                rotation: (env.kind == PayloadKind::KeyRotation)
                    .then(|| env.payload_bytes.to_vec()),
            })
        });
        match pending {
            Ok(p) if !self.in_expected_chain(position, &p.chain, p.seq) => {}
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
                if !self.in_expected_chain(position, &cp.chain, cp.last_seq) {
                    return;
                }
                let signing_input = wire::checkpoint_signing_input(p.bytes);
                let hash: [u8; 32] = Sha256::digest(&signing_input).into();
                let links = self.checkpoint_links.entry(cp.chain.clone()).or_default();
                if links.iter().any(|l| l.hash == hash) {
                    // A byte-identical copy (at-least-once delivery) counts once.
                    return;
                }
                links.push(CheckpointLink {
                    position: position.to_string(),
                    first_seq: cp.first_seq,
                    last_seq: cp.last_seq,
                    hash,
                    prev_hex: cp.prev_checkpoint_sha256.clone(),
                });
                let entry = PendingCheckpoint {
                    position: position.to_string(),
                    signing_input,
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

    /// The key a checkpoint of `chain` ending at `last_seq` may be signed with: the key that
    /// holds the chain after that event (after a rotation, the new key).
    fn checkpoint_key_for(
        &self,
        chain: &str,
        last_seq: u64,
        key_id: &str,
    ) -> Result<VerifyingKey, String> {
        let state = self.chains.get(chain);
        if let Some(&at) = state.and_then(|s| s.retired.get(key_id)) {
            if last_seq >= at {
                return Err(format!(
                    "key_id {key_id} was retired by the rotation at seq {at}"
                ));
            }
        }
        self.key_for(chain, last_seq, key_id)
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
            state.next_seq = seq.saturating_add(1);
            state.last_hash = Some(hash);
            state.summary.last_seq = seq;
            state.summary.head_sha256 = super::hex32(&hash);
        } else if let Some((_, h)) = state.recent.iter().find(|(s, _)| *s == seq) {
            if *h == hash && self.options.allow_duplicates {
                self.duplicates_skipped += 1;
                return;
            } else if *h == hash {
                // A copy is not a leaf again: the tree being rebuilt is not disturbed.
                self.fail(
                    &p.position,
                    Some(chain),
                    Some(seq),
                    FailureReason::Duplicate,
                    format!("seq {seq} seen before"),
                );
                return;
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
                .find(|(s, _)| s.checked_add(1) == Some(seq))
                .map(|(_, h)| *h)
            {
                if linked != prev {
                    found.push((
                        FailureReason::BrokenLink,
                        format!("late seq {seq} does not link to seq {}", seq - 1),
                    ));
                }
            }
            state.gaps.remove(i);
            if seq > a {
                state.gaps.push((a, seq - 1, idx));
            }
            if seq < b {
                state.gaps.push((seq + 1, b, idx));
            }
            // The gap was a reordering once every number of it has arrived.
            if !state.gaps.iter().any(|g| g.2 == idx) {
                if let Some(f) = self.failures.get_mut(idx) {
                    f.reason = FailureReason::Reordered;
                    f.detail = format!("seq {seq} arrived after later records");
                }
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
        if let Some(list) = self.anchors.get_mut(chain) {
            for anchor in list.iter_mut().filter(|a| a.seq == seq && a.seen.is_none()) {
                anchor.seen = Some(hash);
            }
        }
        // A rotation settles before the checkpoints that end at it: they are signed by
        // the key it introduces.
        if p.kind == PayloadKind::KeyRotation && p.payload_ok {
            self.rotate(&p);
        }
        if in_order {
            self.extend_tree(chain, seq, hash, p.ts_ms);
        }
    }

    /// Feed an in-order event to the checkpoint tree of its chain and settle every
    /// checkpoint that ends at it.
    fn extend_tree(&mut self, chain: &str, seq: u64, hash: [u8; 32], ts_ms: i64) {
        let Some(by_first) = self.checkpoints.get_mut(chain) else {
            return;
        };
        let Some(state) = self.chains.get_mut(chain) else {
            return;
        };
        if state.tree.is_none() && by_first.contains_key(&seq) {
            state.tree = Some((seq, TreeBuilder::default(), ts_ms));
        }
        let Some((first, tree, last_ts)) = &mut state.tree else {
            return;
        };
        let first = *first;
        *last_ts = ts_ms;
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
        for c in done {
            let key = self.checkpoint_key_for(chain, seq, &c.cp.key_id);
            match check_checkpoint(&c, key, seq, &root, &hash, ts_ms) {
                None => {
                    if let Some(s) = self.chains.get_mut(chain) {
                        s.summary.checkpoints_verified += 1;
                    }
                }
                Some((reason, detail)) => self.fail(
                    &c.position,
                    Some(chain),
                    Some(c.cp.last_seq),
                    reason,
                    detail,
                ),
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
            _ => Err("not a rotation".into()),
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
                FailureReason::RotationRefused,
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
        // Only a record in the expected place moves the chain on: an unauthenticated
        // one claiming a far sequence number must not make the real ones look old.
        if seq == s.next_seq {
            s.next_seq = seq.saturating_add(1);
            s.last_hash = None;
            s.tree = None;
        }
    }

    /// Like [`Self::push_stream`], for a file whose records must all name `chain` (a trail
    /// directory's `<chain>.jsonl` or `<chain>.checkpoints.jsonl`).
    pub fn push_chain_stream(&mut self, name: &str, chain: &str, bytes: &[u8]) {
        // Reading from memory cannot fail.
        let _ = self.push_chain_reader(name, chain, bytes);
    }

    /// Check a whole byte stream of newline-terminated records.
    pub fn push_stream(&mut self, name: &str, bytes: &[u8]) {
        // Reading from memory cannot fail.
        let _ = self.push_reader(name, bytes);
    }

    /// As [`Self::push_chain_stream`], reading the records one line at a time.
    pub fn push_chain_reader(
        &mut self,
        name: &str,
        chain: &str,
        reader: impl BufRead,
    ) -> std::io::Result<()> {
        self.flush_batch();
        self.expected_chain = Some(chain.to_string());
        let read = self.push_reader(name, reader);
        self.expected_chain = None;
        read
    }

    /// Check newline-terminated records read one line at a time, so that a trail file of
    /// any length is verified in the memory of its longest record. A last line without its
    /// newline is a truncated record.
    pub fn push_reader(&mut self, name: &str, mut reader: impl BufRead) -> std::io::Result<()> {
        let mut line = Vec::new();
        let mut line_no = 0usize;
        let read = loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
            line_no += 1;
            let position = format!("{name}:{line_no}");
            if line.last() == Some(&b'\n') {
                line.pop();
                self.push(&position, &line);
            } else {
                self.flush_batch();
                self.records += 1;
                self.truncated(&position, line.len());
                break Ok(());
            }
        };
        self.flush_batch();
        read
    }

    /// Each chain's checkpoints, in order, must link to one another and never overlap.
    fn check_checkpoint_links(&mut self) {
        let from_genesis = self.options.from_genesis;
        let mut found = Vec::new();
        for (chain, links) in &mut self.checkpoint_links {
            links.sort_by_key(|l| (l.first_seq, l.last_seq));
            let mut prev: Option<&CheckpointLink> = None;
            for l in links.iter() {
                let detail = match prev {
                    None if from_genesis && l.prev_hex != wire::GENESIS_PREV => Some(format!(
                        "the chain's first checkpoint links to {} instead of 64 zeros",
                        l.prev_hex
                    )),
                    None => None,
                    Some(p) if l.first_seq <= p.last_seq => Some(format!(
                        "covers seq {}..={}, overlapping the checkpoint up to seq {}",
                        l.first_seq, l.last_seq, p.last_seq
                    )),
                    Some(p) if l.prev_hex != hex::encode(p.hash) => Some(format!(
                        "links to {} but the previous checkpoint (up to seq {}) hashes to {}",
                        l.prev_hex,
                        p.last_seq,
                        hex::encode(p.hash)
                    )),
                    Some(_) => None,
                };
                if let Some(detail) = detail {
                    found.push((l.position.clone(), chain.clone(), l.last_seq, detail));
                }
                prev = Some(l);
            }
        }
        for (position, chain, seq, detail) in found {
            self.fail(
                &position,
                Some(&chain),
                Some(seq),
                FailureReason::CheckpointBrokenLink,
                detail,
            );
        }
    }

    /// Every anchor must be met in the trail with its hash.
    fn check_anchors(&mut self) {
        let mut found = Vec::new();
        for (chain, list) in &self.anchors {
            for a in list {
                match a.seen {
                    None => {
                        found.push((
                            a.source.clone(),
                            chain.clone(),
                            a.seq,
                            FailureReason::TruncatedBeforeAnchor,
                            format!(
                                "the trail ends before seq {} (head of the chain: {})",
                                a.seq,
                                self.chains.get(chain).map_or(
                                    "no events".to_string(),
                                    |s| format!("seq {}", s.summary.last_seq)
                                )
                            ),
                        ))
                    }
                    Some(h) if h != a.hash => found.push((
                        a.source.clone(),
                        chain.clone(),
                        a.seq,
                        FailureReason::AnchorMismatch,
                        format!(
                            "seq {} hashes to {} but the anchor says {}",
                            a.seq,
                            hex::encode(h),
                            hex::encode(a.hash)
                        ),
                    )),
                    Some(_) => {}
                }
            }
        }
        for (position, chain, seq, reason, detail) in found {
            self.fail(&position, Some(&chain), Some(seq), reason, detail);
        }
    }

    pub fn finish(mut self) -> VerifyReport {
        self.flush_batch();
        let from_genesis = self.options.from_genesis;
        self.check_checkpoint_links();
        self.check_anchors();
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
    last_ts_ms: i64,
) -> Option<(FailureReason, String)> {
    let cp = &c.cp;
    let vk = match key {
        Ok(vk) => vk,
        Err(e) => return Some((FailureReason::CheckpointUnknownKey, e)),
    };
    if vk
        .verify_strict(&c.signing_input, &Signature::from_bytes(&c.sig))
        .is_err()
    {
        return Some((
            FailureReason::CheckpointBadSignature,
            "checkpoint signature does not verify".into(),
        ));
    }
    let mismatch = |detail: String| Some((FailureReason::CheckpointMismatch, detail));
    if cp.last_seq != seq || cp.tree_size != cp.last_seq - cp.first_seq + 1 {
        return mismatch(format!(
            "tree_size {} does not cover seq {}..={}",
            cp.tree_size, cp.first_seq, cp.last_seq
        ));
    }
    if cp.root_sha256 != hex::encode(root) {
        return mismatch(format!(
            "root {} but the events give {}",
            cp.root_sha256,
            hex::encode(root)
        ));
    }
    if cp.last_event_sha256 != hex::encode(last_event) {
        return mismatch("last_event_sha256 is not the hash of the last event".into());
    }
    if cp.ts_ms != last_ts_ms {
        return mismatch(format!(
            "ts_ms {} but the last event's is {last_ts_ms}",
            cp.ts_ms
        ));
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
            if let Some(c) = s.checkpoint_if_due("BTC").unwrap() {
                cps.push(c.line);
            }
        }
        cps.push(s.checkpoint("BTC").unwrap().unwrap().line);
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
        let reasons: Vec<_> = r.failures.iter().map(|f| (f.reason, f.seq)).collect();
        // The forged checkpoint is caught, and the next one no longer links to it.
        assert_eq!(
            reasons,
            [
                (FailureReason::CheckpointMismatch, Some(9)),
                (FailureReason::CheckpointBrokenLink, Some(11))
            ]
        );
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

    /// Events 0..n with a checkpoint every `every` and one at the end.
    fn trail(key: &SigningKey, every: u64, n: i64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut s = signer(key, every);
        let payload = decision();
        let (mut events, mut cps) = (Vec::new(), Vec::new());
        for i in 0..n {
            events.push(s.sign(1000 + i, "BTC", &payload).unwrap().line);
            if let Some(c) = s.checkpoint_if_due("BTC").unwrap() {
                cps.push(c.line);
            }
        }
        if let Some(c) = s.checkpoint("BTC").unwrap() {
            cps.push(c.line);
        }
        (events, cps)
    }

    fn reasons(r: &VerifyReport) -> Vec<(FailureReason, Option<u64>)> {
        r.failures.iter().map(|f| (f.reason, f.seq)).collect()
    }

    #[test]
    fn a_checkpoint_ending_at_a_rotation_verifies_with_only_the_original_key() {
        let old = SigningKey::from_bytes(&[7; 32]);
        let new = SigningKey::from_bytes(&[9; 32]);
        let payload = decision();
        let mut s = signer(&old, 1000);
        let mut events: Vec<Vec<u8>> = (0..3)
            .map(|i| s.sign(100 + i, "BTC", &payload).unwrap().line)
            .collect();
        let mut cps = vec![s.checkpoint("BTC").unwrap().unwrap().line];
        // A restart with the new key: the rotation, then shutdown before any decision.
        let mut s2 = ChainSigner::new(new.clone(), "e.BTC".into(), s.head().clone(), s.policy());
        events.push(s2.rotate_from(&old, s.head().ts_ms, "BTC").unwrap().line);
        let cp = s2.checkpoint("BTC").unwrap().unwrap();
        let parsed = wire::parse_checkpoint(&cp.line).unwrap().checkpoint;
        assert_eq!(parsed.key_id, keys::key_id(&new.verifying_key()));
        assert_eq!(parsed.ts_ms, 102, "the time of the rotation event, never 0");
        cps.push(cp.line);
        let r = run(&[old.verifying_key()], &cps, &events, false);
        assert!(r.ok(), "{:?}", r.failures);
        assert_eq!(r.chains["e.BTC"].checkpoints_verified, 2);
        // The same checkpoint signed by the retired key is refused.
        let mut by_old = parsed.clone();
        by_old.key_id = keys::key_id(&old.verifying_key());
        let bytes = wire::canonical_checkpoint(&by_old).unwrap();
        let sig = ed25519_dalek::Signer::sign(&old, &wire::checkpoint_signing_input(&bytes));
        cps[1] = wire::checkpoint_line(&bytes, &sig.to_bytes());
        let r = run(&[old.verifying_key()], &cps, &events, false);
        assert_eq!(
            reasons(&r),
            [(FailureReason::CheckpointUnknownKey, Some(3))]
        );
    }

    #[test]
    fn a_deleted_checkpoint_breaks_the_next_link_and_an_anchor_catches_a_cut_tail() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let vk = [key.verifying_key()];
        let (events, cps) = trail(&key, 4, 12);
        assert_eq!(cps.len(), 3);
        let mut without_middle = cps.clone();
        without_middle.remove(1);
        let r = run(&vk, &without_middle, &events, false);
        assert_eq!(
            reasons(&r),
            [(FailureReason::CheckpointBrokenLink, Some(11))]
        );

        // The tail and its checkpoint dropped: the trail alone still verifies...
        let (cut_events, cut_cps) = (&events[..8], &cps[..2]);
        assert!(run(&vk, cut_cps, cut_events, false).ok());
        // ...but not against the anchor the auditor kept (the newest checkpoint).
        let heads = super::super::anchor::heads_from_witness("w", &cps.join(&b'\n')).unwrap();
        let with_anchor = |events: &[Vec<u8>], cps: &[Vec<u8>]| {
            let mut v = Verifier::new(&vk);
            heads.iter().cloned().for_each(|h| v.expect_head(h));
            cps.iter().for_each(|c| v.push("cp", c));
            events.iter().for_each(|e| v.push("ev", e));
            v.finish()
        };
        assert!(with_anchor(&events, &cps).ok());
        let r = with_anchor(cut_events, cut_cps);
        assert_eq!(
            reasons(&r),
            [(FailureReason::TruncatedBeforeAnchor, Some(11))]
        );
        // An anchor naming another event at that sequence number.
        let mut v = Verifier::new(&vk);
        let mut head = heads[0].clone();
        head.hash = [1; 32];
        v.expect_head(head);
        cps.iter().for_each(|c| v.push("cp", c));
        events.iter().for_each(|e| v.push("ev", e));
        assert_eq!(
            reasons(&v.finish()),
            [(FailureReason::AnchorMismatch, Some(11))]
        );
    }

    #[test]
    fn a_duplicate_event_leaves_its_checkpoint_whole_and_a_file_must_hold_its_own_chain() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let vk = [key.verifying_key()];
        let (mut events, cps) = trail(&key, 4, 8);
        events.insert(3, events[2].clone());
        let r = run(&vk, &cps, &events, false);
        assert_eq!(reasons(&r), [(FailureReason::Duplicate, Some(2))]);
        assert_eq!(r.chains["e.BTC"].checkpoints_verified, 2);
        // A copied checkpoint counts once.
        let doubled: Vec<_> = cps.iter().chain(cps.iter()).cloned().collect();
        let r = run(&vk, &doubled, &events[..3], false);
        assert_eq!(r.chains["e.BTC"].checkpoints_verified, 0);

        let mut v = Verifier::new(&vk);
        v.push_chain_stream(
            "e.ETH.jsonl",
            "e.ETH",
            &[events[0].clone(), b"\n".to_vec()].concat(),
        );
        assert_eq!(reasons(&v.finish()), [(FailureReason::WrongChain, Some(0))]);
    }

    #[test]
    fn records_read_a_line_at_a_time_verify_as_the_whole_stream() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let vk = [key.verifying_key()];
        let (events, cps) = trail(&key, 4, 10);
        let mut bytes: Vec<u8> = cps
            .iter()
            .chain(&events)
            .flat_map(|l| [l.as_slice(), b"\n"].concat())
            .collect();
        // A last record cut short, as a crash mid-write leaves it.
        bytes.extend_from_slice(&events[0][..40]);
        let mut whole = Verifier::new(&vk);
        whole.push_stream("t", &bytes);
        let whole = whole.finish();
        assert_eq!(whole.chains["e.BTC"].checkpoints_verified, 3);
        assert_eq!(whole.failures.len(), 1);
        // A reader buffer smaller than a record: every line is split across reads.
        let mut lines = Verifier::new(&vk);
        lines
            .push_reader("t", std::io::BufReader::with_capacity(7, bytes.as_slice()))
            .unwrap();
        assert_eq!(lines.finish(), whole);
    }
}
