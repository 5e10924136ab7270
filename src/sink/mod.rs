//! Where signed records go: Kafka when brokers are configured, else append-only files.

mod endpoint;
mod file;
mod kafka;
mod newest;
mod readback;
pub mod spool;

pub use crate::engine::VarSnapshot;
pub use crate::trail::{KafkaSource, StartAt};
pub use endpoint::{security_problems, KafkaEndpoint, SASL_PASSWORD_ENV};
pub use file::{FileSink, PendingSync, CHECKPOINT_SUFFIX};
pub use kafka::{ensure_topics, ensure_topics_with, KafkaSink, Readback, Topics, SCHEMA_VERSION};
pub use newest::NewestRecords;

use crate::audit::wire::RecordKind;
use crate::audit::SignedEvent;
use spool::{SpoolRecord, TopicKind};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("damaged trail {path}: {reason}")]
    Damaged { path: String, reason: String },
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("kafka: topic {0} does not exist yet")]
    TopicMissing(String),
    #[error("chain heads: {0}")]
    Heads(String),
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
}

/// What the publisher hands to a sink.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A signed event or checkpoint.
    Signed(SignedEvent),
    /// The dashboard view of a signed decision.
    VarSnapshot(Box<VarSnapshot>),
}

impl Outgoing {
    fn into_spool_record(self) -> SpoolRecord {
        match self {
            Outgoing::Signed(e) => SpoolRecord {
                topic: match e.kind {
                    RecordKind::Event => TopicKind::Decisions,
                    RecordKind::Checkpoint => TopicKind::Checkpoints,
                },
                partition_key: e.partition_key,
                chain: e.chain,
                seq: e.seq,
                key_id: e.key_id,
                payload: e.line,
            },
            Outgoing::VarSnapshot(v) => SpoolRecord {
                topic: TopicKind::VarSnapshots,
                payload: v.to_json(),
                partition_key: v.symbol,
                chain: v.chain,
                seq: v.seq,
                key_id: String::new(),
            },
        }
    }
}

/// What draining at the end of a run left and measured.
#[derive(Debug, Clone, Default)]
pub struct DrainReport {
    /// Bytes still in the Kafka spool (sent at the next start); 0 with files.
    pub spooled_bytes_left: u64,
    /// Records the broker acknowledged, then lost, found by reading back and sent again.
    pub acked_records_resent: u64,
    /// Acknowledged records lost after they left the retained spool (chain and sequence
    /// ranges): holes in the topic.
    pub acked_records_unrecoverable: Vec<String>,
    /// Market event arrival to broker acknowledgement of the decisions it caused,
    /// microseconds (Kafka only).
    pub tick_to_ack_us: Option<LatencySummary>,
    /// Market event arrival to its decision signed and handed to the publisher,
    /// microseconds (any sink).
    pub tick_to_signed_us: Option<LatencySummary>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl LatencySummary {
    /// The summary of a histogram, `None` when it is empty.
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Option<Self> {
        (!h.is_empty()).then(|| Self {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        })
    }
}

pub enum Sink {
    File(FileSink),
    Kafka(Box<KafkaSink>),
}

impl Sink {
    pub async fn publish(
        &mut self,
        out: Outgoing,
        origin: Option<std::time::Instant>,
    ) -> Result<(), SinkError> {
        match self {
            Sink::File(f) => match &out {
                Outgoing::Signed(e) => f.append(e),
                Outgoing::VarSnapshot(v) => f.append_var_snapshot(v),
            },
            Sink::Kafka(k) => k.send(out.into_spool_record(), origin).await,
        }
    }

    /// The local durable point: records published so far are on disk (the file sink's
    /// files, or the Kafka spool), fsynced. Does not wait for a broker.
    pub async fn flush(&mut self) -> Result<(), SinkError> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Kafka(k) => k.flush().await,
        }
    }

    /// Flush, then with Kafka wait until the broker acknowledged everything or `deadline`
    /// passed. Returns the bytes still waiting in the spool.
    pub async fn drain(&mut self, deadline: std::time::Instant) -> Result<DrainReport, SinkError> {
        match self {
            Sink::File(f) => f.flush().map(|_| DrainReport::default()),
            Sink::Kafka(k) => {
                let left = k.drain(deadline).await?;
                Ok(DrainReport {
                    spooled_bytes_left: left,
                    tick_to_ack_us: k.tick_to_ack(),
                    tick_to_signed_us: None,
                    acked_records_resent: k.readback().lost_and_resent,
                    acked_records_unrecoverable: k.readback().unrecoverable.clone(),
                })
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Sink::File(f) => format!("file:{}", f.dir().display()),
            Sink::Kafka(k) => format!("kafka:{}", k.topic()),
        }
    }
}
