//! A worker's membership of its consumer group: the consumer, what the group assigned and
//! revoked, consumed positions, commits and lag. On assignment every partition is read from
//! its first record (the owner re-derives its chains, `roles::handover`); on revocation the
//! worker's outputs are flushed to the topics and its positions committed before the
//! partitions go, so the next owner's read of the published heads sees everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::output::Output;
use super::RoleError;
use crate::sink::KafkaEndpoint;

/// A change of what the worker owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Membership {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// One input record.
pub(super) struct Input {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

pub(super) struct MemberContext {
    topic: String,
    output: Arc<Output>,
    positions: Arc<Mutex<HashMap<i32, i64>>>,
    events: Mutex<Vec<Membership>>,
    lag: Mutex<HashMap<i32, i64>>,
    flush_timeout: Duration,
}

impl ClientContext for MemberContext {
    /// librdkafka's statistics carry each assigned partition's lag (high watermark minus
    /// position) without a request of our own.
    fn stats(&self, stats: rdkafka::Statistics) {
        let Some(topic) = stats.topics.get(&self.topic) else {
            return;
        };
        if let Ok(mut lag) = self.lag.lock() {
            lag.clear();
            for p in topic.partitions.values() {
                if p.partition >= 0 && p.consumer_lag >= 0 {
                    lag.insert(p.partition, p.consumer_lag);
                }
            }
        }
    }
}

impl MemberContext {
    fn push(&self, m: Membership) {
        if let Ok(mut events) = self.events.lock() {
            events.push(m);
        }
    }

    fn commit(&self, consumer: &BaseConsumer<Self>, partitions: &[i32]) {
        let Some(tpl) = positions_list(&self.topic, &self.positions, partitions) else {
            return;
        };
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(error = %e, "committing the revoked partitions' positions failed; their next owner re-derives from the first record all the same");
        }
    }
}

fn positions_list(
    topic: &str,
    positions: &Mutex<HashMap<i32, i64>>,
    partitions: &[i32],
) -> Option<TopicPartitionList> {
    let positions = positions.lock().ok()?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        if let Some(next) = positions.get(p) {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*next))
                .ok()?;
        }
    }
    (tpl.count() > 0).then_some(tpl)
}

impl ConsumerContext for MemberContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: Vec<i32> = tpl
            .elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut from_start = TopicPartitionList::new();
                for p in &partitions {
                    if let Err(e) =
                        from_start.add_partition_offset(&self.topic, *p, Offset::Beginning)
                    {
                        tracing::error!(partition = p, error = %e, "cannot take the partition");
                    }
                }
                if let Err(e) = consumer.assign(&from_start) {
                    tracing::error!(error = %e, "assignment failed");
                }
                self.push(Membership::Assigned(partitions));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                match self.output.flush(self.flush_timeout) {
                    // Positions are committed only once what they produced is on the topics.
                    Ok(()) => self.commit(consumer, &partitions),
                    Err(e) => {
                        tracing::error!(error = %e, "outputs not acknowledged before the revocation; positions left uncommitted, the next owner re-derives them")
                    }
                }
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassignment failed");
                }
                self.push(Membership::Revoked(partitions));
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed; giving up every partition");
                let _ = consumer.unassign();
                self.push(Membership::Revoked(partitions));
            }
        }
    }
}

pub(super) struct Member {
    consumer: BaseConsumer<MemberContext>,
    topic: String,
    positions: Arc<Mutex<HashMap<i32, i64>>>,
    timeout: Duration,
}

fn kerr(e: rdkafka::error::KafkaError) -> RoleError {
    RoleError::Kafka(e.to_string())
}

