//! Hands signed records to the sink, in the order the gates produced them, and persists
//! each chain's head once what precedes it is durable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::durable::Durable;
use super::PipelineError;
use crate::audit::wire::RecordKind;
use crate::audit::{ChainHead, SignedEvent};
use crate::metrics::Metrics;
use crate::sink::{DrainReport, LatencySummary, Outgoing, PendingSync, Sink, SinkError};

/// Records for the sink, in order: what one step produced (a bar's decisions, each with
/// the checkpoint it completed and its VaR snapshot), handed over in one message so the
/// step waits for the publisher once.
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct Publish {
    pub outs: Vec<Outgoing>,
    /// Arrival of the market event behind its decisions, when known (tick-to-signed and
    /// tick-to-acknowledged latency).
    pub origin: Option<std::time::Instant>,
}

impl From<SignedEvent> for Publish {
    fn from(e: SignedEvent) -> Self {
        Publish {
            outs: vec![Outgoing::Signed(e)],
            origin: None,
        }
    }
}

/// Hand `outs` to the publisher, then report `sealed`: what was sealed before a failure is
/// still published, so the chain's head on disk is the last record signed.
pub async fn publish_then(
    publisher: &Addr<PublisherActor>,
    outs: Vec<Outgoing>,
    origin: Option<std::time::Instant>,
    sealed: Result<(), PipelineError>,
) -> Result<(), PipelineError> {
    if !outs.is_empty() {
        publisher.send(Publish { outs, origin }).await??;
    }
    sealed
}

/// Hand `records` (an event, then the checkpoint it completed) to the publisher in order.
pub async fn publish_signed(
    publisher: &Addr<PublisherActor>,
    records: impl IntoIterator<Item = SignedEvent>,
) -> Result<(), PipelineError> {
    let outs = records.into_iter().map(Outgoing::Signed).collect();
    publish_then(publisher, outs, None, Ok(())).await
}

/// At the end of a run: make everything durable, wait for the broker's acknowledgements
/// until `deadline`, persist the heads. Returns the bytes still spooled.
#[derive(Message)]
#[rtype(result = "Result<DrainReport, PipelineError>")]
pub struct Drain {
    pub deadline: std::time::Instant,
}

/// Make everything published so far durable.
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct Flush;

/// How often published records are made durable and the heads file rewritten.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Files a flush writes out per turn of the publisher (file sink): a flush of a thousand
/// chains' files in one go (about 3000 writes) held up the records behind it by ~10 ms.
const FLUSH_FILES_PER_TURN: usize = 64;
/// How often broker acknowledgements are collected between sends (Kafka).
const POLL_ACKS_EVERY: Duration = Duration::from_millis(2);

/// Write out the next files of the flush under way.
#[derive(Message)]
#[rtype(result = "()")]
struct FlushMore;

/// A file-sink flush under way: the heads as they stood when it began (every record
/// before them is in a file it writes out), the files still to write out, and those
/// written out, to sync before the heads are persisted.
struct FlushRound {
    heads: BTreeMap<String, ChainHead>,
    todo: Vec<PathBuf>,
    written: PendingSync,
}

/// Settle the deliveries the broker has acknowledged since the last send.
#[derive(Message)]
#[rtype(result = "()")]
struct PollAcks;

pub struct PublisherActor {
    sink: Option<Sink>,
    label: String,
    mailbox_capacity: usize,
    metrics: Arc<Metrics>,
    /// The files' fsyncs and the heads file, in order, off this thread.
    durable: Durable,
    /// Heads of every chain as published (not yet necessarily durable).
    heads: BTreeMap<String, ChainHead>,
    published_since_flush: bool,
    flushing: Option<FlushRound>,
    /// The live dashboard, when the HTTP side is on.
    dashboard: Option<Arc<crate::http::DashboardHub>>,
    /// Market event arrival to signed decision here, microseconds.
    tick_to_signed: hdrhistogram::Histogram<u64>,
}

