//! The auditor's replay: the engine core driven over an input recording (no network, no
//! clock but the recorded receive times), every re-derived decision and checkpoint compared
//! field by field with the signed trail. A host like `replay::in_process`: it owns no logic
//! of the engine, only the reading, the answering of fetches from the tape and the
//! comparing. The procedure is in `docs/audit-replay.md`.

pub mod compare;
pub mod trail;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::actors::ingest::{connection_shards, feed_settings};
use crate::assemble::{self, StartError};
use crate::audit::wire::{self, PayloadKind, RecordKind};
use crate::audit::SignedEvent;
use crate::clock::{ns_to_ms, Clock};
use crate::config::{Config, ConfigError};
use crate::engine::{Engine, EngineError, EngineOutput, NoStopwatch};
use crate::market::feed::{FeedOutput, FeedStep};
use crate::market::fetch;
use crate::recording::reader::{ConnectionReader, Input, Recorded};
use crate::recording::tape::Tape;
use crate::recording::{self, RecordingError, StartRecord};
use compare::{Cause, Divergence, Outcome};
use trail::{Trail, TrailError};

#[derive(Debug, thiserror::Error)]
pub enum AuditReplayError {
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error(transparent)]
    Trail(#[from] TrailError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the configuration recorded in {run}: {source}")]
    RecordedConfig { run: String, source: ConfigError },
    #[error("the configuration recorded in {run} does not parse: {reason}")]
    RecordedConfigParse { run: String, reason: String },
    #[error("a record the replay signed does not parse: {0}")]
    Internal(String),
    #[error("the trail holds no checkpoint {0}")]
    NoSuchCheckpoint(String),
    #[error("{0}")]
    NotARunStart(String),
}

/// Where the signed trail is read from.
pub enum TrailSource {
    /// Trail files or directories.
    Files(Vec<PathBuf>),
    /// The decisions topic and, when named, the checkpoints topic.
    Kafka {
        brokers: crate::sink::KafkaEndpoint,
        decisions: String,
        checkpoints: Option<String>,
        timeout: std::time::Duration,
    },
}

pub struct AuditOptions {
    pub trail: TrailSource,
    /// A recording directory (`<sink.dir>/recording`, a run in it, or the trail directory).
    pub recording: PathBuf,
    /// The configuration to re-derive with (`--config`); `None` takes the one each run
    /// recorded.
    pub config: Option<Config>,
    /// A rule file to use instead of the configuration's (`--rules`).
    pub rules: Option<PathBuf>,
    /// Draw a progress line on standard error when it is a terminal.
    pub progress: bool,
    /// Start at the run whose start state this checkpoint (chain, last sequence number)
    /// signs, instead of the first run.
    pub from_checkpoint: Option<(String, u64)>,
}

/// What the replay found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    pub runs: usize,
    pub inputs: u64,
    pub market_frames: u64,
    /// Decisions re-derived and compared.
    pub decisions: u64,
    /// Equal to the signed decision, field for field.
    pub matched: u64,
    /// Equal but for `provenance.build` (another build of the same decisions).
    pub matched_other_build: u64,
    pub diverged: u64,
    /// Re-derived past the last decision a run published (its engine was stopped hard, and
    /// the next run continued from the persisted head): not compared.
    pub unpublished: u64,
    pub checkpoints_matched: u64,
    pub checkpoints_diverged: u64,
    pub divergences_by_cause: BTreeMap<&'static str, u64>,
    /// The first decision whose content differs (else the first record that differs at all).
    pub first_divergence: Option<Divergence>,
    /// Problems with the recording itself (first 20), in the order met.
    pub recording_problems: Vec<String>,
    /// Where the replay's configuration differs from what a run recorded.
    pub notes: Vec<String>,
    /// The build replaying, and the builds that signed the compared decisions.
    pub replay_build: String,
    pub signed_builds: Vec<String>,
    pub wall_s: f64,
    pub inputs_per_s: f64,
    pub decisions_per_s: f64,
}

impl AuditReport {
    pub fn all_matched(&self) -> bool {
        self.diverged == 0 && self.checkpoints_diverged == 0 && self.decisions > 0
    }

    fn diverge(&mut self, d: Divergence) {
        let is_checkpoint = d.record == "checkpoint";
        if is_checkpoint {
            self.checkpoints_diverged += 1;
        } else {
            self.diverged += 1;
        }
        *self
            .divergences_by_cause
            .entry(d.cause.as_str())
            .or_default() += 1;
        let content = |d: &Divergence| !d.field.starts_with("provenance");
        let replace = match &self.first_divergence {
            None => true,
            Some(first) => !content(first) && content(&d),
        };
        if replace {
            self.first_divergence = Some(d);
        }
    }

