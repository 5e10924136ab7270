use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use bizra_risk::audit::{keys, Verifier};
use bizra_risk::config::{ClockMode, Config, OnServerClose};
use bizra_risk::elf::KillSwitch;
use bizra_risk::market::capture::list_capture_files;
use bizra_risk::metrics::Metrics;
use bizra_risk::replay::{self, ReplayOptions, Speed};
use bizra_risk::sink::KafkaSource;
use bizra_risk::{pipeline, report};

#[derive(Parser)]
#[command(
    name = "bizra-risk",
    version,
    about = "Stream-processing risk engine: Binance ticks -> VaR/ES -> ELF gate -> signed events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay the bundled Binance capture through the whole pipeline, verify, summarise.
    Demo {
        /// Output directory (events, key); emptied of earlier events first.
        #[arg(long, default_value = "out/demo")]
        out: PathBuf,
        /// Capture directory (default: the bundled data/binance).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Replay speed: max, or a factor of real time (1, 10x).
        #[arg(long, default_value = "max")]
        speed: Speed,
        /// Optional configuration file layered over the embedded defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Signing key (created in --out when absent).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Run the engine with a configuration file (defaults + file + BIZRA_* environment).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Serve capture files over a Binance-compatible WebSocket.
    ReplayServer {
        #[arg(long, default_value = "127.0.0.1:9443")]
        bind: SocketAddr,
        /// Capture files or directories.
        #[arg(long = "data", required = true)]
        data: Vec<PathBuf>,
        #[arg(long, default_value = "1")]
        speed: Speed,
        #[arg(long, default_value_t = 20_000)]
        ping_interval_ms: u64,
        #[arg(long, default_value_t = 60_000)]
        pong_timeout_ms: u64,
    },
    /// Verify signed events in files/directories or a Kafka topic.
    Verify {
        /// Files or directories of *.jsonl records.
        paths: Vec<PathBuf>,
        /// Trusted verifying key (hex); repeatable.
        #[arg(long = "pubkey")]
        pubkeys: Vec<String>,
        /// File holding a trusted verifying key (hex); repeatable.
        #[arg(long = "pubkey-file")]
        pubkey_files: Vec<PathBuf>,
        #[arg(long)]
        kafka_brokers: Option<String>,
        #[arg(long)]
        topic: Option<String>,
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
        /// Machine-readable report.
        #[arg(long)]
        json: bool,
    },
    /// Create an Ed25519 signing key (mode 0600) and its public key (`<out>.pub`).
    Keygen {
        #[arg(long, default_value = "out/keys/signing.key")]
        out: PathBuf,
    },
}

fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Keygen { out } => {
            let sk = keys::generate()?;
            keys::write_new(&out, &sk)?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "secret key: {} (mode 0600)", out.display())?;
            writeln!(
                stdout,
                "verifying key: {}",
                hex::encode(sk.verifying_key().as_bytes())
            )?;
            writeln!(
                stdout,
                "public key file: {}",
                keys::public_path(&out).display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ReplayServer {
            bind,
            data,
            speed,
            ping_interval_ms,
            pong_timeout_ms,
        } => {
            init_logging("info");
            let files = expand_capture_paths(&data)?;
            let mut opts = ReplayOptions::new(files, speed);
            opts.ping_interval = Duration::from_millis(ping_interval_ms);
            opts.pong_timeout = Duration::from_millis(pong_timeout_ms);
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(bind)
                    .await
                    .with_context(|| format!("bind {bind}"))?;
                tracing::info!(addr = %listener.local_addr()?, "replay server listening");
                replay::serve(listener, opts).await;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            init_logging("info");
            let config = Config::load(config.as_deref())?;
            let summary = run_pipeline(config.clone())?;
            let verify = if config.kafka_enabled() {
                None
            } else {
                let vk = keys::parse_verifying_key(&summary.verifying_key_hex)
                    .map_err(anyhow::Error::msg)?;
                Some(report::verify_path(&config.sink.dir, &[vk])?)
            };
            let mut out = std::io::stdout().lock();
            let text = report::render_summary(&summary, verify.as_ref(), summary.ingest.elapsed);
            write!(out, "{text}")?;
            Ok(if verify.is_none_or(|v| v.ok()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Demo {
            out,
            data,
            speed,
            config,
            key,
        } => {
            init_logging("warn,bizra_risk::pipeline=info");
            demo(out, data, speed, config, key)
        }
        Command::Verify {
            paths,
            pubkeys,
            pubkey_files,
            kafka_brokers,
            topic,
            timeout_ms,
            json,
        } => {
            init_logging("warn");
            let mut trusted = Vec::new();
            for k in &pubkeys {
                trusted.push(
                    keys::parse_verifying_key(k)
                        .map_err(|e| anyhow::anyhow!("--pubkey {k}: {e}"))?,
                );
            }
            for f in &pubkey_files {
                let text =
                    std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
                trusted.push(
                    keys::parse_verifying_key(&text)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?,
                );
            }
            if trusted.is_empty() {
                bail!("give at least one trusted key with --pubkey or --pubkey-file");
            }
            let mut verifier = Verifier::new(&trusted);
            match (kafka_brokers, topic) {
                (Some(brokers), Some(topic)) => {
                    let source = KafkaSource::new(&brokers, &topic)?;
                    source.read_all(Duration::from_millis(timeout_ms), |pos, payload| {
                        verifier.push(pos, payload)
                    })?;
                }
                (None, None) => {}
                _ => bail!("--kafka-brokers and --topic go together"),
            }
            let mut report = verifier.finish();
            for p in &paths {
                let r = report::verify_path(p, &trusted)
                    .with_context(|| format!("read {}", p.display()))?;
                report.records += r.records;
                report.chains.extend(r.chains);
                report.failures.extend(r.failures);
            }
            let mut stdout = std::io::stdout().lock();
            if json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                write!(stdout, "{}", report::render_verify(&report))?;
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn expand_capture_paths(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(list_capture_files(p)?);
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        bail!("no capture files found in {paths:?}");
    }
    Ok(files)
}

fn run_pipeline(config: Config) -> anyhow::Result<pipeline::RunSummary> {
    let metrics = Arc::new(Metrics::new().map_err(|e| anyhow::anyhow!("metrics: {e}"))?);
    let system = actix::System::new();
    system.block_on(pipeline::run(config, KillSwitch::default(), metrics))
}

/// The bundled capture: `./data/binance`, else the one next to the crate sources.
fn default_data_dir() -> PathBuf {
    let local = Path::new("data/binance");
    if local.is_dir() {
        local.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/binance")
    }
}

fn demo(
    out: PathBuf,
    data: Option<PathBuf>,
    speed: Speed,
    config: Option<PathBuf>,
    key: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let wall = Instant::now();
    let data = data.unwrap_or_else(default_data_dir);
    let files = expand_capture_paths(&[data])?;
    let events_dir = out.join("events");
    if events_dir.exists() {
        std::fs::remove_dir_all(&events_dir)
            .with_context(|| format!("clear {}", events_dir.display()))?;
    }
    let key_file = key.unwrap_or_else(|| out.join("signing.key"));
    if !key_file.exists() {
        keys::write_new(&key_file, &keys::generate()?)?;
    }
    let server = replay::spawn_in_thread("127.0.0.1:0".parse()?, ReplayOptions::new(files, speed))?;

    let mut config = Config::load(config.as_deref())?;
    config.feed.url = server.url();
    config.feed.on_server_close = OnServerClose::Stop;
    config.engine.clock = ClockMode::EventTime;
    config.signing.key_file = key_file;
    config.sink.dir = events_dir.clone();
    if !Path::new(&config.elf.rules_file).exists() {
        config.elf.rules_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.yaml");
    }
    config.validate()?;
    let summary = if config.kafka_enabled() {
        bail!("demo writes to files; unset BIZRA_KAFKA__BROKERS or use `run`")
    } else {
        run_pipeline(config)?
    };
    drop(server);
    let vk = keys::parse_verifying_key(&summary.verifying_key_hex).map_err(anyhow::Error::msg)?;
    std::fs::write(out.join("verifying.key"), &summary.verifying_key_hex)?;
    let verify = report::verify_path(&events_dir, &[vk])?;
    let mut stdout = std::io::stdout().lock();
    write!(
        stdout,
        "{}",
        report::render_summary(&summary, Some(&verify), wall.elapsed())
    )?;
    writeln!(
        stdout,
        "signed events: {}/  (verify again: bizra-risk verify {} --pubkey-file {})",
        events_dir.display(),
        events_dir.display(),
        out.join("verifying.key").display()
    )?;
    Ok(if verify.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
