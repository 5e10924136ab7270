//! `[engine]`: chain-ID prefix, seed, clock, shutdown deadline.

use super::*;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    /// Wall clock: live trading.
    System,
    /// Time advances with the exchange timestamps of the data: deterministic replays.
    EventTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    pub engine_id: String,
    pub seed: u64,
    pub clock: ClockMode,
    /// After SIGTERM/SIGINT: how long draining (actors, producer) may take before exit.
    pub shutdown_timeout_ms: u64,
}

impl Config {
    /// Problems of `[engine]`.
    pub(super) fn engine_problems(&self, check: &mut impl FnMut(bool, String)) {
        check(
            !self.engine.engine_id.is_empty()
                && self
                    .engine
                    .engine_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            format!(
                "engine.engine_id must be non-empty [A-Za-z0-9_-], got {:?}",
                self.engine.engine_id
            ),
        );
        check(
            self.engine.shutdown_timeout_ms > 0,
            "engine.shutdown_timeout_ms must be > 0".into(),
        );
    }
}
