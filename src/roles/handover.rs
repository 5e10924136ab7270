//! Hand-over of a partition to a new owner, decided without I/O. The new owner re-derives
//! every chain of the partition from the partition's first record (the engine is
//! deterministic: same records, configuration, key and seed, same bytes) and publishes only
//! what the chain's published head does not already hold. At the published head the
//! re-derived event must be byte-identical to the published one; if it is not (another
//! configuration, key or input), the owner stops instead of forking the chain.

use std::collections::HashMap;

use crate::audit::wire::RecordKind;
use crate::audit::SignedEvent;

/// What a chain's output topics held when the owner took the partition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    /// The newest event: its sequence number and bytes.
    pub event: Option<(u64, Vec<u8>)>,
    /// The newest checkpoint's last sequence number.
    pub checkpoint_last_seq: Option<u64>,
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
        "chain {chain}: the re-derived event at seq {seq} differs from the published one \
         (another configuration, key or input?); refusing to fork the chain"
    )]
    WouldFork { chain: String, seq: u64 },
    #[error(
        "chain {chain}: the published head is at seq {published} but the re-derivation \
         produced seq {seq} first; the input topic no longer holds the chain's history"
    )]
    HistoryMissing {
        chain: String,
        published: u64,
        seq: u64,
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

/// The catch-up of the chains of one owned partition.
#[derive(Debug, Default)]
pub struct CatchUp {
    published: HashMap<String, Published>,
    /// Chains whose re-derivation has reached the published head.
    caught_up: HashMap<String, bool>,
    suppressed: u64,
}

impl CatchUp {
    pub fn new(published: HashMap<String, Published>) -> Self {
        Self {
            published,
            caught_up: HashMap::new(),
            suppressed: 0,
        }
    }

    /// Records re-derived and not published again.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// True once every chain seen so far has reached its published head.
    pub fn is_caught_up(&self, chain: &str) -> bool {
        match self.published.get(chain).and_then(|p| p.event.as_ref()) {
            None => true,
            Some(_) => self.caught_up.get(chain).copied().unwrap_or(false),
        }
    }

    /// Where a re-derived signed record goes.
    pub fn route(&mut self, event: &SignedEvent) -> Result<Route, HandoverError> {
        let Some(published) = self.published.get(&event.chain) else {
            return Ok(Route::Publish);
        };
        let route = match event.kind {
            RecordKind::Event => match &published.event {
                None => Route::Publish,
                Some((seq, _)) if event.seq < *seq => {
                    if event.seq == 0 || self.caught_up.contains_key(&event.chain) {
                        self.caught_up.insert(event.chain.clone(), false);
                        Route::Suppress
                    } else {
                        return Err(HandoverError::HistoryMissing {
                            chain: event.chain.clone(),
                            published: *seq,
                            seq: event.seq,
                        });
                    }
                }
                Some((seq, bytes)) if event.seq == *seq => {
                    if *bytes != event.line {
                        return Err(HandoverError::WouldFork {
                            chain: event.chain.clone(),
                            seq: event.seq,
                        });
                    }
                    self.caught_up.insert(event.chain.clone(), true);
                    Route::Suppress
                }
                Some(_) => Route::Publish,
            },
            RecordKind::Checkpoint => match published.checkpoint_last_seq {
                Some(last) if event.seq <= last => Route::Suppress,
                _ => Route::Publish,
            },
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
                    checkpoint_last_seq: cp,
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
        assert!(!c.is_caught_up("e.BTCUSDT"));
        assert_eq!(c.route(&event(2, "two")), Ok(Route::Suppress));
        assert!(c.is_caught_up("e.BTCUSDT"));
        assert_eq!(c.snapshot_route("e.BTCUSDT", 2), Route::Suppress);
        assert_eq!(c.route(&event(3, "three")), Ok(Route::Publish));
        assert_eq!(c.route(&checkpoint(3)), Ok(Route::Publish));
        assert_eq!(c.snapshot_route("e.BTCUSDT", 3), Route::Publish);
        assert_eq!(c.suppressed(), 4);
        let mut other = CatchUp::default();
        assert_eq!(other.route(&event(0, "zero")), Ok(Route::Publish));
    }

    #[test]
    fn a_different_event_at_the_head_stops_the_owner() {
        let mut c = published(1, "one", None);
        assert_eq!(c.route(&event(0, "zero")), Ok(Route::Suppress));
        assert_eq!(
            c.route(&event(1, "ONE")).map_err(|e| e.code()),
            Err("WOULD_FORK")
        );
    }

    #[test]
    fn a_re_derivation_that_does_not_start_at_genesis_is_refused() {
        let mut c = published(5, "five", None);
        assert_eq!(
            c.route(&event(3, "three")).map_err(|e| e.code()),
            Err("HISTORY_MISSING")
        );
    }
}
