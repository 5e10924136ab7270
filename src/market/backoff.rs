//! Reconnection policy: capped exponential backoff with full jitter, and a connection-rate
//! limiter so a flapping network never becomes a reconnect storm (Binance allows 300
//! connection attempts per 5 minutes per IP). Pure: time and randomness come in.

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;

/// Delay before attempt n (0-based): uniform in [0, min(max, initial * 2^n)].
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The next delay (full jitter), and one more failed attempt counted.
    pub fn next_delay<R: Rng>(&mut self, rng: &mut R) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(31));
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(if ms == 0 { 0 } else { rng.random_range(0..=ms) })
    }

    /// A connection stayed up: start again from the initial delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// At most `max` connection attempts in any `window`.
#[derive(Debug, Clone)]
pub struct ConnectLimiter {
    max: usize,
    window_ms: i64,
    attempts: VecDeque<i64>,
}

impl ConnectLimiter {
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max: max.max(1),
            window_ms: window.as_millis() as i64,
            attempts: VecDeque::with_capacity(max.max(1)),
        }
    }

    /// How long to wait at `now_ms` before the next attempt is allowed (zero: go now).
    pub fn wait(&mut self, now_ms: i64) -> Duration {
        while self
            .attempts
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= self.window_ms)
        {
            self.attempts.pop_front();
        }
        match self.attempts.front() {
            Some(oldest) if self.attempts.len() >= self.max => {
                Duration::from_millis((oldest + self.window_ms - now_ms).max(0) as u64)
            }
            _ => Duration::ZERO,
        }
    }

    /// Count an attempt made at `now_ms` (call after `wait` returned zero).
    pub fn record(&mut self, now_ms: i64) {
        self.attempts.push_back(now_ms);
        while self.attempts.len() > self.max {
            self.attempts.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn full_jitter_stays_under_a_capped_exponential_ceiling() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut max_seen = Duration::ZERO;
        for n in 0..40u32 {
            let d = b.next_delay(&mut rng);
            let ceiling =
                Duration::from_millis(500 * 2u64.saturating_pow(n)).min(Duration::from_secs(30));
            assert!(d <= ceiling, "attempt {n}: {d:?} > {ceiling:?}");
            max_seen = max_seen.max(d);
        }
        assert!(
            max_seen > Duration::from_secs(15),
            "jitter reaches the cap's range"
        );
        b.reset();
        assert!(b.next_delay(&mut rng) <= Duration::from_millis(500));
    }

    #[test]
    fn limiter_allows_max_attempts_per_window() {
        let mut l = ConnectLimiter::new(3, Duration::from_secs(10));
        for t in [0, 1_000, 2_000] {
            assert_eq!(l.wait(t), Duration::ZERO);
            l.record(t);
        }
        assert_eq!(l.wait(3_000), Duration::from_millis(7_000));
        assert_eq!(
            l.wait(10_000),
            Duration::ZERO,
            "the first attempt left the window"
        );
        l.record(10_000);
        assert_eq!(l.wait(10_500), Duration::from_millis(500));
        assert!(l.attempts.len() <= 3);
    }
}
