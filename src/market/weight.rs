//! Binance's REST request weight: each IP may spend a fixed weight per minute (6 000 on
//! `api.binance.com`), each request costing what its endpoint and `limit` cost. Going over
//! gets HTTP 429 with `Retry-After`, and an IP that keeps sending after a 429 is banned
//! (HTTP 418). At many symbols the engine's own requests at start (one depth snapshot per
//! symbol) would go over, so every request to one REST base is paid from one budget per
//! process: a request the minute's budget cannot pay for, or sent while the server has asked
//! for a pause, is refused here without reaching the server, and its caller's retry back-off
//! applies (a depth snapshot is retried after 1 s, doubling up to 60 s).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Binance's weight window: the calendar minute.
pub const MINUTE_MS: i64 = 60_000;

/// A pause asked for without `Retry-After`.
const DEFAULT_PAUSE_S: u64 = 60;

/// The weight of `GET <target>` as Binance documents it (spot API); an endpoint not listed
/// costs 20, more than any listed one but the largest depth snapshot.
pub fn weight_of(target: &str) -> u32 {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let limit = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("limit="))
        .and_then(|v| v.parse::<u32>().ok());
    match path {
        "/api/v3/depth" => match limit.unwrap_or(100) {
            0..=100 => 5,
            101..=500 => 25,
            501..=1000 => 50,
            _ => 250,
        },
        "/api/v3/historicalTrades" | "/api/v3/trades" => 25,
        "/api/v3/aggTrades" => 4,
        "/api/v3/klines" => 2,
        _ => 20,
    }
}

/// Why a request was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This minute's weight is spent; the next minute starts at `until_ms`.
    Spent { until_ms: i64 },
    /// The server asked for a pause (429 or 418) that lasts until `until_ms`.
    Paused { until_ms: i64 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Spent { until_ms } => write!(
                f,
                "request weight of this minute spent; not sent before {until_ms} ms"
            ),
            Self::Paused { until_ms } => write!(
                f,
                "server asked for a pause (HTTP 429/418); not sent before {until_ms} ms"
            ),
        }
    }
}

/// The weight spent in the current minute at one REST base, and any pause it asked for.
#[derive(Debug)]
pub struct WeightBudget {
    per_minute: u32,
    state: Mutex<MinuteWeight>,
}

/// The weight spent in one minute and a pause: what either end of the limit keeps (this
/// client's budget, and the replay server's `replay::rest_limit`).
#[derive(Debug, Default)]
pub struct MinuteWeight {
    minute: i64,
    pub used: u32,
    pub paused_until_ms: i64,
}

impl MinuteWeight {
    /// Move to the minute of `now_ms`, whose weight starts at nothing; returns that minute.
    pub fn at(&mut self, now_ms: i64) -> i64 {
        let minute = now_ms.div_euclid(MINUTE_MS);
        if minute != self.minute {
            self.minute = minute;
            self.used = 0;
        }
        minute
    }

    /// `now_ms` falls in the minute the weight was last counted in.
    fn counts(&self, now_ms: i64) -> bool {
        now_ms.div_euclid(MINUTE_MS) == self.minute
    }
}

