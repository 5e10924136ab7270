//! The live risk dashboard's data: the recent VaR snapshots per symbol and the recent
//! decisions, kept in bounded rings, and a broadcast of each new snapshot for the page's
//! server-sent events. Fed by the publisher (live) or from a finished run's
//! `var_snapshots/` files. A slow page misses updates; it never slows the engine.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::engine::VarSnapshot;

/// Snapshots kept per symbol at most (one per decision; an hour of one-second bars).
const HISTORY_PER_SYMBOL: usize = 3600;
/// Updates a page may lag behind before it misses some.
const LIVE_BUFFER: usize = 1024;
/// What the snapshots kept may hold in all unless told otherwise (`http.dashboard_history_mb`).
pub const DEFAULT_HISTORY_BYTES: usize = 64 << 20;

pub struct DashboardHub {
    history: Mutex<History>,
    live: broadcast::Sender<Arc<str>>,
}

/// The kept snapshots: a ring per symbol, all of them within a byte budget. Over budget the
/// oldest snapshot of all goes first, so a thousand symbols keep their last minute or so
/// rather than an hour each (an hour of 1000 symbols' snapshots is gigabytes).
struct History {
    /// Each symbol's snapshots with their arrival numbers, oldest first.
    by_symbol: BTreeMap<String, VecDeque<(u64, Arc<str>)>>,
    /// Every kept snapshot's arrival number and symbol, oldest first, and some whose
    /// snapshot its symbol's own cap already dropped (`stale` of them).
    arrivals: VecDeque<(u64, String)>,
    stale: usize,
    next: u64,
    bytes: usize,
    budget_bytes: usize,
}

impl History {
    fn keep(&mut self, symbol: &str, json: Arc<str>) {
        let ring = self.by_symbol.entry(symbol.to_string()).or_default();
        if ring.len() >= HISTORY_PER_SYMBOL {
            if let Some((_, old)) = ring.pop_front() {
                self.bytes -= old.len();
                self.stale += 1;
            }
        }
        self.bytes += json.len();
        ring.push_back((self.next, json));
        self.arrivals.push_back((self.next, symbol.to_string()));
        self.next += 1;
        while self.bytes > self.budget_bytes {
            let Some((number, symbol)) = self.arrivals.pop_front() else {
                break;
            };
            match self.by_symbol.get_mut(&symbol) {
                Some(ring) if ring.front().is_some_and(|(n, _)| *n == number) => {
                    if let Some((_, old)) = ring.pop_front() {
                        self.bytes -= old.len();
                    }
                }
                _ => self.stale = self.stale.saturating_sub(1),
            }
        }
        // A symbol that rarely updates can hold stale entries behind its own: drop them
        // once they outnumber the kept ones, so the queue stays within twice what is kept.
        if self.stale > self.arrivals.len() / 2 {
            let by_symbol = &self.by_symbol;
            self.arrivals.retain(|(number, symbol)| {
                by_symbol
                    .get(symbol)
                    .and_then(VecDeque::front)
                    .is_some_and(|(first, _)| first <= number)
            });
            self.stale = 0;
        }
    }
}

impl Default for DashboardHub {
    fn default() -> Self {
        Self::new(DEFAULT_HISTORY_BYTES)
    }
}