impl PublisherActor {
    pub fn new(
        sink: Sink,
        heads_file: PathBuf,
        heads: BTreeMap<String, ChainHead>,
        mailbox_capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let label = match &sink {
            Sink::File(_) => "file",
            Sink::Kafka(_) => "kafka",
        }
        .to_string();
        Self {
            sink: Some(sink),
            label,
            mailbox_capacity,
            durable: Durable::new(heads_file, metrics.clone()),
            metrics,
            heads,
            published_since_flush: false,
            flushing: None,
            dashboard: None,
            tick_to_signed: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    /// Also hand every VaR snapshot to the live dashboard.
    pub fn with_dashboard(mut self, hub: Arc<crate::http::DashboardHub>) -> Self {
        self.dashboard = Some(hub);
        self
    }

    /// Run `op` on the sink without holding `&mut self` across the await.
    fn with_sink<F, Fut>(&mut self, op: F) -> AtomicResponse<Self, Result<(), PipelineError>>
    where
        F: FnOnce(Sink) -> Fut + 'static,
        Fut: std::future::Future<Output = (Sink, Result<(), SinkError>)> + 'static,
    {
        let Some(sink) = self.sink.take() else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(PipelineError::Sink(
                SinkError::Kafka("sink unavailable after an earlier failure".into()),
            )))));
        };
        AtomicResponse::new(Box::pin(op(sink).into_actor(self).map(
            |(sink, res), act, _| {
                act.sink = Some(sink);
                act.metrics.health.sink_healthy.set(i64::from(res.is_ok()));
                res.map_err(PipelineError::from)
            },
        )))
    }
}

impl Actor for PublisherActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
        self.metrics.health.sink_healthy.set(1);
        if matches!(self.sink, Some(Sink::Kafka(_))) {
            ctx.run_interval(POLL_ACKS_EVERY, |_, ctx| ctx.notify(PollAcks));
        }
        ctx.run_interval(FLUSH_EVERY, |act, ctx| {
            if act.published_since_flush {
                // A timer, not the data path: the flush result is logged by its handler.
                ctx.notify(Flush);
            }
        });
    }
}

impl Handler<Publish> for PublisherActor {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;
    fn handle(&mut self, msg: Publish, _: &mut Self::Context) -> Self::Result {
        let Publish { outs, origin } = msg;
        for out in &outs {
            self.note(out, origin);
        }
        self.published_since_flush = true;
        self.with_sink(move |mut sink| async move {
            let mut res = Ok(());
            for out in outs {
                // Only a decision's latency is measured from its market event.
                let origin = origin.filter(|_| is_decision(&out));
                res = sink.publish(out, origin).await;
                if res.is_err() {
                    break;
                }
            }
            (sink, res)
        })
    }
}

fn is_decision(out: &Outgoing) -> bool {
    matches!(out, Outgoing::Signed(e) if e.kind == RecordKind::Event)
}

impl PublisherActor {
    /// Metrics, dashboard and chain heads for one record as it is handed to the sink.
    fn note(&mut self, out: &Outgoing, origin: Option<std::time::Instant>) {
        self.metrics
            .events_published_total
            .with_label_values(&[self.label.as_str()])
            .inc();
        match out {
            Outgoing::VarSnapshot(v) => {
                self.metrics.risk.observe_snapshot(v);
                if let Some(hub) = &self.dashboard {
                    hub.push(v);
                }
            }
            Outgoing::Signed(e) if e.kind == RecordKind::Checkpoint => self
                .metrics
                .risk
                .checkpoints_total
                .with_label_values(&[e.chain.as_str()])
                .inc(),
            Outgoing::Signed(e) => {
                if e.kind == RecordKind::Event {
                    self.heads
                        .insert(e.chain.clone(), ChainHead::persisted_after(e));
                    if let Some(t) = origin {
                        let us = t.elapsed().as_micros().max(1) as u64;
                        let _ = self.tick_to_signed.record(us);
                        self.metrics
                            .tick_to_signed_seconds
                            .observe(us as f64 * 1e-6);
                    }
                }
            }
        }
    }
}