impl WeightBudget {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            state: Mutex::new(MinuteWeight::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MinuteWeight> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pay `weight` at `now_ms`, or say why not. A request heavier than the whole budget
    /// goes alone in a minute of its own.
    pub fn admit(&self, now_ms: i64, weight: u32) -> Result<(), Refusal> {
        let mut s = self.state();
        if now_ms < s.paused_until_ms {
            return Err(Refusal::Paused {
                until_ms: s.paused_until_ms,
            });
        }
        let minute = s.at(now_ms);
        if s.used > 0 && s.used.saturating_add(weight) > self.per_minute {
            return Err(Refusal::Spent {
                until_ms: (minute + 1) * MINUTE_MS,
            });
        }
        s.used = s.used.saturating_add(weight);
        Ok(())
    }

    /// The server's own count of this minute's weight (`X-MBX-USED-WEIGHT-1M`): it counts
    /// what other clients of the same IP spent too.
    pub fn observe_used(&self, now_ms: i64, used: u32) {
        let mut s = self.state();
        if s.counts(now_ms) {
            s.used = s.used.max(used);
        }
    }

    /// The server answered 429 or 418: nothing is sent for `retry_after_s` (its
    /// `Retry-After`, 60 s without one). Returns the end of the pause.
    pub fn pause(&self, now_ms: i64, retry_after_s: Option<u64>) -> i64 {
        let secs = retry_after_s.unwrap_or(DEFAULT_PAUSE_S).min(86_400 * 3) as i64;
        let mut s = self.state();
        s.paused_until_ms = s.paused_until_ms.max(now_ms + secs * 1000);
        s.paused_until_ms
    }
}

/// The budget of REST base `base`, shared by every client of it in this process (the
/// limit belongs to the server and the IP, not to a connection); `per_minute` is used when
/// the first client of `base` asks.
pub fn shared(base: &str, per_minute: u32) -> Arc<WeightBudget> {
    static BUDGETS: OnceLock<Mutex<HashMap<String, Arc<WeightBudget>>>> = OnceLock::new();
    let mut budgets = BUDGETS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    budgets
        .entry(base.to_string())
        .or_insert_with(|| Arc::new(WeightBudget::new(per_minute)))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_follow_binance_s_table() {
        assert_eq!(weight_of("/api/v3/depth?symbol=BTCUSDT&limit=100"), 5);
        assert_eq!(weight_of("/api/v3/depth?symbol=BTCUSDT&limit=500"), 25);
        assert_eq!(weight_of("/api/v3/depth?symbol=BTCUSDT&limit=1000"), 50);
        assert_eq!(weight_of("/api/v3/depth?symbol=BTCUSDT&limit=5000"), 250);
        assert_eq!(weight_of("/api/v3/depth?symbol=BTCUSDT"), 5);
        assert_eq!(
            weight_of("/api/v3/historicalTrades?symbol=X&fromId=1&limit=1000"),
            25
        );
        assert_eq!(weight_of("/api/v3/aggTrades?symbol=X&fromId=1"), 4);
        assert_eq!(weight_of("/api/v3/klines?symbol=X&interval=1s"), 2);
        assert_eq!(weight_of("/api/v3/exchangeInfo"), 20);
    }

    #[test]
    fn a_minute_pays_its_budget_and_no_more() {
        let b = WeightBudget::new(6000);
        let t = 10 * MINUTE_MS + 5;
        for _ in 0..120 {
            b.admit(t, 50).unwrap();
        }
        assert_eq!(
            b.admit(t + 1, 50),
            Err(Refusal::Spent {
                until_ms: 11 * MINUTE_MS
            })
        );
        b.admit(11 * MINUTE_MS, 50).unwrap();
    }

    #[test]
    fn the_server_s_count_is_followed_within_its_minute() {
        let b = WeightBudget::new(100);
        b.admit(0, 5).unwrap();
        b.observe_used(10, 99);
        assert!(b.admit(20, 5).is_err());
        b.observe_used(MINUTE_MS + 1, 99);
        b.admit(MINUTE_MS + 2, 5).unwrap();
    }

    #[test]
    fn a_pause_refuses_everything_until_it_ends() {
        let b = WeightBudget::new(6000);
        assert_eq!(b.pause(1_000, Some(7)), 8_000);
        assert_eq!(b.admit(7_999, 1), Err(Refusal::Paused { until_ms: 8_000 }));
        b.admit(8_000, 1).unwrap();
        assert_eq!(b.pause(9_000, None), 69_000);
    }

    #[test]
    fn a_request_heavier_than_the_budget_goes_alone() {
        let b = WeightBudget::new(100);
        b.admit(0, 250).unwrap();
        assert!(b.admit(1, 1).is_err());
    }
}
