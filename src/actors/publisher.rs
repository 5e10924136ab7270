//! Hands signed records to the sink, in the order the gates produced them.

use std::sync::Arc;

use actix::prelude::*;

use super::PipelineError;
use crate::audit::SignedEvent;
use crate::metrics::Metrics;
use crate::sink::{Sink, SinkError};

#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct Publish(pub SignedEvent);

/// Make everything published so far durable.
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct Flush;

pub struct PublisherActor {
    sink: Option<Sink>,
    label: String,
    mailbox_capacity: usize,
    metrics: Arc<Metrics>,
}

impl PublisherActor {
    pub fn new(sink: Sink, mailbox_capacity: usize, metrics: Arc<Metrics>) -> Self {
        let label = match &sink {
            Sink::File(_) => "file",
            Sink::Kafka(_) => "kafka",
        }
        .to_string();
        Self {
            sink: Some(sink),
            label,
            mailbox_capacity,
            metrics,
        }
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
                res.map_err(PipelineError::from)
            },
        )))
    }
}

impl Actor for PublisherActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<Publish> for PublisherActor {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;
    fn handle(&mut self, msg: Publish, _: &mut Self::Context) -> Self::Result {
        self.metrics
            .events_published_total
            .with_label_values(&[self.label.as_str()])
            .inc();
        self.with_sink(|mut sink| async move {
            let res = sink.publish(msg.0).await;
            (sink, res)
        })
    }
}

impl Handler<Flush> for PublisherActor {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;
    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        self.with_sink(|mut sink| async move {
            let res = sink.flush().await;
            (sink, res)
        })
    }
}
