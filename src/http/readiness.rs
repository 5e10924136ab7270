//! `/readyz`: ready only while the feed is connected and fresh, the key is loaded, every
//! symbol's primary model is past warm-up and the sink is healthy. Read from the health
//! metrics the hosts keep, so the probe and the dashboards see the same state.

use serde::Serialize;

use crate::metrics::Metrics;

/// A condition that keeps the engine from being ready (stable codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NotReady {
    FeedDisconnected,
    FeedStale,
    KeyNotLoaded,
    ModelsWarmingUp,
    SinkUnhealthy,
}

#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub failing: Vec<NotReady>,
    /// Symbols whose primary model is still warming up.
    pub warming_up: Vec<String>,
    /// Seconds since the last market-data frame (none yet: null).
    pub feed_silent_s: Option<f64>,
}

/// The readiness at wall-clock time `now_s` (Unix seconds); a feed silent for longer than
/// `stale_after_s` is stale.
pub fn check(metrics: &Metrics, symbols: &[String], now_s: f64, stale_after_s: f64) -> Readiness {
    let h = &metrics.health;
    let mut failing = Vec::new();
    if h.feed_connected.get() < 1 {
        failing.push(NotReady::FeedDisconnected);
    }
    let last = h.feed_last_frame_timestamp_seconds.get();
    let feed_silent_s = (last > 0.0).then(|| (now_s - last).max(0.0));
    if feed_silent_s.is_none_or(|s| s > stale_after_s) {
        failing.push(NotReady::FeedStale);
    }
    if h.signer_ready.get() < 1 {
        failing.push(NotReady::KeyNotLoaded);
    }
    let warming_up: Vec<String> = symbols
        .iter()
        .filter(|s| h.models_ready.with_label_values(&[s.as_str()]).get() < 1)
        .cloned()
        .collect();
    if !warming_up.is_empty() {
        failing.push(NotReady::ModelsWarmingUp);
    }
    if h.sink_healthy.get() < 1 {
        failing.push(NotReady::SinkUnhealthy);
    }
    Readiness {
        ready: failing.is_empty(),
        failing,
        warming_up,
        feed_silent_s,
    }
}
