//! L0: input validation. Every finding is a reason code; all are reported, not only the first.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{ActionRequest, FastSet, ReasonCode};

/// Remembers the last `capacity` action IDs to refuse replays (one shared allocation per
/// ID for the set and the eviction order).
#[derive(Debug, Clone)]
pub struct DuplicateWindow {
    capacity: usize,
    order: VecDeque<Arc<str>>,
    seen: FastSet<Arc<str>>,
}

impl DuplicateWindow {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            seen: FastSet::default(),
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    pub fn insert(&mut self, id: &str) {
        if self.seen.contains(id) {
            return;
        }
        let id: Arc<str> = Arc::from(id);
        self.seen.insert(id.clone());
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&*old);
            }
        }
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
    ids: &DuplicateWindow,
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
    if ids.contains(&req.action_id) {
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
    }
}
