//! `bizra-risk import-trades`.

use super::prelude::*;

#[derive(clap::Args)]
pub struct ImportTradesArgs {
    pub csv: PathBuf,
    #[arg(long)]
    pub symbol: String,
    /// Output capture (default: `<symbol>_<csv stem>.gz` next to the CSV).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: ImportTradesArgs) -> anyhow::Result<ExitCode> {
    let ImportTradesArgs { csv, symbol, out } = args;
    let out = out.unwrap_or_else(|| {
        let stem = csv
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        csv.with_file_name(format!("{}_{stem}.gz", symbol.to_ascii_lowercase()))
    });
    let n = bizra_risk::record::import_trades_csv(&csv, &symbol, &out)?;
    writeln!(std::io::stdout().lock(), "{n} trades -> {}", out.display())?;
    Ok(ExitCode::SUCCESS)
}
