//! The input digest of one connection: a running SHA-256 over everything the feed step
//! consumed, in order (text frames, binary frames, REST answers, and their receive times
//! when those drive the engine clock). Each tick carries the digest at its position, and a
//! symbol chain's checkpoint signs the mark of its last decision, so a recording of the
//! connection can be checked against the signed trail: replaying it must reach the same
//! digest at the same position. The byte layout is specified in `docs/audit-replay.md`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::FetchAnswer;

/// Where a connection's input stood: its index among the run's connections, how many
/// inputs it had consumed, and the digest of those inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputMark {
    pub connection: u32,
    pub position: u64,
    pub sha256: [u8; 32],
}

#[derive(Clone)]
pub struct InputDigest {
    connection: u32,
    position: u64,
    hasher: Sha256,
}

impl InputDigest {
    pub fn new(connection: u32) -> Self {
        Self {
            connection,
            position: 0,
            hasher: Sha256::new(),
        }
    }

    /// A text frame; `received_ms` only when it is the engine clock.
    pub fn frame(&mut self, text: &str, received_ms: Option<i64>) {
        self.begin(b'F', received_ms);
        self.bytes(text.as_bytes());
    }

    /// A binary frame (only its length reaches the step).
    pub fn binary(&mut self, len: usize) {
        self.begin(b'B', None);
        self.hasher.update((len as u64).to_be_bytes());
    }

    /// A REST answer as the step received it: fetched trades in full; of a depth snapshot,
    /// only that it came. Error texts are not digested: they name the host's transport, and
    /// the step only logs them.
    pub fn answer(&mut self, answer: &FetchAnswer, received_ms: Option<i64>) {
        self.begin(b'R', received_ms);
        let h = &mut self.hasher;
        match answer {
            FetchAnswer::Trades(Ok(list)) => {
                h.update(b"T");
                h.update((list.len() as u64).to_be_bytes());
                for t in list {
                    h.update(t.id.to_be_bytes());
                    h.update(t.trade.trade_id.to_be_bytes());
                    h.update(t.trade.price.to_bits().to_be_bytes());
                    h.update(t.trade.qty.to_bits().to_be_bytes());
                    h.update(t.trade.trade_time_ms.to_be_bytes());
                    h.update(t.trade.event_time_ms.to_be_bytes());
                    h.update([u8::from(t.trade.buyer_is_maker)]);
                }
            }
            // Only that a snapshot came: its levels depend on how far the server had
            // streamed when it took it, which the step bridges with the stream either way.
            FetchAnswer::DepthSnapshot(Ok(_)) => h.update(b"D"),
            FetchAnswer::Trades(Err(_)) | FetchAnswer::DepthSnapshot(Err(_)) => h.update(b"E"),
        }
    }

    pub fn mark(&self) -> InputMark {
        InputMark {
            connection: self.connection,
            position: self.position,
            sha256: self.hasher.clone().finalize().into(),
        }
    }

    fn begin(&mut self, tag: u8, received_ms: Option<i64>) {
        self.position += 1;
        self.hasher.update([tag]);
        if let Some(ms) = received_ms {
            self.hasher.update(ms.to_be_bytes());
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        self.hasher.update((b.len() as u64).to_be_bytes());
        self.hasher.update(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_depends_on_every_input_and_its_order() {
        let mut a = InputDigest::new(0);
        a.frame("x", None);
        a.frame("y", None);
        let mut b = InputDigest::new(0);
        b.frame("y", None);
        b.frame("x", None);
        assert_ne!(a.mark().sha256, b.mark().sha256);
        assert_eq!(a.mark().position, 2);
        let mut c = InputDigest::new(0);
        c.frame("x", Some(1));
        c.frame("y", None);
        assert_ne!(a.mark().sha256, c.mark().sha256);
        let mut d = InputDigest::new(0);
        d.frame("x", None);
        d.frame("y", None);
        assert_eq!(a.mark(), d.mark());
    }
}
