//! `bizra-risk replay-server`.

use super::prelude::*;
use std::net::SocketAddr;

use bizra_risk::replay::{self, ReplayOptions, Speed};

#[derive(clap::Args)]
pub struct ReplayServerArgs {
    #[arg(long, default_value = "127.0.0.1:9443")]
    pub bind: SocketAddr,
    /// Capture files or directories.
    #[arg(long = "data", required = true)]
    pub data: Vec<PathBuf>,
    #[arg(long, default_value = "1")]
    pub speed: Speed,
    #[arg(long, default_value_t = 20_000)]
    pub ping_interval_ms: u64,
    #[arg(long, default_value_t = 60_000)]
    pub pong_timeout_ms: u64,
    /// Captures of what happened before the stream, served by the REST endpoints
    /// (klines) only; repeatable.
    #[arg(long = "history")]
    pub history: Vec<PathBuf>,
    /// Fault injection: leave trades SYMBOL:FIRST-LAST out of the stream (REST still
    /// serves them); repeatable.
    #[arg(long = "skip-trades")]
    pub skip_trades: Vec<bizra_risk::replay::SkipTrades>,
    /// Fault injection: leave the Nth diff-depth update of SYMBOL (SYMBOL:N) out of
    /// each client's stream (REST snapshots still include it); repeatable.
    #[arg(long = "drop-depth")]
    pub drop_depth: Vec<bizra_risk::replay::DropDepth>,
    /// Fault injection: after the Nth trade of SYMBOL, stream COUNT (default 1)
    /// well-formed but impossible events, SYMBOL:N:POISON[:COUNT] with POISON one of
    /// huge-price, zero-qty, time-ahead, time-behind, id-jump, crossed-quote; repeatable.
    #[arg(long = "inject")]
    pub inject: Vec<bizra_risk::replay::Inject>,
    /// Limit the REST request weight per minute as Binance does per IP: over it HTTP 429
    /// with Retry-After, and HTTP 418 to a request sent before that pause is over.
    #[arg(long, value_name = "WEIGHT")]
    pub rest_weight_per_minute: Option<u32>,
    /// Serve wss:// and https:// with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

pub fn run(args: ReplayServerArgs) -> anyhow::Result<ExitCode> {
    let ReplayServerArgs {
        bind,
        data,
        speed,
        ping_interval_ms,
        pong_timeout_ms,
        history,
        skip_trades,
        drop_depth,
        inject,
        rest_weight_per_minute,
        tls_cert,
        tls_key,
    } = args;
    two_malloc_arenas();
    init_logging("info");
    let files = super::captures::expand_capture_paths(&data)?;
    let mut opts = ReplayOptions::new(files, speed);
    opts.skip_trades = skip_trades;
    opts.drop_depth = drop_depth;
    opts.inject = inject;
    opts.rest_limit = rest_weight_per_minute
        .map(|w| std::sync::Arc::new(bizra_risk::replay::rest_limit::RestLimit::new(w)));
    if let (Some(cert), Some(key)) = (&tls_cert, &tls_key) {
        opts.tls = Some(bizra_risk::replay::conn::tls_server_config(cert, key)?);
    }
    if !history.is_empty() {
        opts.history = super::captures::expand_capture_paths(&history)?;
    }
    opts.ping_interval = Duration::from_millis(ping_interval_ms);
    opts.pong_timeout = Duration::from_millis(pong_timeout_ms);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("bind {bind}"))?;
        let scheme = if opts.tls.is_some() { "wss" } else { "ws" };
        tracing::info!(addr = %listener.local_addr()?, scheme, "replay server listening");
        replay::serve(listener, opts).await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Every client has a reader thread, and glibc gives each thread that allocates its own
/// malloc arena, whose freed memory stays resident: with 100 symbols over five connections
/// the server peaked at 154 MB with an arena per thread and 82–96 MB with two, at the same
/// CPU per frame (`cargo bench --bench replay_server`). Two, not one: the REST index is
/// built on two threads, which one arena would serialise (47 s on one thread, 36 s on two
/// sharing an arena, 23 s on two arenas for the one-hour capture of 100 symbols).
fn two_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any client thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
