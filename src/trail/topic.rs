//! Reading a topic of signed records from a starting point to its end (or following it):
//! what `verify`, `tail`, `witness`, the chain-head recovery at start and the Kafka sink's
//! read-back read. Committed records only for readers of the trail.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::audit::wire::{self, RecordKind};
use crate::sink::{NewestRecords, SinkError};

fn kerr(e: impl std::fmt::Display) -> SinkError {
    SinkError::Kafka(e.to_string())
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
/// Reading a topic to its end reports each partition's end as a `PartitionEOF` event:
/// expected, not an error, so it is logged at debug; other client errors go to tracing.
pub struct ReaderContext;

impl rdkafka::client::ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(p) => tracing::debug!(partition = p, "end of partition"),
            e => tracing::warn!(error = %e, reason, "kafka client error"),
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// A consumer that reads partitions it assigns itself, from given offsets to their end,
/// committing nothing.
pub fn reader(
    brokers: &crate::sink::KafkaEndpoint,
    group_id: &str,
    isolation_level: &str,
) -> Result<BaseConsumer<ReaderContext>, SinkError> {
    brokers
        .client_config()
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation_level)
        .create_with_context(ReaderContext)
        .map_err(kerr)
}

pub struct KafkaSource {
    consumer: BaseConsumer<ReaderContext>,
    topic: String,
}

impl KafkaSource {
    pub fn new(
        brokers: impl Into<crate::sink::KafkaEndpoint>,
        topic: &str,
    ) -> Result<Self, SinkError> {
        let brokers = brokers.into();
        // Desks and auditors see committed records only (all of them, unless the engine
        // publishes transactionally).
        let consumer = reader(&brokers, "bizra-risk-verify", "read_committed")?;
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
