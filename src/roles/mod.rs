//! The Kafka roles: the same engine steps as the single process, hosted so that the work
//! spreads over machines with Kafka's own partitions and consumer groups
//! (`docs/scale-out.md`).
//!
//! - `ingest` ([`ingest`]): the feed steps over Binance WebSockets, publishing each
//!   symbol's warm-start history and validated trades to `roles.market_topic`, keyed by
//!   symbol.
//! - `risk` ([`risk`]): a consumer group over that topic; symbol and gate steps for the
//!   symbols of the owned partitions.
//! - `portfolio` ([`portfolio`]): the portfolio and its gate over the bars the risk workers
//!   publish.
//!
//! Hand-over is decided by the pure [`handover`]; records are in [`records`].

pub mod handover;
pub mod ingest;
mod member;
mod output;
mod portfolio;
pub mod records;
mod risk;
mod worker;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::assemble::StartError;
use crate::config::Config;
use crate::engine::EngineError;
use crate::metrics::Metrics;
use crate::sink::{KafkaEndpoint, SinkError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Ingest,
    Risk,
    Portfolio,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Risk => "risk",
            Self::Portfolio => "portfolio",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("the roles need Kafka: set kafka.brokers")]
    NoBrokers,
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("a delivery failed: {0}; stopping (the next owner re-derives what is missing)")]
    Delivery(String),
    #[error(
        "{0} has more than one partition: the portfolio aligns every symbol's bars, so its \
         input must be one partition"
    )]
    BarsPartitions(String),
    #[error(transparent)]
    Handover(#[from] handover::HandoverError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    #[error(transparent)]
    Pipeline(#[from] crate::actors::PipelineError),
}

/// Every topic the roles read or write, created when missing (`kafka.create_topics`): the
/// market topic with `roles.market_partitions`, the bars topic with one partition, the
/// output topics with `kafka.topic_partitions`.
pub async fn ensure_topics(config: &Config, endpoint: &KafkaEndpoint) -> Result<(), RoleError> {
    let k = &config.kafka;
    if !k.create_topics {
        return Ok(());
    }
    let timeout = Duration::from_millis(k.request_timeout_ms);
    let r = &config.roles;
    // A new owner re-derives from the first record: the inputs keep their whole history.
    let keep = [
        ("retention.ms", "-1"),
        ("cleanup.policy", "delete"),
        ("max.message.bytes", "4194304"),
    ];
    let inputs = [(&r.market_topic, r.market_partitions), (&r.bars_topic, 1)];
    for (topic, partitions) in inputs {
        crate::sink::ensure_topics_with(
            endpoint,
            &[topic],
            partitions,
            k.replication_factor,
            &keep,
            timeout,
        )
        .await?;
    }
    crate::sink::ensure_topics(
        endpoint,
        &[
            &k.topic_decisions,
            &k.topic_checkpoints,
            &k.topic_var_snapshots,
        ],
        k.topic_partitions,
        k.replication_factor,
        timeout,
    )
    .await?;
    Ok(())
}

/// Run a consuming role (`risk` or `portfolio`) until `stop` is set: join the group, own
/// what it assigns, and on the way out flush, commit and leave.
pub fn run_worker(
    role: Role,
    config: &Config,
    metrics: Arc<Metrics>,
    stop: &AtomicBool,
) -> Result<(), RoleError> {
    if !config.kafka_enabled() {
        return Err(RoleError::NoBrokers);
    }
    let endpoint = KafkaEndpoint::from_config(&config.kafka)?;
    let timeout = Duration::from_millis(config.kafka.request_timeout_ms);
    let output = Arc::new(output::Output::new(config, &endpoint)?);
    let (group, topic) = match role {
        Role::Portfolio => (&config.roles.portfolio_group, &config.roles.bars_topic),
        _ => (&config.roles.risk_group, &config.roles.market_topic),
    };
    let member = member::Member::join(
        &endpoint,
        (group, &config.roles.group_instance_id),
        topic,
        (
            config.roles.session_timeout_ms,
            config.roles.max_poll_interval_ms,
            config.roles.commit_interval_ms,
        ),
        output.clone(),
        timeout,
    )?;
    if role == Role::Portfolio && member.partition_count()? > 1 {
        return Err(RoleError::BarsPartitions(topic.clone()));
    }
    let host = worker::Host {
        role: role.as_str(),
        member,
        output,
        metrics,
        endpoint,
        topics: [
            config.kafka.topic_decisions.clone(),
            config.kafka.topic_checkpoints.clone(),
        ],
        timeout,
    };
    let interval = Duration::from_millis(config.roles.commit_interval_ms);
    tracing::info!(role = role.as_str(), %group, %topic, "joining the group");
    match role {
        Role::Portfolio => worker::run(
            &host,
            &mut portfolio::PortfolioOwner::new(config)?,
            interval,
            stop,
        ),
        _ => worker::run(&host, &mut risk::RiskOwner::new(config)?, interval, stop),
    }
}
