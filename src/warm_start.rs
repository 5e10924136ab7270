//! Start-up state of the models: each symbol's snapshot from an earlier run, and klines
//! history from the REST endpoint so VaR exists from the first live bar.

use std::time::Duration;

use crate::config::Config;
use crate::engine::{PortfolioStart, SymbolStart};
use crate::market::rest::{self, Http, Kline, RestTransport, MAX_KLINES};
use crate::recording::tape::Taping;
use crate::recording::{LoadedSnapshots, RestGet};
use crate::snapshot::{self, PortfolioSnapshot, SymbolSnapshot};

/// Everything the VaR actors start from.
#[derive(Debug, Clone, Default)]
pub struct StartState {
    pub symbols: Vec<SymbolStart>,
    pub portfolio: PortfolioStart,
}

/// Load snapshots and fetch klines from the configured REST endpoint (blocking; run it off
/// the async runtime). Missing history is not fatal: the affected models warm up live and
/// say so. Also returns what was loaded and asked, for the input recording.
pub fn load(
    config: &Config,
    now_ms: i64,
    roots: Option<std::sync::Arc<crate::market::tls::TrustedRoots>>,
) -> (StartState, LoadedSnapshots, Vec<RestGet>) {
    let rest = Taping::new(
        Http::new(
            &config.feed.rest_base(),
            Duration::from_millis(config.var.warm_start.timeout_ms),
            config.feed.rest_weight_per_minute,
        )
        .with_roots(roots),
    );
    let snapshots = load_snapshots(config);
    let state = load_from(config, now_ms, &rest, snapshots.clone());
    (state, snapshots, rest.take())
}

/// The snapshot files of an earlier run, one per instrument and the portfolio's (none when
/// snapshots are off; an unusable file is skipped with a warning).
pub fn load_snapshots(config: &Config) -> LoadedSnapshots {
    let dir = &config.var.snapshot.dir;
    if dir.as_os_str().is_empty() {
        return LoadedSnapshots {
            symbols: vec![None; config.symbols().len()],
            portfolio: None,
        };
    }
    let symbols = config
        .symbols()
        .iter()
        .map(|symbol| {
            snapshot::load::<SymbolSnapshot>(&snapshot::symbol_path(dir, symbol)).unwrap_or_else(
                |e| {
                    tracing::warn!(%symbol, error = %e, "snapshot unusable; starting without it");
                    None
                },
            )
        })
        .collect();
    let portfolio = snapshot::load::<PortfolioSnapshot>(&snapshot::portfolio_path(dir))
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "portfolio snapshot unusable; starting without it");
            None
        });
    LoadedSnapshots { symbols, portfolio }
}

/// The start state from `snapshots` and klines fetched over `rest` that closed before
/// `now_ms`.
pub fn load_from(
    config: &Config,
    now_ms: i64,
    rest: &impl RestTransport,
    snapshots: LoadedSnapshots,
) -> StartState {
    let klines: Vec<Vec<Kline>> = config
        .symbols()
        .iter()
        .map(|symbol| fetch(config, symbol, now_ms, rest))
        .collect();
    let mut loaded = snapshots.symbols.into_iter();
    let symbols = klines
        .iter()
        .map(|k| SymbolStart {
            snapshot: loaded.next().flatten(),
            klines: k.clone(),
        })
        .collect();
    StartState {
        symbols,
        portfolio: PortfolioStart {
            snapshot: snapshots.portfolio,
            klines,
        },
    }
}

fn fetch(config: &Config, symbol: &str, now_ms: i64, rest: &impl RestTransport) -> Vec<Kline> {
    let w = &config.var.warm_start;
    if !w.enabled {
        return Vec::new();
    }
    let Some(interval) = rest::kline_interval(config.bars.interval_ms) else {
        return Vec::new();
    };
    match rest::fetch_klines(rest, symbol, interval, MAX_KLINES) {
        Ok(mut k) => {
            // The newest kline may still be open.
            k.retain(|k| k.close_time_ms < now_ms);
            tracing::info!(%symbol, klines = k.len(), "warm start history");
            k
        }
        Err(e) => {
            tracing::warn!(%symbol, error = %e, "warm start history unavailable; VaR warms up live");
            Vec::new()
        }
    }
}
