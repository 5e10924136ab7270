//! What a worker produces: signed records to the output topics (keyed by their chain's
//! partition key, as the single process does), VaR snapshots, and closed bars. An
//! idempotent producer with acks=all; a delivery that fails stops the worker (its
//! successor re-derives what was lost), and `flush` is the point after which everything
//! produced is on the topics.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use super::RoleError;
use crate::audit::wire::RecordKind;
use crate::audit::SignedEvent;
use crate::config::Config;
use crate::engine::VarSnapshot;
use crate::sink::KafkaEndpoint;

/// Records waiting in the producer at most; a full queue makes the worker wait.
const MAX_QUEUED: &str = "100000";

#[derive(Default)]
pub(super) struct OutputContext {
    failed: Mutex<Option<String>>,
}

impl ClientContext for OutputContext {}

impl ProducerContext for OutputContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            if let Ok(mut failed) = self.failed.lock() {
                failed.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// The kinds of record a worker produces (the `kind` label of `bizra_role_published_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OutKind {
    Event,
    Checkpoint,
    VarSnapshot,
    Bar,
    Market,
}

impl OutKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Event => "EVENT",
            Self::Checkpoint => "CHECKPOINT",
            Self::VarSnapshot => "VAR_SNAPSHOT",
            Self::Bar => "BAR",
            Self::Market => "MARKET",
        }
    }
}

pub(super) struct Output {
    producer: BaseProducer<OutputContext>,
    decisions: String,
    checkpoints: String,
    var_snapshots: String,
    bars: String,
    market: String,
}

fn kerr(e: KafkaError) -> RoleError {
    RoleError::Kafka(e.to_string())
}

impl Output {
    pub(super) fn new(config: &Config, endpoint: &KafkaEndpoint) -> Result<Self, RoleError> {
        let producer = endpoint
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", MAX_QUEUED)
            .set("message.timeout.ms", "120000")
            // START records carry up to 1000 klines per symbol.
            .set("message.max.bytes", "4194304")
            .create_with_context(OutputContext::default())
            .map_err(kerr)?;
        Ok(Self {
            producer,
            decisions: config.kafka.topic_decisions.clone(),
            checkpoints: config.kafka.topic_checkpoints.clone(),
            var_snapshots: config.kafka.topic_var_snapshots.clone(),
            bars: config.roles.bars_topic.clone(),
            market: config.roles.market_topic.clone(),
        })
    }

    pub(super) fn signed(&self, e: &SignedEvent) -> Result<OutKind, RoleError> {
        let (topic, kind) = match e.kind {
            RecordKind::Event => (&self.decisions, OutKind::Event),
            RecordKind::Checkpoint => (&self.checkpoints, OutKind::Checkpoint),
        };
        self.send(topic, &e.partition_key, &e.line)?;
        Ok(kind)
    }

    pub(super) fn var_snapshot(&self, v: &VarSnapshot) -> Result<(), RoleError> {
        self.send(&self.var_snapshots, &v.symbol, &v.to_json())
    }

    pub(super) fn bar(&self, key: &str, payload: &[u8]) -> Result<(), RoleError> {
        self.send(&self.bars, key, payload)
    }

    pub(super) fn market(&self, key: &str, payload: &[u8]) -> Result<(), RoleError> {
        self.send(&self.market, key, payload)
    }

    fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), RoleError> {
        self.check()?;
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Backpressure: wait for deliveries to make room.
                    record = back;
                    self.producer.poll(Duration::from_millis(10));
                    self.check()?;
                }
                Err((e, _)) => return Err(kerr(e)),
            }
        }
    }

    /// Serve delivery reports; fails once any delivery failed.
    pub(super) fn poll(&self) -> Result<(), RoleError> {
        self.producer.poll(Duration::ZERO);
        self.check()
    }

    /// Wait until everything produced is acknowledged.
    pub(super) fn flush(&self, timeout: Duration) -> Result<(), RoleError> {
        self.producer.flush(timeout).map_err(kerr)?;
        self.check()
    }

    fn check(&self) -> Result<(), RoleError> {
        let failed = self
            .producer
            .context()
            .failed
            .lock()
            .map(|f| f.clone())
            .unwrap_or_else(|_| Some("delivery state poisoned".into()));
        match failed {
            Some(e) => Err(RoleError::Delivery(e)),
            None => Ok(()),
        }
    }
}
