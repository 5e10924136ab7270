//! `bizra-risk synth`: N synthetic instruments derived from the bundled capture (or any
//! capture directory), written as capture files `replay-server`, `replay` and `demo --data`
//! read, with a configuration of N instruments and positions beside them.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use bizra_risk::config::Config;
use bizra_risk::market::capture::{file_instrument, CaptureReader};
use bizra_risk::market::synthetic::{Deriver, PassShift, PassSpan, SyntheticSymbol};
use flate2::write::GzEncoder;

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
}

pub fn run(args: SynthArgs) -> anyhow::Result<ExitCode> {
    if !(1..=10_000).contains(&args.symbols) {
        bail!("--symbols must be in 1..=10000");
    }
    if !(1..=1_000).contains(&args.passes) {
        bail!("--passes must be in 1..=1000");
    }
    let files = expand_capture_paths(&[args.data.clone().unwrap_or_else(default_data_dir)])?;
    let defaults = Config::embedded()?;
    let sources: Vec<String> = defaults.symbols();
    let source_refs: Vec<&str> = sources.iter().map(String::as_str).collect();
    let data_dir = args.out.join("data");
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let mut instruments = String::new();
    for k in 0..args.symbols {
        let symbol = SyntheticSymbol::nth(k, &source_refs);
        let source_lower = symbol.source.to_lowercase();
        let inst = defaults
            .instruments
            .iter()
            .find(|i| i.symbol == symbol.source)
            .with_context(|| format!("no instrument {} in the defaults", symbol.source))?;
        instruments.push_str(&format!(
            "[[instruments]]\nsymbol = \"{}\"\nposition_qty = {:?}\nvar_limit_usd = {:.4}\nlimit_cap_usd = {:.4}\n\n",
            symbol.name,
            inst.position_qty,
            inst.var_limit_usd * symbol.price_scale,
            inst.limit_cap_usd * symbol.price_scale
        ));
        // One derivation per source file, in day order, so the noise runs on across days.
        let mut deriver = Deriver::new(symbol.clone());
        let mut sources: Vec<&PathBuf> = files
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
            let passes = if day == last_day { args.passes } else { 1 };
            write_derived(source, &data_dir.join(name), &mut deriver, passes)?;
        }
    }
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
        let mut reader = CaptureReader::open(source)?;
        while let Some(line) = reader.next_line()? {
            if let Some(derived) = deriver.derive(line.local_ns, &line.json)? {
                w.write_all(derived.as_bytes())?;
                w.write_all(b"\n")?;
            }
        }
    }
    w.into_inner()
        .map_err(|e| anyhow::anyhow!("{}: {}", target.display(), e.error()))?
        .finish()?;
    Ok(())
}
