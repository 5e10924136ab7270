//! `bizra-risk synth`: N synthetic instruments derived from the bundled capture (or any
//! capture directory), written as capture files `replay-server`, `replay` and `demo --data`
//! read, with a configuration of N instruments and positions beside them.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{bail, Context};
use bizra_risk::config::Config;
use bizra_risk::market::capture::{file_instrument, parse_line, CaptureLine, CaptureReader};
use bizra_risk::market::synthetic::{
    Deriver, PassShift, PassSpan, SyntheticSymbol, PASS_RESET_DIFFS, PASS_RESET_LEVELS,
};
use bizra_risk::replay::depth::DepthIndex;
use flate2::write::GzEncoder;
use serde::Deserialize;

use super::captures::{default_data_dir, expand_capture_paths};

#[derive(clap::Args)]
pub struct SynthArgs {
    /// How many synthetic instruments.
    #[arg(long)]
    pub symbols: usize,
    /// Output directory: `data/` (capture files) and `config.toml`.
    #[arg(long)]
    pub out: PathBuf,
    /// Capture directory the instruments are derived from (default: the bundled one).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Write the last captured day this many times back to back, each pass moved in time
    /// and IDs to follow on from the one before (a longer replay for memory over time).
    #[arg(long, default_value_t = 1)]
    pub passes: u32,
    /// Threads deriving symbols at once (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
}

pub fn run(args: SynthArgs) -> anyhow::Result<ExitCode> {
    if !(1..=10_000).contains(&args.symbols) {
        bail!("--symbols must be in 1..=10000");
    }
    if !(1..=1_000).contains(&args.passes) {
        bail!("--passes must be in 1..=1000");
    }
    if args.jobs == Some(0) {
        bail!("--jobs must be at least 1");
    }
    let files = expand_capture_paths(&[args.data.clone().unwrap_or_else(default_data_dir)])?;
    let defaults = Config::embedded()?;
    let sources: Vec<String> = defaults.symbols();
    let source_refs: Vec<&str> = sources.iter().map(String::as_str).collect();
    let data_dir = args.out.join("data");
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .clamp(1, args.symbols);
    let job = SymbolJob {
        files: &files,
        defaults: &defaults,
        sources: &source_refs,
        data_dir: &data_dir,
        passes: args.passes,
    };
    // Each symbol is derived on its own (its noise, IDs and book are its own), so the
    // symbols are shared out over threads; the output does not depend on how.
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut sections = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<Vec<(usize, String)>> {
                    let mut done = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= args.symbols {
                            break;
                        }
                        match job.derive(k) {
                            Ok(section) => done.push((k, section)),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(done)
                })
            })
            .collect();
        let mut sections = Vec::with_capacity(args.symbols);
        for worker in workers {
            match worker.join() {
                Ok(done) => sections.extend(done?),
                Err(_) => bail!("a synth thread panicked"),
            }
        }
        Ok(sections)
    })?;
    sections.sort_by_key(|(k, _)| *k);
    let instruments: String = sections.into_iter().map(|(_, s)| s).collect();
    let portfolio = defaults.portfolio.var_limit_usd * args.symbols as f64 / sources.len() as f64;
    let config = format!(
        "# {n} synthetic instruments derived from {src} (bizra-risk synth).\n\
         [portfolio]\nvar_limit_usd = {portfolio:.4}\n\n{instruments}",
        n = args.symbols,
        src = sources.join(", "),
    );
    let config_path = args.out.join("config.toml");
    std::fs::write(&config_path, config)
        .with_context(|| format!("write {}", config_path.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} synthetic instruments: captures in {}, configuration {}",
        args.symbols,
        data_dir.display(),
        config_path.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// What deriving one synthetic symbol needs: the captures, the defaults its instrument is
/// copied from, and where its files go.
struct SymbolJob<'a> {
    files: &'a [PathBuf],
    defaults: &'a Config,
    sources: &'a [&'a str],
    data_dir: &'a Path,
    passes: u32,
}

