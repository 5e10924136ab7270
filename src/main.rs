mod cli;

use cli::init_logging;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

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
    ///
    /// The captured trades its REST endpoints answer from are kept in a temporary file
    /// (25 bytes a trade, under TMPDIR), so it needs a writable temporary directory.
    ReplayServer(cli::replay_server::ReplayServerArgs),
    /// Print decoded, verified events from a Kafka topic or files, one line each.
    Tail(cli::tail::TailArgs),
    /// Copy every checkpoint record not seen yet, from trail directories or the checkpoints
    /// topic, to the end of a witness file: the anchor an auditor keeps apart from the
    /// trail (`verify --anchor`). Run it apart from the engine.
    Witness(cli::witness::WitnessArgs),
    /// Re-derive every signed decision of a trail from its input recording, configuration
    /// and rules, and compare each with the signed one field by field.
    AuditReplay(cli::audit_replay::AuditReplayArgs),
    /// Verify signed events in files/directories or a Kafka topic.
    Verify(cli::verify::VerifyArgs),
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
    /// Measure the gate's KPIs (over a replay, or a live engine's /metrics), recommend
    /// setting changes, confirm each by an A/B replay of the same capture, and with --apply
    /// send the best to a running engine as a signed control request. Dry run by default.
    Optimize(cli::optimize::OptimizeArgs),
    /// Derive N synthetic instruments from the bundled capture (scaled prices, shifted IDs
    /// and times, a return noise each) with a configuration of N instruments, for load tests.
    Synth(cli::synth::SynthArgs),
    /// One role of the engine split over machines on Kafka: `ingest` (market data to the
    /// market-events topic), `risk` (a consumer group signing each symbol's chain) or
    /// `portfolio` (the portfolio chain over the symbols' bars). docs/scale-out.md.
    Role(cli::role::RoleArgs),
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
        Command::Synth(args) => cli::synth::run(args),
        Command::Role(args) => {
            init_logging("info");
            cli::role::run(args)
        }
        Command::Optimize(args) => {
            init_logging("warn");
            cli::optimize::run(args)
        }
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
        Command::Witness(args) => {
            init_logging("warn");
            cli::witness::run(args)
        }
        Command::AuditReplay(args) => {
            init_logging("warn");
            cli::audit_replay::run(args)
        }
        Command::Verify(args) => {
            init_logging("warn");
            cli::verify::run(args)
        }
    }
}
