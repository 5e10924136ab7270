//! The in-process replay host: one loop over the merged capture that feeds each frame to
//! the feed step, answers its REST requests from the capture exactly as the replay server
//! would, hands the ticks to the engine and writes what it signs to the trail files. No
//! socket and no clock but the capture's: for the same capture, key, configuration and seed
//! it writes the same bytes as the socket pipeline. Two threads: the reader (capture,
//! feed steps; the server's depth books are brought up to date only when a snapshot is
//! asked for, `replay::depth_reread`) and the engine (on the caller's).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub use crate::optimizer::Percentiles;

use super::depth_notes::DepthNotes;
use super::frames::FrameSource;
use super::rest::RestIndex;
use super::ReplayOptions;
use crate::actors::ingest::{connection_shards, feed_settings, shard_index, stream_names};
use crate::assemble::{self, StartError};
use crate::audit::wire::RecordKind;
use crate::audit::ChainHead;
use crate::clock::Clock;
use crate::config::{ClockMode, Config};
use crate::elf::KillSwitch;
use crate::engine::{Engine, EngineError, EngineOutput, Stage, Stopwatch};
use crate::fast_hash::FastMap;
use crate::market::capture::{CaptureError, CaptureLine};
use crate::market::feed::{FeedOutput, FeedStep, FeedTick, FetchRequest, IngestReport};
use crate::market::fetch;
use crate::market::rest::{RestError, RestTransport};
use crate::market::Symbol;
use crate::pipeline::RunSummary;
use crate::quarantine::Quarantine;
use crate::recording::tape::Taping;
use crate::sink::{FileSink, SinkError};

#[derive(Debug, thiserror::Error)]
pub enum InProcessError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("capture: {0}")]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("chain heads: {0}")]
    Heads(#[from] crate::heads::HeadsError),
    #[error("the in-process replay writes files; unset kafka.brokers")]
    KafkaConfigured,
    #[error("the replay's reading thread could not start: {0}")]
    Thread(std::io::Error),
    #[error("the replay's reading thread panicked")]
    ReaderPanicked,
}

/// The engine's own speed over a replay, without a server competing for the cores.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Throughput {
    pub market_events: u64,
    pub decisions: u64,
    pub wall_s: f64,
    /// Process CPU time (user + system).
    pub cpu_s: f64,
    pub market_events_per_s: f64,
    pub decisions_per_s: f64,
    pub cpu_us_per_market_event: f64,
    /// Time per market event by stage, microseconds (each on its own thread, so close to
    /// CPU time; read, parse and feed timed on one captured line in eight and scaled).
    pub stage_us_per_market_event: StageTimes,
    /// Symbol bars closed, and the bars+models time per symbol bar (portfolio included).
    pub symbol_bars: u64,
    pub models_us_per_bar: f64,
    /// Time per decision in the gate, microseconds.
    pub decide_us_per_decision: f64,
    pub sign_us_per_decision: f64,
    /// Per decision: L0-L3, and the whole gate (L0-L3 and the L4 signature).
    pub decide_latency_us: Percentiles,
    pub gate_latency_us: Percentiles,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageTimes {
    /// Reading and decompressing the capture.
    pub read: f64,
    pub parse: f64,
    pub feed: f64,
    pub models: f64,
    pub gate: f64,
    pub write: f64,
}

/// The REST endpoints answered from the capture's index, as the replay server answers them.
struct LocalRest(Arc<RestIndex>);

impl RestTransport for LocalRest {
    fn get(&self, target: &str) -> Result<String, RestError> {
        let answer = self.0.handle(target);
        if answer.status == 200 {
            Ok(answer.body)
        } else {
            Err(RestError::Http {
                url: target.to_string(),
                reason: format!("HTTP {}: {}", answer.status, answer.body),
            })
        }
    }
}

