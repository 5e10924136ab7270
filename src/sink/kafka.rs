//! Kafka: an idempotent producer (acks=all) with many sends in flight, and a reader for
//! `verify`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::SinkError;
use crate::audit::wire::{self, RecordKind, FORMAT_VERSION};
use crate::audit::{head_after, ChainHead, SignedEvent};

/// Deliveries awaited at most in flight before a send waits for the oldest.
const MAX_IN_FLIGHT: usize = 10_000;

pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    checkpoint_topic: String,
    in_flight: VecDeque<(u64, DeliveryFuture)>,
    timeout: Duration,
}

fn kerr(e: impl std::fmt::Display) -> SinkError {
    SinkError::Kafka(e.to_string())
}

impl KafkaSink {
    pub fn new(
        brokers: &str,
        topic: &str,
        checkpoint_topic: &str,
        message_timeout_ms: u64,
    ) -> Result<Self, SinkError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("message.timeout.ms", message_timeout_ms.to_string())
            .create()
            .map_err(kerr)?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
            checkpoint_topic: checkpoint_topic.to_string(),
            in_flight: VecDeque::new(),
            timeout: Duration::from_millis(message_timeout_ms),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub async fn send(&mut self, event: SignedEvent) -> Result<(), SinkError> {
        let version = FORMAT_VERSION.to_string();
        loop {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "content-type",
                    value: Some("application/json"),
                })
                .insert(Header {
                    key: "schema-version",
                    value: Some(version.as_str()),
                })
                .insert(Header {
                    key: "key-id",
                    value: Some(event.key_id.as_str()),
                })
                .insert(Header {
                    key: "chain",
                    value: Some(event.chain.as_str()),
                });
            let topic = match event.kind {
                RecordKind::Event => &self.topic,
                RecordKind::Checkpoint => &self.checkpoint_topic,
            };
            let record = FutureRecord::to(topic)
                .key(&event.partition_key)
                .payload(&event.line)
                .headers(headers);
            match self.producer.send_result(record) {
                Ok(fut) => {
                    self.in_flight.push_back((event.seq, fut));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // Backpressure: wait for the oldest delivery before queueing more.
                    if !self.await_oldest().await? {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                Err((e, _)) => return Err(kerr(e)),
            }
        }
        while self.in_flight.len() > MAX_IN_FLIGHT {
            self.await_oldest().await?;
        }
        Ok(())
    }

    /// Wait for the oldest pending delivery; false if nothing was pending.
    async fn await_oldest(&mut self) -> Result<bool, SinkError> {
        let Some((seq, fut)) = self.in_flight.pop_front() else {
            return Ok(false);
        };
        match fut.await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err((e, _))) => Err(SinkError::Kafka(format!(
                "delivery of seq {seq} failed: {e}"
            ))),
            Err(_) => Err(SinkError::Kafka(format!("delivery of seq {seq} cancelled"))),
        }
    }

    pub async fn flush(&mut self) -> Result<(), SinkError> {
        while self.await_oldest().await? {}
        self.producer.flush(self.timeout).map_err(kerr)
    }
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

    /// Where each chain on the topic continues: the head after its highest sequence
    /// number. A topic that does not exist yet holds no chains.
    pub fn recover_heads(
        &self,
        timeout: Duration,
    ) -> Result<HashMap<String, ChainHead>, SinkError> {
        let mut newest: HashMap<String, (u64, Vec<u8>)> = HashMap::new();
        let mut damaged = None;
        let read = self.read_all(timeout, |position, payload| {
            match wire::parse_envelope(payload) {
                Ok(env) => {
                    let slot = newest
                        .entry(env.chain.into_owned())
                        .or_insert_with(|| (0, Vec::new()));
                    if slot.1.is_empty() || env.seq >= slot.0 {
                        *slot = (env.seq, payload.to_vec());
                    }
                }
                Err(e) => damaged = Some(format!("{position}: {e:?}")),
            }
        });
        match read {
            Ok(_) => {}
            Err(SinkError::TopicMissing(_)) => return Ok(HashMap::new()),
            Err(e) => return Err(e),
        }
        if let Some(reason) = damaged {
            // Continuing past a record we cannot read could fork its chain.
            return Err(SinkError::Damaged {
                path: self.topic.clone(),
                reason,
            });
        }
        newest
            .into_iter()
            .map(|(chain, (_, line))| {
                head_after(&line)
                    .map(|h| (chain, h))
                    .map_err(|reason| SinkError::Damaged {
                        path: self.topic.clone(),
                        reason,
                    })
            })
            .collect()
    }
}
