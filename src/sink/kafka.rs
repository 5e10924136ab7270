//! Kafka: an idempotent (or transactional) producer (acks=all) with many sends in flight,
//! over the write-ahead spool, and topic creation.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use super::readback::Digest;
use super::spool::{Cursor, Spool, SpoolRecord, TopicKind};
use super::SinkError;
use crate::metrics::Metrics;

/// `schema-version` header of every message (docs/events.md).
pub const SCHEMA_VERSION: &str = "1";

/// Bound of one transactional call (init, commit, abort).
const TXN_TIMEOUT: Duration = Duration::from_secs(10);
/// Records handed to the producer and not yet acknowledged, at most.
const MAX_IN_FLIGHT: usize = 50_000;
/// Acknowledged records waiting to be read back, at most: more make a read-back due.
const MAX_UNVERIFIED: usize = 200_000;
/// Pause before records are sent again after a failed delivery.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// How long start-up waits for the output topics' metadata at most.
const WARM_UP_BUDGET: Duration = Duration::from_secs(2);

/// Fetch the output topics' metadata before the first record. Left to the first send, the
/// producer connects, learns the topics' leaders and gets its producer ID while the first
/// decisions wait: the first ~0.8 s of a run's records were acknowledged 0.5–0.8 s late,
/// which was the whole p99 of tick -> acknowledged (docs/performance.md). A broker that
/// does not answer within the budget changes nothing: the spool holds the records.
fn warm_up(producer: &FutureProducer, topics: &Topics) {
    let until = Instant::now() + WARM_UP_BUDGET;
    for topic in [
        &topics.decisions,
        &topics.checkpoints,
        &topics.var_snapshots,
    ] {
        let left = until.saturating_duration_since(Instant::now());
        if let Err(e) = producer.client().fetch_metadata(Some(topic), left) {
            tracing::info!(%topic, error = %e, "output topic metadata not fetched at start");
            return;
        }
    }
}

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
    brokers: super::KafkaEndpoint,
    topics: Topics,
    spool: Spool,
    in_flight: VecDeque<(Sent, DeliveryFuture)>,
    /// A record read from the spool that the producer's queue had no room for yet.
    stash: Option<(Sent, SpoolRecord)>,
    /// Acknowledged records not yet read back from the topic, in spool order.
    unverified: VecDeque<Acked>,
    readback: Readback,
    /// A read-back under way over the first `.0` records of `unverified`.
    reading: Option<(usize, tokio::task::JoinHandle<Result<Views, SinkError>>)>,
    /// `kafka.transactional`: records are committed in transactions aligned with flushes.
    transactional_id: Option<String>,
    txn_open: bool,
    /// Delivered in the open transaction, acknowledged once it commits.
    uncommitted: Vec<Acked>,
    /// Newest sequence number on each topic per chain, found at start.
    on_topic: HashMap<(TopicKind, String), u64>,
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

/// A record handed to the producer: where it lies in the spool and what it is.
#[derive(Debug, Clone)]
struct Sent {
    start: Cursor,
    end: Cursor,
    topic: TopicKind,
    chain: String,
    seq: u64,
    digest: Digest,
}

type Views = std::collections::BTreeMap<(String, i32), super::readback::PartitionView>;

/// A record the broker acknowledged at `partition`/`offset`.
#[derive(Debug, Clone)]
struct Acked {
    sent: Sent,
    partition: i32,
    offset: i64,
}

/// When acknowledged records are read back, and what the read-backs found.
#[derive(Debug, Clone)]
pub struct Readback {
    pub interval: Duration,
    pub timeout: Duration,
    next_at: Instant,
    /// A delivery error that can mean the broker lost state: read back at the next chance.
    due: bool,
    /// Acknowledged records the topic lost, found and sent again.
    pub lost_and_resent: u64,
    /// Acknowledged records the topic lost that were no longer retained, by chain and
    /// sequence range: a hole only the engine's other copies can fill.
    pub unrecoverable: Vec<String>,
}

impl Readback {
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        Self {
            interval,
            timeout,
            next_at: Instant::now() + interval,
            due: false,
            lost_and_resent: 0,
            unrecoverable: Vec::new(),
        }
    }
}

