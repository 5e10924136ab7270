//! `bizra-risk verify`: check a trail in files or on topics (signatures, payload hashes,
//! links, rotations, checkpoints and their links, anchors), print an inclusion proof, or
//! check a proof alone.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bizra_risk::audit::{anchor, proof, Verifier, VerifyOptions};
use bizra_risk::report;
use bizra_risk::sink::{KafkaSource, SinkError, StartAt};

use super::args::{trusted_keys, KafkaReadArgs, TrustArgs};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Files or directories of *.jsonl records.
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub keys: TrustArgs,
    #[command(flatten)]
    pub kafka: KafkaReadArgs,
    /// Topic of signed checkpoints, read before the events.
    #[arg(long)]
    pub checkpoint_topic: Option<String>,
    /// Check every signature on its own (RFC 8032 strict) and every event's canonical
    /// form, instead of batches.
    #[arg(long)]
    pub strict: bool,
    /// Skip byte-identical copies of a record (a producer's re-send after a crash)
    /// instead of failing on them; they are counted in the report.
    #[arg(long)]
    pub allow_duplicates: bool,
    /// After verifying, print the inclusion proof of event SEQ of --chain.
    #[arg(long, value_name = "SEQ", requires = "chain")]
    pub prove: Option<u64>,
    /// Chain of --prove.
    #[arg(long)]
    pub chain: Option<String>,
    /// Check an inclusion proof file (from --prove) instead of a trail.
    #[arg(long, value_name = "FILE", conflicts_with = "prove")]
    pub check_proof: Option<PathBuf>,
    /// Event SEQ of CHAIN must be in the trail with event hash HASH (an anchor kept
    /// apart from the trail); repeatable.
    #[arg(long, value_name = "CHAIN:SEQ:HASH")]
    pub expect_head: Vec<String>,
    /// A witness file of checkpoint records (`bizra-risk witness`): each chain must
    /// reach its newest checkpoint there; repeatable.
    #[arg(long, value_name = "FILE")]
    pub anchor: Vec<PathBuf>,
    /// Machine-readable report.
    #[arg(long)]
    pub json: bool,
    /// Also write the outcome as Prometheus text (bizra_chain_verify_failures,
    /// bizra_chain_verify_records, bizra_chain_verify_timestamp_seconds) to FILE, for a
    /// node exporter's textfile collector; replaced atomically.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let VerifyArgs {
        paths,
        keys,
        kafka: kafka_args,
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
    } = args;
    let trusted = trusted_keys(&keys)?;
    let start = kafka_args.start();
    let timeout = Duration::from_millis(kafka_args.timeout_ms);
    let kafka = kafka_args.source()?.map(|(b, t)| (b, t.to_string()));
    let mut anchors = Vec::new();
    for text in &expect_head {
        anchors.push(anchor::parse_expected_head(text).map_err(anyhow::Error::msg)?);
    }
    for file in &anchor {
        let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
        anchors.extend(
            anchor::heads_from_witness(&file.display().to_string(), &bytes)
                .map_err(anyhow::Error::msg)?,
        );
    }
    if let Some(file) = check_proof {
        let text =
            std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
        let proof: proof::InclusionProof = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an inclusion proof", file.display()))?;
        let mut stdout = std::io::stdout().lock();
        return Ok(match proof::check(&proof, &trusted) {
            Ok(()) => {
                writeln!(
                    stdout,
                    "proof OK: {} seq {} is leaf {} of the {}-leaf tree {}",
                    proof.chain, proof.seq, proof.leaf_index, proof.tree_size, proof.root_sha256
                )?;
                ExitCode::SUCCESS
            }
            Err(e) => {
                writeln!(stdout, "proof FAILED: {e}")?;
                ExitCode::from(1)
            }
        });
    }
    let options = VerifyOptions {
        strict,
        from_genesis: start == StartAt::Beginning,
        allow_duplicates,
    };
    let mut verifier = Verifier::with_options(&trusted, options);
    for head in anchors {
        verifier.expect_head(head);
    }
    // Lines of the chain to prove, kept only when a proof is asked for.
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut keep = |line: &[u8]| {
        if let Some(c) = &chain {
            if prove.is_some() && names_chain(line, c) {
                kept.push(line.to_vec());
            }
        }
    };
    if let Some((brokers, topic)) = &kafka {
        {
            if let Some(cp_topic) = &checkpoint_topic {
                match KafkaSource::new(brokers, cp_topic)?.read_from(
                    start,
                    timeout,
                    |pos, payload| {
                        keep(payload);
                        verifier.push(pos, payload)
                    },
                ) {
                    Ok(_) | Err(SinkError::TopicMissing(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            KafkaSource::new(brokers, topic)?.read_from(start, timeout, |pos, payload| {
                keep(payload);
                verifier.push(pos, payload)
            })?;
        }
    }
    for f in report::record_files(&paths)? {
        let read = |e| anyhow::Error::new(e).context(format!("read {}", f.path.display()));
        if prove.is_some() {
            // A proof is built from the chain's lines, which are kept.
            let bytes = std::fs::read(&f.path).map_err(read)?;
            bytes.split(|b| *b == b'\n').for_each(&mut keep);
            f.push_to(&mut verifier, &bytes);
        } else {
            f.push_file(&mut verifier).map_err(read)?;
        }
    }
    let report = verifier.finish();
    if let Some(path) = &metrics_file {
        write_metrics(path, &report)?;
    }
    let mut stdout = std::io::stdout().lock();
    if let (Some(seq), Some(chain)) = (prove, &chain) {
        let p = proof::build(chain, seq, kept.iter().map(Vec::as_slice))?;
        if !report.ok() {
            eprint!("{}", report::render_verify(&report));
        }
        writeln!(stdout, "{}", serde_json::to_string_pretty(&p)?)?;
        return Ok(if report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
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

/// The outcome as Prometheus text, written to a temporary file and renamed.
fn write_metrics(
    path: &std::path::Path,
    report: &bizra_risk::audit::VerifyReport,
) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let text = format!(
        "# HELP bizra_chain_verify_failures Verification failures found in the signed trail by the last verify run\n\
         # TYPE bizra_chain_verify_failures gauge\n\
         bizra_chain_verify_failures {}\n\
         # HELP bizra_chain_verify_records Records checked by the last verify run\n\
         # TYPE bizra_chain_verify_records gauge\n\
         bizra_chain_verify_records {}\n\
         # HELP bizra_chain_verify_timestamp_seconds When the last verify run finished (Unix seconds)\n\
         # TYPE bizra_chain_verify_timestamp_seconds gauge\n\
         bizra_chain_verify_timestamp_seconds {now:.3}\n",
        report.failures.len(),
        report.records,
    );
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

/// Whether a record line names `chain` (a cheap pre-filter; the proof builder re-checks).
fn names_chain(line: &[u8], chain: &str) -> bool {
    let needle = format!("\"chain\":\"{chain}\"");
    line.windows(needle.len()).any(|w| w == needle.as_bytes())
}
