//! Capture files named on the command line: directories expanded, the bundled capture as
//! the default, and the earliest file per instrument set aside as klines history.

use std::path::{Path, PathBuf};

use anyhow::bail;
use bizra_risk::market::capture::{group_by_instrument, list_capture_files};

/// Every capture file of `paths` (directories expanded).
pub fn expand_capture_paths(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(list_capture_files(p)?);
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        bail!("no capture files found in {paths:?}");
    }
    Ok(files)
}

/// Per instrument, the earliest capture file becomes klines history and the rest is
/// streamed (instruments with a single file are streamed whole).
pub fn split_history(files: &[PathBuf]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut history = Vec::new();
    let mut stream = Vec::new();
    for mut group in group_by_instrument(files) {
        group.sort();
        if group.len() > 1 {
            history.push(group.remove(0));
        }
        stream.extend(group);
    }
    (history, stream)
}

/// The bundled capture: `./data/binance`, else the one next to the crate sources.
pub fn default_data_dir() -> PathBuf {
    let local = Path::new("data/binance");
    if local.is_dir() {
        local.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/binance")
    }
}
