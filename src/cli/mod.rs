//! The commands of the `bizra-risk` binary, one file each; `args` holds the arguments
//! several share.

pub mod args;
pub mod audit_replay;
pub mod backtest;
pub mod captures;
pub mod dashboard;
pub mod demo;
pub mod elf_demo;
pub mod import_trades;
pub mod keygen;
pub mod optimize;
pub mod record;
pub mod replay;
pub mod replay_server;
pub mod role;
pub mod run;
pub mod synth;
pub mod tail;
pub mod verify;
pub mod witness;

/// JSON logs on stderr, filtered by `RUST_LOG` (default `default_level`).
pub fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// What most command files use.
pub(crate) mod prelude {
    pub use std::io::Write;
    pub use std::path::PathBuf;
    pub use std::process::ExitCode;
    pub use std::sync::Arc;
    pub use std::time::Duration;

    pub use anyhow::{bail, Context};

    pub use super::args::{parse_verdict, trusted_keys, KafkaReadArgs, TrustArgs};
    pub use super::init_logging;
}
