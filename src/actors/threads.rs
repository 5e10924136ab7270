//! The threads a live run's connection shards run on. A shard's ingest actor, its symbols'
//! actors and their gates share one thread, so the hops a trade awaits (ingest → symbol →
//! gate) never cross threads; the shards are spread over `engine.worker_threads` threads.
//! The publisher, control, portfolio and HTTP stay on the system's thread. With one shard or
//! one thread, everything stays on the calling thread, as a single-connection run needs no
//! more and would only pay for the hand-offs.

use actix::{Arbiter, ArbiterHandle};

pub struct ShardThreads {
    arbiters: Vec<Arbiter>,
}

impl ShardThreads {
    /// Start the threads for `shards` connection shards: `threads` of them (0: one per core),
    /// never more than there are shards. Must run inside an actix system.
    pub fn start(threads: usize, shards: usize) -> Self {
        let wanted = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let count = wanted.min(shards);
        let arbiters = if count <= 1 {
            Vec::new()
        } else {
            (0..count).map(|_| Arbiter::new()).collect()
        };
        Self { arbiters }
    }

    /// Every shard on the calling thread.
    pub fn none() -> Self {
        Self {
            arbiters: Vec::new(),
        }
    }

    /// Where shard `shard`'s actors run.
    pub fn handle(&self, shard: usize) -> ArbiterHandle {
        match self.arbiters.len() {
            0 => Arbiter::current(),
            n => self.arbiters[shard % n].handle(),
        }
    }

    /// Worker threads started (0: everything on the calling thread).
    pub fn count(&self) -> usize {
        self.arbiters.len()
    }

    /// Stop the threads and wait until they have ended (the actors on them are dropped
    /// there, after finishing what their mailboxes hold).
    pub async fn stop(mut self) {
        let arbiters = std::mem::take(&mut self.arbiters);
        for a in &arbiters {
            a.stop();
        }
        // Joining blocks: not on the system's thread.
        let joined = tokio::task::spawn_blocking(move || {
            for a in arbiters {
                if a.join().is_err() {
                    tracing::error!("a shard thread panicked");
                }
            }
        })
        .await;
        if let Err(e) = joined {
            tracing::error!(error = %e, "shard threads not joined");
        }
    }
}

impl Drop for ShardThreads {
    /// A run that ends early (an error) still stops its threads; they end on their own.
    fn drop(&mut self) {
        for a in &self.arbiters {
            a.stop();
        }
    }
}
