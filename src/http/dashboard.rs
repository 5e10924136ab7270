//! The live risk dashboard's data: the recent VaR snapshots per symbol and the recent
//! decisions, kept in bounded rings, and a broadcast of each new snapshot for the page's
//! server-sent events. Fed by the publisher (live) or from a finished run's
//! `var_snapshots/` files. A slow page misses updates; it never slows the engine.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::engine::VarSnapshot;

/// Snapshots kept per symbol (one per decision; an hour of one-second bars).
const HISTORY_PER_SYMBOL: usize = 3600;
/// Updates a page may lag behind before it misses some.
const LIVE_BUFFER: usize = 1024;

pub struct DashboardHub {
    history: Mutex<BTreeMap<String, VecDeque<Arc<str>>>>,
    live: broadcast::Sender<Arc<str>>,
}

impl Default for DashboardHub {
    fn default() -> Self {
        Self {
            history: Mutex::new(BTreeMap::new()),
            live: broadcast::channel(LIVE_BUFFER).0,
        }
    }
}

impl DashboardHub {
    /// A new snapshot: kept and sent to every open page.
    pub fn push(&self, v: &VarSnapshot) {
        let json: Arc<str> = String::from_utf8_lossy(&v.to_json()).into();
        self.keep(&v.symbol, json.clone());
        // No page open is not an error.
        let _ = self.live.send(json);
    }

    fn keep(&self, symbol: &str, json: Arc<str>) {
        let Ok(mut history) = self.history.lock() else {
            return;
        };
        let ring = history.entry(symbol.to_string()).or_default();
        if ring.len() >= HISTORY_PER_SYMBOL {
            ring.pop_front();
        }
        ring.push_back(json);
    }

    /// Every kept snapshot, as one JSON array, oldest first per symbol.
    pub fn history_json(&self) -> String {
        let Ok(history) = self.history.lock() else {
            return "[]".into();
        };
        let mut out = String::from("[");
        let mut first = true;
        for line in history.values().flatten() {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(line);
        }
        out.push(']');
        out
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.live.subscribe()
    }

    /// The snapshots of a finished run: every `var_snapshots/*.jsonl` under `events_dir`.
    pub fn load_dir(&self, events_dir: &Path) -> std::io::Result<usize> {
        let dir = events_dir.join("var_snapshots");
        let mut n = 0;
        let mut paths: Vec<_> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path)?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<VarSnapshot>(line) {
                    Ok(v) => {
                        self.keep(&v.symbol, line.into());
                        n += 1;
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "not a VaR snapshot; skipped")
                    }
                }
            }
        }
        Ok(n)
    }
}
