//! `bizra-risk tail`.

use super::prelude::*;
use bizra_risk::audit::{wire, Verifier, VerifyOptions};
use bizra_risk::report;
use bizra_risk::sink::{KafkaSource, StartAt};

#[derive(clap::Args)]
pub struct TailArgs {
    /// Files or directories of *.jsonl records (instead of Kafka).
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub keys: TrustArgs,
    #[command(flatten)]
    pub kafka: KafkaReadArgs,
    /// Keep waiting for new events (Kafka).
    #[arg(long, short)]
    pub follow: bool,
    /// Only these symbols (repeatable).
    #[arg(long = "symbol")]
    pub symbols: Vec<String>,
    /// Only these verdicts: PASS, PASS_FLAGGED, REQUIRE_REVIEW, BLOCK (repeatable).
    #[arg(long = "verdict", value_parser = parse_verdict)]
    pub verdicts: Vec<bizra_risk::elf::Verdict>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    let TailArgs {
        paths,
        keys: trust,
        kafka,
        follow,
        symbols,
        verdicts,
        json,
    } = args;
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
            let source = KafkaSource::new(&brokers, topic)?;
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
                let bytes = std::fs::read(&f).with_context(|| format!("read {}", f.display()))?;
                for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                    if !line.is_empty() && wire::record_kind(line) == Some(wire::RecordKind::Event)
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