    fn problem(&mut self, p: String) {
        if self.recording_problems.len() < 20 {
            self.recording_problems.push(p);
        }
    }
}

/// The key the replay signs with: any key will do, the comparison is of payloads.
fn replay_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x5a; 32])
}

pub fn run(opts: &AuditOptions) -> Result<AuditReport, AuditReplayError> {
    let trail = match &opts.trail {
        TrailSource::Files(paths) => Trail::load(paths)?,
        TrailSource::Kafka {
            brokers,
            decisions,
            checkpoints,
            timeout,
        } => Trail::from_kafka(brokers, decisions, checkpoints.as_deref(), *timeout)?,
    };
    let runs = recording::runs(&opts.recording)?;
    let started = Instant::now();
    let mut report = AuditReport {
        runs: runs.len(),
        replay_build: wire::BUILD.to_string(),
        ..AuditReport::default()
    };
    let total_bytes: u64 = runs.iter().map(|r| segment_bytes(r)).sum();
    let mut progress = Progress::new(
        opts.progress && std::io::stderr().is_terminal(),
        total_bytes,
    );
    let starts: Vec<StartRecord> = runs
        .iter()
        .map(|r| recording::read_start(r))
        .collect::<Result<_, _>>()?;
    let first_run = match &opts.from_checkpoint {
        None => 0,
        Some((chain, seq)) => start_signed_by(&trail, &starts, chain, *seq)?,
    };
    report.runs = runs.len() - first_run;
    for (i, (run, start)) in runs.iter().zip(&starts).enumerate().skip(first_run) {
        let config = match &opts.config {
            Some(c) => c.clone(),
            None => recorded_config(run, start, opts.rules.as_deref())?,
        };
        // Where the next run continued each chain: what the replay derives from there on
        // belongs to no decision this run published (its engine stopped before them).
        let until: BTreeMap<String, u64> = start
            .next_seq
            .keys()
            .map(|chain| {
                let next = starts
                    .get(i + 1)
                    .and_then(|n| n.next_seq.get(chain).copied())
                    .unwrap_or(u64::MAX);
                (chain.clone(), next)
            })
            .collect();
        let mut audit = RunAudit {
            trail: &trail,
            report: &mut report,
            recording_problem: false,
            finishing: false,
            replayed: BTreeMap::new(),
            builds: Vec::new(),
            until,
            compare_checkpoints: trail.has_checkpoints(),
        };
        audit.replay(run, start, &config, &mut progress)?;
        // What the trail signed in this run's range that the replay did not derive.
        for (chain, &from) in &start.next_seq {
            let until = starts
                .get(i + 1)
                .and_then(|n| n.next_seq.get(chain).copied())
                .unwrap_or(u64::MAX);
            let done = audit.replayed.get(chain).copied();
            for seq in trail.seqs_from(chain, from) {
                if seq >= until || done.is_some_and(|d| seq <= d) {
                    continue;
                }
                let Some(line) = trail.event(chain, seq) else {
                    continue;
                };
                if wire::parse_envelope(line).is_ok_and(|e| e.kind == PayloadKind::KeyRotation) {
                    continue;
                }
                audit.report.diverge(Divergence {
                    chain: chain.clone(),
                    seq,
                    record: "event",
                    field: String::new(),
                    signed: serde_json::Value::String("signed".into()),
                    recomputed: serde_json::Value::Null,
                    cause: Cause::NotRederived,
                    detail: "the recording ends before this decision's input".into(),
                });
            }
        }
        for b in audit.builds {
            if !report.signed_builds.contains(&b) {
                report.signed_builds.push(b);
            }
        }
    }
    progress.done();
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    report.wall_s = wall;
    report.inputs_per_s = report.inputs as f64 / wall;
    report.decisions_per_s = report.decisions as f64 / wall;
    Ok(report)
}

/// The run whose start state the checkpoint `chain`/`seq` signs.
fn start_signed_by(
    trail: &Trail,
    starts: &[StartRecord],
    chain: &str,
    seq: u64,
) -> Result<usize, AuditReplayError> {
    let line = trail
        .checkpoint(chain, seq)
        .ok_or_else(|| AuditReplayError::NoSuchCheckpoint(format!("{chain}:{seq}")))?;
    let cp = wire::parse_checkpoint(line)
        .map_err(|e| AuditReplayError::Internal(format!("{e:?}")))?
        .checkpoint;
    let signed = cp.run_start_sha256.ok_or_else(|| {
        AuditReplayError::NotARunStart(format!(
            "checkpoint {chain}:{seq} is not the first of a run: it signs no start state"
        ))
    })?;
    starts
        .iter()
        .position(|s| s.start_sha256() == signed)
        .ok_or_else(|| {
            AuditReplayError::NotARunStart(format!(
                "no run of the recording starts from the state checkpoint {chain}:{seq} signs ({signed})"
            ))
        })
}

