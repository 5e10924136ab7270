mod cli;

use cli::args::{trusted_keys, KafkaReadArgs, TrustArgs};
use cli::init_logging;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, Subcommand};

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
    Demo(cli::demo::DemoArgs),
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
    Replay(cli::replay::ReplayArgs),
    /// Run the engine with a configuration file (defaults + file + BIZRA_* environment).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Serve capture files over a Binance-compatible WebSocket.
    ReplayServer(cli::replay_server::ReplayServerArgs),
    /// Print decoded, verified events from a Kafka topic or files, one line each.
    Tail(cli::tail::TailArgs),
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
    Backtest(cli::backtest::BacktestArgs),
    /// The ELF gate in action: example PASS and BLOCK decisions with their reasons, then
    /// per-call latency percentiles of the decision, a bare signature and the full gate.
    ElfDemo(cli::elf_demo::ElfDemoArgs),
    /// Record a Binance stream exactly as received (`<local_ns> <json>` lines, gzip,
    /// rotated by size and time) for later replay.
    Record(cli::record::RecordArgs),
    /// Convert a public Binance trades CSV into a capture the replay server can serve.
    ImportTrades(cli::import_trades::ImportTradesArgs),
    /// Create an Ed25519 signing key (mode 0600) and its public key (`<out>.pub`).
    Keygen(cli::keygen::KeygenArgs),
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
        Command::Keygen(args) => cli::keygen::run(args),
        Command::ReplayServer(args) => cli::replay_server::run(args),
        Command::Run { config } => {
            init_logging("info");
            cli::run::run(config)
        }
        Command::Demo(args) => {
            init_logging("warn,bizra_risk::pipeline=info");
            cli::demo::run(args)
        }
        Command::Dashboard { events, bind } => {
            init_logging("info");
            cli::dashboard::run(&events, &bind)
        }
        Command::Replay(args) => {
            init_logging("warn");
            cli::replay::run(args)
        }
        Command::Record(args) => cli::record::run(args),
        Command::ImportTrades(args) => cli::import_trades::run(args),
        Command::ElfDemo(args) => cli::elf_demo::run(args),
        Command::Backtest(args) => cli::backtest::run(args),
        Command::Tail(args) => cli::tail::run(args),
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
