//! `bizra-risk record`.

use super::prelude::*;
use bizra_risk::record::RecordOptions;

#[derive(clap::Args)]
pub struct RecordArgs {
    /// Stream endpoint (default: the live Binance endpoint).
    #[arg(long, default_value = "wss://stream.binance.com:9443")]
    pub url: String,
    #[arg(long, value_delimiter = ',', default_value = "BTCUSDT,ETHUSDT")]
    pub symbols: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "trade,bookTicker")]
    pub streams: Vec<String>,
    #[arg(long, default_value = "out/record")]
    pub out: PathBuf,
    #[arg(long, default_value = "rec")]
    pub prefix: String,
    #[arg(long, default_value_t = 256)]
    pub rotate_mb: u64,
    #[arg(long, default_value_t = 60)]
    pub rotate_minutes: u64,
    /// Stop after this many seconds (default: when the server closes).
    #[arg(long)]
    pub duration_s: Option<u64>,
}

pub fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let RecordArgs {
        url,
        symbols,
        streams,
        out,
        prefix,
        rotate_mb,
        rotate_minutes,
        duration_s,
    } = args;
    init_logging("info");
    let opts = RecordOptions {
        url: bizra_risk::actors::ingest::stream_url(&url, &symbols, &streams),
        dir: out,
        prefix,
        rotate_bytes: rotate_mb.max(1) * 1024 * 1024,
        rotate_after: Duration::from_secs(rotate_minutes.max(1) * 60),
        duration: duration_s.map(Duration::from_secs),
        connect_timeout: Duration::from_secs(10),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(bizra_risk::record::record(opts))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "recorded {} frames ({} bytes) into {} file(s), ended by {}",
        report.frames,
        report.bytes,
        report.files.len(),
        report.ended_by
    )?;
    for f in &report.files {
        writeln!(stdout, "  {}", f.display())?;
    }
    Ok(ExitCode::SUCCESS)
}
