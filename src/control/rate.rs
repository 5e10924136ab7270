//! A per-client token bucket for control requests: `burst` at once, refilled at
//! `per_minute`. Time is passed in; the table of clients is bounded.

use std::collections::HashMap;

/// More clients than this and the idlest are forgotten (a forgotten client starts full).
const MAX_CLIENTS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
    /// Refusals since the last one that was signed (see `ControlStep`).
    unsigned_refusals: u64,
    /// The window in which a refusal was last signed.
    signed_window: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct RateLimit {
    burst: f64,
    per_ms: f64,
    clients: HashMap<String, Bucket>,
}

/// What the limiter says of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Allowed,
    /// Refused; `sign` is true for the first refusal of this client in a minute (carrying
    /// how many refusals were not signed since the last), false for the others.
    Limited {
        sign: bool,
        unsigned_before: u64,
    },
}

impl RateLimit {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_ms: f64::from(per_minute) / 60_000.0,
            clients: HashMap::new(),
        }
    }

    /// A limiter allowing `factor` times as much (its table starts empty).
    pub fn scaled(&self, factor: u32) -> Self {
        Self {
            burst: self.burst * f64::from(factor),
            per_ms: self.per_ms * f64::from(factor),
            clients: HashMap::new(),
        }
    }

    pub fn admit(&mut self, client: &str, now_ms: i64) -> Admit {
        if self.clients.len() >= MAX_CLIENTS && !self.clients.contains_key(client) {
            self.forget_idlest();
        }
        let burst = self.burst;
        let b = self.clients.entry(client.to_string()).or_insert(Bucket {
            tokens: burst,
            at_ms: now_ms,
            unsigned_refusals: 0,
            signed_window: None,
        });
        let elapsed = (now_ms - b.at_ms).max(0) as f64;
        b.tokens = (b.tokens + elapsed * self.per_ms).min(burst);
        b.at_ms = now_ms;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Admit::Allowed;
        }
        let window = now_ms.div_euclid(60_000);
        if b.signed_window == Some(window) {
            b.unsigned_refusals += 1;
            Admit::Limited {
                sign: false,
                unsigned_before: 0,
            }
        } else {
            b.signed_window = Some(window);
            let unsigned_before = std::mem::take(&mut b.unsigned_refusals);
            Admit::Limited {
                sign: true,
                unsigned_before,
            }
        }
    }

    fn forget_idlest(&mut self) {
        let mut by_age: Vec<(i64, String)> = self
            .clients
            .iter()
            .map(|(k, b)| (b.at_ms, k.clone()))
            .collect();
        by_age.sort();
        for (_, k) in by_age.into_iter().take(MAX_CLIENTS / 4) {
            self.clients.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_refill_and_one_signed_refusal_per_minute() {
        let mut r = RateLimit::new(60, 3);
        for _ in 0..3 {
            assert_eq!(r.admit("a", 0), Admit::Allowed);
        }
        assert_eq!(
            r.admit("a", 0),
            Admit::Limited {
                sign: true,
                unsigned_before: 0
            }
        );
        assert!(matches!(
            r.admit("a", 10),
            Admit::Limited { sign: false, .. }
        ));
        assert!(matches!(
            r.admit("a", 20),
            Admit::Limited { sign: false, .. }
        ));
        // Another client has its own bucket.
        assert_eq!(r.admit("b", 20), Admit::Allowed);
        // One token per second comes back.
        assert_eq!(r.admit("a", 1_020), Admit::Allowed);
        assert!(matches!(
            r.admit("a", 1_030),
            Admit::Limited { sign: false, .. }
        ));
        // The next minute's first refusal is signed and counts those that were not.
        assert_eq!(r.admit("a", 60_000 + 500), Admit::Allowed);
        let _ = r.admit("a", 60_001 + 500);
        let mut seen = None;
        for t in 0..5 {
            if let Admit::Limited {
                sign: true,
                unsigned_before,
            } = r.admit("a", 60_600 + t)
            {
                seen = Some(unsigned_before);
            }
        }
        assert_eq!(seen, Some(3));
    }

    #[test]
    fn the_client_table_stays_bounded() {
        let mut r = RateLimit::new(60, 1);
        for i in 0..(MAX_CLIENTS * 2) {
            let _ = r.admit(&format!("c{i}"), i as i64);
        }
        assert!(r.clients.len() <= MAX_CLIENTS);
    }
}