impl Handler<Flush> for PublisherActor {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;
    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) -> Self::Result {
        // Everything published before this point becomes durable, then so does its head.
        if let Some(Sink::File(files)) = self.sink.as_mut() {
            if self.durable.busy() || self.flushing.is_some() {
                // Still writing or syncing the last flush: these records go with the next.
                return AtomicResponse::new(Box::pin(fut::ready(Ok(()))));
            }
            if self.durable.take_failure() {
                files.resync_all();
            }
            self.published_since_flush = false;
            self.flushing = Some(FlushRound {
                heads: self.heads.clone(),
                todo: files.dirty_files(),
                written: PendingSync::default(),
            });
            // Its own turns, between the records published meanwhile.
            ctx.notify(FlushMore);
            return AtomicResponse::new(Box::pin(fut::ready(Ok(()))));
        }
        self.published_since_flush = false;
        let save = self.durable.heads_in_order(self.heads.clone());
        self.with_sink(|mut sink| async move {
            let mut res = sink.flush().await;
            if res.is_ok() {
                res = save.await;
            }
            if let Err(e) = &res {
                tracing::error!(error = %e, "flush failed");
            }
            (sink, res)
        })
    }
}

impl Handler<FlushMore> for PublisherActor {
    type Result = ();
    fn handle(&mut self, _: FlushMore, ctx: &mut Self::Context) {
        let (Some(round), Some(Sink::File(files))) = (self.flushing.as_mut(), self.sink.as_mut())
        else {
            self.flushing = None;
            return;
        };
        let batch = round
            .todo
            .split_off(round.todo.len().saturating_sub(FLUSH_FILES_PER_TURN));
        match files.write_out(&batch) {
            Ok(written) => round.written.append(written),
            Err(e) => {
                tracing::error!(error = %e, "flush failed");
                self.metrics.health.sink_healthy.set(0);
                self.flushing = None;
                return;
            }
        }
        if !round.todo.is_empty() {
            ctx.notify(FlushMore);
        } else if let Some(done) = self.flushing.take() {
            self.durable.spawn(done.written, done.heads);
        }
    }
}

impl Handler<PollAcks> for PublisherActor {
    type Result = ();
    fn handle(&mut self, _: PollAcks, _: &mut Self::Context) {
        // The sink is away only while a send or flush is in progress; that one settles.
        if let Some(Sink::Kafka(k)) = self.sink.as_mut() {
            if let Err(e) = k.poll_acks() {
                tracing::warn!(error = %e, "collecting kafka acknowledgements failed");
            }
        }
    }
}

impl Handler<Drain> for PublisherActor {
    type Result = AtomicResponse<Self, Result<DrainReport, PipelineError>>;
    fn handle(&mut self, msg: Drain, _: &mut Self::Context) -> Self::Result {
        // The drain writes out and syncs every file itself.
        self.flushing = None;
        let save = self.durable.heads_in_order(self.heads.clone());
        self.published_since_flush = false;
        let Some(mut sink) = self.sink.take() else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(PipelineError::Sink(
                SinkError::Kafka("sink unavailable after an earlier failure".into()),
            )))));
        };
        AtomicResponse::new(Box::pin(
            async move {
                let res = match sink.drain(msg.deadline).await {
                    Ok(left) => save.await.map(|_| left),
                    Err(e) => Err(e),
                };
                (sink, res)
            }
            .into_actor(self)
            .map(|(sink, res), act, _| {
                act.sink = Some(sink);
                res.map_err(PipelineError::from).map(|mut report| {
                    report.tick_to_signed_us = LatencySummary::of(&act.tick_to_signed);
                    report
                })
            }),
        ))
    }
}