/// Nanoseconds per stage since the last lap, and each decision's gate times.
struct Laps {
    decide_hist: Histogram<u64>,
    gate_hist: Histogram<u64>,
    /// The decide lap of the decision being signed.
    deciding: u64,
    last: Option<Instant>,
    read: u64,
    parse: u64,
    feed: u64,
    models: u64,
    decide: u64,
    sign: u64,
    write: u64,
}

impl Laps {
    fn new() -> Self {
        let h = || {
            Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("constant histogram bounds are valid")
        };
        Self {
            decide_hist: h(),
            gate_hist: h(),
            deciding: 0,
            last: None,
            read: 0,
            parse: 0,
            feed: 0,
            models: 0,
            decide: 0,
            sign: 0,
            write: 0,
        }
    }

    /// The reading thread's stages, timed on that thread.
    fn add_reading(&mut self, reading: &Laps) {
        self.read += reading.read;
        self.parse += reading.parse;
        self.feed += reading.feed;
    }

    /// The reading stages timed on `timed` lines of `lines`, as sums over them all.
    fn scale_reading(&mut self, lines: u64, timed: u64) {
        if timed > 0 {
            let scale = |ns: u64| (ns as f64 * lines as f64 / timed as f64) as u64;
            self.read = scale(self.read);
            self.parse = scale(self.parse);
            self.feed = scale(self.feed);
        }
    }

    fn start(&mut self) {
        self.last = Some(Instant::now());
    }

    fn since_last(&mut self) -> u64 {
        let now = Instant::now();
        let ns = self
            .last
            .map_or(0, |t| now.duration_since(t).as_nanos() as u64);
        self.last = Some(now);
        ns
    }
}

impl Stopwatch for Laps {
    fn lap(&mut self, stage: Stage) {
        let ns = self.since_last();
        match stage {
            Stage::Models => self.models += ns,
            Stage::Decide => {
                self.decide += ns;
                self.deciding = ns;
                let _ = self.decide_hist.record(ns.max(1));
            }
            Stage::Sign => {
                self.sign += ns;
                let _ = self.gate_hist.record((self.deciding + ns).max(1));
            }
        }
    }
}

/// The reading thread times its stages on one line in this many and scales the sums: clock
/// reads on every line took about 6 % of that thread.
const TIMED_LINE_EVERY: u64 = 8;

/// Ticks handed from the reading thread to the engine at a time, and batches in flight:
/// the channel's bound is the backpressure on the reader.
const TICKS_PER_BATCH: usize = 256;
const TICK_BATCHES_IN_FLIGHT: usize = 8;

/// The reading half of the replay: capture frames through the feed steps (REST requests
/// answered from the index), ticks out in order.
struct Reader {
    frames: FrameSource,
    /// The capture's REST answers (its depth books follow what `frames` notes).
    rest: LocalRest,
    feeds: Vec<FeedStep>,
    shard_of: FastMap<Symbol, usize>,
    quarantine: Quarantine,
    laps: Laps,
    market_events: u64,
}

/// What the reader hands back at the end: its feed steps (for the ingest report), its stage
/// times and the market events it read.
type ReadOutcome = (Vec<FeedStep>, Laps, u64);

