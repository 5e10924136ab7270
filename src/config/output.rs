//! `[signing]`, `[sink]`, `[kafka]` and `[http]`: where signed output goes and how it is
//! served.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    pub key_file: PathBuf,
    /// The key that signed the chains so far, when `key_file` is a new one: each chain
    /// then starts with a KEY_ROTATION event signed by this key. Empty: no rotation.
    pub previous_key_file: PathBuf,
    /// Seal a signed Merkle checkpoint after this many events of a chain...
    pub checkpoint_every_events: u64,
    /// ...or after this much engine time since the chain's last checkpoint.
    pub checkpoint_every_s: u64,
    /// Where each chain's head is persisted (atomically, after every durable flush).
    pub heads_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub dir: PathBuf,
    /// Record every input the engine consumes under `<dir>/recording/` (frames as received,
    /// REST answers, start state), for `audit-replay`.
    pub record_inputs: bool,
    /// A connection's recording segment is closed at this size.
    pub recording_segment_mb: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic_decisions: String,
    pub topic_checkpoints: String,
    pub topic_var_snapshots: String,
    /// Write-ahead spool of records not yet acknowledged by the brokers.
    pub spool_dir: PathBuf,
    pub spool_max_mb: u64,
    /// Acknowledged records stay in the spool until read back from the topic, up to this
    /// much: what a broker loses after acknowledging it is sent again from here.
    pub spool_retain_acked_mb: u64,
    /// How often acknowledged records are read back from the topic (and soon after any
    /// delivery error).
    pub readback_interval_ms: u64,
    /// Exactly-once publication: a transactional producer (ID from `engine.engine_id`)
    /// commits records in transactions aligned with the spool's flushes, so a
    /// `read_committed` consumer sees every record once, across crashes.
    pub transactional: bool,
    /// Create missing topics at start (brokers without auto-creation).
    pub create_topics: bool,
    pub topic_partitions: i32,
    pub replication_factor: i32,
    pub request_timeout_ms: u64,
}

/// The HTTP side: metrics, health, readiness and the dashboard (read-only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port`; empty serves nothing. `run` serves it; `demo` and `replay` do not.
    pub bind: String,
}

impl Config {
    /// Problems of `[signing]`, `[sink]`, `[kafka]` and `[http]`.
    pub(super) fn output_problems(&self, check: &mut impl FnMut(bool, String)) {
        check(
            !self.kafka.topic_decisions.is_empty(),
            "kafka.topic_decisions must not be empty".into(),
        );
        check(
            !self.kafka.topic_checkpoints.is_empty()
                && self.kafka.topic_checkpoints != self.kafka.topic_decisions,
            "kafka.topic_checkpoints must be set and differ from kafka.topic_decisions".into(),
        );
        check(
            (1..=1_000_000).contains(&self.signing.checkpoint_every_events),
            "signing.checkpoint_every_events must be in 1..=1000000".into(),
        );
        check(
            !self.kafka.topic_var_snapshots.is_empty()
                && self.kafka.topic_var_snapshots != self.kafka.topic_decisions
                && self.kafka.topic_var_snapshots != self.kafka.topic_checkpoints,
            "kafka.topic_var_snapshots must be set and differ from the other topics".into(),
        );
        check(
            self.sink.recording_segment_mb >= 1,
            "sink.recording_segment_mb must be >= 1".into(),
        );
        check(
            self.kafka.spool_max_mb >= 1,
            "kafka.spool_max_mb must be >= 1".into(),
        );
        check(
            self.kafka.readback_interval_ms >= 100,
            "kafka.readback_interval_ms must be >= 100".into(),
        );
        check(
            !self.kafka.spool_dir.as_os_str().is_empty(),
            "kafka.spool_dir must be set".into(),
        );
        check(
            self.kafka.topic_partitions >= 1 && self.kafka.replication_factor >= 1,
            "kafka.topic_partitions and kafka.replication_factor must be >= 1".into(),
        );
        check(
            self.signing.checkpoint_every_s > 0,
            "signing.checkpoint_every_s must be > 0".into(),
        );
        check(
            !self.signing.heads_file.as_os_str().is_empty(),
            "signing.heads_file must be set".into(),
        );
        check(
            self.kafka.request_timeout_ms > 0,
            "kafka.request_timeout_ms must be > 0".into(),
        );
        check(
            self.http.bind.is_empty()
                || self.http.bind.parse::<std::net::SocketAddr>().is_ok(),
            format!(
                "http.bind must be empty or host:port with an IP address (e.g. 127.0.0.1:9464), got {:?}",
                self.http.bind
            ),
        );
    }
}
