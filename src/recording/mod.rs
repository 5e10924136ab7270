//! The input recording: everything an engine consumed, beside its trail, so that an auditor
//! can re-derive every signed decision (`bizra-risk audit-replay`). Specified in
//! `docs/audit-replay.md`.
//!
//! ```text
//! <sink.dir>/recording/run-<start ms, 13 digits>/
//!     start.json                          what the engine started from
//!     config.toml                         the effective configuration
//!     conn-<k>-<first position, 12 digits>.rec   connection k's inputs, in segments
//!     conn-<k>-<first position, 12 digits>.rec.gz   a closed segment, compressed
//! ```
//!
//! A segment line is one input of the connection's feed step, in the order it was consumed:
//! `<receive ns> <frame text>` (the `record` capture format) for a one-line text frame that
//! does not start with `#`; otherwise an annotation, `<ns> #frame <JSON string>`,
//! `<ns> #binary <length>` or `<ns> #rest <JSON RestUse>` (the REST answer handed to the step
//! after the frame before it). Input number n of a connection (from 1) is its n-th line
//! across its segments; the checkpoints of the connection's symbol chains sign the input
//! digest (`market::feed::digest`) at a position, which ties the recording to the trail.

pub mod compress;
pub mod reader;
pub mod tape;
pub mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::state::{PortfolioSnapshot, SymbolSnapshot};

pub const FORMAT: &str = "bizra-recording/1";
pub const START_FILE: &str = "start.json";
/// The effective configuration as TOML, for `audit-replay --config` (and to edit).
pub const CONFIG_FILE: &str = "config.toml";

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Malformed {
        path: String,
        line: u64,
        reason: String,
    },
    #[error(transparent)]
    Start(#[from] crate::snapshot::SnapshotError),
    #[error("{0}: not a recording (no run-*/start.json)")]
    Empty(String),
}

pub(crate) fn io_error(path: &Path) -> impl Fn(std::io::Error) -> RecordingError + '_ {
    move |source| RecordingError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One REST request and its answer: the body of a 200, or why there was none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestGet {
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer to one fetch of a feed step: the requests it took and the engine time it was
/// handed to the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestUse {
    pub used_ms: i64,
    pub gets: Vec<RestGet>,
}

/// Model state loaded at start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadedSnapshots {
    /// One per instrument, in configuration order.
    pub symbols: Vec<Option<SymbolSnapshot>>,
    pub portfolio: Option<PortfolioSnapshot>,
}

/// What one run of the engine started from (`start.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRecord {
    pub format: String,
    /// `provenance.build` of the engine that recorded.
    pub build: String,
    pub config_sha256: String,
    pub rules_sha256: String,
    /// The effective configuration (JSON), for an auditor who has no configuration file.
    pub config: serde_json::Value,
    pub started_ms: i64,
    /// Warm-start klines: the cut-off time and the REST requests that fetched them.
    pub warm_start_now_ms: i64,
    pub warm_start: Vec<RestGet>,
    pub snapshots: LoadedSnapshots,
    /// The symbols of each connection, by connection index.
    pub connections: Vec<Vec<String>>,
    /// The sequence number each chain continued at (after any key rotation signed at start).
    pub next_seq: BTreeMap<String, u64>,
}

/// The hash the first checkpoint of each chain in a run signs: SHA-256 of the RFC 8785 JSON
/// of `{"connections", "next_seq", "snapshots", "warm_start"}` as in `start.json`, each
/// warm-start request as `{"target", "body"}` (`body` null when it failed). The receive
/// times and error texts are left out, so that every host of the same input signs the same.
pub fn start_sha256(
    connections: &[Vec<String>],
    next_seq: &BTreeMap<String, u64>,
    snapshots: &LoadedSnapshots,
    warm_start: &[RestGet],
) -> String {
    use sha2::{Digest, Sha256};
    // A failed request counts by its target only: the error text names the transport.
    let warm_start: Vec<_> = warm_start
        .iter()
        .map(|g| serde_json::json!({"target": g.target, "body": g.body}))
        .collect();
    let value = serde_json::json!({
        "connections": connections,
        "next_seq": next_seq,
        "snapshots": snapshots,
        "warm_start": warm_start,
    });
    let bytes = serde_json_canonicalizer::to_vec(&value).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

impl StartRecord {
    pub fn start_sha256(&self) -> String {
        start_sha256(
            &self.connections,
            &self.next_seq,
            &self.snapshots,
            &self.warm_start,
        )
    }
}

/// `run-<ms>` under `<sink.dir>/recording`.
pub fn run_dir(sink_dir: &Path, started_ms: i64) -> PathBuf {
    sink_dir
        .join("recording")
        .join(format!("run-{:013}", started_ms.max(0)))
}

/// A recording directory's runs, oldest first: `dir` itself when it is a run, else its
/// `run-*` children (or those of its `recording/` child: a trail directory will do).
pub fn runs(dir: &Path) -> Result<Vec<PathBuf>, RecordingError> {
    if dir.join(START_FILE).is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let base = if dir.join("recording").is_dir() {
        dir.join("recording")
    } else {
        dir.to_path_buf()
    };
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(&base).map_err(io_error(&base))? {
        let p = entry.map_err(io_error(&base))?.path();
        let is_run = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("run-"));
        if is_run && p.join(START_FILE).is_file() {
            runs.push(p);
        }
    }
    runs.sort();
    if runs.is_empty() {
        return Err(RecordingError::Empty(dir.display().to_string()));
    }
    Ok(runs)
}

pub fn read_start(run: &Path) -> Result<StartRecord, RecordingError> {
    let path = run.join(START_FILE);
    let bytes = std::fs::read(&path).map_err(io_error(&path))?;
    serde_json::from_slice(&bytes).map_err(|e| RecordingError::Malformed {
        path: path.display().to_string(),
        line: 1,
        reason: e.to_string(),
    })
}

/// Write `start.json` and, when the configuration has a TOML form, `config.toml`.
pub fn write_start(
    run: &Path,
    start: &StartRecord,
    config: &crate::config::Config,
) -> Result<(), RecordingError> {
    std::fs::create_dir_all(run).map_err(io_error(run))?;
    match toml::to_string_pretty(config) {
        Ok(text) => {
            let path = run.join(CONFIG_FILE);
            std::fs::write(&path, text).map_err(io_error(&path))?;
        }
        Err(e) => {
            tracing::warn!(error = %e, "configuration not written as TOML; start.json holds it")
        }
    }
    Ok(crate::snapshot::save(&run.join(START_FILE), start)?)
}
