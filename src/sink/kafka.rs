//! Kafka: an idempotent producer (acks=all) with many sends in flight, and a reader for
//! `verify`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::spool::{Cursor, Spool, SpoolRecord, TopicKind};
use super::{NewestRecords, SinkError};
use crate::audit::wire::{self, RecordKind};
use crate::metrics::Metrics;

/// `schema-version` header of every message (docs/events.md).
pub const SCHEMA_VERSION: &str = "1";

/// Records handed to the producer and not yet acknowledged, at most.
const MAX_IN_FLIGHT: usize = 50_000;
/// Pause before records are sent again after a failed delivery.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Topic names, by kind.
#[derive(Debug, Clone)]
pub struct Topics {
    pub decisions: String,
    pub checkpoints: String,
    pub var_snapshots: String,
}

impl Topics {
    fn name(&self, kind: TopicKind) -> &str {
        match kind {
            TopicKind::Decisions => &self.decisions,
            TopicKind::Checkpoints => &self.checkpoints,
            TopicKind::VarSnapshots => &self.var_snapshots,
        }
    }
}

/// Kafka through a write-ahead spool: every record is spooled on disk first, then sent by
/// an idempotent producer (acks=all, lz4, batching) with many deliveries in flight; the
/// spool releases it once the broker has acknowledged it and everything before it. While
/// the broker is away records accumulate in the spool; a full spool makes `send` wait.
pub struct KafkaSink {
    producer: FutureProducer,
    brokers: String,
    topics: Topics,
    spool: Spool,
    in_flight: VecDeque<(Cursor, DeliveryFuture)>,
    /// A record read from the spool that the producer's queue had no room for yet.
    stash: Option<(Cursor, SpoolRecord)>,
    retry_at: Option<Instant>,
    metrics: Arc<Metrics>,
    /// Spool position after each record with a known origin, and that origin: settled
    /// as acknowledgements pass it (bounded by the spool).
    origins: VecDeque<(Cursor, Instant)>,
    tick_to_ack: hdrhistogram::Histogram<u64>,
}

fn kerr(e: impl std::fmt::Display) -> SinkError {
    SinkError::Kafka(e.to_string())
}

impl KafkaSink {
    fn make_producer(brokers: &str) -> Result<FutureProducer, SinkError> {
        ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            // The spool, not the producer, decides when to give up on a record: never.
            .set("message.timeout.ms", "0")
            .create()
            .map_err(kerr)
    }

