//! The record files of a trail: `*.jsonl` files, directories expanded, checkpoint files
//! first so that the verifier knows them before it meets their events.

use std::path::PathBuf;

use crate::audit::Verifier;
use crate::sink::CHECKPOINT_SUFFIX;

/// A record file to verify; `chain` is the chain its records must name when it was found
/// in a trail directory (`<chain>.jsonl`, `<chain>.checkpoints.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordFile {
    pub path: PathBuf,
    pub chain: Option<String>,
}

impl RecordFile {
    /// Feed this file's bytes to `v`.
    pub fn push_to(&self, v: &mut Verifier, bytes: &[u8]) {
        // Reading from memory cannot fail.
        let _ = self.push_from(v, bytes);
    }

    /// Feed this file to `v`, read from disk a line at a time (bounded memory whatever
    /// the file's length).
    pub fn push_file(&self, v: &mut Verifier) -> std::io::Result<()> {
        let file = std::fs::File::open(&self.path)?;
        self.push_from(
            v,
            std::io::BufReader::with_capacity(READ_BUFFER_BYTES, file),
        )
    }

    fn push_from(&self, v: &mut Verifier, reader: impl std::io::BufRead) -> std::io::Result<()> {
        let name = self.path.display().to_string();
        match &self.chain {
            Some(chain) => v.push_chain_reader(&name, chain, reader),
            None => v.push_reader(&name, reader),
        }
    }
}

/// Read size for a trail file being verified.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// The `*.jsonl` files of `paths` (directories expanded), checkpoint files first so that
/// the verifier knows them before it meets their events.
pub fn record_files(paths: &[PathBuf]) -> std::io::Result<Vec<RecordFile>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            for entry in std::fs::read_dir(path)? {
                let p = entry?.path();
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                let Some(name) = name.filter(|n| n.ends_with(".jsonl")) else {
                    continue;
                };
                let chain = name
                    .strip_suffix(CHECKPOINT_SUFFIX)
                    .or_else(|| name.strip_suffix(".jsonl"))
                    .map(str::to_string);
                files.push(RecordFile { path: p, chain });
            }
        } else {
            files.push(RecordFile {
                path: path.to_path_buf(),
                chain: None,
            });
        }
    }
    let is_checkpoints = |f: &RecordFile| f.path.to_string_lossy().ends_with(CHECKPOINT_SUFFIX);
    files.sort_by_key(|f| (!is_checkpoints(f), f.clone()));
    files.dedup_by(|a, b| a.path == b.path);
    Ok(files)
}
