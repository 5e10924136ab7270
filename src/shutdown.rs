//! Graceful shutdown: one trigger, observed by whoever must stop (ingest first).

use tokio::sync::watch;

/// Asks the pipeline to stop.
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// Observes the request; cheap to clone.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn request(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    /// A shutdown that is never requested (runs that end with their input).
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive so `requested` pends forever instead of seeing a close.
        std::mem::forget(tx);
        Self { rx }
    }

    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown has been requested.
    pub async fn requested(&mut self) {
        while !*self.rx.borrow_and_update() {
            if self.rx.changed().await.is_err() {
                // The trigger is gone without a request: never resolve.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// On SIGTERM or SIGINT request shutdown; on a second signal, or when draining overruns
/// `deadline` by a grace period, exit at once (the spool and the trail tolerate it: a torn
/// last record is cut at the next start).
#[cfg(unix)]
pub fn install_signal_handlers(trigger: ShutdownTrigger, deadline: std::time::Duration) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("signal handlers unavailable; graceful shutdown disabled");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!(
            deadline_ms = deadline.as_millis() as u64,
            "shutdown requested: stopping ingest, draining actors and the producer"
        );
        trigger.request();
        let overrun = tokio::time::sleep(deadline + std::time::Duration::from_secs(5));
        tokio::select! {
            _ = term.recv() => tracing::warn!("second signal: exiting now"),
            _ = int.recv() => tracing::warn!("second signal: exiting now"),
            _ = overrun => tracing::error!("shutdown overran its deadline: exiting now"),
        }
        std::process::exit(130);
    });
}

#[cfg(not(unix))]
pub fn install_signal_handlers(trigger: ShutdownTrigger, deadline: std::time::Duration) {
    let _ = deadline;
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            trigger.request();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
}
