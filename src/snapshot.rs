//! Model-state snapshots: written atomically (temporary file, fsync, rename) so a crash
//! leaves either the old or the new snapshot, never a torn one; read back at start so a
//! restart continues without a warm-up.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};

pub use crate::engine::state::{PortfolioSnapshot, SymbolSnapshot, SNAPSHOT_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a snapshot: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

pub fn symbol_path(dir: &Path, symbol: &str) -> PathBuf {
    dir.join(format!("{symbol}.json"))
}

pub fn portfolio_path(dir: &Path) -> PathBuf {
    dir.join(format!("{}.json", crate::PORTFOLIO_CHAIN))
}

/// Write `value` as JSON to `path` atomically.
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<(), SnapshotError> {
    let io = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let bytes = serde_json::to_vec(value).map_err(|e| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    // The rename itself is durable only once the directory is synced.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

/// Read a snapshot; `Ok(None)` when there is none.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, SnapshotError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SnapshotError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| SnapshotError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_and_corruption_is_typed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x/y.json");
        save(&path, &vec![1.5f64, 2.0]).unwrap();
        assert_eq!(load::<Vec<f64>>(&path).unwrap(), Some(vec![1.5, 2.0]));
        assert_eq!(
            load::<Vec<f64>>(&dir.path().join("none.json")).unwrap(),
            None
        );
        std::fs::write(&path, b"{torn").unwrap();
        assert!(matches!(
            load::<Vec<f64>>(&path),
            Err(SnapshotError::Corrupt { .. })
        ));
    }
}
