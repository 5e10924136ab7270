//! L0: input validation. Every finding is a reason code; all are reported, not only the first.

use sha2::{Digest, Sha256};

use super::{ActionRequest, FastSet, ReasonCode};

/// Remembers the last `capacity` action IDs to refuse replays. An ID is kept as the first
/// 16 bytes of its SHA-256, so that no honest action is refused for a chance or crafted
/// collision, in a ring of fixed size, and found through an open-addressed table of ring
/// positions (4 bytes a slot, twice the window): about 24 bytes an ID, 96 KB for a full
/// window at the default 4096 IDs. A hash set beside the ring took about 50 bytes an ID,
/// which at a thousand chains is 200 MB once the windows have filled.
#[derive(Debug, Clone)]
pub struct DuplicateWindow {
    capacity: usize,
    /// Fingerprints in arrival order until full, then overwritten from `next` on.
    ring: Vec<u128>,
    next: usize,
    /// Linear probing from a fingerprint's low bits (uniform: they are SHA-256's); a slot
    /// holds a ring position plus one, 0 when empty. Allocated at the first insert.
    slots: Vec<u32>,
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
            // Ring positions must fit a slot; configuration allows far fewer.
            capacity: capacity.clamp(1, u32::MAX as usize / 2),
            ring: Vec::new(),
            next: 0,
            slots: Vec::new(),
        }
    }

    #[cfg(test)]
    fn contains(&self, id: &str) -> bool {
        !self.slots.is_empty() && self.find(fingerprint(id)).is_ok()
    }

    /// Remember `id`; false when it is in the window already (nothing changes then).
    pub fn insert(&mut self, id: &str) -> bool {
        let id = fingerprint(id);
        if self.slots.is_empty() {
            self.slots = vec![0; (2 * self.capacity).next_power_of_two()];
        }
        let empty = match self.find(id) {
            Ok(_) => return false,
            Err(empty) => empty,
        };
        if self.ring.len() < self.capacity {
            self.ring.push(id);
            self.slots[empty] = self.ring.len() as u32;
            return true;
        }
        let oldest = self.ring[self.next];
        if let Ok(at) = self.find(oldest) {
            self.vacate(at);
        }
        self.ring[self.next] = id;
        // Vacating may have moved entries, so the empty slot is looked for again.
        if let Err(empty) = self.find(id) {
            self.slots[empty] = self.next as u32 + 1;
        }
        self.next = (self.next + 1) % self.capacity;
        true
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, id: u128) -> usize {
        id as usize & self.mask()
    }

    /// The slot holding `id`, or the empty slot where its probe ends.
    fn find(&self, id: u128) -> Result<usize, usize> {
        let mut i = self.home(id);
        loop {
            match self.slots[i] {
                0 => return Err(i),
                p if self.ring[p as usize - 1] == id => return Ok(i),
                _ => i = (i + 1) & self.mask(),
            }
        }
    }

    /// Empties slot `hole`, moving back each later entry of its run that may not be found
    /// past an empty slot otherwise (backward-shift deletion: no tombstones).
    fn vacate(&mut self, mut hole: usize) {
        let mask = self.mask();
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let p = self.slots[i];
            if p == 0 {
                break;
            }
            let home = self.home(self.ring[p as usize - 1]);
            // The entry may move to the hole if the hole is no nearer to `i` than its home.
            if i.wrapping_sub(home) & mask >= i.wrapping_sub(hole) & mask {
                self.slots[hole] = p;
                hole = i;
            }
        }
        self.slots[hole] = 0;
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
        assert_eq!(w.slots.iter().filter(|p| **p != 0).count(), 100);
    }

    proptest::proptest! {
        /// Against the plainest model of a window: a queue of the last IDs taken.
        #[test]
        fn behaves_as_a_queue_of_the_last_ids(
            capacity in 1usize..12,
            ids in proptest::collection::vec(0u16..40, 0..300),
        ) {
            let mut w = DuplicateWindow::new(capacity);
            let mut model = std::collections::VecDeque::new();
            for id in ids {
                let id = id.to_string();
                let fresh = !model.contains(&id);
                proptest::prop_assert_eq!(w.insert(&id), fresh);
                if fresh {
                    model.push_back(id);
                    if model.len() > capacity {
                        model.pop_front();
                    }
                }
                for other in 0u16..40 {
                    let other = other.to_string();
                    proptest::prop_assert_eq!(w.contains(&other), model.contains(&other));
                }
            }
        }
    }
}
