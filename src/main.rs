mod cli;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use bizra_risk::audit::{keys, wire, Verifier, VerifyOptions};
use bizra_risk::backtest::{
    self,
    models::ModelSpec,
    series::{read_series, SeriesFormat},
    BacktestSettings,
};
use bizra_risk::config::Config;
use bizra_risk::record::RecordOptions;
use bizra_risk::replay::{self, ReplayOptions, Speed};
use bizra_risk::report;
use bizra_risk::sink::{KafkaSource, StartAt};

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

/// The verifying keys an auditor or a desk trusts.
#[derive(clap::Args)]
struct TrustArgs {
    /// Trusted verifying key (hex); repeatable.
    #[arg(long = "pubkey")]
    pubkeys: Vec<String>,
    /// File holding a trusted verifying key (hex); repeatable.
    #[arg(long = "pubkey-file")]
    pubkey_files: Vec<PathBuf>,
}

/// Where to read signed events from Kafka.
#[derive(clap::Args)]
struct KafkaReadArgs {
    /// Bootstrap servers, comma-separated (with --topic: read from Kafka).
    #[arg(long)]
    kafka_brokers: Option<String>,
    /// Topic of signed events.
    #[arg(long)]
    topic: Option<String>,
    /// Start every partition at this offset; chains are then anchored at their first
    /// record read instead of at genesis.
    #[arg(long, conflicts_with = "from_time_ms")]
    from_offset: Option<i64>,
    /// Start at the first record at or after this time (ms since the Unix epoch).
    #[arg(long)]
    from_time_ms: Option<i64>,
    /// Timeout of each broker request.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
}

impl KafkaReadArgs {
    fn start(&self) -> StartAt {
        match (self.from_offset, self.from_time_ms) {
            (Some(o), _) => StartAt::Offset(o),
            (None, Some(t)) => StartAt::TimeMs(t),
            (None, None) => StartAt::Beginning,
        }
    }