impl Reader {
    fn run(mut self, tx: &SyncSender<Vec<FeedTick>>) -> Result<ReadOutcome, InProcessError> {
        let mut feed_out = Vec::new();
        let mut batch = Vec::with_capacity(TICKS_PER_BATCH);
        let (mut lines, mut timed_lines) = (0u64, 0u64);
        loop {
            let timed = lines % TIMED_LINE_EVERY == 0;
            if timed {
                self.laps.start();
            }
            let Some(line) = self.frames.next_frame()? else {
                break;
            };
            lines += 1;
            timed_lines += u64::from(timed);
            self.on_line(&line, timed, &mut feed_out, &mut batch)?;
            self.frames.recycle(line);
            if batch.len() >= TICKS_PER_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(TICKS_PER_BATCH));
                if tx.send(full).is_err() {
                    // The engine stopped; its error is the run's.
                    break;
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
        self.laps.scale_reading(lines, timed_lines);
        Ok((self.feeds, self.laps, self.market_events))
    }

    /// One captured line through its connection's feed step; its ticks onto `batch`. Its
    /// stages are timed when `timed`.
    fn on_line(
        &mut self,
        line: &CaptureLine,
        timed: bool,
        feed_out: &mut Vec<FeedOutput>,
        batch: &mut Vec<FeedTick>,
    ) -> Result<(), CaptureError> {
        let Some(stream) = line.stream() else {
            if timed {
                self.laps.read += self.laps.since_last();
            }
            return Ok(());
        };
        let (symbol, kind) = stream.split_once('@').unwrap_or((stream, ""));
        let Some(&shard) = self.shard_of.get(symbol) else {
            return Ok(());
        };
        if kind.starts_with("depth") {
            // The server's book has reached this update by the time the client reads it.
            self.frames.note_sent_depth(&line.json);
        }
        let received_ms = i64::try_from(line.local_ns / 1_000_000).unwrap_or(i64::MAX);
        self.market_events += 1;
        if timed {
            self.laps.read += self.laps.since_last();
        }
        let feed = &mut self.feeds[shard];
        let parsed = feed.parse(&line.json);
        if timed {
            self.laps.parse += self.laps.since_last();
        }
        if feed
            .on_parsed(&line.json, parsed, received_ms, feed_out)
            .is_err()
        {
            return Ok(());
        }
        // Carry out the step's outputs; answer each fetch before the next frame.
        loop {
            let mut fetch = None;
            for output in feed_out.drain(..) {
                match output {
                    // The rest would cross to the engine's thread only to be dropped there.
                    FeedOutput::Deliver(tick) if Engine::consumes(&tick) => batch.push(tick),
                    FeedOutput::Fetch(request) => fetch = Some(request),
                    FeedOutput::Quarantined {
                        code,
                        symbol,
                        detail,
                    } => {
                        tracing::warn!(reason = code, %symbol, event = %detail, "implausible market event quarantined");
                        self.quarantine.record(code, &symbol, &detail, received_ms);
                    }
                    _ => {}
                }
            }
            let Some(request) = fetch else {
                break;
            };
            if let FetchRequest::DepthSnapshot { symbol, .. } = &request {
                self.frames.depth_caught_up(symbol)?;
            }
            let answer = fetch::answer(request, &self.rest);
            feed.on_fetched(answer, received_ms, feed_out);
        }
        if timed {
            self.laps.feed += self.laps.since_last();
        }
        Ok(())
    }
}

/// Where the trail goes and what the heads file says.
struct TrailWriter {
    sink: FileSink,
    heads: BTreeMap<String, ChainHead>,
    heads_file: PathBuf,
    snapshot_dir: Option<PathBuf>,
    decisions: u64,
}

impl TrailWriter {
    fn write(&mut self, out: EngineOutput) -> Result<(), InProcessError> {
        match out {
            EngineOutput::Signed(e) => {
                if e.kind == RecordKind::Event {
                    self.decisions += 1;
                    self.heads
                        .insert(e.chain.clone(), ChainHead::persisted_after(&e));
                }
                self.sink.append(&e)?;
            }
            EngineOutput::VarSnapshot(v) => self.sink.append_var_snapshot(&v)?,
            EngineOutput::SymbolState(s) => {
                if let Some(dir) = &self.snapshot_dir {
                    let path = crate::snapshot::symbol_path(dir, &s.symbol);
                    if let Err(e) = crate::snapshot::save(&path, &s) {
                        tracing::warn!(symbol = %s.symbol, error = %e, "snapshot not written");
                    }
                }
            }
            EngineOutput::PortfolioState(p) => {
                if let Some(dir) = &self.snapshot_dir {
                    let path = crate::snapshot::portfolio_path(dir);
                    if let Err(e) = crate::snapshot::save(&path, &p) {
                        tracing::warn!(error = %e, "portfolio snapshot not written");
                    }
                }
            }
        }
        Ok(())
    }
}

/// Run `config` over the capture of `opts` (its files, history and faults; its speed is
/// ignored: the loop runs as fast as the engine goes). The engine clock is event time.
pub fn run(
    mut config: Config,
    opts: &ReplayOptions,
) -> Result<(RunSummary, Throughput), InProcessError> {
    if config.kafka_enabled() {
        return Err(InProcessError::KafkaConfigured);
    }
    config.engine.clock = ClockMode::EventTime;
    let index = Arc::new(RestIndex::build(&opts.history, &opts.files)?);

    let mut gates = assemble::gates(&config, &KillSwitch::default(), &HashMap::new())?;
    let sink = FileSink::open(&config.sink.dir)?;
    assemble::publish_verifying_key(&config.sink.dir, &gates.key_id, &gates.verifying_key_hex)?;
    // Every kline the server would serve closed before its stream started.
    let snapshots = crate::warm_start::load_snapshots(&config);
    let taped = Taping::new(LocalRest(index.clone()));
    let start = crate::warm_start::load_from(&config, i64::MAX, &taped, snapshots.clone());
    let symbols = config.symbols();
    let shards = connection_shards(&config);
    // The same start-state hash the socket pipeline signs in each chain's first checkpoint.
    gates.start_run(&shards, &snapshots, &taped.take());
    let (symbol_steps, portfolio_step) = assemble::model_steps(&config, start);
    let portfolio = portfolio_step.zip(gates.portfolio);
    let mut engine = Engine::new(symbol_steps, gates.symbols, portfolio)?;
    // Layer times for the run's KPIs (a few clock reads per decision, not per event).
    for gate in engine.gates_mut() {
        gate.set_timer(Some(crate::clock::monotonic_ns));
    }
    let mut writer = TrailWriter {
        sink,
        heads: gates.continued.clone(),
        heads_file: config.signing.heads_file.clone(),
        snapshot_dir: config.snapshot_dir(),
        decisions: 0,
    };
    for r in gates.rotations {
        writer.write(EngineOutput::Signed(r))?;
    }

    // One feed step per connection shard, as the socket pipeline connects.
    let settings = feed_settings(&config.feed, Clock::from_mode(config.engine.clock));
    let feeds: Vec<FeedStep> = shards
        .iter()
        .enumerate()
        .map(|(k, shard)| FeedStep::for_connection(settings.clone(), shard, k as u32))
        .collect();
    // Streams name their symbols in lower case.
    let shard_of: FastMap<Symbol, usize> = shard_index(&shards)
        .into_iter()
        .map(|(symbol, k)| (Symbol::from(symbol.to_lowercase()), k))
        .collect();
    let wanted = stream_names(&symbols, &config.feed.streams)
        .into_iter()
        .collect();
    // The replay server's depth books take the streamed diffs only when a snapshot is asked.
    let depth_notes = DepthNotes::on_request_in_order(index.clone()).connection();
    let frames = FrameSource::open(opts, index.clone(), wanted, depth_notes)?;
    let reader = Reader {
        frames,
        rest: LocalRest(index.clone()),
        feeds,
        shard_of,
        quarantine: Quarantine::new(config.sink.dir.join("quarantine").join("quarantine.jsonl")),
        laps: Laps::new(),
        market_events: 0,
    };

    // The engine's throughput is measured over the event loop; indexing the capture for
    // its REST answers is the replay server's work, not the engine's. The capture is read,
    // parsed and fed on a thread of its own, the engine steps on this one: the ticks cross
    // in order through a bounded channel, so the signed output is the same as on one thread.
    let started = Instant::now();
    let cpu_start = process_cpu();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<FeedTick>>(TICK_BATCHES_IN_FLIGHT);
    let mut laps = Laps::new();
    let (read_result, engine_result) = std::thread::scope(|scope| {
        let reading = std::thread::Builder::new()
            .name("replay-read".into())
            .spawn_scoped(scope, move || reader.run(&tx));
        let engine_result = (|| -> Result<(), InProcessError> {
            let mut engine_out = Vec::new();
            for batch in rx.iter() {
                laps.start();
                for tick in &batch {
                    engine.on_tick(tick, &mut laps, &mut engine_out)?;
                    for out in engine_out.drain(..) {
                        writer.write(out)?;
                    }
                    laps.write += laps.since_last();
                }
            }
            engine.finish(&mut engine_out)?;
            for out in engine_out.drain(..) {
                writer.write(out)?;
            }
            writer.sink.flush()?;
            crate::heads::save(&writer.heads_file, &writer.heads)?;
            Ok(())
        })();
        // An engine error drops the receiver, which stops the reader at its next send.
        drop(rx);
        let read_result = match reading {
            Ok(handle) => handle.join().unwrap_or(Err(InProcessError::ReaderPanicked)),
            Err(e) => Err(InProcessError::Thread(e)),
        };
        (read_result, engine_result)
    });
    engine_result?;
    let (feeds, read_laps, market_events) = read_result?;
    laps.add_reading(&read_laps);

    let wall = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_start);
    let mut ingest = IngestReport::default();
    for f in &feeds {
        ingest.merge(f.report());
    }
    ingest.ended_by = "end of capture".into();
    ingest.elapsed = wall;
    let symbols = engine.symbol_reports();
    let symbol_bars: u64 = symbols.iter().map(|r| r.bars).sum();
    let throughput = throughput(
        market_events,
        writer.decisions,
        symbol_bars,
        wall,
        cpu,
        &laps,
    );
    let summary = RunSummary {
        ingest,
        symbols,
        portfolio: engine.portfolio_report(),
        gates: engine.gate_stats(),
        sink: format!("files in {} (in process)", config.sink.dir.display()),
        verifying_key_hex: gates.verifying_key_hex,
        config_sha256: gates.provenance.config_sha256,
        rules_sha256: gates.provenance.rules_sha256,
        spooled_bytes_left: 0,
        tick_to_ack_us: None,
        tick_to_signed_us: None,
        acked_records_resent: 0,
        acked_records_unrecoverable: Vec::new(),
    };
    Ok((summary, throughput))
}

