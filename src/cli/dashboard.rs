//! `bizra-risk dashboard --events DIR`: the risk dashboard over a finished run's signed
//! files (its `var_snapshots/`), served until interrupted.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use bizra_risk::http::{self, DashboardHub, HttpState};
use bizra_risk::metrics::Metrics;

pub fn run(events: &Path, bind: &str) -> anyhow::Result<ExitCode> {
    let hub = Arc::new(DashboardHub::default());
    let n = hub
        .load_dir(events)
        .with_context(|| format!("read {}/var_snapshots", events.display()))?;
    let metrics = Arc::new(Metrics::new().map_err(|e| anyhow::anyhow!("metrics: {e}"))?);
    let symbols = Vec::new();
    actix_web::rt::System::new().block_on(async move {
        let state = HttpState {
            metrics,
            hub,
            symbols,
            stale_after_s: f64::INFINITY,
            live: false,
            control: None,
        };
        let limits = http::Limits::from_config(&bizra_risk::config::Config::embedded()?.http);
        let running = http::start(bind, limits, state)?;
        writeln!(
            std::io::stdout().lock(),
            "dashboard of {n} snapshots from {}: http://{}/",
            events.display(),
            running.addr
        )?;
        tokio::signal::ctrl_c().await?;
        running.stop().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
