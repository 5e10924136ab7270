#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bizra_risk::audit::keys;
use bizra_risk::config::{ClockMode, Config, OnServerClose};
use bizra_risk::elf::KillSwitch;
use bizra_risk::metrics::Metrics;
use bizra_risk::pipeline::{self, RunSummary};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn capture_files() -> Vec<PathBuf> {
    bizra_risk::market::capture::list_capture_files(&repo().join("data/binance"))
        .expect("bundled capture")
}

/// The bundled files of one capture day (`20240808` or `20240809`).
pub fn capture_files_of_day(day: &str) -> Vec<PathBuf> {
    capture_files()
        .into_iter()
        .filter(|f| f.to_string_lossy().contains(day))
        .collect()
}

/// Embedded defaults pointed at `url`, writing into `dir`, signing with `key`.
pub fn test_config(url: &str, dir: &Path, key: &Path) -> Config {
    let mut c = Config::embedded().expect("defaults");
    c.feed.url = url.to_string();
    c.feed.on_server_close = OnServerClose::Stop;
    c.feed.connect_timeout_ms = 5_000;
    c.engine.clock = ClockMode::EventTime;
    c.signing.key_file = key.to_path_buf();
    c.sink.dir = dir.join("events");
    c.var.snapshot.dir = dir.join("state");
    c.signing.heads_file = dir.join("state/chain_heads.json");
    c.kafka.spool_dir = dir.join("spool");
    c.elf.rules_file = repo().join("config/rules.yaml");
    c
}

pub fn new_key(dir: &Path) -> PathBuf {
    let path = dir.join("signing.key");
    if !path.exists() {
        keys::write_new(&path, &keys::generate().expect("rng")).expect("write key");
    }
    path
}

pub fn run(config: Config) -> RunSummary {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    actix::System::new()
        .block_on(pipeline::run(
            config,
            KillSwitch::default(),
            metrics,
            bizra_risk::shutdown::Shutdown::never(),
        ))
        .expect("pipeline run")
}

pub fn verifying_key(key: &Path) -> ed25519_dalek::VerifyingKey {
    keys::load_signing_key(key).expect("key").verifying_key()
}

/// Kafka bootstrap servers for integration tests. In CI a missing broker is a failure,
/// never a silent skip.
pub fn kafka_brokers() -> Option<String> {
    match std::env::var("BIZRA_TEST_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var_os("CI").is_some() => {
            panic!("BIZRA_TEST_KAFKA_BROKERS is not set in CI: .ci/run must start a Kafka-protocol broker")
        }
        _ => {
            eprintln!("skipping: BIZRA_TEST_KAFKA_BROKERS not set (scripts/test starts a broker and sets it)");
            None
        }
    }
}
