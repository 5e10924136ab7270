//! Signs events and links each to its predecessor by hash.

use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

use super::wire::{self, Event, Payload, FORMAT_VERSION, GENESIS_PREV};
use super::{keys, AuditError};

/// Where a chain stands: the next sequence number and the hash it must link to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub next_seq: u64,
    pub prev_hex: String,
}

impl ChainHead {
    pub fn genesis() -> Self {
        Self {
            next_seq: 0,
            prev_hex: GENESIS_PREV.to_string(),
        }
    }
}

/// One signed record ready for a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEvent {
    pub chain: String,
    pub seq: u64,
    /// Kafka key: the symbol (or PORTFOLIO), so one chain stays in one partition.
    pub partition_key: String,
    pub key_id: String,
    pub hash_hex: String,
    /// The record without its trailing newline.
    pub line: Vec<u8>,
}

pub struct ChainSigner {
    key: SigningKey,
    key_id: String,
    chain: String,
    head: ChainHead,
}

impl ChainSigner {
    pub fn new(key: SigningKey, chain: String, head: ChainHead) -> Self {
        let key_id = keys::key_id(&key.verifying_key());
        Self {
            key,
            key_id,
            chain,
            head,
        }
    }

    pub fn chain(&self) -> &str {
        &self.chain
    }

    pub fn head(&self) -> &ChainHead {
        &self.head
    }

    pub fn sign(
        &mut self,
        ts_ms: i64,
        partition_key: &str,
        payload: Payload,
    ) -> Result<SignedEvent, AuditError> {
        let event = Event {
            v: FORMAT_VERSION,
            chain: self.chain.clone(),
            seq: self.head.next_seq,
            prev: self.head.prev_hex.clone(),
            key_id: self.key_id.clone(),
            ts_ms,
            payload,
        };
        let canonical = wire::canonical_event(&event).map_err(AuditError::Encode)?;
        let input = wire::signing_input(&canonical);
        let sig = self.key.sign(&input).to_bytes();
        let hash_hex = hex::encode(Sha256::digest(&input));
        let signed = SignedEvent {
            chain: self.chain.clone(),
            seq: event.seq,
            partition_key: partition_key.to_string(),
            key_id: self.key_id.clone(),
            hash_hex: hash_hex.clone(),
            line: wire::record_line(&canonical, &sig),
        };
        self.head = ChainHead {
            next_seq: event.seq + 1,
            prev_hex: hash_hex,
        };
        Ok(signed)
    }
}

/// The head that continues a chain after the given last record (used on restart).
pub fn head_after(line: &[u8]) -> Result<ChainHead, String> {
    let rec = wire::parse_record(line).map_err(|e| format!("{e:?}"))?;
    let input = wire::signing_input(rec.event_bytes);
    Ok(ChainHead {
        next_seq: rec.event.seq + 1,
        prev_hex: hex::encode(Sha256::digest(&input)),
    })
}
