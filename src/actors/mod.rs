//! Thin actors: they move messages, hold state and do I/O; the maths and the gate live in
//! the pure modules. Ingest calls a trade's symbol step in its own task; every other
//! data-path message (records to the publisher, bars to the portfolio) is sent with
//! `send().await` into a bounded mailbox, so a slow stage slows its producers instead of
//! growing a queue.

pub mod control;
pub mod durable;
pub mod gate;
pub mod ingest;
pub mod portfolio;
pub mod publisher;
pub mod symbol;
pub mod threads;

use crate::audit::AuditError;

/// Write the model snapshot now (at shutdown): to the symbol and portfolio actors.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct SaveSnapshot;
use crate::sink::SinkError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("actor mailbox closed: {0}")]
    Mailbox(#[from] actix::MailboxError),
    #[error("sink: {0}")]
    Sink(#[from] SinkError),
    #[error("signing: {0}")]
    Audit(#[from] AuditError),
    /// A host stage other than the sink failed (the ingest role's market topic).
    #[error("{0}")]
    Stage(String),
}
