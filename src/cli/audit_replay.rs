//! `bizra-risk audit-replay`: re-derive every signed decision of a trail from the input
//! recording, the configuration and the rules; exit 0 when all match, 1 on a divergence,
//! 2 when the replay cannot run.

use super::prelude::*;
use bizra_risk::audit_replay::{self, AuditOptions, AuditReport, TrailSource};
use bizra_risk::config::Config;

#[derive(clap::Args)]
pub struct AuditReplayArgs {
    /// The signed trail: directories or record files.
    #[arg(long, num_args = 1.., required_unless_present = "kafka_brokers")]
    pub trail: Vec<PathBuf>,
    /// Read the trail from Kafka instead: bootstrap servers (with --topic).
    #[arg(long, requires_all = ["topic", "recording"])]
    pub kafka_brokers: Option<String>,
    /// The decisions topic.
    #[arg(long, requires = "kafka_brokers")]
    pub topic: Option<String>,
    /// The checkpoints topic (without it, checkpoints are not compared).
    #[arg(long, requires = "kafka_brokers")]
    pub checkpoint_topic: Option<String>,
    /// Timeout of each broker request.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// Reach the brokers with the security settings of this engine configuration file
    /// (`kafka.security_protocol`, `sasl_*`, `ssl_ca_file`); without it, plaintext.
    #[arg(long, value_name = "FILE", requires = "kafka_brokers")]
    pub kafka_config: Option<PathBuf>,
    /// The input recording (`<sink.dir>/recording`, one run in it); default: the first
    /// trail directory's `recording/`.
    #[arg(long)]
    pub recording: Option<PathBuf>,
    /// The configuration file the engine ran with (defaults + file + BIZRA_* environment);
    /// default: the configuration each run recorded.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The rules file (overrides `elf.rules_file`).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Replay from the run whose start state this checkpoint signs (`CHAIN:SEQ`, its last
    /// sequence number; the first checkpoint of each chain in a run signs it), not from the
    /// first run.
    #[arg(long, value_name = "CHAIN:SEQ")]
    pub from_checkpoint: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: AuditReplayArgs) -> anyhow::Result<ExitCode> {
    let recording = match (&args.recording, args.trail.first()) {
        (Some(r), _) => r.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => bail!("name the recording with --recording"),
    };
    let trail = match (&args.kafka_brokers, &args.topic) {
        (Some(brokers), Some(topic)) => TrailSource::Kafka {
            brokers: super::args::kafka_endpoint(brokers, args.kafka_config.as_deref())?,
            decisions: topic.clone(),
            checkpoints: args.checkpoint_topic.clone(),
            timeout: Duration::from_millis(args.timeout_ms),
        },
        _ => TrailSource::Files(args.trail.clone()),
    };
    let config = match &args.config {
        None => None,
        Some(file) => {
            let mut c = Config::load(Some(file))?;
            if let Some(r) = &args.rules {
                c.elf.rules_file = r.clone();
            }
            c.validate()?;
            Some(c)
        }
    };
    let from_checkpoint = match &args.from_checkpoint {
        None => None,
        Some(s) => {
            let (chain, seq) = s
                .rsplit_once(':')
                .context("--from-checkpoint takes CHAIN:SEQ")?;
            Some((
                chain.to_string(),
                seq.parse().context("--from-checkpoint: SEQ is a number")?,
            ))
        }
    };
    let report = audit_replay::run(&AuditOptions {
        from_checkpoint,
        rules: args.rules.clone(),
        trail,
        recording,
        config,
        progress: !args.json,
    })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        render(&mut out, &report)?;
    }
    Ok(if report.all_matched() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn render(out: &mut impl Write, r: &AuditReport) -> std::io::Result<()> {
    writeln!(
        out,
        "audit-replay: {} run(s), {} inputs ({} market frames), {} decisions re-derived in {:.2} s ({:.0} inputs/s, {:.0} decisions/s)",
        r.runs, r.inputs, r.market_frames, r.decisions, r.wall_s, r.inputs_per_s, r.decisions_per_s
    )?;
    writeln!(
        out,
        "  decisions: {} matched bit for bit, {} matched but for provenance.build, {} diverged",
        r.matched, r.matched_other_build, r.diverged
    )?;
    writeln!(
        out,
        "  builds: signed by {}; replayed by {}",
        r.signed_builds.join(", "),
        r.replay_build
    )?;
    writeln!(
        out,
        "  checkpoints: {} matched (input digests equal), {} diverged",
        r.checkpoints_matched, r.checkpoints_diverged
    )?;
    for n in &r.notes {
        writeln!(out, "  note: {n}")?;
    }
    for p in &r.recording_problems {
        writeln!(out, "  recording: {p}")?;
    }
    for (cause, n) in &r.divergences_by_cause {
        writeln!(out, "  diverged {n}: {cause}")?;
    }
    if let Some(d) = &r.first_divergence {
        writeln!(
            out,
            "  first divergence: {} {} seq {}: {} signed {} recomputed {} ({}{}{})",
            d.record,
            d.chain,
            d.seq,
            if d.field.is_empty() { "-" } else { &d.field },
            d.signed,
            d.recomputed,
            d.cause.as_str(),
            if d.detail.is_empty() { "" } else { ": " },
            d.detail
        )?;
    }
    writeln!(
        out,
        "RESULT: {}",
        if r.all_matched() {
            "RE-DERIVED"
        } else {
            "DIVERGED"
        }
    )
}
