//! The threads of a live run. A connection shard's ingest actor and its symbols' actors
//! share one thread: ingest calls the symbols' steps itself, and the actors that take the
//! operator's messages for them lock the same cores, never contended. The shards are
//! spread over `engine.worker_threads` threads. The portfolio and its gate get a thread of
//! their own: its update grows with the cube of the number of symbols (a covariance
//! factorisation per bar), and on the system's thread it would hold up the publisher,
//! which stays there with control and HTTP. With one shard or one thread, everything stays
//! on the calling thread: a single connection needs no more and would only pay for the
//! hand-offs.

use actix::{Arbiter, ArbiterHandle};

pub struct RunThreads {
    shards: Vec<Arbiter>,
    portfolio: Option<Arbiter>,
}

impl RunThreads {
    /// Start the threads for `shards` connection shards: `threads` of them (0: one per
    /// core), never more than there are shards, and one for the portfolio when there are
    /// any. Must run inside an actix system.
    pub fn start(threads: usize, shards: usize) -> Self {
        let wanted = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let count = wanted.min(shards);
        if count <= 1 {
            return Self::none();
        }
        Self {
            shards: (0..count).map(|_| Arbiter::new()).collect(),
            portfolio: Some(Arbiter::new()),
        }
    }

    /// Everything on the calling thread.
    pub fn none() -> Self {
        Self {
            shards: Vec::new(),
            portfolio: None,
        }
    }

    /// Where shard `shard`'s actors run.
    pub fn shard(&self, shard: usize) -> ArbiterHandle {
        match self.shards.len() {
            0 => Arbiter::current(),
            n => self.shards[shard % n].handle(),
        }
    }

    /// Where the portfolio and its gate run.
    pub fn portfolio(&self) -> ArbiterHandle {
        self.portfolio
            .as_ref()
            .map_or_else(Arbiter::current, Arbiter::handle)
    }

    /// Stop the threads and wait until they have ended (the actors on them are dropped
    /// there, after finishing what their mailboxes hold).
    pub async fn stop(mut self) {
        let mut arbiters = std::mem::take(&mut self.shards);
        arbiters.extend(self.portfolio.take());
        for a in &arbiters {
            a.stop();
        }
        // Joining blocks: not on the system's thread.
        let joined = tokio::task::spawn_blocking(move || {
            for a in arbiters {
                if a.join().is_err() {
                    tracing::error!("a run thread panicked");
                }
            }
        })
        .await;
        if let Err(e) = joined {
            tracing::error!(error = %e, "run threads not joined");
        }
    }
}

impl Drop for RunThreads {
    /// A run that ends early (an error) still stops its threads; they end on their own.
    fn drop(&mut self) {
        for a in self.shards.iter().chain(&self.portfolio) {
            a.stop();
        }
    }
}