fn throughput(
    events: u64,
    decisions: u64,
    symbol_bars: u64,
    wall: Duration,
    cpu: Duration,
    laps: &Laps,
) -> Throughput {
    let per = |ns: u64, n: u64| ns as f64 / 1000.0 / n.max(1) as f64;
    let secs = wall.as_secs_f64().max(1e-9);
    Throughput {
        market_events: events,
        decisions,
        wall_s: wall.as_secs_f64(),
        cpu_s: cpu.as_secs_f64(),
        market_events_per_s: events as f64 / secs,
        decisions_per_s: decisions as f64 / secs,
        cpu_us_per_market_event: cpu.as_secs_f64() * 1e6 / events.max(1) as f64,
        stage_us_per_market_event: StageTimes {
            read: per(laps.read, events),
            parse: per(laps.parse, events),
            feed: per(laps.feed, events),
            models: per(laps.models, events),
            gate: per(laps.decide + laps.sign, events),
            write: per(laps.write, events),
        },
        symbol_bars,
        models_us_per_bar: per(laps.models, symbol_bars),
        decide_us_per_decision: per(laps.decide, decisions),
        sign_us_per_decision: per(laps.sign, decisions),
        decide_latency_us: Percentiles::of(&laps.decide_hist),
        gate_latency_us: Percentiles::of(&laps.gate_hist),
    }
}

/// User + system CPU time of this process so far.
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct it is given and nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
