//! Start-up state of the models: each symbol's snapshot from an earlier run, and klines
//! history from the REST endpoint so VaR exists from the first live bar.

use std::time::Duration;

use crate::config::Config;
use crate::engine::{PortfolioStart, SymbolStart};
use crate::market::rest::{self, Http, Kline, RestTransport, MAX_KLINES};
use crate::snapshot::{self, PortfolioSnapshot, SymbolSnapshot};

/// Everything the VaR actors start from.
#[derive(Debug, Clone, Default)]
pub struct StartState {
    pub symbols: Vec<SymbolStart>,
    pub portfolio: PortfolioStart,
}

/// Load snapshots and fetch klines from the configured REST endpoint (blocking; run it off
/// the async runtime). Missing history is not fatal: the affected models warm up live and
/// say so.
pub fn load(config: &Config, now_ms: i64) -> StartState {
    let rest = Http::new(
        &config.feed.rest_base(),
        Duration::from_millis(config.var.warm_start.timeout_ms),
    );
    load_from(config, now_ms, &rest)
}

/// As [`load`], with klines from `rest`.
pub fn load_from(config: &Config, now_ms: i64, rest: &impl RestTransport) -> StartState {
    let dir = &config.var.snapshot.dir;
    let snapshots_on = !dir.as_os_str().is_empty();
    let mut state = StartState::default();
    let klines: Vec<Vec<Kline>> = config
        .symbols()
        .iter()
        .map(|symbol| fetch(config, symbol, now_ms, rest))
        .collect();
    for (symbol, k) in config.symbols().iter().zip(&klines) {
        let snapshot = if snapshots_on {
            match snapshot::load::<SymbolSnapshot>(&snapshot::symbol_path(dir, symbol)) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%symbol, error = %e, "snapshot unusable; starting without it");
                    None
                }
            }
        } else {
            None
        };
        state.symbols.push(SymbolStart {
            snapshot,
            klines: k.clone(),
        });
    }
    let snapshot = if snapshots_on {
        snapshot::load::<PortfolioSnapshot>(&snapshot::portfolio_path(dir)).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "portfolio snapshot unusable; starting without it");
            None
        })
    } else {
        None
    };
    state.portfolio = PortfolioStart { snapshot, klines };
    state
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