    /// Brokers and topic, when reading from Kafka at all.
    fn source(&self) -> anyhow::Result<Option<(&str, &str)>> {
        match (&self.kafka_brokers, &self.topic) {
            (Some(b), Some(t)) => Ok(Some((b, t))),
            (None, None) => Ok(None),
            _ => bail!("--kafka-brokers and --topic go together"),
        }
    }
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
        /// Stream every capture file instead of serving the first day as klines history
        /// (the models then warm up live).
        #[arg(long)]
        no_history: bool,
        /// Run the capture through the engine core in this process, without sockets (the
        /// signed output is the same, byte for byte).
        #[arg(long)]
        in_process: bool,
        /// Serve /metrics, /healthz, /readyz and the dashboard at this address while the
        /// socket pipeline runs (e.g. 127.0.0.1:9464).
        #[arg(long, conflicts_with = "in_process")]
        http: Option<String>,
    },
    /// Serve the risk dashboard over a finished run's signed files.
    Dashboard {
        /// The run's events directory (with var_snapshots/).
        #[arg(long)]
        events: PathBuf,
        #[arg(long, default_value = "127.0.0.1:9464")]
        bind: String,
    },
    /// Run capture files through the engine core in one process, without sockets, as fast
    /// as the core goes; write the signed output and report the engine's own throughput.
    Replay {
        /// Capture files or directories to stream.
        #[arg(long = "data", required = true)]
        data: Vec<PathBuf>,
        /// Capture files or directories served as klines history (warm start).
        #[arg(long)]
        history: Vec<PathBuf>,
        /// Configuration file layered over the embedded defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output directory: events/, state/ and the signing key; an existing trail there
        /// is continued.
        #[arg(long, default_value = "out/replay")]
        out: PathBuf,
        /// Signing key (created in --out when absent).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Print a JSON report instead of the summary.
        #[arg(long)]
        json: bool,
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
        /// Captures of what happened before the stream, served by the REST endpoints
        /// (klines) only; repeatable.
        #[arg(long = "history")]
        history: Vec<PathBuf>,
        /// Fault injection: leave trades SYMBOL:FIRST-LAST out of the stream (REST still
        /// serves them); repeatable.
        #[arg(long = "skip-trades")]
        skip_trades: Vec<bizra_risk::replay::SkipTrades>,
        /// Fault injection: leave the Nth diff-depth update of SYMBOL (SYMBOL:N) out of
        /// each client's stream (REST snapshots still include it); repeatable.
        #[arg(long = "drop-depth")]
        drop_depth: Vec<bizra_risk::replay::DropDepth>,
        /// Fault injection: after the Nth trade of SYMBOL, stream COUNT (default 1)
        /// well-formed but impossible events, SYMBOL:N:POISON[:COUNT] with POISON one of
        /// huge-price, zero-qty, time-ahead, time-behind, id-jump, crossed-quote; repeatable.
        #[arg(long = "inject")]
        inject: Vec<bizra_risk::replay::Inject>,
    },
    /// Print decoded, verified events from a Kafka topic or files, one line each.
    Tail {
        /// Files or directories of *.jsonl records (instead of Kafka).
        paths: Vec<PathBuf>,
        #[command(flatten)]
        keys: TrustArgs,
        #[command(flatten)]
        kafka: KafkaReadArgs,
        /// Keep waiting for new events (Kafka).
        #[arg(long, short)]
        follow: bool,
        /// Only these symbols (repeatable).
        #[arg(long = "symbol")]
        symbols: Vec<String>,
        /// Only these verdicts: PASS, PASS_FLAGGED, REQUIRE_REVIEW, BLOCK (repeatable).
        #[arg(long = "verdict", value_parser = parse_verdict)]
        verdicts: Vec<bizra_risk::elf::Verdict>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Copy every checkpoint record not seen yet, from trail directories or the checkpoints
    /// topic, to the end of a witness file: the anchor an auditor keeps apart from the
    /// trail (`verify --anchor`). Run it apart from the engine.
    Witness {
        /// Trail directories or checkpoint files.
        paths: Vec<PathBuf>,
        #[command(flatten)]
        kafka: KafkaReadArgs,
        /// The witness file: created, then only appended to.
        #[arg(long)]
        out: PathBuf,
        /// Keep watching: the topic as records arrive, directories every --poll-ms.
        #[arg(long, short)]
        follow: bool,
        #[arg(long, default_value_t = 1000)]
        poll_ms: u64,
    },
    /// Verify signed events in files/directories or a Kafka topic.
    Verify {
        /// Files or directories of *.jsonl records.
        paths: Vec<PathBuf>,
        #[command(flatten)]
        keys: TrustArgs,
        #[command(flatten)]
        kafka: KafkaReadArgs,
        /// Topic of signed checkpoints, read before the events.
        #[arg(long)]
        checkpoint_topic: Option<String>,
        /// Check every signature on its own (RFC 8032 strict) and every event's canonical
        /// form, instead of batches.
        #[arg(long)]
        strict: bool,
        /// Skip byte-identical copies of a record (a producer's re-send after a crash)
        /// instead of failing on them; they are counted in the report.
        #[arg(long)]
        allow_duplicates: bool,
        /// After verifying, print the inclusion proof of event SEQ of --chain.
        #[arg(long, value_name = "SEQ", requires = "chain")]
        prove: Option<u64>,
        /// Chain of --prove.
        #[arg(long)]
        chain: Option<String>,
        /// Check an inclusion proof file (from --prove) instead of a trail.
        #[arg(long, value_name = "FILE", conflicts_with = "prove")]
        check_proof: Option<PathBuf>,
        /// Event SEQ of CHAIN must be in the trail with event hash HASH (an anchor kept
        /// apart from the trail); repeatable.
        #[arg(long, value_name = "CHAIN:SEQ:HASH")]
        expect_head: Vec<String>,
        /// A witness file of checkpoint records (`bizra-risk witness`): each chain must
        /// reach its newest checkpoint there; repeatable.
        #[arg(long, value_name = "FILE")]
        anchor: Vec<PathBuf>,
        /// Machine-readable report.
        #[arg(long)]
        json: bool,
        /// Also write the outcome as Prometheus text (bizra_chain_verify_failures,
        /// bizra_chain_verify_records, bizra_chain_verify_timestamp_seconds) to FILE, for a
        /// node exporter's textfile collector; replaced atomically.
        #[arg(long, value_name = "FILE")]
        metrics_file: Option<PathBuf>,
    },
    /// Backtest VaR / ES models side by side on a price series (Kupiec, Christoffersen,
    /// Basel traffic light, Acerbi-Szekely Z2).
    Backtest {
        /// Price series: CSV with date and close columns, Binance trades CSV, or a capture.
        series: PathBuf,
        #[arg(long, value_enum, default_value = "auto")]
        format: SeriesFormat,
        /// Bar length for trades and captures: e.g. 1s, 1m, 1h, 1d.
        #[arg(long, default_value = "1m")]
        bar: String,
        /// Date column of a generic CSV (default: date/datetime/time/timestamp).
        #[arg(long)]
        date_column: Option<String>,
        /// Close column of a generic CSV (default: adj close/close/price).
        #[arg(long)]
        close_column: Option<String>,
        /// Only rows whose label is >= this (e.g. 2014-01-01).
        #[arg(long)]
        from: Option<String>,
        /// Tail probabilities, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0.01,0.025,0.05")]
        alphas: Vec<f64>,
        /// Forgetting factors of the NIG models, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0.97,0.99,0.995")]
        nig_lambdas: Vec<f64>,
        #[arg(long, default_value_t = 0.94)]
        ewma_lambda: f64,
        #[arg(long, default_value_t = 250)]
        hs_window: usize,
        /// Machine-readable report.
        #[arg(long)]
        json: bool,
        /// Write every forecast to this CSV.
        #[arg(long)]
        forecasts: Option<PathBuf>,
    },
    /// The ELF gate in action: example PASS and BLOCK decisions with their reasons, then
    /// per-call latency percentiles of the decision, a bare signature and the full gate.
    ElfDemo {
        /// Measured calls per operation.
        #[arg(long, default_value_t = 200_000)]
        calls: u64,
        /// Rules file (default: config/rules.yaml).
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Record a Binance stream exactly as received (`<local_ns> <json>` lines, gzip,
    /// rotated by size and time) for later replay.
    Record {
        /// Stream endpoint (default: the live Binance endpoint).
        #[arg(long, default_value = "wss://stream.binance.com:9443")]
        url: String,
        #[arg(long, value_delimiter = ',', default_value = "BTCUSDT,ETHUSDT")]
        symbols: Vec<String>,
        #[arg(long, value_delimiter = ',', default_value = "trade,bookTicker")]
        streams: Vec<String>,
        #[arg(long, default_value = "out/record")]
        out: PathBuf,
        #[arg(long, default_value = "rec")]
        prefix: String,
        #[arg(long, default_value_t = 256)]
        rotate_mb: u64,
        #[arg(long, default_value_t = 60)]
        rotate_minutes: u64,
        /// Stop after this many seconds (default: when the server closes).
        #[arg(long)]
        duration_s: Option<u64>,
    },
    /// Convert a public Binance trades CSV into a capture the replay server can serve.
    ImportTrades {
        csv: PathBuf,
        #[arg(long)]
        symbol: String,
        /// Output capture (default: `<symbol>_<csv stem>.gz` next to the CSV).
        #[arg(long)]
        out: Option<PathBuf>,
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
            history,
            skip_trades,
            drop_depth,
            inject,
        } => {
            init_logging("info");
            let files = cli::captures::expand_capture_paths(&data)?;
            let mut opts = ReplayOptions::new(files, speed);
            opts.skip_trades = skip_trades;
            opts.drop_depth = drop_depth;
            opts.inject = inject;
            if !history.is_empty() {
                opts.history = cli::captures::expand_capture_paths(&history)?;
            }
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
            cli::run::run(config)
        }
        Command::Demo {
            out,
            data,
            speed,
            config,
            key,
            no_history,
            in_process,
            http,
        } => {
            init_logging("warn,bizra_risk::pipeline=info");
            cli::demo::run(cli::demo::DemoArgs {
                out,
                data,
                speed,
                config,
                key,
                no_history,
                in_process,
                http,
            })
        }
        Command::Dashboard { events, bind } => {
            init_logging("info");
            cli::dashboard::run(&events, &bind)
        }
        Command::Replay {
            data,
            history,
            config,
            out,
            key,
            json,
        } => {
            init_logging("warn");
            cli::replay::run(cli::replay::ReplayArgs {
                data,
                history,
                config,
                out,
                key,
                json,
            })
        }
        Command::Record {
            url,
            symbols,
            streams,
            out,
            prefix,
            rotate_mb,
            rotate_minutes,
            duration_s,
        } => {
            init_logging("info");
            let opts = RecordOptions {
                url: bizra_risk::actors::ingest::stream_url(&url, &symbols, &streams),
                dir: out,
                prefix,
                rotate_bytes: rotate_mb.max(1) * 1024 * 1024,
                rotate_after: Duration::from_secs(rotate_minutes.max(1) * 60),
                duration: duration_s.map(Duration::from_secs),
                connect_timeout: Duration::from_secs(10),
            };
            let rt = tokio::runtime::Runtime::new()?;
            let report = rt.block_on(bizra_risk::record::record(opts))?;
            let mut stdout = std::io::stdout().lock();
            writeln!(
                stdout,
                "recorded {} frames ({} bytes) into {} file(s), ended by {}",
                report.frames,
                report.bytes,
                report.files.len(),
                report.ended_by
            )?;
            for f in &report.files {
                writeln!(stdout, "  {}", f.display())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ImportTrades { csv, symbol, out } => {
            let out = out.unwrap_or_else(|| {
                let stem = csv
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default();
                csv.with_file_name(format!("{}_{stem}.gz", symbol.to_ascii_lowercase()))
            });
            let n = bizra_risk::record::import_trades_csv(&csv, &symbol, &out)?;
            writeln!(std::io::stdout().lock(), "{n} trades -> {}", out.display())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ElfDemo { calls, rules } => {
            let rules = match rules {
                Some(path) => Arc::new(bizra_risk::elf::RuleSet::load(&path)?),
                None => bizra_risk::elf_demo::default_rules()?,
            };
            let config = Config::embedded()?;
            let cases = bizra_risk::elf_demo::cases(&config, rules.clone());
            let latencies = bizra_risk::elf_demo::latencies(&config, rules, calls.max(100))?;
            let mut stdout = std::io::stdout().lock();
            write!(
                stdout,
                "{}",
                bizra_risk::elf_demo::render(&cases, &latencies)
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backtest {
            series,
            format,
            bar,
            date_column,
            close_column,
            from,
            alphas,
            nig_lambdas,
            ewma_lambda,
            hs_window,
            json,
            forecasts,
        } => {
            let bar_ms = parse_duration_ms(&bar)?;
            let mut prices = read_series(
                &series,
                format,
                bar_ms,
                date_column.as_deref(),
                close_column.as_deref(),
            )?;
            if let Some(from) = &from {
                let start = prices
                    .labels
                    .partition_point(|l| l.as_str() < from.as_str());
                prices.labels.drain(..start);
                prices.closes.drain(..start);
            }
            let returns = prices.log_returns();
            let labels = prices.labels.get(1..).unwrap_or_default();
            let mut settings = BacktestSettings {
                alphas,
                ..BacktestSettings::default()
            };
            settings
                .models
                .retain(|m| matches!(m, ModelSpec::Fhs { .. }));
            settings
                .models
                .extend(nig_lambdas.iter().map(|&lambda| ModelSpec::Nig { lambda }));
            settings.models.push(ModelSpec::Ewma {
                lambda: ewma_lambda,
            });
            settings.models.push(ModelSpec::Hs { window: hs_window });
            let problems = backtest_problems(&settings, returns.len());
            if !problems.is_empty() {
                bail!("invalid backtest:\n  {}", problems.join("\n  "));
            }
            let (report, table) = backtest::run(&returns, labels, &settings);
            if let Some(path) = &forecasts {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("create {}", path.display()))?;
                let mut w = std::io::BufWriter::new(file);
                backtest::write_forecasts_csv(&mut w, &table, &returns, labels)?;
                w.flush()?;
            }
            let mut stdout = std::io::stdout().lock();
            if json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                write!(stdout, "{}", backtest::render_table(&report))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tail {
            paths,
            keys: trust,
            kafka,
            follow,
            symbols,
            verdicts,
            json,
        } => {
            init_logging("warn");
            let trusted = trusted_keys(&trust)?;
            let start = kafka.start();
            let options = VerifyOptions {
                strict: false,
                from_genesis: start == StartAt::Beginning,
                allow_duplicates: false,
            };
            let mut verifier = Verifier::with_options(&trusted, options);
            let filter = bizra_risk::tail::TailFilter { symbols, verdicts };
            let mut stdout = std::io::stdout().lock();
            let mut invalid = 0u64;
            let mut show = |position: &str, line: &[u8]| -> bool {
                let item = bizra_risk::tail::decode(&mut verifier, position, line);
                invalid += u64::from(!item.verified);
                if !filter.shows(&item) {
                    return true;
                }
                let text = if json {
                    serde_json::to_string(&item).unwrap_or_default()
                } else {
                    bizra_risk::tail::render(&item)
                };
                // A closed pipe (e.g. `| head`) ends the tail.
                writeln!(stdout, "{text}").is_ok()
            };
            let timeout = Duration::from_millis(kafka.timeout_ms);
            match kafka.source()? {
                Some((brokers, topic)) => {
                    let source = KafkaSource::new(brokers, topic)?;
                    if follow {
                        source.follow(start, timeout, show)?;
                    } else {
                        source.read_from(start, timeout, |p, l| {
                            show(p, l);
                        })?;
                    }
                }
                None => {
                    for f in report::record_files(&paths)? {
                        let f = f.path;
                        let bytes =
                            std::fs::read(&f).with_context(|| format!("read {}", f.display()))?;
                        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                            if !line.is_empty()
                                && wire::record_kind(line) == Some(wire::RecordKind::Event)
                            {
                                show(&format!("{}:{}", f.display(), i + 1), line);
                            }
                        }
                    }
                }
            }
            Ok(if invalid == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Witness {
            paths,
            kafka,
            out,
            follow,
            poll_ms,
        } => {
            init_logging("warn");
            if paths.is_empty() && kafka.source()?.is_none() {
                bail!("name trail directories or --kafka-brokers with --topic (the checkpoints topic)");
            }
            let start = kafka.start();
            cli::witness::run(cli::witness::WitnessArgs {
                kafka: kafka
                    .source()?
                    .map(|(b, t)| (b.to_string(), t.to_string(), start)),
                timeout: Duration::from_millis(kafka.timeout_ms),
                paths,
                out,
                follow,
                poll: Duration::from_millis(poll_ms),
            })
        }
        Command::Verify {
            paths,
            keys: trust,
            kafka,
            checkpoint_topic,
            strict,
            allow_duplicates,
            prove,
            chain,
            check_proof,
            expect_head,
            anchor,
            json,
            metrics_file,
        } => {
            init_logging("warn");
            cli::verify::run(cli::verify::VerifyArgs {
                trusted: trusted_keys(&trust)?,
                start: kafka.start(),
                timeout: Duration::from_millis(kafka.timeout_ms),
                kafka: kafka.source()?.map(|(b, t)| (b.to_string(), t.to_string())),
                paths,
                checkpoint_topic,
                strict,
                allow_duplicates,
                prove,
                chain,
                check_proof,
                expect_head,
                anchor,
                json,
                metrics_file,
            })
        }
    }
}

/// Trusted verifying keys from `--pubkey` and `--pubkey-file`; at least one.
fn trusted_keys(args: &TrustArgs) -> anyhow::Result<Vec<ed25519_dalek::VerifyingKey>> {
    let mut trusted = Vec::new();
    for k in &args.pubkeys {
        trusted
            .push(keys::parse_verifying_key(k).map_err(|e| anyhow::anyhow!("--pubkey {k}: {e}"))?);
    }
    for f in &args.pubkey_files {
        let text = std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
        trusted.push(
            keys::parse_verifying_key(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?,
        );
    }
    if trusted.is_empty() {
        bail!("give at least one trusted key with --pubkey or --pubkey-file");
    }
    Ok(trusted)
}

fn parse_verdict(text: &str) -> Result<bizra_risk::elf::Verdict, String> {
    serde_json::from_value(serde_json::Value::String(text.to_ascii_uppercase()))
        .map_err(|_| format!("{text}: one of PASS, PASS_FLAGGED, REQUIRE_REVIEW, BLOCK"))
}

/// `500ms`, `1s`, `1m`, `1h`, `1d`.
fn parse_duration_ms(text: &str) -> anyhow::Result<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: i64 = n
        .parse()
        .with_context(|| format!("bar {text:?}: expected e.g. 1s, 1m, 1h, 1d"))?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("bar {text:?}: unit must be ms, s, m, h or d"),
    };
    if n <= 0 {
        bail!("bar {text:?}: must be positive");
    }
    Ok(n * unit_ms)
}

fn backtest_problems(settings: &BacktestSettings, returns: usize) -> Vec<String> {
    let mut problems = Vec::new();
    for a in &settings.alphas {
        if !(*a > 0.0 && *a < 1.0 / 3.0) {
            problems.push(format!("alpha {a} must be in (0, 1/3)"));
        }
    }
    for m in &settings.models {
        match m {
            ModelSpec::Nig { lambda } | ModelSpec::Ewma { lambda }
                if !(*lambda > 0.0 && *lambda <= 1.0) =>
            {
                problems.push(format!("{}: lambda must be in (0, 1]", m.label()))
            }
            ModelSpec::Hs { window } if *window < 2 => {
                problems.push(format!("{}: window must be >= 2", m.label()))
            }
            _ => {}
        }
    }
    if returns <= settings.init_returns {
        problems.push(format!(
            "the series has {returns} returns; more than {} are needed",
            settings.init_returns
        ));
    }
    problems
}
