//! Where signed records go: Kafka when brokers are configured, else append-only files.

mod file;
mod kafka;

pub use file::{FileSink, CHECKPOINT_SUFFIX};
pub use kafka::{KafkaSink, KafkaSource, StartAt};

use crate::audit::SignedEvent;

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
}

pub enum Sink {
    File(FileSink),
    Kafka(KafkaSink),
}

impl Sink {
    pub async fn publish(&mut self, event: SignedEvent) -> Result<(), SinkError> {
        match self {
            Sink::File(f) => f.append(&event),
            Sink::Kafka(k) => k.send(event).await,
        }
    }

    /// Make everything published so far durable (fsync / acknowledged by the broker).
    pub async fn flush(&mut self) -> Result<(), SinkError> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Kafka(k) => k.flush().await,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Sink::File(f) => format!("file:{}", f.dir().display()),
            Sink::Kafka(k) => format!("kafka:{}", k.topic()),
        }
    }
}
