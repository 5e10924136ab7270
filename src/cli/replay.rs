//! `bizra-risk replay`: a capture through the engine core in one process, without sockets,
//! as fast as the core goes, writing the same signed output as the socket pipeline; the
//! summary (or `--json` report) gives the engine's own throughput.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use bizra_risk::audit::keys;
use bizra_risk::replay::{self, ReplayOptions, Speed};
use bizra_risk::report;

use super::captures::expand_capture_paths;
use super::demo::output_config;

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Capture files or directories to stream.
    #[arg(long = "data", required = true)]
    pub data: Vec<PathBuf>,
    /// Capture files or directories served as klines history (warm start).
    #[arg(long)]
    pub history: Vec<PathBuf>,
    /// Configuration file layered over the embedded defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output directory: events/, state/ and the signing key; an existing trail there
    /// is continued.
    #[arg(long, default_value = "out/replay")]
    pub out: PathBuf,
    /// Signing key (created in --out when absent).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Print a JSON report instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// The `--json` report.
#[derive(serde::Serialize)]
struct Report<'a> {
    out: String,
    market_frames: u64,
    signed_events: u64,
    verified: bool,
    verify_failures: usize,
    throughput: &'a replay::in_process::Throughput,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let files = expand_capture_paths(&args.data)?;
    let history = if args.history.is_empty() {
        Vec::new()
    } else {
        expand_capture_paths(&args.history)?
    };
    // An existing trail in `out` is continued, as `run` continues its chains.
    let config = output_config(&args.out, args.config.as_deref(), args.key, false)?;
    config.validate()?;
    let mut opts = ReplayOptions::new(files, Speed::Max);
    opts.history = history;
    let (summary, throughput) = replay::in_process::run(config.clone(), &opts)?;
    let vk = keys::parse_verifying_key(&summary.verifying_key_hex).map_err(anyhow::Error::msg)?;
    std::fs::write(args.out.join("verifying.key"), &summary.verifying_key_hex)?;
    let verify = report::verify_path(&config.sink.dir, &[vk])?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let report = Report {
            out: config.sink.dir.display().to_string(),
            market_frames: summary.ingest.frames,
            signed_events: throughput.decisions,
            verified: verify.ok(),
            verify_failures: verify.failures.len(),
            throughput: &throughput,
        };
        writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(
            stdout,
            "{}",
            report::render_summary(&summary, Some(&verify), summary.ingest.elapsed)
        )?;
        write!(stdout, "{}", report::render_throughput(&throughput))?;
    }
    Ok(if verify.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
