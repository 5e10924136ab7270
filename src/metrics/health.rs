//! What readiness and the feed-health alerts read: the feed connection, its last frame,
//! each symbol's health and models, the signer and the sink. Hosts set them; `/readyz`
//! reads them.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub struct HealthMetrics {
    pub feed_connected: IntGauge,
    pub feed_connections_total: IntCounter,
    pub feed_reconnects_total: IntCounter,
    pub feed_last_frame_timestamp_seconds: Gauge,
    pub feed_symbol_healthy: IntGaugeVec,
    pub feed_trades_backfilled_total: IntCounterVec,
    pub feed_trades_missing_total: IntCounterVec,
    pub signer_ready: IntGauge,
    pub models_ready: IntGaugeVec,
    pub sink_healthy: IntGauge,
}

impl HealthMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            feed_connected: IntGauge::new(
                "bizra_feed_connected",
                "Market-data connections open now",
            )?,
            feed_connections_total: IntCounter::new(
                "bizra_feed_connections_total",
                "Market-data connections opened (first connections, reconnects and rotations)",
            )?,
            feed_reconnects_total: IntCounter::new(
                "bizra_feed_reconnects_total",
                "Market-data connections that ended and were opened again",
            )?,
            feed_last_frame_timestamp_seconds: Gauge::new(
                "bizra_feed_last_frame_timestamp_seconds",
                "Wall-clock time (Unix seconds) of the last market-data frame received",
            )?,
            feed_symbol_healthy: IntGaugeVec::new(
                Opts::new(
                    "bizra_feed_symbol_healthy",
                    "1 while the symbol's feed is trustworthy (not stale, no unfilled gap, book in step)",
                ),
                &["symbol"],
            )?,
            feed_trades_backfilled_total: IntCounterVec::new(
                Opts::new(
                    "bizra_feed_trades_backfilled_total",
                    "Trades (or aggregate trades) missing from the stream and filled from REST",
                ),
                &["symbol"],
            )?,
            feed_trades_missing_total: IntCounterVec::new(
                Opts::new(
                    "bizra_feed_trades_missing_total",
                    "Trades (or aggregate trades) missing from the stream that REST could not fill",
                ),
                &["symbol"],
            )?,
            signer_ready: IntGauge::new(
                "bizra_signer_ready",
                "1 once the signing key is loaded and every chain head is reconciled",
            )?,
            models_ready: IntGaugeVec::new(
                Opts::new(
                    "bizra_models_ready",
                    "1 once the symbol's primary model is past its warm-up",
                ),
                &["symbol"],
            )?,
            sink_healthy: IntGauge::new(
                "bizra_sink_healthy",
                "1 while the last write or flush of the sink succeeded",
            )?,
        };
        registry.register(Box::new(m.feed_connected.clone()))?;
        registry.register(Box::new(m.feed_connections_total.clone()))?;
        registry.register(Box::new(m.feed_reconnects_total.clone()))?;
        registry.register(Box::new(m.feed_last_frame_timestamp_seconds.clone()))?;
        registry.register(Box::new(m.feed_symbol_healthy.clone()))?;
        registry.register(Box::new(m.feed_trades_backfilled_total.clone()))?;
        registry.register(Box::new(m.feed_trades_missing_total.clone()))?;
        registry.register(Box::new(m.signer_ready.clone()))?;
        registry.register(Box::new(m.models_ready.clone()))?;
        registry.register(Box::new(m.sink_healthy.clone()))?;
        Ok(m)
    }
}
