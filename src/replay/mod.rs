//! A Binance-compatible WebSocket server that replays capture files, so the whole pipeline
//! runs offline exactly as it would against `stream.binance.com`.

mod server;

pub use server::{
    serve, spawn_in_thread, ReplayError, ReplayOptions, RunningReplay, Speed, Subscription,
};