impl Member {
    pub(super) fn join(
        endpoint: &KafkaEndpoint,
        (group, instance_id): (&str, &str),
        topic: &str,
        (session_timeout_ms, max_poll_interval_ms, stats_interval_ms): (u64, u64, u64),
        output: Arc<Output>,
        timeout: Duration,
    ) -> Result<Self, RoleError> {
        let positions = Arc::new(Mutex::new(HashMap::new()));
        let context = MemberContext {
            topic: topic.to_string(),
            output,
            positions: positions.clone(),
            events: Mutex::new(Vec::new()),
            lag: Mutex::new(HashMap::new()),
            // Inside the rebalance callback: well under the time the group waits.
            flush_timeout: timeout.min(Duration::from_millis(max_poll_interval_ms / 3)),
        };
        let mut client = endpoint.client_config();
        if !instance_id.is_empty() {
            client.set("group.instance.id", instance_id);
        }
        let consumer: BaseConsumer<MemberContext> = client
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Eager rebalancing: a partition is revoked everywhere before it is assigned.
            .set("partition.assignment.strategy", "range")
            .set("session.timeout.ms", session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (session_timeout_ms / 4).max(250).to_string(),
            )
            .set("max.poll.interval.ms", max_poll_interval_ms.to_string())
            .set("statistics.interval.ms", stats_interval_ms.to_string())
            .create_with_context(context)
            .map_err(kerr)?;
        consumer.subscribe(&[topic]).map_err(kerr)?;
        Ok(Self {
            consumer,
            topic: topic.to_string(),
            positions,
            // Asked between polls: kept short so the worker stays with its group.
            timeout: timeout.min(Duration::from_secs(5)),
        })
    }

    /// The next record, waiting at most `wait`.
    pub(super) fn poll(&self, wait: Duration) -> Result<Option<Input>, RoleError> {
        match self.consumer.poll(wait) {
            None => Ok(None),
            Some(Err(e)) => match e.rdkafka_error_code() {
                // What waiting cannot fix: the group refuses this worker.
                Some(
                    code @ (RDKafkaErrorCode::InvalidSessionTimeout
                    | RDKafkaErrorCode::GroupAuthorizationFailed
                    | RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::InvalidGroupId
                    | RDKafkaErrorCode::FencedInstanceId),
                ) => Err(RoleError::Kafka(format!(
                    "the consumer group refused this worker: {code}"
                ))),
                _ => {
                    tracing::warn!(error = %e, "consumer");
                    Ok(None)
                }
            },
            Some(Ok(m)) => Ok(Some(Input {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            })),
        }
    }

    /// Assignments and revocations since the last call, in order.
    pub(super) fn take_membership(&self) -> Vec<Membership> {
        self.consumer
            .context()
            .events
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }

    /// The record at `offset` was consumed. Positions never go back: a new owner re-reads
    /// from the first record, and its commits start where the group's committed position
    /// already was (`start_at`).
    pub(super) fn consumed(&self, partition: i32, offset: i64) {
        if let Ok(mut p) = self.positions.lock() {
            let next = p.entry(partition).or_insert(0);
            *next = (*next).max(offset + 1);
        }
    }

    /// The position `partition` is committed at from now on, at least.
    pub(super) fn start_at(&self, partition: i32, committed: i64) {
        if committed > 0 {
            self.consumed(partition, committed - 1);
        }
    }

    pub(super) fn forget(&self, partitions: &[i32]) {
        if let Ok(mut p) = self.positions.lock() {
            for partition in partitions {
                p.remove(partition);
            }
        }
    }

    /// Commit the positions of `partitions` (after the outputs were flushed), without
    /// waiting: a worker blocked in a commit during a rebalance would miss the rebalance.
    pub(super) fn commit(&self, partitions: &[i32]) -> Result<(), RoleError> {
        match positions_list(&self.topic, &self.positions, partitions) {
            Some(tpl) => self.consumer.commit(&tpl, CommitMode::Async).map_err(kerr),
            None => Ok(()),
        }
    }

    /// The lag of each owned partition in the latest statistics.
    pub(super) fn lag(&self) -> HashMap<i32, i64> {
        self.consumer
            .context()
            .lag
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// The group's committed position of each of `partitions` (absent: none committed).
    pub(super) fn committed(&self, partitions: &[i32]) -> HashMap<i32, i64> {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(&self.topic, *p);
        }
        let mut out = HashMap::new();
        match self.consumer.committed_offsets(tpl, self.timeout) {
            Ok(list) => {
                for e in list.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        out.insert(e.partition(), o);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "committed offsets unavailable"),
        }
        out
    }

    /// The partition's first offset and high watermark (the offset after its last record).
    pub(super) fn watermarks(&self, partition: i32) -> Result<(i64, i64), RoleError> {
        self.consumer
            .fetch_watermarks(&self.topic, partition, self.timeout)
            .map_err(kerr)
    }

    /// How many partitions the topic has (0 while it does not exist).
    pub(super) fn partition_count(&self) -> Result<usize, RoleError> {
        let md = self
            .consumer
            .fetch_metadata(Some(&self.topic), self.timeout)
            .map_err(kerr)?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic)
            .map(|t| t.partitions().len())
            .sum())
    }

    pub(super) fn topic(&self) -> &str {
        &self.topic
    }
}
