//! A Binance-compatible server that replays capture files over WebSocket and answers the
//! REST market-data endpoints from them, so the whole pipeline runs offline exactly as it
//! would against Binance.

pub mod conn;
mod decimal_text;
pub mod depth;
mod depth_notes;
mod depth_reread;
mod faults;
pub mod frames;
pub mod in_process;
mod read_ahead;
pub mod rest;
pub mod rest_limit;
mod server;
pub mod subscribe;
pub mod trade_log;

pub use faults::{DropDepth, Inject, Poison, SkipTrades};
pub use server::{
    serve, spawn_in_thread, ReplayError, ReplayOptions, RunningReplay, Speed, Subscription,
};
