//! The engine's notion of "now", injected at the edge (ingest) and carried in every request,
//! so the pure core never reads a clock and replays are deterministic.

use crate::config::ClockMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Wall clock (live).
    System,
    /// The newest exchange timestamp observed so far (replays).
    EventTime { now_ms: i64 },
    /// Fixed by the caller (tests).
    Manual { now_ms: i64 },
}

impl Clock {
    pub fn from_mode(mode: ClockMode) -> Self {
        match mode {
            ClockMode::System => Self::System,
            ClockMode::EventTime => Self::EventTime { now_ms: 0 },
        }
    }

    /// Feed an exchange timestamp; only the event-time clock moves.
    pub fn observe(&mut self, event_ms: i64) {
        if let Self::EventTime { now_ms } = self {
            *now_ms = (*now_ms).max(event_ms);
        }
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Self::System => system_now_ms(),
            Self::EventTime { now_ms } | Self::Manual { now_ms } => *now_ms,
        }
    }
}

/// Monotonic nanoseconds since the first call in this process (for latency measurement
/// only, never for a signed time).
pub fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// Wall-clock milliseconds since the Unix epoch.
/// Nanoseconds since the Unix epoch (receive times in the input recording).
pub fn system_now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The milliseconds of [`system_now_ns`].
pub fn ns_to_ms(ns: u128) -> i64 {
    i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)
}

pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the Unix epoch.
pub fn utc_label(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Civil-from-days (proleptic Gregorian), after H. Hinnant.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}
