//! The replay server's REST request weight limit, as Binance applies it per IP: every
//! answer carries the minute's weight so far (`X-MBX-USED-WEIGHT-1M`); a request that
//! would go over the minute's limit gets HTTP 429 with `Retry-After` (the seconds to the
//! next minute); a request sent before that pause is over gets HTTP 418, Binance's answer
//! to a client that does not back off (which bans its IP). Off unless asked for
//! (`replay-server --rest-weight-per-minute`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::market::weight::{weight_of, MinuteWeight, MINUTE_MS};

/// What the limit says of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Served; the minute's weight with it.
    Serve { used: u32 },
    /// 429: over the minute's limit; retry after this many seconds.
    TooMany { retry_after_s: u64, used: u32 },
    /// 418: sent during the pause a 429 asked for.
    Banned { retry_after_s: u64, used: u32 },
}

#[derive(Debug)]
pub struct RestLimit {
    per_minute: u32,
    state: Mutex<MinuteWeight>,
    too_many: AtomicU64,
    banned: AtomicU64,
}

impl RestLimit {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            state: Mutex::new(MinuteWeight::default()),
            too_many: AtomicU64::new(0),
            banned: AtomicU64::new(0),
        }
    }

    /// Judge `GET <target>` arriving at `now_ms`.
    pub fn judge(&self, target: &str, now_ms: i64) -> Verdict {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let minute = s.at(now_ms);
        let retry_after_s = |until_ms: i64| ((until_ms - now_ms).max(0) as u64).div_ceil(1000);
        if now_ms < s.paused_until_ms {
            self.banned.fetch_add(1, Ordering::Relaxed);
            return Verdict::Banned {
                retry_after_s: retry_after_s(s.paused_until_ms),
                used: s.used,
            };
        }
        let weight = weight_of(target);
        if s.used.saturating_add(weight) > self.per_minute {
            s.paused_until_ms = (minute + 1) * MINUTE_MS;
            self.too_many.fetch_add(1, Ordering::Relaxed);
            return Verdict::TooMany {
                retry_after_s: retry_after_s(s.paused_until_ms),
                used: s.used,
            };
        }
        s.used += weight;
        Verdict::Serve { used: s.used }
    }

    /// Answers given so far: (429, 418).
    pub fn refusals(&self) -> (u64, u64) {
        (
            self.too_many.load(Ordering::Relaxed),
            self.banned.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_limit_429_then_418_until_the_next_minute() {
        let l = RestLimit::new(100);
        let depth = "/api/v3/depth?symbol=X&limit=1000";
        let t = 5 * MINUTE_MS + 30_000;
        assert_eq!(l.judge(depth, t), Verdict::Serve { used: 50 });
        assert_eq!(l.judge(depth, t), Verdict::Serve { used: 100 });
        assert_eq!(
            l.judge(depth, t),
            Verdict::TooMany {
                retry_after_s: 30,
                used: 100
            }
        );
        assert_eq!(
            l.judge("/api/v3/klines?symbol=X", t + 1_000),
            Verdict::Banned {
                retry_after_s: 29,
                used: 100
            }
        );
        assert_eq!(l.judge(depth, 6 * MINUTE_MS), Verdict::Serve { used: 50 });
        assert_eq!(l.refusals(), (1, 1));
    }
}
