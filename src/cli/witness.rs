//! `bizra-risk witness`: copy new checkpoint records from trail directories or the
//! checkpoints topic to the end of a witness file, once or following.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use super::args::KafkaReadArgs;
use bizra_risk::report;
use bizra_risk::sink::KafkaSource;
use bizra_risk::witness::Witness;

#[derive(clap::Args)]
pub struct WitnessArgs {
    /// Trail directories or checkpoint files.
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub kafka: KafkaReadArgs,
    /// The witness file: created, then only appended to.
    #[arg(long)]
    pub out: PathBuf,
    /// Keep watching: the topic as records arrive, directories every --poll-ms.
    #[arg(long, short)]
    pub follow: bool,
    #[arg(long, default_value_t = 1000)]
    pub poll_ms: u64,
}

pub fn run(args: WitnessArgs) -> anyhow::Result<ExitCode> {
    if args.paths.is_empty() && args.kafka.source()?.is_none() {
        bail!("name trail directories or --kafka-brokers with --topic (the checkpoints topic)");
    }
    let timeout = Duration::from_millis(args.kafka.timeout_ms);
    let poll = Duration::from_millis(args.poll_ms);
    let mut witness = Witness::open(&args.out)?;
    let before = witness.records();
    let mut failed = None;
    if let Some((brokers, topic)) = args.kafka.source()? {
        let start = args.kafka.start();
        let source = KafkaSource::new(&brokers, topic)?;
        let mut offer = |line: &[u8]| -> bool {
            match witness.offer(line).and_then(|appended| {
                if appended {
                    witness.sync()?;
                }
                Ok(())
            }) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        };
        if args.follow {
            source.follow(start, timeout, |_, line| offer(line))?;
        } else {
            source.read_from(start, timeout, |_, line| {
                offer(line);
            })?;
        }
    }
    if let Some(e) = failed {
        return Err(e.into());
    }
    loop {
        for f in report::record_files(&args.paths)? {
            let bytes =
                std::fs::read(&f.path).with_context(|| format!("read {}", f.path.display()))?;
            for line in bytes.split(|b| *b == b'\n') {
                witness.offer(line)?;
            }
        }
        witness.sync()?;
        if !args.follow || args.paths.is_empty() {
            break;
        }
        std::thread::sleep(poll);
    }
    writeln!(
        std::io::stderr().lock(),
        "witness {}: {} checkpoint records ({} new)",
        args.out.display(),
        witness.records(),
        witness.records() - before
    )?;
    Ok(ExitCode::SUCCESS)
}
