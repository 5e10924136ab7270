//! `[engine]`: chain-ID prefix, seed, clock, shutdown deadline, worker threads.

use super::*;

/// More threads than this only add hand-offs on any machine the engine targets.
const MAX_WORKER_THREADS: usize = 256;

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
    /// Threads the live run spreads its connection shards over (each shard's ingest, symbols
    /// and gates on one), the portfolio getting one more; 0: one per core. One shard always
    /// runs on the system's thread.
    #[serde(default)]
    pub worker_threads: usize,
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
        check(
            self.engine.worker_threads <= MAX_WORKER_THREADS,
            format!(
                "engine.worker_threads must be at most {MAX_WORKER_THREADS} (0: one per core), got {}",
                self.engine.worker_threads
            ),
        );
    }
}
