//! L0: input validation. Every finding is a reason code; all are reported, not only the first.

use sha2::{Digest, Sha256};

use super::{ActionRequest, FastSet, ReasonCode};

/// Remembers the last `capacity` action IDs to refuse replays. An ID is kept as the first
/// 16 bytes of its SHA-256, so that no honest action is refused for a chance or crafted
/// collision, in a ring of fixed size: about 50 bytes an ID where a shared string in a set
/// and a queue took ~115 (a hundred symbol chains at the default 4096 IDs: 20 MB, not 47).
#[derive(Debug, Clone)]
pub struct DuplicateWindow {
    capacity: usize,
    /// Fingerprints in arrival order until full, then overwritten from `next` on.
    ring: Vec<u128>,
    next: usize,
    seen: FastSet<u128>,
}

fn fingerprint(id: &str) -> u128 {
    let digest = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

impl DuplicateWindow {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ring: Vec::new(),
            next: 0,
            seen: FastSet::default(),
        }
    }

    #[cfg(test)]
    fn contains(&self, id: &str) -> bool {
        self.seen.contains(&fingerprint(id))
    }

    /// Remember `id`; false when it is in the window already (nothing changes then).
    pub fn insert(&mut self, id: &str) -> bool {
        let id = fingerprint(id);
        if !self.seen.insert(id) {
            return false;
        }
        if self.ring.len() < self.capacity {
            self.ring.push(id);
        } else {
            let oldest = std::mem::replace(&mut self.ring[self.next], id);
            self.seen.remove(&oldest);
            self.next = (self.next + 1) % self.capacity;
        }
        true
    }
}

pub(crate) struct L0Limits<'a> {
    pub known_symbols: &'a FastSet<String>,
    pub max_data_age_ms: i64,
    pub max_future_skew_ms: i64,
}

pub(crate) fn validate(
    req: &ActionRequest,
    limits: &L0Limits<'_>,
    seen_before: bool,
    out: &mut Vec<ReasonCode>,
) {
    let numbers = req.evidence.numbers();
    let action_numbers = req.action.numbers();
    let all = numbers
        .iter()
        .copied()
        .chain(action_numbers.iter().map(|(_, v)| *v));
    let mut non_finite = false;
    let mut negative = false;
    for v in all {
        non_finite |= !v.is_finite();
        negative |= v < 0.0;
    }
    if non_finite {
        out.push(ReasonCode::NonFiniteField);
    }
    if negative {
        out.push(ReasonCode::NegativeValue);
    }
    if !limits.known_symbols.contains(&req.symbol) {
        out.push(ReasonCode::UnknownSymbol);
    }
    let age = req.decided_at_ms.saturating_sub(req.data_time_ms);
    if age > limits.max_data_age_ms {
        out.push(ReasonCode::StaleData);
    }
    // Compared without negating `age`, which may be i64::MIN for hostile timestamps.
    if age < -limits.max_future_skew_ms {
        out.push(ReasonCode::FutureTimestamp);
    }
    if seen_before {
        out.push(ReasonCode::DuplicateActionId);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_window_is_bounded() {
        let mut w = DuplicateWindow::new(2);
        w.insert("a");
        w.insert("b");
        assert!(w.contains("a"));
        w.insert("c");
        assert!(!w.contains("a"));
        assert!(w.contains("b") && w.contains("c"));
        // A repeat neither moves nor evicts anything.
        w.insert("c");
        assert!(w.contains("b"));
        w.insert("d");
        assert!(!w.contains("b") && w.contains("c") && w.contains("d"));
        w.insert("e");
        assert!(!w.contains("c") && w.contains("d") && w.contains("e"));
    }

    #[test]
    fn a_long_run_of_ids_keeps_exactly_the_last_window() {
        let mut w = DuplicateWindow::new(100);
        for i in 0..1000 {
            w.insert(&format!("BTCUSDT/{i}"));
        }
        assert!((900..1000).all(|i| w.contains(&format!("BTCUSDT/{i}"))));
        assert!((0..900).all(|i| !w.contains(&format!("BTCUSDT/{i}"))));
        assert_eq!(w.ring.len(), 100);
        assert_eq!(w.seen.len(), 100);
    }
}
