//! Signs events, links each to its predecessor by hash, and seals runs of them in signed
//! Merkle checkpoints.

use ed25519_dalek::hazmat::{self, ExpandedSecretKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256, Sha512};

use super::merkle::{self, TreeBuilder};
use super::wire::{
    self, Checkpoint, Event, KeyRotationRecord, Payload, RecordKind, CHECKPOINT_VERSION,
    FORMAT_VERSION, GENESIS_PREV,
};
use super::{keys, AuditError};

/// Where a chain stands: the next sequence number, the hash it must link to, the key
/// that signed the last event (None before genesis), that event's engine time and the
/// chain's last checkpoint (which the next one links to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub next_seq: u64,
    pub prev_hex: String,
    pub key_id: Option<String>,
    pub ts_ms: i64,
    pub checkpoint: Option<CheckpointHead>,
}

/// The last checkpoint of a chain: what the next checkpoint links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointHead {
    pub last_seq: u64,
    pub hash_hex: String,
}

impl ChainHead {
    /// What the persisted heads file keeps after `event`: where the chain continues and
    /// the key that signed it (time and checkpoint are recovered from the trail).
    pub fn persisted_after(event: &SignedEvent) -> Self {
        Self {
            next_seq: event.seq + 1,
            prev_hex: event.hash_hex.clone(),
            key_id: Some(event.key_id.clone()),
            ..Self::genesis()
        }
    }

    pub fn genesis() -> Self {
        Self {
            next_seq: 0,
            prev_hex: GENESIS_PREV.to_string(),
            key_id: None,
            ts_ms: 0,
            checkpoint: None,
        }
    }
}

/// One signed record ready for a sink: an event, or a checkpoint (`seq` = its last_seq).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEvent {
    pub kind: RecordKind,
    pub chain: String,
    pub seq: u64,
    /// Kafka key: the symbol (or PORTFOLIO), so one chain stays in one partition.
    pub partition_key: String,
    pub key_id: String,
    pub hash_hex: String,
    /// The record without its trailing newline.
    pub line: Vec<u8>,
}

/// When to seal the events since the last checkpoint: after this many events, or once
/// this much engine time has passed since the last checkpoint (checked at each event, so
/// replays seal at the same events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    pub every_events: u64,
    pub every_ms: i64,
}

impl Default for CheckpointPolicy {
    /// The configuration defaults: 1000 events or 60 s.
    fn default() -> Self {
        Self {
            every_events: 1000,
            every_ms: 60_000,
        }
    }
}

struct OpenTree {
    first_seq: u64,
    leaves: TreeBuilder,
    last_event: [u8; 32],
    last_ts_ms: i64,
}

/// A signing key with its SHA-512 expansion kept, so that signing an event does not
/// derive it again. The signatures are exactly those of `SigningKey::sign`.
struct ExpandedKey {
    expanded: ExpandedSecretKey,
    verifying: VerifyingKey,
}

impl ExpandedKey {
    fn new(key: &SigningKey) -> Self {
        Self {
            expanded: ExpandedSecretKey::from(key.as_bytes()),
            verifying: key.verifying_key(),
        }
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        hazmat::raw_sign::<Sha512>(&self.expanded, message, &self.verifying).to_bytes()
    }
}

pub struct ChainSigner {
    key: ExpandedKey,
    key_id: String,
    chain: String,
    head: ChainHead,
    policy: CheckpointPolicy,
    open: Option<OpenTree>,
    last_checkpoint_ms: Option<i64>,
    /// The input mark of the last event signed, for the next checkpoint.
    inputs: Option<wire::InputsRecord>,
    /// The hash of the run's start state, until the run's first checkpoint signs it.
    run_start: Option<String>,
}

impl ChainSigner {
    pub fn new(key: SigningKey, chain: String, head: ChainHead, policy: CheckpointPolicy) -> Self {
        let key_id = keys::key_id(&key.verifying_key());
        Self {
            key: ExpandedKey::new(&key),
            key_id,
            chain,
            head,
            policy,
            open: None,
            last_checkpoint_ms: None,
            inputs: None,
            run_start: None,
        }
    }

