//! Hand-over of a partition to a new owner, decided without I/O. The new owner re-derives
//! every chain of the partition from the partition's first record (the engine is
//! deterministic: same records, build, configuration, key and seed, same bytes) and
//! publishes only what the chain's published head does not already hold. At the published
//! head the re-derived event (and checkpoint) must be byte-identical to the published one; if
//! it is not, the owner stops instead of forking the chain. A partition whose first records
//! were deleted cannot be re-derived and is refused.

use std::collections::HashMap;

use crate::audit::wire::RecordKind;
use crate::audit::SignedEvent;

/// What a chain's output topics held when the owner took the partition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    /// The newest event: its sequence number and bytes.
    pub event: Option<(u64, Vec<u8>)>,
    /// The newest checkpoint: its last sequence number and bytes.
    pub checkpoint: Option<(u64, Vec<u8>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// New: publish it.
    Publish,
    /// Already on the topic (re-derived while catching up).
    Suppress,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HandoverError {
    #[error(
        "chain {chain}: the re-derived {what} at seq {seq} differs from the published one \
         (another build, configuration, rules, key or input?); refusing to fork the chain"
    )]
    WouldFork {
        chain: String,
        what: &'static str,
        seq: u64,
    },
    #[error(
        "{topic} partition {partition} starts at offset {first_offset}, not 0: its history \
         was deleted (retention), so its chains cannot be re-derived; refusing the partition"
    )]
    HistoryMissing {
        topic: String,
        partition: i32,
        first_offset: i64,
    },
}

impl HandoverError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::WouldFork { .. } => "WOULD_FORK",
            Self::HistoryMissing { .. } => "HISTORY_MISSING",
        }
    }
}

/// A partition whose first record is not at offset 0 cannot be re-derived.
pub fn check_history(topic: &str, partition: i32, first_offset: i64) -> Result<(), HandoverError> {
    if first_offset > 0 {
        return Err(HandoverError::HistoryMissing {
            topic: topic.to_string(),
            partition,
            first_offset,
        });
    }
    Ok(())
}

/// The catch-up of the chains of one owned partition.
#[derive(Debug, Default)]
pub struct CatchUp {
    published: HashMap<String, Published>,
    suppressed: u64,
}

/// Below the published head: suppress; at it: the same bytes or a fork; above: publish.
fn against(
    head: Option<&(u64, Vec<u8>)>,
    event: &SignedEvent,
    what: &'static str,
) -> Result<Route, HandoverError> {
    match head {
        Some((seq, _)) if event.seq < *seq => Ok(Route::Suppress),
        Some((seq, bytes)) if event.seq == *seq => {
            if *bytes == event.line {
                Ok(Route::Suppress)
            } else {
                Err(HandoverError::WouldFork {
                    chain: event.chain.clone(),
                    what,
                    seq: event.seq,
                })
            }
        }
        _ => Ok(Route::Publish),
    }
}

impl CatchUp {
    pub fn new(published: HashMap<String, Published>) -> Self {
        Self {
            published,
            suppressed: 0,
        }
    }

    /// Records re-derived and not published again.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// Where a re-derived signed record goes. Chains are hash-linked, so the same bytes at
    /// the published head mean the same chain up to it.
    pub fn route(&mut self, event: &SignedEvent) -> Result<Route, HandoverError> {
        let Some(published) = self.published.get(&event.chain) else {
            return Ok(Route::Publish);
        };
        let route = match event.kind {
            RecordKind::Event => against(published.event.as_ref(), event, "event")?,
            RecordKind::Checkpoint => against(published.checkpoint.as_ref(), event, "checkpoint")?,
        };
        if route == Route::Suppress {
            self.suppressed += 1;
        }
        Ok(route)
    }

    /// Whether the VaR snapshot of the decision at `seq` of `chain` is new.
    pub fn snapshot_route(&self, chain: &str, seq: u64) -> Route {
        match self.published.get(chain).and_then(|p| p.event.as_ref()) {
            Some((published, _)) if seq <= *published => Route::Suppress,
            _ => Route::Publish,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, line: &str) -> SignedEvent {
        SignedEvent {
            kind: RecordKind::Event,
            chain: "e.BTCUSDT".into(),
            seq,
            partition_key: "BTCUSDT".into(),
            key_id: "k".into(),
            hash_hex: String::new(),
            line: line.as_bytes().to_vec(),
        }
    }

    fn checkpoint(last_seq: u64) -> SignedEvent {
        SignedEvent {
            kind: RecordKind::Checkpoint,
            ..event(last_seq, "cp")
        }
    }

    fn published(seq: u64, line: &str, cp: Option<u64>) -> CatchUp {
        CatchUp::new(
            [(
                "e.BTCUSDT".to_string(),
                Published {
                    event: Some((seq, line.as_bytes().to_vec())),
                    checkpoint: cp.map(|s| (s, b"cp".to_vec())),
                },
            )]
            .into(),
        )
    }

    #[test]
    fn what_the_topic_holds_is_suppressed_and_the_rest_published() {
        let mut c = published(2, "two", Some(1));
        assert_eq!(c.route(&event(0, "zero")), Ok(Route::Suppress));
        assert_eq!(c.route(&event(1, "one")), Ok(Route::Suppress));
        assert_eq!(c.route(&checkpoint(1)), Ok(Route::Suppress));
        assert_eq!(c.route(&event(2, "two")), Ok(Route::Suppress));
        assert_eq!(c.snapshot_route("e.BTCUSDT", 2), Route::Suppress);
        assert_eq!(c.route(&event(3, "three")), Ok(Route::Publish));
        assert_eq!(c.route(&checkpoint(3)), Ok(Route::Publish));
        assert_eq!(c.snapshot_route("e.BTCUSDT", 3), Route::Publish);
        assert_eq!(c.suppressed(), 4);
        let mut other = CatchUp::default();
        assert_eq!(other.route(&event(0, "zero")), Ok(Route::Publish));
    }

    #[test]
    fn a_different_event_or_checkpoint_at_the_head_stops_the_owner() {
        let mut c = published(1, "one", None);
        assert_eq!(c.route(&event(0, "zero")), Ok(Route::Suppress));
        assert_eq!(
            c.route(&event(1, "ONE")).map_err(|e| e.code()),
            Err("WOULD_FORK")
        );
        let mut c = published(4, "four", Some(2));
        let mut cp = checkpoint(2);
        cp.line = b"another cp".to_vec();
        assert_eq!(c.route(&cp).map_err(|e| e.code()), Err("WOULD_FORK"));
    }

    #[test]
    fn a_partition_without_its_first_records_is_refused() {
        assert_eq!(check_history("m", 3, 0), Ok(()));
        assert_eq!(
            check_history("m", 3, 120).map_err(|e| e.code()),
            Err("HISTORY_MISSING")
        );
    }
}
