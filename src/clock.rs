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

/// Wall-clock milliseconds since the Unix epoch.
pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
