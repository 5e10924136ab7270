//! One Prometheus registry for the whole engine, Prometheus naming conventions.
//!
//! ELF latency is `elf_latency_seconds{layer}` (a seconds-based histogram, as Prometheus
//! recommends) rather than the reference's `elf_latency_ms`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

pub mod health;
pub mod optimizer;
pub mod risk;
pub mod roles;

pub use health::HealthMetrics;
pub use optimizer::OptimizerMetrics;
pub use risk::RiskMetrics;
pub use roles::RoleMetrics;

pub struct Metrics {
    pub registry: Registry,
    pub health: HealthMetrics,
    pub risk: RiskMetrics,
    pub optimizer: OptimizerMetrics,
    pub roles: RoleMetrics,
    pub ingest_frames_total: IntCounterVec,
    pub ingest_rejected_total: IntCounterVec,
    pub feed_clock_skew_seconds: Histogram,
    pub feed_depth_sync_total: IntCounterVec,
    pub feed_book_in_sync: prometheus::IntGaugeVec,
    pub elf_requests_total: IntCounterVec,
    pub elf_blocks_total: IntCounterVec,
    pub elf_latency_seconds: HistogramVec,
    pub elf_decision_cache_total: IntCounterVec,
    pub elf_shadow_decisions_total: IntCounterVec,
    pub elf_rules_reloads_total: IntCounterVec,
    pub events_published_total: IntCounterVec,
    pub spool_bytes: prometheus::IntGauge,
    pub spool_full_waits_total: prometheus::IntCounter,
    pub kafka_delivery_errors_total: prometheus::IntCounter,
    pub kafka_acked_total: prometheus::IntCounter,
    pub kafka_acked_records_lost_total: prometheus::IntCounter,
    pub kafka_acked_records_unrecoverable_total: prometheus::IntCounter,
    pub tick_to_ack_seconds: Histogram,
    pub tick_to_signed_seconds: Histogram,
    pub recording_errors_total: prometheus::IntCounter,
    pub control_requests_total: IntCounterVec,
    pub input_limit_breaches_total: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let ingest_frames_total = IntCounterVec::new(
            Opts::new(
                "bizra_ingest_frames_total",
                "Market-data frames accepted, by stream kind",
            ),
            &["stream"],
        )?;
        let ingest_rejected_total = IntCounterVec::new(
            Opts::new(
                "bizra_ingest_rejected_total",
                "Market-data frames rejected, by reason code",
            ),
            &["reason"],
        )?;
        let feed_clock_skew_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "bizra_feed_clock_skew_seconds",
                "Local receive time minus exchange event time of trades (live clock)",
            )
            .buckets(vec![
                -1.0, -0.1, -0.01, 0.0, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let feed_depth_sync_total = IntCounterVec::new(
            Opts::new(
                "bizra_feed_depth_sync_total",
                "Local order book sync events: gap, crossed, snapshot_loaded, snapshot_failed",
            ),
            &["event"],
        )?;
        let feed_book_in_sync = prometheus::IntGaugeVec::new(
            Opts::new(
                "bizra_feed_book_in_sync",
                "1 while the symbol's local order book is in step with the exchange",
            ),
            &["symbol"],
        )?;
        let elf_requests_total = IntCounterVec::new(
            Opts::new("elf_requests_total", "Requests evaluated by each ELF layer"),
            &["layer"],
        )?;
        let elf_blocks_total = IntCounterVec::new(
            Opts::new(
                "elf_blocks_total",
                "Actions refused or held, by layer and reason code",
            ),
            &["layer", "reason"],
        )?;
        let buckets = vec![
            1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 1e-3, 1e-2,
        ];
        let elf_latency_seconds = HistogramVec::new(
            HistogramOpts::new(
                "elf_latency_seconds",
                "ELF latency per layer: L0, L1, L2, L3, L0_L3 (the decision), L4 (signing)",
            )
            .buckets(buckets),
            &["layer"],
        )?;
        let elf_decision_cache_total = IntCounterVec::new(
            Opts::new(
                "elf_decision_cache_total",
                "L3 rule outcomes served from the decision cache (hit) or evaluated (miss)",
            ),
            &["result"],
        )?;
        let elf_shadow_decisions_total = IntCounterVec::new(
            Opts::new(
                "elf_shadow_decisions_total",
                "Decisions also evaluated with the candidate rule set, by divergence",
            ),
            &["diverged"],
        )?;
        let elf_rules_reloads_total = IntCounterVec::new(
            Opts::new(
                "elf_rules_reloads_total",
                "Run-time rule reloads, by outcome",
            ),
            &["outcome"],
        )?;
        let events_published_total = IntCounterVec::new(
            Opts::new(
                "bizra_events_published_total",
                "Signed events handed to the sink",
            ),
            &["sink"],
        )?;
        let spool_bytes = prometheus::IntGauge::new(
            "bizra_spool_bytes",
            "Bytes in the Kafka write-ahead spool (records not yet acknowledged, and their segments)",
        )?;
        let spool_full_waits_total = prometheus::IntCounter::new(
            "bizra_spool_full_waits_total",
            "Times a record waited for room in a full spool (backpressure)",
        )?;
        let kafka_delivery_errors_total = prometheus::IntCounter::new(
            "bizra_kafka_delivery_errors_total",
            "Failed Kafka deliveries; the records stay in the spool and are sent again",
        )?;
        let kafka_acked_total = prometheus::IntCounter::new(
            "bizra_kafka_acked_total",
            "Records acknowledged by the Kafka brokers",
        )?;
        let kafka_acked_records_lost_total = prometheus::IntCounter::new(
            "bizra_kafka_acked_records_lost_total",
            "Records the broker acknowledged and later did not hold (found by reading back), sent again or not",
        )?;
        let kafka_acked_records_unrecoverable_total = prometheus::IntCounter::new(
            "bizra_kafka_acked_records_unrecoverable_total",
            "Acknowledged records the broker lost after they left the retained spool: holes in the topic",
        )?;
        let tick_to_ack_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "bizra_tick_to_ack_seconds",
                "From the arrival of a market event to the broker's acknowledgement of the signed decisions it caused",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
        )?;
        registry.register(Box::new(tick_to_ack_seconds.clone()))?;
        let tick_to_signed_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "bizra_tick_to_signed_seconds",
                "From the arrival of the market event that closed a bar to its decision signed and handed to the publisher",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )?;
        registry.register(Box::new(tick_to_signed_seconds.clone()))?;
        registry.register(Box::new(spool_bytes.clone()))?;
        registry.register(Box::new(spool_full_waits_total.clone()))?;
        registry.register(Box::new(kafka_delivery_errors_total.clone()))?;
        registry.register(Box::new(kafka_acked_total.clone()))?;
        registry.register(Box::new(kafka_acked_records_lost_total.clone()))?;
        registry.register(Box::new(kafka_acked_records_unrecoverable_total.clone()))?;
        registry.register(Box::new(ingest_frames_total.clone()))?;
        registry.register(Box::new(ingest_rejected_total.clone()))?;
        registry.register(Box::new(feed_clock_skew_seconds.clone()))?;
        registry.register(Box::new(feed_depth_sync_total.clone()))?;
        registry.register(Box::new(feed_book_in_sync.clone()))?;
        registry.register(Box::new(elf_requests_total.clone()))?;
        registry.register(Box::new(elf_blocks_total.clone()))?;
        registry.register(Box::new(elf_latency_seconds.clone()))?;
        registry.register(Box::new(elf_decision_cache_total.clone()))?;
        registry.register(Box::new(elf_shadow_decisions_total.clone()))?;
        registry.register(Box::new(elf_rules_reloads_total.clone()))?;
        registry.register(Box::new(events_published_total.clone()))?;
        let recording_errors_total = prometheus::IntCounter::new(
            "bizra_recording_errors_total",
            "Input recordings stopped by a write error (audit-replay cannot re-derive past it)",
        )?;
        registry.register(Box::new(recording_errors_total.clone()))?;
        let control_requests_total = IntCounterVec::new(
            Opts::new(
                "bizra_control_requests_total",
                "Control-plane requests, by outcome and reason code (NONE when accepted)",
            ),
            &["outcome", "reason"],
        )?;
        registry.register(Box::new(control_requests_total.clone()))?;
        let input_limit_breaches_total = IntCounterVec::new(
            Opts::new(
                "bizra_input_limit_breaches_total",
                "Inputs refused or connections cut for breaking a configured limit, by limit",
            ),
            &["limit"],
        )?;
        registry.register(Box::new(input_limit_breaches_total.clone()))?;
        Ok(Self {
            control_requests_total,
            input_limit_breaches_total,
            health: HealthMetrics::new(&registry)?,
            risk: RiskMetrics::new(&registry)?,
            optimizer: OptimizerMetrics::new(&registry)?,
            roles: RoleMetrics::new(&registry)?,
            registry,
            recording_errors_total,
            ingest_frames_total,
            ingest_rejected_total,
            feed_clock_skew_seconds,
            feed_depth_sync_total,
            feed_book_in_sync,
            elf_requests_total,
            elf_blocks_total,
            elf_latency_seconds,
            elf_decision_cache_total,
            elf_shadow_decisions_total,
            elf_rules_reloads_total,
            events_published_total,
            spool_bytes,
            spool_full_waits_total,
            kafka_delivery_errors_total,
            kafka_acked_total,
            kafka_acked_records_lost_total,
            kafka_acked_records_unrecoverable_total,
            tick_to_ack_seconds,
            tick_to_signed_seconds,
        })
    }

    /// The cumulative gate counters the optimizer's watch samples.
    pub fn live_sample(&self) -> crate::optimizer::LiveSample {
        let decide = self.elf_latency_seconds.with_label_values(&["L0_L3"]);
        let sign = self.elf_latency_seconds.with_label_values(&["L4"]);
        crate::optimizer::LiveSample {
            decisions: decide.get_sample_count(),
            decide_sum_s: decide.get_sample_sum(),
            gate_sum_s: decide.get_sample_sum() + sign.get_sample_sum(),
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// A gate decision: requests per layer reached, refusals by reason, cache and shadow
    /// outcomes, and the layer latencies (`decided`: L0-L3, `total`: with L4).
    pub fn observe_decision(
        &self,
        decision: &crate::elf::Decision,
        decided: std::time::Duration,
        total: std::time::Duration,
    ) {
        use crate::elf::Layer;
        // A request reaches each layer up to the one that stopped it.
        let reached = match decision.layer {
            Some(Layer::L0) => 1,
            Some(Layer::L1) => 2,
            _ => 4,
        };
        for l in &[Layer::L0, Layer::L1, Layer::L2, Layer::L3][..reached] {
            self.elf_requests_total
                .with_label_values(&[l.as_str()])
                .inc();
        }
        self.elf_requests_total
            .with_label_values(&[Layer::L4.as_str()])
            .inc();
        // Refusals count at their own layer.
        for r in decision.refusals() {
            self.elf_blocks_total
                .with_label_values(&[r.layer().as_str(), r.as_str()])
                .inc();
        }
        self.elf_latency_seconds
            .with_label_values(&["L0_L3"])
            .observe(decided.as_secs_f64());
        if let Some(ns) = decision.layer_ns {
            for (layer, ns) in ["L0", "L1", "L2", "L3"].iter().zip(ns) {
                self.elf_latency_seconds
                    .with_label_values(&[layer])
                    .observe(ns as f64 * 1e-9);
            }
        }
        if let Some(hit) = decision.cache_hit() {
            let result = if hit { "hit" } else { "miss" };
            self.elf_decision_cache_total
                .with_label_values(&[result])
                .inc();
        }
        if let Some(s) = &decision.shadow {
            self.elf_shadow_decisions_total
                .with_label_values(&[if s.diverged { "true" } else { "false" }])
                .inc();
        }
        self.elf_latency_seconds
            .with_label_values(&["L4"])
            .observe(total.saturating_sub(decided).as_secs_f64());
    }
}