fn recorded_config(
    run: &Path,
    start: &StartRecord,
    rules: Option<&Path>,
) -> Result<Config, AuditReplayError> {
    let mut config: Config = serde_json::from_value(start.config.clone()).map_err(|e| {
        AuditReplayError::RecordedConfigParse {
            run: run.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    if let Some(r) = rules {
        config.elf.rules_file = r.to_path_buf();
    }
    config
        .validate()
        .map_err(|source| AuditReplayError::RecordedConfig {
            run: run.display().to_string(),
            source,
        })?;
    Ok(config)
}

fn segment_bytes(run: &Path) -> u64 {
    std::fs::read_dir(run)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".rec"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

struct RunAudit<'a> {
    trail: &'a Trail,
    report: &'a mut AuditReport,
    /// The recording was found wanting before the record being compared.
    recording_problem: bool,
    /// Checkpoints sealed at the end of the run may be missing from a trail whose engine
    /// was killed: not a divergence.
    finishing: bool,
    /// The newest sequence number re-derived per chain.
    replayed: BTreeMap<String, u64>,
    builds: Vec<String>,
    /// Per chain, where the next run continued it.
    until: BTreeMap<String, u64>,
    /// The trail has checkpoints to compare with (a Kafka trail may come without them).
    compare_checkpoints: bool,
}

impl RunAudit<'_> {
    fn replay(
        &mut self,
        run: &Path,
        start: &StartRecord,
        config: &Config,
        progress: &mut Progress,
    ) -> Result<(), AuditReplayError> {
        // A key rotation signed at this run's start opened its chain's first checkpoint:
        // the replay signs one at the same place and time, so its checkpoints fall alike.
        let mut heads = BTreeMap::new();
        let mut rotations = BTreeMap::new();
        for (chain, &next) in &start.next_seq {
            let rotation = next
                .checked_sub(1)
                .and_then(|seq| self.trail.event(chain, seq))
                .and_then(|line| wire::parse_envelope(line).ok())
                .filter(|e| e.kind == PayloadKind::KeyRotation)
                .map(|e| e.ts_ms);
            let from = if rotation.is_some() { next - 1 } else { next };
            heads.insert(chain.clone(), self.trail.head_before(chain, from)?);
            if let Some(ts_ms) = rotation {
                rotations.insert(chain.clone(), ts_ms);
            }
        }
        let key = replay_key();
        let mut gates = assemble::audit_gates(config, &key, &heads)?;
        for g in gates.portfolio.iter_mut().chain(gates.symbols.iter_mut()) {
            if let Some(&ts_ms) = rotations.get(g.chain()) {
                g.rotate_from(&key, ts_ms).map_err(StartError::from)?;
            }
        }
        let start_sha256 = start.start_sha256();
        for (chain, &next) in &start.next_seq {
            let until = self.until.get(chain).copied().unwrap_or(u64::MAX);
            if let Some((seq, signed)) = self.trail.run_start_signed(chain, next, until) {
                if signed != start_sha256 {
                    self.problem(format!(
                        "{}: the recorded start state hashes {start_sha256}, checkpoint {chain}:{seq} signs {signed}",
                        run.display()
                    ));
                }
            }
        }
        gates.note_run_start(start_sha256);
        if gates.provenance.config_sha256 != start.config_sha256 {
            self.report.notes.push(format!(
                "{}: the configuration hashes {}, the run recorded {}",
                run.display(),
                gates.provenance.config_sha256,
                start.config_sha256
            ));
        }
        let tape = Tape::new(start.warm_start.clone());
        let state = crate::warm_start::load_from(
            config,
            start.warm_start_now_ms,
            &tape,
            start.snapshots.clone(),
        );
        for m in tape.mismatches() {
            self.problem(format!("warm start: {m}"));
        }
        let (symbol_steps, portfolio_step) = assemble::model_steps(config, state);
        let portfolio = portfolio_step.zip(gates.portfolio);
        let mut engine = Engine::new(symbol_steps, gates.symbols, portfolio)?;

        let shards = connection_shards(config);
        if shards != start.connections {
            self.report.notes.push(format!(
                "the configuration connects {shards:?}; the run recorded {:?}",
                start.connections
            ));
        }
        let settings = feed_settings(&config.feed, Clock::from_mode(config.engine.clock));
        let mut feeds: Vec<FeedStep> = start
            .connections
            .iter()
            .enumerate()
            .map(|(k, symbols)| FeedStep::for_connection(settings.clone(), symbols, k as u32))
            .collect();
        let mut readers = (0..feeds.len())
            .map(|k| ConnectionReader::open(run, k as u32))
            .collect::<Result<Vec<_>, _>>()?;
        // Connections merge by receive time; within one, the recorded order is kept.
        let mut heap = BinaryHeap::new();
        for (k, r) in readers.iter_mut().enumerate() {
            if let Some(x) = r.peek()? {
                heap.push(Reverse((x.ns, k)));
            }
        }
        let mut feed_out = Vec::new();
        let mut engine_out = Vec::new();
        while let Some(Reverse((_, k))) = heap.pop() {
            let Some(rec) = readers[k].next()? else {
                continue;
            };
            progress.advance(rec_len(&rec));
            self.report.inputs += 1;
            let received_ms = ns_to_ms(rec.ns);
            let feed = &mut feeds[k];
            match &rec.input {
                Input::Frame(text) => {
                    self.report.market_frames += 1;
                    // Every fetch is answered below before the next input.
                    let _ = feed.on_frame(text, received_ms, &mut feed_out);
                }
                Input::Binary(len) => feed.on_binary_frame(*len, &mut feed_out),
                Input::Rest(_) => self.problem(format!(
                    "connection {k} input {}: a REST answer the engine did not ask for",
                    rec.position
                )),
            }
            loop {
                let mut fetch = None;
                for output in feed_out.drain(..) {
                    match output {
                        FeedOutput::Deliver(tick) => {
                            engine.on_tick(&tick, &mut NoStopwatch, &mut engine_out)?;
                            for out in engine_out.drain(..) {
                                self.compare(out)?;
                            }
                        }
                        FeedOutput::Fetch(request) => fetch = Some(request),
                        _ => {}
                    }
                }
                let Some(request) = fetch else {
                    break;
                };
                let answered = match readers[k].peek()? {
                    Some(Recorded {
                        input: Input::Rest(_),
                        ..
                    }) => readers[k].next()?,
                    _ => None,
                };
                let (answer, used_ms) = match answered {
                    Some(Recorded {
                        input: Input::Rest(r),
                        position,
                        ..
                    }) => {
                        progress.advance(64);
                        self.report.inputs += 1;
                        let tape = Tape::new(r.gets);
                        let answer = fetch::answer(request, &tape);
                        for m in tape.mismatches() {
                            self.problem(format!("connection {k} input {position}: {m}"));
                        }
                        (answer, r.used_ms)
                    }
                    _ => {
                        self.problem(format!(
                            "connection {k} input {}: the engine asks {request:?}, the recording holds no answer",
                            rec.position
                        ));
                        (
                            fetch::failed(&request, "not in the recording".into()),
                            received_ms,
                        )
                    }
                };
                feeds[k].on_fetched(answer, used_ms, &mut feed_out);
            }
            if let Some(x) = readers[k].peek()? {
                heap.push(Reverse((x.ns, k)));
            }
        }
        for (k, r) in readers.iter().enumerate() {
            if r.torn() {
                self.report.notes.push(format!(
                    "{}: connection {k}'s last line is cut (the engine stopped hard); it is left out",
                    run.display()
                ));
            }
        }
        self.finishing = true;
        engine.finish(&mut engine_out)?;
        for out in engine_out.drain(..) {
            self.compare(out)?;
        }
        Ok(())
    }

    fn problem(&mut self, p: String) {
        self.recording_problem = true;
        self.report.problem(p);
    }

    fn compare(&mut self, out: EngineOutput) -> Result<(), AuditReplayError> {
        let EngineOutput::Signed(e) = out else {
            return Ok(());
        };
        match e.kind {
            RecordKind::Event => self.compare_event(&e),
            RecordKind::Checkpoint => self.compare_checkpoint(&e),
        }
    }

    /// Derived at or past where the next run continued the chain: the recording went on
    /// after the engine's last published decision (it was stopped hard).
    fn beyond_run(&self, e: &SignedEvent) -> bool {
        self.until.get(&e.chain).is_some_and(|&u| e.seq >= u)
    }

    fn compare_event(&mut self, e: &SignedEvent) -> Result<(), AuditReplayError> {
        if self.beyond_run(e) {
            self.report.unpublished += 1;
            return Ok(());
        }
        self.replayed.insert(e.chain.clone(), e.seq);
        self.report.decisions += 1;
        let Some(signed) = self.trail.event(&e.chain, e.seq) else {
            self.report.diverge(Divergence {
                chain: e.chain.clone(),
                seq: e.seq,
                record: "event",
                field: String::new(),
                signed: serde_json::Value::Null,
                recomputed: serde_json::Value::String("derived".into()),
                cause: Cause::NotInTrail,
                detail: "the trail ends before this decision".into(),
            });
            return Ok(());
        };
        // One binary signs a run: its first decision names the build.
        let first_of_run = self.builds.is_empty();
        if let Some(p) = first_of_run
            .then(|| wire::parse_record(signed).ok())
            .flatten()
        {
            if let wire::Payload::RiskDecision(d) = &p.payload {
                if !self.builds.contains(&d.provenance.build) {
                    self.builds.push(d.provenance.build.clone());
                }
            }
        }
        match compare::events(signed, &e.line, self.recording_problem)
            .map_err(AuditReplayError::Internal)?
        {
            Outcome::Match => self.report.matched += 1,
            Outcome::MatchOtherBuild => self.report.matched_other_build += 1,
            Outcome::Differs {
                field,
                signed,
                recomputed,
                cause,
            } => {
                let detail = match cause {
                    Cause::RecordingMismatch => self
                        .report
                        .recording_problems
                        .first()
                        .cloned()
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                self.report.diverge(Divergence {
                    chain: e.chain.clone(),
                    seq: e.seq,
                    record: "event",
                    field,
                    signed,
                    recomputed,
                    cause,
                    detail,
                });
            }
        }
        Ok(())
    }

    fn compare_checkpoint(&mut self, e: &SignedEvent) -> Result<(), AuditReplayError> {
        if !self.compare_checkpoints || self.beyond_run(e) {
            return Ok(());
        }
        let Some(signed) = self.trail.checkpoint(&e.chain, e.seq) else {
            if !self.finishing {
                self.report.diverge(Divergence {
                    chain: e.chain.clone(),
                    seq: e.seq,
                    record: "checkpoint",
                    field: String::new(),
                    signed: serde_json::Value::Null,
                    recomputed: serde_json::Value::String("sealed".into()),
                    cause: Cause::NotInTrail,
                    detail: "the trail holds no checkpoint ending here".into(),
                });
            }
            return Ok(());
        };
        match compare::checkpoints(signed, &e.line).map_err(AuditReplayError::Internal)? {
            None => self.report.checkpoints_matched += 1,
            Some((field, signed, recomputed)) => {
                let (cause, detail) = if field.starts_with("inputs") {
                    (
                        Cause::RecordingMismatch,
                        "the input digest the checkpoint signs differs from the recording's",
                    )
                } else if field.starts_with("run_start") {
                    (
                        Cause::RecordingMismatch,
                        "the run's recorded start state is not the one its first checkpoint signs",
                    )
                } else {
                    (Cause::Unexplained, "")
                };
                let detail = detail.to_string();
                self.recording_problem |= cause == Cause::RecordingMismatch;
                self.report.diverge(Divergence {
                    chain: e.chain.clone(),
                    seq: e.seq,
                    record: "checkpoint",
                    field,
                    signed,
                    recomputed,
                    cause,
                    detail,
                });
            }
        }
        Ok(())
    }
}

fn rec_len(r: &Recorded) -> u64 {
    match &r.input {
        Input::Frame(t) => t.len() as u64 + 21,
        Input::Binary(_) => 32,
        Input::Rest(u) => u
            .gets
            .iter()
            .map(|g| g.body.as_ref().map_or(0, String::len) as u64 + 64)
            .sum(),
    }
}

/// A progress line on standard error, redrawn at each whole per cent.
struct Progress {
    on: bool,
    total: u64,
    done: u64,
    shown: u64,
}

impl Progress {
    fn new(on: bool, total: u64) -> Self {
        Self {
            on,
            total: total.max(1),
            done: 0,
            shown: 0,
        }
    }

    fn advance(&mut self, bytes: u64) {
        if !self.on {
            return;
        }
        self.done += bytes;
        let pct = (self.done * 100 / self.total).min(100);
        if pct > self.shown {
            self.shown = pct;
            let bar = "#".repeat((pct / 4) as usize);
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\raudit-replay [{bar:<25}] {pct:3}%");
            let _ = err.flush();
        }
    }

    fn done(&mut self) {
        if self.on {
            let _ = writeln!(std::io::stderr().lock());
        }
    }
}