    pub fn new(
        brokers: &str,
        topics: Topics,
        spool: Spool,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SinkError> {
        Ok(Self {
            producer: Self::make_producer(brokers)?,
            brokers: brokers.to_string(),
            topics,
            spool,
            in_flight: VecDeque::new(),
            stash: None,
            retry_at: None,
            metrics,
            origins: VecDeque::new(),
            tick_to_ack: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .map_err(kerr)?,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topics.decisions
    }

    /// Spool `rec`, waiting while the spool is full, then send what the producer can take.
    pub async fn send(
        &mut self,
        rec: SpoolRecord,
        origin: Option<Instant>,
    ) -> Result<(), SinkError> {
        let mut waited = false;
        while !self.spool.has_room(&rec) {
            if !waited {
                self.metrics.spool_full_waits_total.inc();
                waited = true;
            }
            self.pump()?;
            if !self.await_oldest().await? {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.spool.append(&rec).map_err(SinkError::from)?;
        if let Some(t) = origin {
            self.origins.push_back((self.spool.end(), t));
        }
        self.poll_acks()
    }

    /// Hand spooled records to the producer while it has room.
    fn pump(&mut self) -> Result<(), SinkError> {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        self.retry_at = None;
        while self.in_flight.len() < MAX_IN_FLIGHT {
            let next = match self.stash.take() {
                Some(x) => Some(x),
                None => self.spool.next_unsent().map_err(SinkError::from)?,
            };
            let Some((cursor, rec)) = next else {
                break;
            };
            let seq = rec.seq.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "content-type",
                    value: Some("application/json"),
                })
                .insert(Header {
                    key: "schema-version",
                    value: Some(SCHEMA_VERSION),
                })
                .insert(Header {
                    key: "key-id",
                    value: Some(rec.key_id.as_str()),
                })
                .insert(Header {
                    key: "chain",
                    value: Some(rec.chain.as_str()),
                })
                .insert(Header {
                    key: "seq",
                    value: Some(seq.as_str()),
                });
            let record = FutureRecord::to(self.topics.name(rec.topic))
                .key(&rec.partition_key)
                .payload(&rec.payload)
                .headers(headers);
            match self.producer.send_result(record) {
                Ok(fut) => self.in_flight.push_back((cursor, fut)),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.stash = Some((cursor, rec));
                    break;
                }
                Err((e, _)) => return Err(kerr(e)),
            }
        }
        Ok(())
    }

    fn settle(&mut self, cursor: Cursor, result: Option<String>) -> Result<(), SinkError> {
        match result {
            None => {
                self.metrics.kafka_acked_total.inc();
                while self.origins.front().is_some_and(|(c, _)| *c <= cursor) {
                    if let Some((_, t)) = self.origins.pop_front() {
                        let us = t.elapsed().as_micros().max(1) as u64;
                        let _ = self.tick_to_ack.record(us);
                        self.metrics.tick_to_ack_seconds.observe(us as f64 * 1e-6);
                    }
                }
                self.spool.ack_through(cursor).map_err(SinkError::from)
            }
            Some(e) => {
                // Send again from the first unacknowledged record, in order. Deliveries
                // still in flight may land too: duplicates that consumers drop by
                // (chain, seq).
                self.metrics.kafka_delivery_errors_total.inc();
                tracing::warn!(error = %e, "kafka delivery failed; resending from the spool");
                self.in_flight.clear();
                self.stash = None;
                self.spool.rewind();
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
                // An idempotent producer that hit a fatal error takes no more records.
                if let Some((code, reason)) = self.producer.client().fatal_error() {
                    tracing::warn!(%code, %reason, "kafka producer failed fatally; starting a new one");
                    self.producer = Self::make_producer(&self.brokers)?;
                }
                Ok(())
            }
        }
    }

    /// Settle acknowledged deliveries and hand more spooled records to the producer,
    /// without waiting (called between sends).
    pub fn poll_acks(&mut self) -> Result<(), SinkError> {
        self.collect_acks()?;
        self.pump()?;
        self.metrics
            .spool_bytes
            .set(self.spool.pending_bytes() as i64);
        Ok(())
    }

    /// Settle deliveries that have completed, oldest first, without waiting.
    fn collect_acks(&mut self) -> Result<(), SinkError> {
        while let Some((_, fut)) = self.in_flight.front_mut() {
            let Some(outcome) = fut.now_or_never() else {
                break;
            };
            let Some((cursor, _)) = self.in_flight.pop_front() else {
                break;
            };
            self.settle(cursor, delivery_error(outcome))?;
        }
        Ok(())
    }

    /// Wait for the oldest delivery; false if nothing was in flight.
    async fn await_oldest(&mut self) -> Result<bool, SinkError> {
        let Some((cursor, fut)) = self.in_flight.pop_front() else {
            return Ok(false);
        };
        let outcome = fut.await;
        self.settle(cursor, delivery_error(outcome))?;
        Ok(true)
    }

    /// The local durable point: every spooled record is on disk (fsync), acknowledgements
    /// so far are recorded. Never waits for the broker.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.spool.sync().map_err(SinkError::from)?;
        self.collect_acks()?;
        self.pump()?;
        self.spool.compact_if_drained().map_err(SinkError::from)?;
        self.spool.save_acked().map_err(SinkError::from)?;
        self.metrics
            .spool_bytes
            .set(self.spool.pending_bytes() as i64);
        Ok(())
    }

    /// Market event to acknowledgement latency so far, microseconds.
    pub fn tick_to_ack(&self) -> Option<super::LatencySummary> {
        let h = &self.tick_to_ack;
        (!h.is_empty()).then(|| super::LatencySummary {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        })
    }

    /// Wait until the broker has acknowledged everything spooled, or `deadline`. Returns
    /// the bytes still spooled (0 when drained); they are sent at the next start.
    pub async fn drain(&mut self, deadline: Instant) -> Result<u64, SinkError> {
        self.flush()?;
        loop {
            self.collect_acks()?;
            self.pump()?;
            if self.spool.is_drained() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.in_flight.pop_front() {
                Some((cursor, fut)) => match tokio::time::timeout(left, fut).await {
                    Ok(outcome) => self.settle(cursor, delivery_error(outcome))?,
                    // Still unacknowledged: it stays spooled for the next start.
                    Err(_) => break,
                },
                None => tokio::time::sleep(Duration::from_millis(20).min(left)).await,
            }
        }
        self.spool.compact_if_drained().map_err(SinkError::from)?;
        self.spool.save_acked().map_err(SinkError::from)?;
        self.metrics
            .spool_bytes
            .set(self.spool.pending_bytes() as i64);
        Ok(self.spool.pending_bytes())
    }
}

fn delivery_error<E>(
    outcome: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, E>,
) -> Option<String> {
    match outcome {
        Ok(Ok(_)) => None,
        Ok(Err((e, _))) => Some(e.to_string()),
        Err(_) => Some("delivery cancelled".into()),
    }
}

/// Create the topics that do not exist yet (brokers without auto-creation).
pub async fn ensure_topics(
    brokers: &str,
    names: &[&str],
    partitions: i32,
    replication: i32,
    timeout: Duration,
) -> Result<(), SinkError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(kerr)?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(replication)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    let results = tokio::time::timeout(timeout, admin.create_topics(&topics, &opts))
        .await
        .map_err(|_| SinkError::Kafka("timed out creating topics".into()))?
        .map_err(kerr)?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(SinkError::Kafka(format!("create topic {name}: {code}")))
            }
        }
    }
    Ok(())
}

/// Where reading a topic starts, in every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    /// This offset (or the earliest one kept, if later).
    Offset(i64),
    /// The first record with a timestamp at or after this time (ms since the epoch).
    TimeMs(i64),
}

