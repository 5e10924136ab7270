//! `bizra-risk witness`: copy new checkpoint records from trail directories or the
//! checkpoints topic to the end of a witness file, once or following.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bizra_risk::report;
use bizra_risk::sink::{KafkaSource, StartAt};
use bizra_risk::witness::Witness;

pub struct WitnessArgs {
    pub paths: Vec<PathBuf>,
    /// Brokers and checkpoints topic, with where to start.
    pub kafka: Option<(String, String, StartAt)>,
    pub timeout: Duration,
    pub out: PathBuf,
    pub follow: bool,
    pub poll: Duration,
}

pub fn run(args: WitnessArgs) -> anyhow::Result<ExitCode> {
    let mut witness = Witness::open(&args.out)?;
    let before = witness.records();
    let mut failed = None;
    if let Some((brokers, topic, start)) = &args.kafka {
        let source = KafkaSource::new(brokers, topic)?;
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
            source.follow(*start, args.timeout, |_, line| offer(line))?;
        } else {
            source.read_from(*start, args.timeout, |_, line| {
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
        std::thread::sleep(args.poll);
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
