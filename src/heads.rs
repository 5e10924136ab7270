//! The persisted head of every chain: written atomically after each durable flush, read
//! at start and reconciled with the trail itself so that a restart never forks a chain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::ChainHead;
use crate::snapshot::{self, SnapshotError};

const HEADS_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum HeadsError {
    #[error(
        "chain head file {path} is damaged: {reason}. Recovery: run `bizra-risk verify` over \
         the trail; when it passes, move the file aside and start again: each chain then \
         continues from its last record in the trail (README, Recovery)"
    )]
    Damaged { path: PathBuf, reason: String },
    #[error("chain {chain}: the head file and the trail disagree: {detail} (README, Recovery)")]
    Disagree { chain: String, detail: String },
    #[error("{0}")]
    Io(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadEntry {
    next_seq: u64,
    prev_sha256: String,
    key_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadsFile {
    version: u32,
    heads: BTreeMap<String, HeadEntry>,
    /// SHA-256 of the JSON of `heads`: a torn or edited file is refused, not trusted.
    sha256: String,
}

fn checksum(heads: &BTreeMap<String, HeadEntry>) -> String {
    hex::encode(Sha256::digest(
        serde_json::to_vec(heads).unwrap_or_default(),
    ))
}

pub fn save(path: &Path, heads: &BTreeMap<String, ChainHead>) -> Result<(), HeadsError> {
    let heads: BTreeMap<String, HeadEntry> = heads
        .iter()
        .map(|(c, h)| {
            (
                c.clone(),
                HeadEntry {
                    next_seq: h.next_seq,
                    prev_sha256: h.prev_hex.clone(),
                    key_id: h.key_id.clone(),
                },
            )
        })
        .collect();
    let file = HeadsFile {
        version: HEADS_VERSION,
        sha256: checksum(&heads),
        heads,
    };
    snapshot::save(path, &file).map_err(|e| HeadsError::Io(e.to_string()))
}

/// The persisted heads; `Ok(None)` when there is no file yet.
pub fn load(path: &Path) -> Result<Option<BTreeMap<String, ChainHead>>, HeadsError> {
    let damaged = |reason: String| HeadsError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    let file: HeadsFile = match snapshot::load(path) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(SnapshotError::Corrupt { reason, .. }) => return Err(damaged(reason)),
        Err(e) => return Err(HeadsError::Io(e.to_string())),
    };
    if file.version != HEADS_VERSION {
        return Err(damaged(format!("unknown version {}", file.version)));
    }
    if checksum(&file.heads) != file.sha256 {
        return Err(damaged("checksum does not match its content".into()));
    }
    let mut out = BTreeMap::new();
    for (chain, e) in file.heads {
        let mut prev = [0u8; 32];
        if hex::decode_to_slice(&e.prev_sha256, &mut prev).is_err() {
            return Err(damaged(format!(
                "{chain}: prev_sha256 is not 64 hex digits"
            )));
        }
        out.insert(
            chain,
            ChainHead {
                next_seq: e.next_seq,
                prev_hex: e.prev_sha256,
                key_id: e.key_id,
                ..ChainHead::genesis()
            },
        );
    }
    Ok(Some(out))
}

/// Where `chain` continues, from its persisted head and its last record in the trail.
/// The trail may be ahead (the process died between a flush and the next head write); it
/// must never be behind, and at the same sequence the two must name the same event.
pub fn reconcile(
    chain: &str,
    persisted: Option<&ChainHead>,
    trail: ChainHead,
) -> Result<ChainHead, HeadsError> {
    let Some(p) = persisted else {
        return Ok(trail);
    };
    let disagree = |detail: String| HeadsError::Disagree {
        chain: chain.to_string(),
        detail,
    };
    if trail.next_seq > p.next_seq {
        return Ok(trail);
    }
    if trail.next_seq < p.next_seq {
        return Err(disagree(format!(
            "the trail ends before seq {} but seq {} was signed and made durable: records \
             are missing from the trail",
            trail.next_seq,
            p.next_seq - 1
        )));
    }
    if trail.prev_hex != p.prev_hex {
        return Err(disagree(format!(
            "seq {} hashes to {} in the trail but {} in the head file",
            p.next_seq.saturating_sub(1),
            trail.prev_hex,
            p.prev_hex
        )));
    }
    Ok(trail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(n: u64, h: &str) -> ChainHead {
        ChainHead {
            next_seq: n,
            prev_hex: h.repeat(64),
            key_id: Some("k".into()),
            ..ChainHead::genesis()
        }
    }

    #[test]
    fn roundtrip_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads.json");
        assert!(load(&path).unwrap().is_none());
        let heads: BTreeMap<_, _> = [("e.BTC".to_string(), head(5, "a"))].into();
        save(&path, &heads).unwrap();
        assert_eq!(load(&path).unwrap().unwrap(), heads);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"next_seq\":5", "\"next_seq\":6")).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("damaged") && e.contains("Recovery"), "{e}");
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert!(matches!(load(&path), Err(HeadsError::Damaged { .. })));
    }

    #[test]
    fn reconcile_takes_the_trail_when_ahead_and_refuses_loss_or_fork() {
        assert_eq!(
            reconcile("c", Some(&head(5, "a")), head(7, "b")).unwrap(),
            head(7, "b")
        );
        assert_eq!(reconcile("c", None, head(7, "b")).unwrap(), head(7, "b"));
        assert_eq!(
            reconcile("c", Some(&head(5, "a")), head(5, "a")).unwrap(),
            head(5, "a")
        );
        assert!(reconcile("c", Some(&head(5, "a")), head(3, "a")).is_err());
        assert!(reconcile("c", Some(&head(5, "a")), head(5, "b")).is_err());
    }
}
