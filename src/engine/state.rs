//! The engine's model state as it is persisted between runs: each symbol's models and
//! where its bars stopped, and the portfolio's. Written and read by the hosts
//! (`crate::snapshot`); restored by the steps.

use serde::{Deserialize, Serialize};

use crate::var::portfolio_risk::PortfolioModelState;
use crate::var::symbol_risk::SymbolModelState;

pub const SNAPSHOT_VERSION: u32 = 1;

/// A symbol's models and where its bars stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolSnapshot {
    pub version: u32,
    pub symbol: String,
    pub interval_ms: i64,
    pub last_bar_start_ms: i64,
    pub last_close: f64,
    pub model: SymbolModelState,
}

/// The portfolio models, the symbols they cover and the last aligned bar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortfolioSnapshot {
    pub version: u32,
    pub symbols: Vec<String>,
    pub interval_ms: i64,
    pub last_bar_end_ms: i64,
    pub last_closes: Vec<f64>,
    pub model: PortfolioModelState,
}