    pub fn chain(&self) -> &str {
        &self.chain
    }

    pub fn head(&self) -> &ChainHead {
        &self.head
    }

    pub fn policy(&self) -> CheckpointPolicy {
        self.policy
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Sign the next event with `other` (a key and its ID), or with this signer's key.
    fn sign_with(
        &mut self,
        other: Option<(&SigningKey, String)>,
        ts_ms: i64,
        partition_key: &str,
        payload: &Payload,
    ) -> Result<SignedEvent, AuditError> {
        let (other_key, other_id) = match other {
            Some((key, id)) => (Some(key), Some(id)),
            None => (None, None),
        };
        let key_id = other_id.unwrap_or_else(|| self.key_id.clone());
        let kind = payload.kind();
        let payload_bytes = wire::canonical_payload(payload).map_err(AuditError::Encode)?;
        let payload_sha256 = super::Hex32::of(&Sha256::digest(&payload_bytes).into());
        let seq = self.head.next_seq;
        let canonical = wire::canonical_event(&Event::<&str> {
            v: FORMAT_VERSION,
            chain: &self.chain,
            seq,
            prev: &self.head.prev_hex,
            key_id: &key_id,
            ts_ms,
            kind,
            payload_sha256: payload_sha256.as_str(),
        })
        .map_err(AuditError::Encode)?;
        let input = wire::signing_input(&canonical);
        let sig = match other_key {
            Some(key) => key.sign(&input).to_bytes(),
            None => self.key.sign(&input),
        };
        let hash: [u8; 32] = Sha256::digest(&input).into();
        let hash_hex = super::hex32(&hash);
        let open = self.open.get_or_insert_with(|| OpenTree {
            first_seq: seq,
            leaves: TreeBuilder::default(),
            last_event: hash,
            last_ts_ms: ts_ms,
        });
        open.leaves.push(merkle::leaf_hash(&hash));
        open.last_event = hash;
        open.last_ts_ms = ts_ms;
        self.last_checkpoint_ms.get_or_insert(ts_ms);
        let signed = SignedEvent {
            kind: RecordKind::Event,
            chain: self.chain.clone(),
            seq,
            partition_key: partition_key.to_string(),
            key_id: key_id.clone(),
            hash_hex: hash_hex.clone(),
            line: wire::record_line(&canonical, &payload_bytes, &sig),
        };
        self.head.next_seq = seq + 1;
        self.head.prev_hex = hash_hex;
        self.head.key_id = Some(key_id);
        self.head.ts_ms = ts_ms;
        Ok(signed)
    }

    pub fn sign(
        &mut self,
        ts_ms: i64,
        partition_key: &str,
        payload: &Payload,
    ) -> Result<SignedEvent, AuditError> {
        self.sign_with(None, ts_ms, partition_key, payload)
    }

    /// Hand the chain from `old` (the key of its last event) to this signer's key: a
    /// KEY_ROTATION event signed by the old key, the first link the new key extends.
    pub fn rotate_from(
        &mut self,
        old: &SigningKey,
        ts_ms: i64,
        partition_key: &str,
    ) -> Result<SignedEvent, AuditError> {
        let old_id = keys::key_id(&old.verifying_key());
        let payload = Payload::KeyRotation(KeyRotationRecord {
            new_key_id: self.key_id.clone(),
            new_public_key: hex::encode(self.key.verifying.as_bytes()),
        });
        self.sign_with(Some((old, old_id)), ts_ms, partition_key, &payload)
    }

    /// The input mark of the event about to be signed (`None` for chains whose input is
    /// not a connection's); the chain's next checkpoint carries the newest.
    pub fn note_inputs(&mut self, inputs: Option<wire::InputsRecord>) {
        if inputs.is_some() {
            self.inputs = inputs;
        }
    }

    /// The hash of the state this run started from: the chain's next checkpoint signs it.
    pub fn note_run_start(&mut self, sha256: String) {
        self.run_start = Some(sha256);
    }

    /// A checkpoint when the policy says one is due after the event just signed.
    pub fn checkpoint_if_due(
        &mut self,
        partition_key: &str,
    ) -> Result<Option<SignedEvent>, AuditError> {
        let Some(open) = &self.open else {
            return Ok(None);
        };
        let by_count = open.leaves.size() >= self.policy.every_events;
        let by_time = self
            .last_checkpoint_ms
            .is_some_and(|t| open.last_ts_ms.saturating_sub(t) >= self.policy.every_ms);
        if by_count || by_time {
            self.checkpoint(partition_key)
        } else {
            Ok(None)
        }
    }

    /// Seal every event since the last checkpoint now (at shutdown); None if there are none.
    /// The checkpoint carries the engine time of its last event and is signed by the key
    /// that holds the chain after it (after a rotation, the new key), and links to the
    /// chain's previous checkpoint.
    pub fn checkpoint(&mut self, partition_key: &str) -> Result<Option<SignedEvent>, AuditError> {
        let Some(open) = self.open.take() else {
            return Ok(None);
        };
        self.last_checkpoint_ms = Some(open.last_ts_ms);
        let size = open.leaves.size();
        let cp = Checkpoint {
            v: CHECKPOINT_VERSION,
            chain: self.chain.clone(),
            key_id: self.key_id.clone(),
            first_seq: open.first_seq,
            last_seq: open.first_seq + size - 1,
            prev_checkpoint_sha256: self
                .head
                .checkpoint
                .as_ref()
                .map_or_else(|| GENESIS_PREV.to_string(), |c| c.hash_hex.clone()),
            tree_size: size,
            root_sha256: hex::encode(open.leaves.root()),
            last_event_sha256: hex::encode(open.last_event),
            ts_ms: open.last_ts_ms,
            inputs: self.inputs.clone(),
            run_start_sha256: self.run_start.take(),
        };
        let canonical = wire::canonical_checkpoint(&cp).map_err(AuditError::Encode)?;
        let input = wire::checkpoint_signing_input(&canonical);
        let sig = self.key.sign(&input);
        let hash_hex = super::hex32(&Sha256::digest(&input).into());
        self.head.checkpoint = Some(CheckpointHead {
            last_seq: cp.last_seq,
            hash_hex: hash_hex.clone(),
        });
        Ok(Some(SignedEvent {
            kind: RecordKind::Checkpoint,
            chain: self.chain.clone(),
            seq: cp.last_seq,
            partition_key: partition_key.to_string(),
            key_id: self.key_id.clone(),
            hash_hex,
            line: wire::checkpoint_line(&canonical, &sig),
        }))
    }
}

/// The head that continues a chain after the given last record (used on restart); its
/// checkpoint link is set apart, from [`checkpoint_head`].
pub fn head_after(line: &[u8]) -> Result<ChainHead, String> {
    let env = wire::parse_envelope(line).map_err(|e| format!("{e:?}"))?;
    let input = wire::signing_input(env.event_bytes);
    Ok(ChainHead {
        next_seq: env.seq + 1,
        prev_hex: hex::encode(Sha256::digest(&input)),
        key_id: Some(env.key_id.into_owned()),
        ts_ms: env.ts_ms,
        checkpoint: None,
    })
}

/// The chain and link of a checkpoint record (the chain's last, on restart).
pub fn checkpoint_head(line: &[u8]) -> Result<(String, CheckpointHead), String> {
    let parsed = wire::parse_checkpoint(line).map_err(|e| format!("{e:?}"))?;
    let input = wire::checkpoint_signing_input(parsed.bytes);
    Ok((
        parsed.checkpoint.chain,
        CheckpointHead {
            last_seq: parsed.checkpoint.last_seq,
            hash_hex: super::hex32(&Sha256::digest(&input).into()),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_expansion_signs_exactly_as_the_key_does() {
        for seed in 0u8..16 {
            let key = SigningKey::from_bytes(&[seed.wrapping_mul(37).wrapping_add(1); 32]);
            let expanded = ExpandedKey::new(&key);
            for len in [0usize, 1, 64, 300, 2500] {
                let message: Vec<u8> = (0..len).map(|i| (i as u8) ^ seed).collect();
                assert_eq!(expanded.sign(&message), key.sign(&message).to_bytes());
            }
        }
    }
}