impl DashboardHub {
    /// A hub keeping at most `budget_bytes` of snapshots in all.
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            history: Mutex::new(History {
                by_symbol: BTreeMap::new(),
                arrivals: VecDeque::new(),
                stale: 0,
                next: 0,
                bytes: 0,
                budget_bytes,
            }),
            live: broadcast::channel(LIVE_BUFFER).0,
        }
    }

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
        history.keep(symbol, json);
    }

    /// Every kept snapshot, as one JSON array, oldest first per symbol.
    pub fn history_json(&self) -> String {
        let Ok(history) = self.history.lock() else {
            return "[]".into();
        };
        let mut out = String::from("[");
        let mut first = true;
        for (_, line) in history.by_symbol.values().flatten() {
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
            let mut skipped = 0usize;
            let mut first_error = None;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<VarSnapshot>(line) {
                    Ok(v) => {
                        self.keep(&v.symbol, line.into());
                        n += 1;
                    }
                    Err(e) => {
                        skipped += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            if let Some(error) = first_error {
                tracing::warn!(path = %path.display(), skipped, %error, "lines that are not VaR snapshots were skipped");
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 1 line (before reasons, bar end and models) as an older run wrote it.
    const V1: &str = "{\"v\":1,\"symbol\":\"ETHUSDT\",\"chain\":\"bizra.ETHUSDT\",\"seq\":0,\"event_sha256\":\"7c71156ad5c947f08a2b2f66a09ca50018b5122cd5729b9ff616105b51c55dc9\",\"ts_ms\":1723161602072,\"data_time_ms\":1723161602072,\"primary_model\":\"fhs_aci\",\"level\":0.99,\"var_usd\":60.31042176755003,\"es_usd\":82.93888145973115,\"var_ci_low_usd\":44.37440245682339,\"var_ci_high_usd\":99.46939334912297,\"limit_usd\":40.0,\"position_qty\":30.0,\"price\":2682.51,\"model_warming_up\":false,\"feed_healthy\":true,\"action\":{\"type\":\"PUBLISH_RISK_SNAPSHOT\"},\"verdict\":\"PASS\"}";

    #[test]
    fn a_finished_run_loads_old_and_new_snapshots_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var_snapshots")).unwrap();
        let v1: VarSnapshot = serde_json::from_str(V1).unwrap();
        assert!(v1.reasons.is_empty() && v1.models.fhs_aci.is_none());
        let mut v2 = v1.clone();
        v2.v = crate::engine::VAR_SNAPSHOT_VERSION;
        v2.seq += 1;
        let text = format!(
            "{V1}\n{}\nnot json\n",
            String::from_utf8(v2.to_json()).unwrap()
        );
        std::fs::write(dir.path().join("var_snapshots/ETHUSDT.jsonl"), text).unwrap();
        let hub = DashboardHub::default();
        assert_eq!(hub.load_dir(dir.path()).unwrap(), 2);
        let history: Vec<serde_json::Value> = serde_json::from_str(&hub.history_json()).unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[1]["v"], 2);
    }

    fn kept(hub: &DashboardHub) -> (usize, usize, usize) {
        let h = hub.history.lock().unwrap();
        let count = h.by_symbol.values().map(VecDeque::len).sum();
        (count, h.bytes, h.arrivals.len())
    }

    #[test]
    fn the_oldest_snapshots_of_all_go_first_once_over_budget() {
        let hub = DashboardHub::new(1000);
        let line = |k: usize| -> Arc<str> { format!("\"{k:0>98}\"").into() };
        for k in 0..50 {
            hub.keep(&format!("S{}", k % 5), line(k));
        }
        let (count, bytes, arrivals) = kept(&hub);
        assert_eq!((count, bytes, arrivals), (10, 1000, 10));
        let history: Vec<String> = serde_json::from_str(&hub.history_json()).unwrap();
        let history: Vec<u64> = history.iter().map(|k| k.parse().unwrap()).collect();
        // The last ten, two per symbol, listed by symbol.
        assert_eq!(history, vec![40, 45, 41, 46, 42, 47, 43, 48, 44, 49]);
    }

    #[test]
    fn a_symbol_keeps_an_hour_at_most_and_the_queue_stays_bounded() {
        let hub = DashboardHub::new(usize::MAX);
        hub.keep("QUIET", "1".into());
        for k in 0..3 * HISTORY_PER_SYMBOL {
            hub.keep("BUSY", format!("{k}").into());
        }
        let (count, _, arrivals) = kept(&hub);
        assert_eq!(count, HISTORY_PER_SYMBOL + 1);
        assert!(
            arrivals <= 2 * count + 1,
            "{arrivals} entries for {count} kept"
        );
    }
}
