//! A long-lived helper thread that takes one job at a time, for running L3 beside L2
//! (`parallelize_l2_l3`). Spawning a thread per decision costs ~50 µs and a parked thread
//! woken through a channel ~40 µs, both far more than the layers themselves; so the worker
//! spins for a short while after each job (`SPIN`) before it parks, and the caller spins
//! for the result. Decisions in quick succession then cost a few cache-line hand-offs
//! (~0.2 µs each between the cores measured here); one after a pause pays the wake-up.
//!
//! The job lives in one slot that is filled in place for every decision and the result is
//! plain data, so a hand-off allocates nothing and touches no reference count the other
//! thread also uses.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the worker spins for the next job before it parks.
const SPIN: Duration = Duration::from_micros(50);

const IDLE: u8 = 0;
const JOB: u8 = 1;
const DONE: u8 = 2;
const CLOSED: u8 = 3;

struct Slot<J, R> {
    job: J,
    result: Option<R>,
}

/// Aligned so that the hand-off shares no cache line with unrelated data.
#[repr(align(128))]
struct Shared<J, R> {
    state: AtomicU8,
    parked: AtomicBool,
    slot: Mutex<Slot<J, R>>,
}

pub(crate) struct Worker<J, R> {
    shared: Arc<Shared<J, R>>,
    thread: Option<JoinHandle<()>>,
}

fn spin_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    let mut spins = 0u32;
    loop {
        if done() {
            return true;
        }
        spins = spins.wrapping_add(1);
        if spins % 64 == 0 && Instant::now() >= deadline {
            return false;
        }
        std::hint::spin_loop();
    }
}

impl<J: Default + Send + 'static, R: Send + 'static> Worker<J, R> {
    pub(crate) fn spawn(
        name: &str,
        run: impl Fn(&J) -> R + Send + 'static,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(IDLE),
            parked: AtomicBool::new(false),
            slot: Mutex::new(Slot {
                job: J::default(),
                result: None,
            }),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || loop {
                let ready = || matches!(s.state.load(SeqCst), JOB | CLOSED);
                if !spin_until(Instant::now() + SPIN, ready) {
                    s.parked.store(true, SeqCst);
                    while !ready() {
                        std::thread::park_timeout(Duration::from_millis(100));
                    }
                    s.parked.store(false, SeqCst);
                }
                if s.state.load(SeqCst) == CLOSED {
                    return;
                }
                {
                    let mut slot = s.slot.lock().unwrap_or_else(|e| e.into_inner());
                    // A panicking job yields no result (the caller evaluates in turn)
                    // instead of leaving the caller waiting forever.
                    let r =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&slot.job)));
                    slot.result = r.ok();
                }
                // Unless closed meanwhile.
                let _ = s.state.compare_exchange(JOB, DONE, SeqCst, SeqCst);
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Fill the job slot in place and hand it over; false (and nothing filled) if the
    /// worker is busy or gone.
    pub(crate) fn submit_with(&self, fill: impl FnOnce(&mut J)) -> bool {
        let s = &self.shared;
        if s.state.load(SeqCst) != IDLE {
            return false;
        }
        // No result is pending: a job is only accepted after `collect` took the last one.
        fill(&mut s.slot.lock().unwrap_or_else(|e| e.into_inner()).job);
        s.state.store(JOB, SeqCst);
        if s.parked.load(SeqCst) {
            if let Some(t) = &self.thread {
                t.thread().unpark();
            }
        }
        true
    }

    /// The result of the job submitted last (waits for it); `None` if there is none.
    pub(crate) fn collect(&self) -> Option<R> {
        let s = &self.shared;
        let done = || s.state.load(SeqCst) == DONE;
        // The job is short; a parked worker takes a wake-up to start it.
        while !spin_until(Instant::now() + SPIN, done) {
            match s.state.load(SeqCst) {
                DONE => break,
                JOB => std::thread::yield_now(),
                _ => return None,
            }
        }
        let r = s
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .result
            .take();
        s.state.store(IDLE, SeqCst);
        r
    }
}

impl<J, R> Drop for Worker<J, R> {
    fn drop(&mut self) {
        self.shared.state.store(CLOSED, SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_jobs_in_turn_and_stops_when_dropped() {
        let w = Worker::spawn("test-worker", |x: &u64| x * 2).unwrap();
        for i in 0..10_000 {
            assert!(w.submit_with(|j| *j = i));
            assert_eq!(w.collect(), Some(i * 2));
        }
        // After a pause the worker has parked; a job wakes it.
        std::thread::sleep(Duration::from_millis(5));
        assert!(w.submit_with(|j| *j = 21));
        assert!(!w.submit_with(|j| *j = 1), "one job at a time");
        assert_eq!(w.collect(), Some(42));
        assert_eq!(w.collect(), None, "nothing submitted");
        drop(w);
    }

    #[test]
    fn a_panicking_job_gives_no_result_and_the_worker_goes_on() {
        let w = Worker::spawn("test-worker", |x: &u64| {
            assert!(*x != 7, "boom");
            *x
        })
        .unwrap();
        assert!(w.submit_with(|j| *j = 7));
        assert_eq!(w.collect(), None);
        assert!(w.submit_with(|j| *j = 8));
        assert_eq!(w.collect(), Some(8));
    }
}
