//! The Kafka roles' metrics (`bizra_role_*`): what a worker owns, how far behind its input
//! it is, its rebalances and hand-overs, and the records it took, refused or re-derived.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

pub struct RoleMetrics {
    pub owned_partitions: IntGaugeVec,
    pub consumer_lag: IntGaugeVec,
    pub rebalances_total: IntCounterVec,
    pub records_total: IntCounterVec,
    pub published_total: IntCounterVec,
    pub suppressed_total: IntCounterVec,
    pub restore_seconds: HistogramVec,
    pub catch_up_seconds: HistogramVec,
}

impl RoleMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let owned_partitions = IntGaugeVec::new(
            Opts::new(
                "bizra_role_owned_partitions",
                "Input partitions this worker owns, by role",
            ),
            &["role"],
        )?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "bizra_role_consumer_lag",
                "Records of an owned input partition not yet consumed (high watermark minus position), by role and partition",
            ),
            &["role", "partition"],
        )?;
        let rebalances_total = IntCounterVec::new(
            Opts::new(
                "bizra_role_rebalances_total",
                "Partitions assigned to or revoked from this worker, by role and kind (ASSIGNED, REVOKED)",
            ),
            &["role", "kind"],
        )?;
        let records_total = IntCounterVec::new(
            Opts::new(
                "bizra_role_records_total",
                "Input records by role and outcome (TAKEN, DUPLICATE, or the refusal code)",
            ),
            &["role", "outcome"],
        )?;
        let published_total = IntCounterVec::new(
            Opts::new(
                "bizra_role_published_total",
                "Records a worker produced, by role and kind (EVENT, CHECKPOINT, VAR_SNAPSHOT, BAR, MARKET)",
            ),
            &["role", "kind"],
        )?;
        let suppressed_total = IntCounterVec::new(
            Opts::new(
                "bizra_role_suppressed_total",
                "Signed records re-derived after a hand-over that the output topics already held (not published again), by role",
            ),
            &["role"],
        )?;
        let restore_seconds = HistogramVec::new(
            HistogramOpts::new(
                "bizra_role_restore_seconds",
                "Reading the owned chains' published heads at an assignment, by role",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["role"],
        )?;
        let catch_up_seconds = HistogramVec::new(
            HistogramOpts::new(
                "bizra_role_catch_up_seconds",
                "Assignment to the end of the re-derivation of a partition (its position reached the high watermark seen at assignment), by role",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
            &["role"],
        )?;
        for m in [
            Box::new(owned_partitions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(consumer_lag.clone()),
            Box::new(rebalances_total.clone()),
            Box::new(records_total.clone()),
            Box::new(published_total.clone()),
            Box::new(suppressed_total.clone()),
            Box::new(restore_seconds.clone()),
            Box::new(catch_up_seconds.clone()),
        ] {
            registry.register(m)?;
        }
        Ok(Self {
            owned_partitions,
            consumer_lag,
            rebalances_total,
            records_total,
            published_total,
            suppressed_total,
            restore_seconds,
            catch_up_seconds,
        })
    }
}
