//! The file sink made durable off the publisher's thread. Every second the publisher hands
//! its buffered records to their files (`FileSink::write_out`, 64 files per turn, between
//! the records it goes on appending); a task of its own fsyncs the files written since the
//! last flush, then rewrites the heads file with the heads as they were when that flush
//! began. With a file per chain, a thousand chains
//! are a thousand fsyncs a second: on the publisher's thread they held up every signed
//! record behind them.
//!
//! Heads are written in the order of their flushes: each write takes a number, and one that
//! finds a later number already written leaves the file alone, so the heads file never
//! goes back to an older point (a run's last heads, written at `Drain`, stay last).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::audit::ChainHead;
use crate::metrics::Metrics;
use crate::sink::{PendingSync, SinkError};

pub struct Durable {
    heads_file: PathBuf,
    /// The number of the newest heads written; held from a flush's fsync to its heads.
    written: Arc<tokio::sync::Mutex<u64>>,
    in_flight: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    next: u64,
    metrics: Arc<Metrics>,
}

impl Durable {
    pub fn new(heads_file: PathBuf, metrics: Arc<Metrics>) -> Self {
        Self {
            heads_file,
            written: Arc::default(),
            in_flight: Arc::default(),
            failed: Arc::default(),
            next: 0,
            metrics,
        }
    }

    /// A flush is still syncing: the next one waits for the next tick.
    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether a flush failed since the last call (its files must be synced again).
    pub fn take_failure(&self) -> bool {
        self.failed.swap(false, Ordering::AcqRel)
    }

    /// Sync `pending`, then write `heads`, on a task of its own (on the current thread's
    /// runtime; the fsyncs on the blocking pool).
    pub fn spawn(&mut self, pending: PendingSync, heads: BTreeMap<String, ChainHead>) {
        self.next += 1;
        let number = self.next;
        let (written, in_flight, failed) = (
            self.written.clone(),
            self.in_flight.clone(),
            self.failed.clone(),
        );
        let (path, metrics) = (self.heads_file.clone(), self.metrics.clone());
        in_flight.store(true, Ordering::Release);
        actix::spawn(async move {
            let mut newest = written.lock().await;
            let synced = tokio::task::spawn_blocking(move || pending.sync())
                .await
                .unwrap_or_else(|e| Err(SinkError::Heads(format!("fsync task: {e}"))));
            let res = match synced {
                Ok(()) => write_heads(&path, heads, number, &mut newest).await,
                Err(e) => Err(e),
            };
            drop(newest);
            metrics.health.sink_healthy.set(i64::from(res.is_ok()));
            if let Err(e) = res {
                tracing::error!(error = %e, "flush failed");
                failed.store(true, Ordering::Release);
            }
            in_flight.store(false, Ordering::Release);
        });
    }

    /// A future that writes `heads` once every flush started before has ended (after the
    /// sink's own flush: the Kafka spool's, or the files' at the end of a run).
    pub fn heads_in_order(
        &mut self,
        heads: BTreeMap<String, ChainHead>,
    ) -> impl std::future::Future<Output = Result<(), SinkError>> + 'static {
        self.next += 1;
        let number = self.next;
        let (written, path) = (self.written.clone(), self.heads_file.clone());
        async move {
            let mut newest = written.lock().await;
            write_heads(&path, heads, number, &mut newest).await
        }
    }
}

/// Write the heads numbered `number`, unless a later number is already written.
async fn write_heads(
    path: &std::path::Path,
    heads: BTreeMap<String, ChainHead>,
    number: u64,
    newest: &mut u64,
) -> Result<(), SinkError> {
    if number < *newest {
        return Ok(());
    }
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || crate::heads::save(&path, &heads))
        .await
        .map_err(|e| SinkError::Heads(format!("writer task: {e}")))
        .and_then(|r| r.map_err(|e| SinkError::Heads(e.to_string())))?;
    *newest = number;
    Ok(())
}
