//! The `ingest` role: the single process's ingest (one `IngestActor` per connection shard,
//! each driving its `FeedStep`) with its ticks going to `roles.market_topic` instead of the
//! symbol actors. Before the first trade it publishes each symbol's warm-start history
//! (`START`) and, with the portfolio on, every symbol's history to the bars topic
//! (`PORTFOLIO_START`), so that whoever owns a partition starts its models from what the
//! topic says, not from whatever REST answers at hand-over time.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::output::{OutKind, Output};
use super::records::{BarRecord, MarketRecord};
use super::RoleError;
use crate::actors::ingest::{run_shards, IngestReport, TickRoute};
use crate::actors::symbol::Tick;
use crate::actors::threads::RunThreads;
use crate::actors::PipelineError;
use crate::config::Config;
use crate::market::MarketEvent;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::sink::KafkaEndpoint;

const ROLE: &str = "ingest";

/// Publishes each trade tick to the market topic (quotes and depth stay in ingest, where
/// they decide the feed's health, which every trade record carries).
struct TickPublisher {
    output: Arc<Output>,
    metrics: Arc<Metrics>,
}

impl Actor for TickPublisher {
    type Context = Context<Self>;
}

impl Handler<Tick> for TickPublisher {
    type Result = Result<(), PipelineError>;

    fn handle(&mut self, tick: Tick, _: &mut Self::Context) -> Self::Result {
        let MarketEvent::Trade(trade) = &tick.event else {
            return Ok(());
        };
        let record = MarketRecord::trade(trade, tick.received_at_ms, tick.feed_healthy, tick.input);
        self.output
            .market(&trade.symbol, &record.to_json())
            .and_then(|_| self.output.poll())
            .map_err(|e| PipelineError::Stage(e.to_string()))?;
        self.metrics
            .roles
            .published_total
            .with_label_values(&[ROLE, OutKind::Market.as_str()])
            .inc();
        Ok(())
    }
}

/// Publish the warm-start history, then run ingest until its input ends or `shutdown`;
/// everything produced is acknowledged before it returns.
pub async fn run(
    config: &Config,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> Result<IngestReport, RoleError> {
    if !config.kafka_enabled() {
        return Err(RoleError::NoBrokers);
    }
    let endpoint = KafkaEndpoint::from_config(&config.kafka)?;
    super::ensure_topics(config, &endpoint).await?;
    let output = Arc::new(Output::new(config, &endpoint)?);
    let timeout = Duration::from_millis(config.kafka.request_timeout_ms);

    let roots = crate::market::tls::load(&config.feed.ca_file)
        .map_err(crate::assemble::StartError::from)?;
    let start_config = config.clone();
    let now_ms = crate::clock::system_now_ms();
    let start_roots = roots.clone();
    let (start, _, _) = tokio::task::spawn_blocking(move || {
        crate::warm_start::load(&start_config, now_ms, start_roots)
    })
    .await
    .map_err(|e| RoleError::Kafka(format!("warm start: {e}")))?;
    let symbols = config.symbols();
    if config.portfolio.enabled {
        output.bar(
            crate::PORTFOLIO_CHAIN,
            &BarRecord::portfolio_start(&start.portfolio.klines).to_json(),
        )?;
    }
    for (symbol, s) in symbols.iter().zip(&start.symbols) {
        output.market(symbol, &MarketRecord::start(symbol, &s.klines).to_json())?;
    }
    flush(&output, timeout).await?;
    tracing::info!(symbols = symbols.len(), "warm-start history published");

    let publisher = TickPublisher {
        output: output.clone(),
        metrics: metrics.clone(),
    }
    .start()
    .recipient::<Tick>();
    let publisher = TickRoute::Handler(publisher);
    let report = run_shards(
        config,
        |_| Some(publisher.clone()),
        |_| None,
        // Every tick goes to the one publisher: its connections stay on its thread.
        &RunThreads::none(),
        &metrics,
        &shutdown,
        &roots,
    )
    .await?;
    flush(&output, timeout).await?;
    Ok(report)
}

async fn flush(output: &Arc<Output>, timeout: Duration) -> Result<(), RoleError> {
    let output = output.clone();
    tokio::task::spawn_blocking(move || output.flush(timeout))
        .await
        .map_err(|e| RoleError::Kafka(format!("flush: {e}")))?
}