impl SymbolJob<'_> {
    /// Writes symbol `k`'s capture files; returns its `[[instruments]]` section.
    fn derive(&self, k: usize) -> anyhow::Result<String> {
        let symbol = SyntheticSymbol::nth(k, self.sources);
        let source_lower = symbol.source.to_lowercase();
        let inst = self
            .defaults
            .instruments
            .iter()
            .find(|i| i.symbol == symbol.source)
            .with_context(|| format!("no instrument {} in the defaults", symbol.source))?;
        let section = format!(
            "[[instruments]]\nsymbol = \"{}\"\nposition_qty = {:?}\nvar_limit_usd = {:.4}\nlimit_cap_usd = {:.4}\n\n",
            symbol.name,
            inst.position_qty,
            inst.var_limit_usd * symbol.price_scale,
            inst.limit_cap_usd * symbol.price_scale
        );
        // One derivation per source file, in day order, so the noise runs on across days.
        let mut deriver = Deriver::new(symbol.clone());
        let mut book = (self.passes > 1).then(|| PassBook::new(&symbol.name));
        let mut sources: Vec<&PathBuf> = self
            .files
            .iter()
            .filter(|f| file_instrument(f) == source_lower)
            .collect();
        sources.sort();
        let last_day = sources.len().saturating_sub(1);
        for (day, source) in sources.into_iter().enumerate() {
            let name = file_name(source).replacen(&source_lower, &symbol.name.to_lowercase(), 1);
            let name = name
                .trim_end_matches(".txt")
                .trim_end_matches(".gz")
                .to_string()
                + ".gz";
            let passes = if day == last_day { self.passes } else { 1 };
            let target = self.data_dir.join(name);
            write_derived(
                source,
                &target,
                &mut deriver,
                passes,
                book.as_mut(),
                day == last_day,
            )?;
        }
        Ok(section)
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

fn write_derived(
    source: &Path,
    target: &Path,
    deriver: &mut Deriver,
    passes: u32,
    mut book: Option<&mut PassBook>,
    streamed: bool,
) -> anyhow::Result<()> {
    let mut span = PassSpan::default();
    if passes > 1 {
        let mut reader = CaptureReader::open(source)?;
        while let Some(line) = reader.next_line()? {
            span.add(&line.json);
        }
    }
    let step = span.shift();
    let file =
        std::fs::File::create(target).with_context(|| format!("create {}", target.display()))?;
    let mut w = BufWriter::new(GzEncoder::new(file, flate2::Compression::fast()));
    for pass in 0..passes {
        let k = i64::from(pass);
        deriver.set_pass(PassShift {
            time_ms: step.time_ms * k,
            trade_ids: step.trade_ids * u64::from(pass),
            update_ids: step.update_ids * u64::from(pass),
        });
        if pass > 0 {
            let gap = span.reset_ids();
            for reset in book
                .as_deref_mut()
                .map(|b| b.reset_lines(gap))
                .unwrap_or_default()
            {
                w.write_all(reset.as_bytes())?;
                w.write_all(b"\n")?;
            }
        }
        let mut reader = CaptureReader::open(source)?;
        while let Some(line) = reader.next_line()? {
            let Some(derived) = deriver.derive(line.local_ns, &line.json)? else {
                continue;
            };
            let Ok(derived_line) = parse_line(&derived) else {
                continue;
            };
            // A repeated pass streams; the REST snapshot line stays with the first.
            if pass > 0 && derived_line.stream().is_none() {
                continue;
            }
            if let Some(book) = book.as_deref_mut() {
                book.follow(&derived_line, streamed);
            }
            w.write_all(derived.as_bytes())?;
            w.write_all(b"\n")?;
        }
    }
    if let Some(book) = book {
        book.finish_file();
    }
    w.into_inner()
        .map_err(|e| anyhow::anyhow!("{}: {}", target.display(), e.error()))?
        .finish()?;
    Ok(())
}

/// The synthetic symbol's order book as a replay serves it, followed through the derived
/// lines so that a repeated pass can start from an empty book: the day's diffs do not
/// remove the levels left at the end of the pass before (the prices moved during the day),
/// and those left over would cross the book of the next pass. Between passes
/// [`PASS_RESET_DIFFS`] diffs remove every level (`reset_lines`).
struct PassBook {
    symbol: String,
    index: DepthIndex,
    /// The last streamed diff: its stream kind (`depth@100ms`), `u`, `E` and local time.
    last: Option<(String, u64, i64, u64)>,
}

#[derive(Deserialize)]
struct DiffIds {
    data: DiffIdsData,
}

#[derive(Deserialize)]
struct DiffIdsData {
    u: u64,
    #[serde(rename = "E")]
    event_ms: i64,
}

#[derive(Deserialize)]
struct Levels {
    bids: Vec<(String, String)>,
    asks: Vec<(String, String)>,
}

impl PassBook {
    fn new(symbol: &str) -> Self {
        Self {
            symbol: symbol.to_ascii_uppercase(),
            index: DepthIndex::default(),
            last: None,
        }
    }

    /// Take one derived line, as the replay's index (history) or stream would.
    fn follow(&mut self, line: &CaptureLine, streamed: bool) {
        match line.stream() {
            None => {
                self.index
                    .add_line(Some(&self.symbol), &line.json, false, !streamed);
            }
            // A history diff waits for its file's end (`finish_file`); a streamed one is
            // applied as the stream would apply it.
            Some(stream) if stream.contains("@depth") && !streamed => {
                self.index.add_line(None, &line.json, true, true);
            }
            Some(stream) if stream.contains("@depth") => {
                self.index.note_streamed(&line.json);
                if let Ok(ids) = serde_json::from_str::<DiffIds>(&line.json) {
                    let kind = stream.split_once('@').map_or("", |(_, k)| k).to_string();
                    self.last = Some((kind, ids.data.u, ids.data.event_ms, line.local_ns));
                }
            }
            Some(_) => {}
        }
    }

    fn finish_file(&mut self) {
        self.index.finish_file();
    }

    /// The diffs that empty the book: the `gap` update IDs after the pass's last diff (one
    /// each, the last diff taking the rest), a millisecond after it, each with up to
    /// [`PASS_RESET_LEVELS`] levels at quantity zero (empty diffs make up the count; a book
    /// with more levels keeps the rest).
    fn reset_lines(&mut self, gap: u64) -> Vec<String> {
        let Some((kind, u, event_ms, local_ns)) = self.last.clone() else {
            return Vec::new();
        };
        let levels: Levels = self
            .index
            .snapshot_json(&self.symbol, usize::MAX)
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Levels {
                bids: Vec::new(),
                asks: Vec::new(),
            });
        let mut zeroed = levels
            .bids
            .into_iter()
            .map(|(p, _)| (true, p))
            .chain(levels.asks.into_iter().map(|(p, _)| (false, p)));
        let stream = format!("{}@{kind}", self.symbol.to_ascii_lowercase());
        (1..=PASS_RESET_DIFFS)
            .map(|k| {
                let (mut b, mut a) = (Vec::new(), Vec::new());
                for (bid, price) in zeroed.by_ref().take(PASS_RESET_LEVELS) {
                    if bid { &mut b } else { &mut a }.push((price, "0.00000000"));
                }
                let data = serde_json::json!({
                    "e": "depthUpdate",
                    "E": event_ms + 1,
                    "s": self.symbol,
                    "U": u + k,
                    "u": if k == PASS_RESET_DIFFS { u + gap.max(k) } else { u + k },
                    "b": b,
                    "a": a,
                });
                let json = format!("{{\"stream\":\"{stream}\",\"data\":{data}}}");
                // The replay's book follows the reset as the stream does.
                self.index.note_streamed(&json);
                format!("{} {json}", local_ns + 1_000_000)
            })
            .collect()
    }
}
