//! bizra-risk: Binance market data -> Bayesian VaR / ES -> ELF gate -> signed,
//! hash-chained risk events on Kafka or append-only files.
//!
//! The pure core (`var`, `risk`, `elf`, `audit`, `market`) has no I/O and reads no clock;
//! `actors`, `replay`, `sink` and `pipeline` do the moving. See ARCHITECTURE.md.

pub mod actors;
pub mod assemble;
pub mod audit;
pub mod audit_replay;
pub mod backtest;
pub mod clock;
pub mod config;
pub mod control;
pub mod elf;
pub mod elf_demo;
pub mod engine;
pub mod fast_hash;
pub mod heads;
pub mod http;
pub mod market;
pub mod metrics;
pub mod optimizer;
pub mod pipeline;
pub mod quarantine;
pub mod record;
pub mod recording;
pub mod replay;
pub mod report;
pub mod risk;
pub mod roles;
pub mod secret;
pub mod shutdown;
pub mod sink;
pub mod snapshot;
pub mod tail;
pub mod trail;
pub mod var;
pub mod warm_start;
pub mod witness;

/// Chain and pseudo-symbol of portfolio-level actions.
pub const PORTFOLIO_CHAIN: &str = "PORTFOLIO";
