//! `bizra-risk demo`: the bundled capture through the whole engine, signed to local files,
//! verified and summarised; over a loopback replay server (the socket pipeline) or, with
//! `--in-process`, through the in-process replay host. Both write the same bytes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use bizra_risk::audit::keys;
use bizra_risk::config::{ClockMode, Config, OnServerClose};
use bizra_risk::replay::{self, ReplayOptions, Speed};
use bizra_risk::report;

use super::captures::{default_data_dir, expand_capture_paths, split_history};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Output directory (events, key); emptied of earlier events first.
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Capture directory (default: the bundled data/binance).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Replay speed: max, or a factor of real time (1, 10x).
    #[arg(long, default_value = "max")]
    pub speed: Speed,
    /// Optional configuration file layered over the embedded defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Signing key (created in --out when absent).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Stream every capture file instead of serving the first day as klines history
    /// (the models then warm up live).
    #[arg(long)]
    pub no_history: bool,
    /// Run the capture through the engine core in this process, without sockets (the
    /// signed output is the same, byte for byte).
    #[arg(long)]
    pub in_process: bool,
    /// Serve /metrics, /healthz, /readyz and the dashboard at this address while the
    /// socket pipeline runs (e.g. 127.0.0.1:9464).
    #[arg(long, conflicts_with = "in_process")]
    pub http: Option<String>,
}

/// The configuration of a run that writes into `out`: `events/` (emptied first when
/// `fresh`), `state/`, and the signing key (`key`, else `out/signing.key`, created when
/// absent). The clock is event time, so the output depends on the capture alone.
pub fn output_config(
    out: &Path,
    config: Option<&Path>,
    key: Option<PathBuf>,
    fresh: bool,
) -> anyhow::Result<Config> {
    let events_dir = out.join("events");
    let state_dir = out.join("state");
    if fresh {
        for dir in [&events_dir, &state_dir] {
            if dir.exists() {
                std::fs::remove_dir_all(dir).with_context(|| format!("clear {}", dir.display()))?;
            }
        }
    }
    let key_file = key.unwrap_or_else(|| out.join("signing.key"));
    if !key_file.exists() {
        keys::write_new(&key_file, &keys::generate()?)?;
    }
    let mut config = Config::load(config)?;
    // A capture ends: the run ends with it.
    config.feed.on_server_close = OnServerClose::Stop;
    // The capture is replayed as fast as the engine reads: no exchange-rate flood limit.
    config.feed.max_messages_per_s = 0;
    config.engine.clock = ClockMode::EventTime;
    config.http.bind.clear();
    config.signing.key_file = key_file;
    config.sink.dir = events_dir;
    config.signing.heads_file = state_dir.join("chain_heads.json");
    config.var.snapshot.dir = state_dir;
    if !Path::new(&config.elf.rules_file).exists() {
        config.elf.rules_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.yaml");
    }
    if config.kafka_enabled() {
        bail!("this command writes to files; unset BIZRA_KAFKA__BROKERS or use `run`")
    }
    Ok(config)
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let wall = Instant::now();
    let data = args.data.unwrap_or_else(default_data_dir);
    let files = expand_capture_paths(&[data])?;
    let (history, files) = if args.no_history {
        (Vec::new(), files)
    } else {
        split_history(&files)
    };
    let mut config = output_config(&args.out, args.config.as_deref(), args.key, true)?;
    let mut opts = ReplayOptions::new(files, args.speed);
    opts.history = history;
    let (summary, throughput) = if args.in_process {
        config.validate()?;
        let (summary, throughput) = replay::in_process::run(config.clone(), &opts)?;
        (summary, Some(throughput))
    } else {
        let server = replay::spawn_in_thread("127.0.0.1:0".parse()?, opts)?;
        config.feed.url = server.url();
        if let Some(bind) = &args.http {
            config.http.bind = bind.clone();
        }
        config.validate()?;
        let summary = super::run::run_pipeline(config.clone(), false)?;
        drop(server);
        (summary, None)
    };
    let vk = keys::parse_verifying_key(&summary.verifying_key_hex).map_err(anyhow::Error::msg)?;
    std::fs::write(args.out.join("verifying.key"), &summary.verifying_key_hex)?;
    let verify = report::verify_path(&config.sink.dir, &[vk])?;
    let mut stdout = std::io::stdout().lock();
    write!(
        stdout,
        "{}",
        report::render_summary(&summary, Some(&verify), wall.elapsed())
    )?;
    if let Some(t) = &throughput {
        write!(stdout, "{}", report::render_throughput(t))?;
    }
    writeln!(
        stdout,
        "signed events: {}/  (verify again: bizra-risk verify {} --pubkey-file {})",
        config.sink.dir.display(),
        config.sink.dir.display(),
        args.out.join("verifying.key").display()
    )?;
    if config.sink.record_inputs && !args.in_process {
        writeln!(
            stdout,
            "input recording: {}/recording/  (re-derive every decision: bizra-risk audit-replay --trail {})",
            config.sink.dir.display(),
            config.sink.dir.display()
        )?;
    }
    Ok(if verify.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
