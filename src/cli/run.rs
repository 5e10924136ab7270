//! `bizra-risk run`: the engine on a configuration file until its input ends or a signal
//! stops it; with files, the trail is verified at the end.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bizra_risk::audit::keys;
use bizra_risk::config::Config;
use bizra_risk::elf::KillSwitch;
use bizra_risk::metrics::Metrics;
use bizra_risk::{pipeline, report, shutdown};

pub fn run(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config.as_deref())?;
    let summary = run_pipeline(config.clone(), true)?;
    let verify = if config.kafka_enabled() {
        None
    } else {
        let mut trusted =
            vec![keys::parse_verifying_key(&summary.verifying_key_hex)
                .map_err(anyhow::Error::msg)?];
        if !config.signing.previous_key_file.as_os_str().is_empty() {
            trusted
                .push(keys::load_signing_key(&config.signing.previous_key_file)?.verifying_key());
        }
        Some(report::verify_path(&config.sink.dir, &trusted)?)
    };
    let mut out = std::io::stdout().lock();
    let text = report::render_summary(&summary, verify.as_ref(), summary.ingest.elapsed);
    write!(out, "{text}")?;
    let whole = summary.acked_records_unrecoverable.is_empty();
    Ok(if whole && verify.is_none_or(|v| v.ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Run the pipeline until its input ends, or until SIGTERM/SIGINT when `signals` is set.
pub fn run_pipeline(config: Config, signals: bool) -> anyhow::Result<pipeline::RunSummary> {
    let metrics = Arc::new(Metrics::new().map_err(|e| anyhow::anyhow!("metrics: {e}"))?);
    let system = actix::System::new();
    let deadline = Duration::from_millis(config.engine.shutdown_timeout_ms);
    system.block_on(async move {
        let shutdown = if signals {
            let (trigger, shutdown) = shutdown::channel();
            shutdown::install_signal_handlers(trigger, deadline);
            shutdown
        } else {
            shutdown::Shutdown::never()
        };
        pipeline::run(config, KillSwitch::default(), metrics, shutdown).await
    })
}
