//! `bizra-risk role <ingest|risk|portfolio>`: one role of the engine split over machines on
//! Kafka (`docs/scale-out.md`). Every worker of a deployment runs the same configuration
//! and signing key; `/metrics` and `/healthz` are served on `http.bind` (the control plane
//! and dashboard stay with the single process).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bizra_risk::config::Config;
use bizra_risk::metrics::Metrics;
use bizra_risk::roles::{self, Role};
use bizra_risk::shutdown;

#[derive(clap::Args)]
pub struct RoleArgs {
    /// Which role this process plays.
    #[arg(value_enum)]
    pub role: Role,
    /// Configuration file layered over the embedded defaults (and BIZRA_* variables).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

pub fn run(args: RoleArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let metrics = Arc::new(Metrics::new().map_err(|e| anyhow::anyhow!("metrics: {e}"))?);
    let deadline = Duration::from_millis(config.engine.shutdown_timeout_ms);
    let system = actix::System::new();
    system.block_on(async move {
        let (trigger, mut stopping) = shutdown::channel();
        shutdown::install_signal_handlers(trigger, deadline);
        let http = serve_metrics(&config, &metrics)?;
        let result = match args.role {
            Role::Ingest => {
                let report = roles::ingest::run(&config, metrics.clone(), stopping).await?;
                tracing::info!(frames = report.frames, "ingest finished");
                Ok(())
            }
            role => {
                let endpoint = bizra_risk::sink::KafkaEndpoint::from_config(&config.kafka)?;
                roles::ensure_topics(&config, &endpoint).await?;
                let stop = Arc::new(AtomicBool::new(false));
                let flag = stop.clone();
                tokio::spawn(async move {
                    stopping.requested().await;
                    flag.store(true, Ordering::Relaxed);
                });
                let worker_config = config.clone();
                let worker_metrics = metrics.clone();
                tokio::task::spawn_blocking(move || {
                    roles::run_worker(role, &worker_config, worker_metrics, &stop)
                })
                .await
                .map_err(|e| anyhow::anyhow!("worker: {e}"))?
            }
        };
        if let Some(http) = http {
            http.stop().await;
        }
        result?;
        Ok(ExitCode::SUCCESS)
    })
}

fn serve_metrics(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Option<bizra_risk::http::Running>> {
    if config.http.bind.is_empty() {
        return Ok(None);
    }
    let state = bizra_risk::http::HttpState {
        metrics: metrics.clone(),
        hub: Arc::new(bizra_risk::http::DashboardHub::default()),
        symbols: Vec::new(),
        stale_after_s: config.feed.stale_after_ms as f64 / 1000.0,
        live: false,
        control: None,
    };
    let limits = bizra_risk::http::Limits::from_config(&config.http);
    Ok(Some(bizra_risk::http::start(
        &config.http.bind,
        limits,
        state,
    )?))
}
