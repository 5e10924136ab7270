//! Quarantined market events, one JSON line each, for auditors: what the feed step refused
//! as implausible, with the reason and when it was received.

use std::io::Write as _;
use std::path::PathBuf;

/// Quarantined events, one JSON line each, for auditors (`<sink.dir>/quarantine/`).
pub struct Quarantine {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl Quarantine {
    pub fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }

    /// Append one event, received at `received_ms` by the host's clock.
    pub fn record(&mut self, code: &str, symbol: &str, detail: &str, received_ms: i64) {
        if self.file.is_none() {
            let opened = self
                .path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|_| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.path)
                });
            match opened {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot open the quarantine file");
                    return;
                }
            }
        }
        let line = serde_json::json!({
            "received_ms": received_ms,
            "reason": code,
            "symbol": symbol,
            "event": detail,
        });
        if let Some(f) = &mut self.file {
            if let Err(e) = writeln!(f, "{line}") {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot record a quarantined event");
            }
        }
    }
}
