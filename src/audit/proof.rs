//! Inclusion proofs: that one signed event is in the tree a signed checkpoint commits to.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::keys;
use super::merkle::{self, Hash};
use super::wire::{self, RecordKind};

/// Self-contained: the event record, its checkpoint record and the audit path between
/// them. Anyone with the verifying key can check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    pub chain: String,
    pub seq: u64,
    pub event_sha256: String,
    /// Position of the event's leaf in the checkpoint's tree (`seq − first_seq`).
    pub leaf_index: u64,
    pub tree_size: u64,
    /// RFC 6962 audit path, hex, nearest sibling first.
    pub audit_path: Vec<String>,
    pub root_sha256: String,
    /// The signed event record, as stored.
    pub event_record: String,
    /// The signed checkpoint record, as stored.
    pub checkpoint_record: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("no checkpoint of chain {chain} covers seq {seq}")]
    NoCheckpoint { chain: String, seq: u64 },
    #[error("event seq {0} of the checkpoint's range is missing from the trail")]
    MissingEvent(u64),
    #[error("the events do not give the checkpoint's root: run verify")]
    RootMismatch,
    #[error("invalid proof: {0}")]
    Invalid(String),
}

/// Build the proof for `chain`/`seq` from record lines (events and checkpoints, any order).
pub fn build<'a>(
    chain: &str,
    seq: u64,
    lines: impl IntoIterator<Item = &'a [u8]>,
) -> Result<InclusionProof, ProofError> {
    let mut checkpoints = Vec::new();
    let mut events: BTreeMap<u64, (Hash, &'a [u8])> = BTreeMap::new();
    for line in lines {
        match wire::record_kind(line) {
            Some(RecordKind::Checkpoint) => {
                if let Ok(p) = wire::parse_checkpoint(line) {
                    if p.checkpoint.chain == chain
                        && (p.checkpoint.first_seq..=p.checkpoint.last_seq).contains(&seq)
                    {
                        checkpoints.push((p.checkpoint, line));
                    }
                }
            }
            Some(RecordKind::Event) => {
                if let Ok(env) = wire::parse_envelope(line) {
                    if env.chain == chain {
                        let h: Hash = Sha256::digest(wire::signing_input(env.event_bytes)).into();
                        events.insert(env.seq, (h, line));
                    }
                }
            }
            None => {}
        }
    }
    // The smallest checkpoint that covers the event.
    checkpoints.sort_by_key(|(c, _)| c.tree_size);
    let (cp, cp_line) = checkpoints
        .into_iter()
        .next()
        .ok_or_else(|| ProofError::NoCheckpoint {
            chain: chain.to_string(),
            seq,
        })?;
    let leaves = (cp.first_seq..=cp.last_seq)
        .map(|s| {
            events
                .get(&s)
                .map(|(h, _)| merkle::leaf_hash(h))
                .ok_or(ProofError::MissingEvent(s))
        })
        .collect::<Result<Vec<Hash>, _>>()?;
    if hex::encode(merkle::root(&leaves)) != cp.root_sha256 {
        return Err(ProofError::RootMismatch);
    }
    let index = seq - cp.first_seq;
    let path = merkle::inclusion_proof(&leaves, index as usize)
        .ok_or_else(|| ProofError::Invalid("leaf index out of range".into()))?;
    let (hash, line) = events.get(&seq).ok_or(ProofError::MissingEvent(seq))?;
    Ok(InclusionProof {
        chain: chain.to_string(),
        seq,
        event_sha256: hex::encode(hash),
        leaf_index: index,
        tree_size: cp.tree_size,
        audit_path: path.iter().map(hex::encode).collect(),
        root_sha256: cp.root_sha256.clone(),
        event_record: String::from_utf8_lossy(line).into_owned(),
        checkpoint_record: String::from_utf8_lossy(cp_line).into_owned(),
    })
}

/// Check a proof against trusted keys: both signatures, that the event is the one named,
/// and that its leaf and the audit path give the signed root.
pub fn check(proof: &InclusionProof, trusted: &[VerifyingKey]) -> Result<(), ProofError> {
    let invalid = |m: &str| ProofError::Invalid(m.to_string());
    let keys: BTreeMap<String, VerifyingKey> = trusted
        .iter()
        .filter(|k| !k.is_weak())
        .map(|k| (keys::key_id(k), *k))
        .collect();
    let cp = wire::parse_checkpoint(proof.checkpoint_record.as_bytes())
        .map_err(|e| ProofError::Invalid(format!("checkpoint record: {e:?}")))?;
    let cp_key = keys
        .get(&cp.checkpoint.key_id)
        .ok_or_else(|| invalid("checkpoint signed by an untrusted key"))?;
    cp_key
        .verify_strict(
            &wire::checkpoint_signing_input(cp.bytes),
            &Signature::from_bytes(&cp.sig),
        )
        .map_err(|_| invalid("checkpoint signature does not verify"))?;
    let ev = wire::parse_envelope(proof.event_record.as_bytes())
        .map_err(|e| ProofError::Invalid(format!("event record: {e:?}")))?;
    let ev_key = keys
        .get(ev.key_id.as_ref())
        .ok_or_else(|| invalid("event signed by an untrusted key"))?;
    let input = wire::signing_input(ev.event_bytes);
    ev_key
        .verify_strict(&input, &Signature::from_bytes(&ev.sig))
        .map_err(|_| invalid("event signature does not verify"))?;
    let hash: Hash = Sha256::digest(&input).into();
    let c = &cp.checkpoint;
    if ev.chain != c.chain
        || ev.chain != proof.chain
        || ev.seq != proof.seq
        || hex::encode(hash) != proof.event_sha256
    {
        return Err(invalid("the event is not the one the proof names"));
    }
    if !(c.first_seq..=c.last_seq).contains(&ev.seq)
        || proof.leaf_index != ev.seq - c.first_seq
        || proof.tree_size != c.tree_size
        || proof.root_sha256 != c.root_sha256
    {
        return Err(invalid("the proof does not match its checkpoint"));
    }
    let path = proof
        .audit_path
        .iter()
        .map(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h, &mut out).map(|_| out)
        })
        .collect::<Result<Vec<Hash>, _>>()
        .map_err(|_| invalid("audit path entry is not 64 hex digits"))?;
    let root = merkle::root_from_proof(
        &merkle::leaf_hash(&hash),
        proof.leaf_index,
        proof.tree_size,
        &path,
    )
    .ok_or_else(|| invalid("audit path has the wrong length"))?;
    if hex::encode(root) != c.root_sha256 {
        return Err(invalid("the audit path does not lead to the signed root"));
    }
    Ok(())
}