/// `chain seq A..=B` for each run of consecutive records of one chain.
fn describe_runs(lost: &[&Sent]) -> String {
    let mut runs: Vec<(String, u64, u64)> = Vec::new();
    for s in lost {
        match runs.last_mut() {
            Some((c, _, b)) if *c == s.chain && *b + 1 == s.seq => *b = s.seq,
            _ => runs.push((s.chain.clone(), s.seq, s.seq)),
        }
    }
    runs.iter()
        .map(|(c, a, b)| format!("{c} seq {a}..={b}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl KafkaSink {
    /// The idempotent producer; with a transactional ID, a transactional one whose
    /// transactions are initialised (fencing an earlier instance with the same ID).
    fn make_producer(
        brokers: &super::KafkaEndpoint,
        transactional_id: Option<&str>,
    ) -> Result<FutureProducer, SinkError> {
        let mut config = brokers.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            // The spool, not the producer, decides when to give up on a record: never.
            .set("message.timeout.ms", "0")
            // A silent network cut (packets dropped, no reset) is noticed by a request
            // that gets no answer within 5 s; the connection is then dropped and tried
            // again every second at most, so delivery resumes within a few seconds of the
            // network's return (docs/events.md).
            .set("socket.keepalive.enable", "true")
            .set("request.timeout.ms", "5000")
            .set("socket.timeout.ms", "5000")
            .set("socket.connection.setup.timeout.ms", "5000")
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "1000")
            .set("retry.backoff.max.ms", "1000")
            .set("topic.metadata.refresh.interval.ms", "10000")
            .set("metadata.max.age.ms", "30000");
        if let Some(id) = transactional_id {
            // A transaction may not outlive its records; a record that cannot be
            // delivered within it fails the transaction, which is aborted and sent again.
            config
                .set("transactional.id", id)
                .set("transaction.timeout.ms", "60000")
                .set("message.timeout.ms", "60000");
        }
        let producer: FutureProducer = config.create().map_err(kerr)?;
        if transactional_id.is_some() {
            producer
                .init_transactions(TXN_TIMEOUT)
                .map_err(|e| SinkError::Kafka(format!("init transactions: {e}")))?;
        }
        Ok(producer)
    }

    /// Records on a topic already (found at start): a spooled copy at the front of what
    /// is left to send is settled without sending it again.
    pub fn skip_on_topic(&mut self, newest: HashMap<(TopicKind, String), u64>) {
        self.on_topic = newest;
    }

    /// Commit the open transaction once everything in it is delivered: its records are
    /// then acknowledged. True when nothing is left uncommitted.
    async fn commit_if_ready(&mut self) -> Result<bool, SinkError> {
        if self.transactional_id.is_none() || !self.txn_open {
            return Ok(true);
        }
        if !self.in_flight.is_empty() || self.stash.is_some() {
            return Ok(false);
        }
        let producer = self.producer.clone();
        let committed =
            tokio::task::spawn_blocking(move || producer.commit_transaction(TXN_TIMEOUT))
                .await
                .map_err(|e| SinkError::Kafka(format!("commit task: {e}")))?;
        self.txn_open = false;
        match committed {
            Ok(()) => {
                for acked in std::mem::take(&mut self.uncommitted) {
                    self.spool
                        .ack_through(acked.sent.end)
                        .map_err(SinkError::from)?;
                    self.visible_through(acked.sent.end);
                    self.unverified.push_back(acked);
                }
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(error = %e, "kafka transaction did not commit; aborting it and sending its records again");
                self.metrics.kafka_delivery_errors_total.inc();
                self.uncommitted.clear();
                let producer = self.producer.clone();
                let _ =
                    tokio::task::spawn_blocking(move || producer.abort_transaction(TXN_TIMEOUT))
                        .await;
                self.restart_sending(Instant::now() + RETRY_AFTER)?;
                Ok(false)
            }
        }
    }

    pub fn new(
        brokers: impl Into<super::KafkaEndpoint>,
        topics: Topics,
        spool: Spool,
        readback: Readback,
        transactional_id: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SinkError> {
        let brokers = brokers.into();
        let producer = Self::make_producer(&brokers, transactional_id.as_deref())?;
        warm_up(&producer, &topics);
        Ok(Self {
            producer,
            transactional_id,
            txn_open: false,
            uncommitted: Vec::new(),
            on_topic: HashMap::new(),
            brokers,
            topics,
            spool,
            in_flight: VecDeque::new(),
            stash: None,
            unverified: VecDeque::new(),
            readback,
            reading: None,
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
            let (sent, rec) = match self.stash.take() {
                Some(x) => x,
                None => match self.spool.next_unsent().map_err(SinkError::from)? {
                    Some((end, rec)) => {
                        let sent = Sent {
                            start: self.spool.last_start(),
                            end,
                            topic: rec.topic,
                            chain: rec.chain.clone(),
                            seq: rec.seq,
                            digest: Digest::of(&rec.payload),
                        };
                        (sent, rec)
                    }
                    None => break,
                },
            };
            if !self.on_topic.is_empty() {
                // A VaR snapshot stands or falls with the decision it shows.
                let kind = match rec.topic {
                    TopicKind::VarSnapshots => TopicKind::Decisions,
                    other => other,
                };
                if self
                    .on_topic
                    .get(&(kind, rec.chain.clone()))
                    .is_some_and(|newest| rec.seq <= *newest)
                {
                    // Sent and committed before a crash: the topic has it already.
                    self.spool.ack_through(sent.end).map_err(SinkError::from)?;
                    continue;
                }
                // The records on the topic were a prefix of the spool: it ends here.
                self.on_topic.clear();
            }
            if self.transactional_id.is_some() && !self.txn_open {
                self.producer
                    .begin_transaction()
                    .map_err(|e| SinkError::Kafka(format!("begin transaction: {e}")))?;
                self.txn_open = true;
            }
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
                Ok(fut) => self.in_flight.push_back((sent, fut)),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.stash = Some((sent, rec));
                    break;
                }
                // An idempotent producer that failed fatally (its broker lost state it had
                // acknowledged) refuses every record: replace it, read back, send again.
                Err((e, _)) if self.producer.client().fatal_error().is_some() => {
                    tracing::warn!(error = %e, "kafka producer failed fatally; resending from the spool");
                    self.restart_sending(Instant::now() + RETRY_AFTER)?;
                    self.readback.due = true;
                    break;
                }
                Err((e, _)) => return Err(kerr(e)),
            }
        }
        Ok(())
    }

    fn settle(&mut self, sent: Sent, result: Result<(i32, i64), String>) -> Result<(), SinkError> {
        match result {
            Ok((partition, offset)) => {
                self.metrics.kafka_acked_total.inc();
                let cursor = sent.end;
                let acked = Acked {
                    sent,
                    partition,
                    offset,
                };
                if self.transactional_id.is_some() {
                    // Visible to read_committed consumers only once the transaction commits.
                    self.uncommitted.push(acked);
                    return Ok(());
                }
                self.visible_through(cursor);
                self.unverified.push_back(acked);
                if self.unverified.len() >= MAX_UNVERIFIED {
                    self.readback.due = true;
                }
                self.spool.ack_through(cursor).map_err(SinkError::from)
            }
            Err(e) => {
                // Send again from the first unacknowledged record, in order. Deliveries
                // still in flight may land too: duplicates that consumers drop by
                // (chain, seq). The broker may also have lost what it acknowledged
                // (a restart, an unclean leader election): read back soon.
                self.metrics.kafka_delivery_errors_total.inc();
                tracing::warn!(error = %e, "kafka delivery failed; resending from the spool");
                self.restart_sending(Instant::now() + RETRY_AFTER)?;
                self.readback.due = true;
                Ok(())
            }
        }
    }

    /// Records up to `cursor` are visible to consumers: time their market events' way here.
    fn visible_through(&mut self, cursor: Cursor) {
        while self.origins.front().is_some_and(|(c, _)| *c <= cursor) {
            if let Some((_, t)) = self.origins.pop_front() {
                let us = t.elapsed().as_micros().max(1) as u64;
                let _ = self.tick_to_ack.record(us);
                self.metrics.tick_to_ack_seconds.observe(us as f64 * 1e-6);
            }
        }
    }

    /// Forget what is in flight and send from the spool's unacknowledged point again, from
    /// `at` on; a producer that failed fatally is replaced.
    fn restart_sending(&mut self, at: Instant) -> Result<(), SinkError> {
        self.in_flight.clear();
        self.stash = None;
        if self.txn_open {
            // Its records are sent again in a new transaction.
            let _ = self.producer.abort_transaction(TXN_TIMEOUT);
            self.txn_open = false;
            self.uncommitted.clear();
        }
        self.spool.rewind();
        self.retry_at = Some(at);
        // An idempotent producer that hit a fatal error takes no more records.
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            tracing::warn!(%code, %reason, "kafka producer failed fatally; starting a new one");
            self.producer = Self::make_producer(&self.brokers, self.transactional_id.as_deref())?;
        }
        Ok(())
    }

    /// Start reading back the acknowledged records not verified yet (in the background:
    /// sending goes on meanwhile).
    fn start_readback(&mut self) {
        self.readback.due = false;
        self.readback.next_at = Instant::now() + self.readback.interval;
        if self.unverified.is_empty() || self.reading.is_some() {
            return;
        }
        let mut from: std::collections::BTreeMap<(String, i32), i64> = Default::default();
        for a in &self.unverified {
            let key = (self.topics.name(a.sent.topic).to_string(), a.partition);
            let e = from.entry(key).or_insert(a.offset);
            *e = (*e).min(a.offset);
        }
        let brokers = self.brokers.clone();
        let timeout = self.readback.timeout;
        let task = tokio::task::spawn_blocking(move || {
            super::readback::read_back(&brokers, &from, timeout)
        });
        self.reading = Some((self.unverified.len(), task));
    }

    /// Settle a finished read-back (or wait for it with `wait`); returns how many
    /// acknowledged records the topic had lost, None while it is still under way.
    async fn finish_readback(&mut self, wait: bool) -> Result<Option<u64>, SinkError> {
        let Some((n, task)) = self.reading.as_mut() else {
            return Ok(Some(0));
        };
        let n = *n;
        let views = if wait {
            task.await
        } else {
            match task.now_or_never() {
                Some(done) => done,
                None => return Ok(None),
            }
        };
        self.reading = None;
        let views = views.map_err(|e| SinkError::Kafka(format!("read-back task: {e}")))??;
        self.settle_readback(n.min(self.unverified.len()), &views)
            .map(Some)
    }

    /// Compare the first `n` unverified records with what the topic holds; send again
    /// from the first one it lost.
    fn settle_readback(&mut self, n: usize, views: &Views) -> Result<u64, SinkError> {
        let held = |a: &Acked| {
            let key = (self.topics.name(a.sent.topic).to_string(), a.partition);
            views.get(&key).is_some_and(|v| {
                // Deleted by retention is not lost.
                a.offset < v.log_start || v.records.get(&a.offset) == Some(&a.sent.digest)
            })
        };
        let checked = self.unverified.iter().take(n);
        let Some(first_lost) = checked.clone().position(|a| !held(a)) else {
            if let Some(end) = n.checked_sub(1).map(|i| self.unverified[i].sent.end) {
                self.unverified.drain(..n);
                self.spool.verified_through(end).map_err(SinkError::from)?;
            }
            return Ok(0);
        };
        let lost: Vec<&Sent> = checked
            .skip(first_lost)
            .filter(|a| !held(a))
            .map(|a| &a.sent)
            .collect();
        let count = lost.len() as u64;
        let runs = describe_runs(&lost);
        let start = self.unverified[first_lost].sent.start;
        let verified_end = first_lost
            .checked_sub(1)
            .map(|i| self.unverified[i].sent.end);
        self.metrics.kafka_acked_records_lost_total.inc_by(count);
        if let Some(end) = verified_end {
            self.spool.verified_through(end).map_err(SinkError::from)?;
        }
        if self.spool.resend_from(start) {
            tracing::error!(lost = count, records = %runs, "the broker lost records it had acknowledged; sending them again from the retained spool");
            self.readback.lost_and_resent += count;
            // Everything from there is sent (and acknowledged, and read back) again.
            self.unverified.clear();
            self.restart_sending(Instant::now())?;
        } else {
            tracing::error!(lost = count, records = %runs, "the broker lost records it had acknowledged and they are no longer retained (kafka.spool_retain_acked_mb): the topic has a hole");
            self.metrics
                .kafka_acked_records_unrecoverable_total
                .inc_by(count);
            self.readback.unrecoverable.push(runs);
            let end = self.unverified[n - 1].sent.end;
            self.unverified.drain(..n);
            self.spool.verified_through(end).map_err(SinkError::from)?;
        }
        Ok(count)
    }

    /// What the read-backs found so far.
    pub fn readback(&self) -> &Readback {
        &self.readback
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
            let Some((sent, _)) = self.in_flight.pop_front() else {
                break;
            };
            self.settle(sent, delivery_result(outcome))?;
        }
        Ok(())
    }

    /// Wait for the oldest delivery; false if nothing was in flight.
    async fn await_oldest(&mut self) -> Result<bool, SinkError> {
        let Some((sent, fut)) = self.in_flight.pop_front() else {
            return Ok(false);
        };
        let outcome = fut.await;
        self.settle(sent, delivery_result(outcome))?;
        Ok(true)
    }

    /// The local durable point: every spooled record is on disk (fsync), acknowledgements
    /// so far are recorded. Never waits for the broker, except to read back what it
    /// acknowledged when that is due (every `kafka.readback_interval_ms`, and soon after a
    /// delivery error).
    pub async fn flush(&mut self) -> Result<(), SinkError> {
        self.spool.sync().map_err(SinkError::from)?;
        self.collect_acks()?;
        if self.transactional_id.is_some() {
            // Wait briefly for the open transaction's deliveries, then commit it.
            let until = Instant::now() + Duration::from_millis(500);
            while !self.in_flight.is_empty() && Instant::now() < until {
                if !self.await_oldest().await? {
                    break;
                }
            }
            self.commit_if_ready().await?;
        }
        if let Err(e) = self.finish_readback(false).await {
            // The broker may be away: read back again at the next interval.
            tracing::warn!(error = %e, "reading back acknowledged records failed");
        }
        if self.readback.due || Instant::now() >= self.readback.next_at {
            self.start_readback();
        }
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
        super::LatencySummary::of(&self.tick_to_ack)
    }

    /// Wait until the broker has acknowledged everything spooled and it has been read
    /// back from the topic, or `deadline`. Returns the bytes still spooled (0 when
    /// drained); they are sent at the next start.
    pub async fn drain(&mut self, deadline: Instant) -> Result<u64, SinkError> {
        self.flush().await?;
        loop {
            self.collect_acks()?;
            self.pump()?;
            if self.in_flight.is_empty() && !self.commit_if_ready().await? && self.txn_open {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.spool.is_drained() {
                // Everything acknowledged: read it back; what the broker lost is sent again.
                let found = match self.finish_readback(true).await {
                    Ok(Some(0)) if self.unverified.is_empty() => break,
                    Ok(found) => found,
                    Err(e) if left.is_zero() => {
                        tracing::error!(error = %e, "acknowledged records could not be read back before the deadline; they stay in the spool");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading back acknowledged records failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200).min(left)).await;
                        None
                    }
                };
                if found == Some(0) || found.is_none() {
                    self.start_readback();
                }
                continue;
            }
            if left.is_zero() {
                break;
            }
            match self.in_flight.pop_front() {
                Some((sent, fut)) => match tokio::time::timeout(left, fut).await {
                    Ok(outcome) => self.settle(sent, delivery_result(outcome))?,
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

fn delivery_result<E>(
    outcome: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, E>,
) -> Result<(i32, i64), String> {
    match outcome {
        Ok(Ok(d)) => Ok((d.partition, d.offset)),
        Ok(Err((e, _))) => Err(e.to_string()),
        Err(_) => Err("delivery cancelled".into()),
    }
}

/// Create the topics that do not exist yet (brokers without auto-creation).
pub async fn ensure_topics(
    brokers: impl Into<super::KafkaEndpoint>,
    names: &[&str],
    partitions: i32,
    replication: i32,
    timeout: Duration,
) -> Result<(), SinkError> {
    ensure_topics_with(brokers, names, partitions, replication, &[], timeout).await
}

/// `ensure_topics`, creating them with topic `settings` (e.g. `retention.ms`).
pub async fn ensure_topics_with(
    brokers: impl Into<super::KafkaEndpoint>,
    names: &[&str],
    partitions: i32,
    replication: i32,
    settings: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), SinkError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        brokers.into().client_config().create().map_err(kerr)?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| {
            settings.iter().fold(
                NewTopic::new(n, partitions, TopicReplication::Fixed(replication)),
                |t, (k, v)| t.set(k, v),
            )
        })
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
