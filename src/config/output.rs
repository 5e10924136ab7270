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
    /// Gzip each closed segment in the background (`conn-<k>-<n>.rec.gz`).
    pub recording_compress_closed: bool,
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
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: String,
    /// Empty, `PLAIN` (only with `sasl_ssl`), `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: String,
    pub sasl_username: String,
    /// The SASL password (mode 0600); empty: `BIZRA_KAFKA_SASL_PASSWORD`.
    pub sasl_password_file: PathBuf,
    /// PEM bundle of the CAs that sign the brokers' certificates; empty: the system's.
    pub ssl_ca_file: PathBuf,
}

/// The HTTP side: the read-only plane (metrics, health, readiness, the dashboard) and the
/// authenticated control plane under `/control/`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port`; empty serves nothing. `run` serves it; `demo` and `replay` do not.
    pub bind: String,
    /// Serve the control endpoints. On a non-loopback `bind` they need at least one token.
    pub control_enabled: bool,
    /// The control tokens (TOML, mode 0600); empty: from `BIZRA_CONTROL_TOKENS`, if set.
    pub control_tokens_file: PathBuf,
    /// Control requests each client may make per minute, after a burst of `control_burst`.
    pub control_requests_per_minute: u32,
    pub control_burst: u32,
    /// Longest request body read; a longer one is refused (413).
    pub max_body_bytes: usize,
    /// Largest request head (header names and values); a larger one is refused (431).
    pub max_header_bytes: usize,
    /// A client must send its request head within this time (slow clients are cut).
    pub request_timeout_ms: u64,
    /// An idle keep-alive connection is closed after this long.
    pub keep_alive_s: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// The live dashboard keeps each symbol's recent VaR snapshots (an hour at most) within
    /// this much memory in all; over it the oldest go first.
    pub dashboard_history_mb: u64,
}

impl HttpConfig {
    /// True when `bind` listens on a loopback address only.
    pub fn loopback(&self) -> bool {
        self.bind
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
    }
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
        for problem in crate::sink::security_problems(&self.kafka) {
            check(false, problem);
        }
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
        check(
            (1..=1 << 20).contains(&self.http.max_body_bytes),
            "http.max_body_bytes must be in 1..=1048576".into(),
        );
        check(
            (1024..=65_536).contains(&self.http.max_header_bytes),
            "http.max_header_bytes must be in 1024..=65536".into(),
        );
        check(
            (100..=60_000).contains(&self.http.request_timeout_ms),
            "http.request_timeout_ms must be in 100..=60000".into(),
        );
        check(
            self.http.keep_alive_s <= 3600,
            "http.keep_alive_s must be <= 3600".into(),
        );
        check(
            (1..=100_000).contains(&self.http.max_connections),
            "http.max_connections must be in 1..=100000".into(),
        );
        check(
            (1..=65_536).contains(&self.http.dashboard_history_mb),
            "http.dashboard_history_mb must be in 1..=65536".into(),
        );
        check(
            self.http.control_requests_per_minute >= 1 && self.http.control_burst >= 1,
            "http.control_requests_per_minute and http.control_burst must be >= 1".into(),
        );
    }
}
