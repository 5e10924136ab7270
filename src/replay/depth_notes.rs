//! How the streamed diffs reach the server's depth books (`replay::depth`, what
//! `GET /api/v3/depth` is answered from): applied at once by whoever reads them, or, in the
//! in-process replay, on a thread of their own. There, applying every diff is the replay
//! server's work, not the engine's, and took about a fifth of the reading thread. Either
//! way the diffs reach the books one at a time in the order they were noted, and a REST
//! answer first waits until the books hold every diff noted before it, so the answers are
//! the same.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::Scope;

use super::rest::RestIndex;

/// Diff lines handed over at a time, and batches in flight: the channel's bound is the
/// backpressure on the reader.
const LINES_PER_BATCH: usize = 32;
const BATCHES_IN_FLIGHT: usize = 8;

enum Job {
    /// Streamed diff lines, each ended by a newline (a JSON line holds none).
    Lines(String),
    /// Answer once every line sent before has been applied.
    CaughtUp(SyncSender<()>),
}

/// The reader's end.
pub struct DepthNotes {
    index: Arc<RestIndex>,
    /// The books' own thread; `None` when they are updated at once.
    tx: Option<SyncSender<Job>>,
    lines: String,
    count: usize,
}

impl DepthNotes {
    /// Every diff applied as it is noted.
    pub fn at_once(index: Arc<RestIndex>) -> Self {
        Self {
            index,
            tx: None,
            lines: String::new(),
            count: 0,
        }
    }

    /// The diffs applied on a thread of `scope`, in the order noted (at once if the thread
    /// cannot start).
    pub fn on_a_thread<'scope>(scope: &'scope Scope<'scope, '_>, index: Arc<RestIndex>) -> Self {
        let (tx, rx) = sync_channel(BATCHES_IN_FLIGHT);
        let books = index.clone();
        let started = std::thread::Builder::new()
            .name("replay-depth".into())
            .spawn_scoped(scope, move || follow(&books, &rx));
        if let Err(e) = &started {
            tracing::warn!(error = %e, "the depth books follow the stream on the reading thread");
        }
        let mut notes = Self::at_once(index);
        notes.tx = started.is_ok().then_some(tx);
        notes
    }

    /// A diff-depth frame (combined envelope) was streamed, or passed over: snapshots from
    /// now on include it.
    pub fn note(&mut self, json: &str) {
        if self.tx.is_none() {
            self.index.depth.note_streamed(json);
            return;
        }
        self.lines.push_str(json);
        self.lines.push('\n');
        self.count += 1;
        if self.count >= LINES_PER_BATCH {
            self.hand_over();
        }
    }

    /// Wait until the books hold every diff noted so far.
    pub fn caught_up(&mut self) {
        self.hand_over();
        let Some(tx) = &self.tx else {
            return;
        };
        let (done_tx, done_rx) = sync_channel(1);
        if tx.send(Job::CaughtUp(done_tx)).is_err() || done_rx.recv().is_err() {
            self.gone();
        }
    }

    fn hand_over(&mut self) {
        if self.count == 0 {
            return;
        }
        let lines = std::mem::take(&mut self.lines);
        self.count = 0;
        let Some(tx) = &self.tx else {
            apply(&self.index, &lines);
            return;
        };
        if let Err(failed) = tx.send(Job::Lines(lines)) {
            // The thread is gone: what it did not take is applied here, and so on from now.
            if let Job::Lines(lines) = failed.0 {
                apply(&self.index, &lines);
            }
            self.gone();
        }
    }

    fn gone(&mut self) {
        tracing::warn!("the depth books' thread stopped; the reading thread applies the diffs");
        self.tx = None;
    }
}

impl Drop for DepthNotes {
    /// Diffs still collected reach the books: nothing noted is lost.
    fn drop(&mut self) {
        self.hand_over();
    }
}

fn follow(index: &RestIndex, rx: &Receiver<Job>) {
    yield_to_the_engine();
    for job in rx {
        match job {
            Job::Lines(lines) => apply(index, &lines),
            Job::CaughtUp(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Three busy threads share the cores: this one's batches would otherwise preempt the
/// engine's and stretch its decisions' latency several times over. At a lower priority it
/// runs when a core is free, and the bounded channel still holds the reader to its pace.
fn yield_to_the_engine() {
    const NICE: libc::c_int = 10;
    // SAFETY: gettid and setpriority take and return plain integers; on Linux, a thread
    // ID given to setpriority changes that thread's niceness alone.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    let Ok(tid) = libc::id_t::try_from(tid) else {
        return;
    };
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, NICE) } != 0 {
        tracing::debug!("the depth books' thread keeps its priority");
    }
}

fn apply(index: &RestIndex, lines: &str) {
    for line in lines.lines() {
        index.depth.note_streamed(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(first: u64, last: u64, bids: &str) -> String {
        format!(
            r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":{first},"u":{last},"b":{bids},"a":[]}}}}"#
        )
    }

    /// A book without a snapshot line applies whatever comes, so only the order of the
    /// notes decides what it holds: the thread must keep it.
    #[test]
    fn a_thread_gives_the_books_the_same_answers_as_at_once() {
        let lines: Vec<String> = (0..100)
            .map(|k| {
                diff(
                    2 * k + 1,
                    2 * k + 2,
                    &format!(r#"[["{}.00","1.0"]]"#, 100 + k % 7),
                )
            })
            .collect();
        let answers = |threaded: bool| {
            let index = Arc::new(RestIndex::default());
            index.depth.note_streamed(&diff(0, 0, "[]"));
            std::thread::scope(|scope| {
                let mut notes = if threaded {
                    DepthNotes::on_a_thread(scope, index.clone())
                } else {
                    DepthNotes::at_once(index.clone())
                };
                let mut seen = Vec::new();
                for (k, line) in lines.iter().enumerate() {
                    notes.note(line);
                    if k % 37 == 0 {
                        notes.caught_up();
                        seen.push(index.depth.snapshot_json("BTCUSDT", 10));
                    }
                }
                notes.caught_up();
                seen.push(index.depth.snapshot_json("BTCUSDT", 10));
                seen
            })
        };
        let at_once = answers(false);
        assert_eq!(answers(true), at_once);
        assert!(at_once
            .last()
            .and_then(|s| s.as_deref())
            .is_some_and(|s| s.contains("\"lastUpdateId\":200")));
    }
}