/// Reads the records of a topic from a starting point to the current end.
pub struct KafkaSource {
    consumer: BaseConsumer,
    topic: String,
}

impl KafkaSource {
    pub fn new(brokers: &str, topic: &str) -> Result<Self, SinkError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "bizra-risk-verify")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(kerr)?;
        Ok(Self {
            consumer,
            topic: topic.to_string(),
        })
    }

    /// The topic's partition IDs; `TopicMissing` when it does not exist.
    fn partitions(&self, timeout: Duration) -> Result<Vec<i32>, SinkError> {
        let md = self
            .consumer
            .fetch_metadata(Some(&self.topic), timeout)
            .map_err(kerr)?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(SinkError::TopicMissing(self.topic.clone()));
        }
        Ok(partitions)
    }

    /// Calls `f(position, payload)` for each record, partition by partition in offset order.
    pub fn read_all(
        &self,
        timeout: Duration,
        f: impl FnMut(&str, &[u8]),
    ) -> Result<u64, SinkError> {
        self.read_from(StartAt::Beginning, timeout, f)
    }

    /// Like `read_all`, from `start` in every partition.
    pub fn read_from(
        &self,
        start: StartAt,
        timeout: Duration,
        mut f: impl FnMut(&str, &[u8]),
    ) -> Result<u64, SinkError> {
        let partitions = self.partitions(timeout)?;
        let mut count = 0;
        for p in partitions {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p, timeout)
                .map_err(kerr)?;
            let low = match start {
                StartAt::Beginning => low,
                StartAt::Offset(o) => o.max(low),
                StartAt::TimeMs(t) => {
                    let mut q = TopicPartitionList::new();
                    q.add_partition_offset(&self.topic, p, Offset::Offset(t))
                        .map_err(kerr)?;
                    let found = self.consumer.offsets_for_times(q, timeout).map_err(kerr)?;
                    match found.find_partition(&self.topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o.max(low),
                        // No record at or after that time.
                        _ => high,
                    }
                }
            };
            if high <= low {
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(low))
                .map_err(kerr)?;
            self.consumer.assign(&tpl).map_err(kerr)?;
            let deadline = std::time::Instant::now() + timeout;
            let mut next = low;
            while next < high {
                if std::time::Instant::now() > deadline {
                    return Err(SinkError::Kafka(format!(
                        "timed out reading {}/{p} at offset {next}",
                        self.topic
                    )));
                }
                match self.consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => {
                        next = m.offset() + 1;
                        let position = format!("{}/{}@{}", self.topic, p, m.offset());
                        f(&position, m.payload().unwrap_or_default());
                        count += 1;
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => break,
                    Some(Err(e)) => return Err(kerr(e)),
                    None => {}
                }
            }
        }
        Ok(count)
    }

    /// Like `read_from`, then keep waiting for new records until `f` returns false.
    pub fn follow(
        &self,
        start: StartAt,
        timeout: Duration,
        mut f: impl FnMut(&str, &[u8]) -> bool,
    ) -> Result<(), SinkError> {
        let partitions = self.partitions(timeout)?;
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            let offset = match start {
                StartAt::Beginning => Offset::Beginning,
                StartAt::Offset(o) => Offset::Offset(o),
                StartAt::TimeMs(t) => Offset::Offset(t),
            };
            tpl.add_partition_offset(&self.topic, *p, offset)
                .map_err(kerr)?;
        }
        if let StartAt::TimeMs(_) = start {
            tpl = self
                .consumer
                .offsets_for_times(tpl, timeout)
                .map_err(kerr)?;
        }
        self.consumer.assign(&tpl).map_err(kerr)?;
        loop {
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let position = format!("{}/{}@{}", self.topic, m.partition(), m.offset());
                    if !f(&position, m.payload().unwrap_or_default()) {
                        return Ok(());
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => return Err(kerr(e)),
            }
        }
    }

    /// Adds the newest event or checkpoint of each chain on the topic to `newest`. A topic
    /// that does not exist yet holds no chains.
    pub fn scan_newest(
        &self,
        timeout: Duration,
        newest: &mut NewestRecords,
    ) -> Result<(), SinkError> {
        let mut damaged = None;
        let read = self.read_all(timeout, |position, payload| {
            match wire::record_kind(payload) {
                Some(RecordKind::Checkpoint) => match wire::parse_checkpoint(payload) {
                    Ok(p) => newest.checkpoint(&p.checkpoint.chain, p.checkpoint.last_seq, payload),
                    Err(e) => damaged = Some(format!("{position}: {e:?}")),
                },
                _ => match wire::parse_envelope(payload) {
                    Ok(env) => newest.event(&env.chain, env.seq, payload),
                    Err(e) => damaged = Some(format!("{position}: {e:?}")),
                },
            }
        });
        match read {
            Ok(_) | Err(SinkError::TopicMissing(_)) => {}
            Err(e) => return Err(e),
        }
        match damaged {
            // Continuing past a record we cannot read could fork its chain.
            Some(reason) => Err(SinkError::Damaged {
                path: self.topic.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }
}
