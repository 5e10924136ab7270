//! The pure core imports no runtime, broker client, network, file system, clock, OS
//! randomness or configuration file type (ARCHITECTURE.md, "Pure core"). Hosts (actors,
//! sinks, the replay server, the CLI) do the I/O and hand the core plain values. A core file
//! that reaches for one of these fails this test; the few known exceptions are listed with
//! their reason and must shrink, never grow.

mod common;

use std::path::{Path, PathBuf};

/// What a core file may not name, and why.
const FORBIDDEN: &[(&str, &str)] = &[
    ("actix", "an actor runtime"),
    ("tokio", "an async runtime"),
    ("rdkafka", "a broker client"),
    ("ureq", "an HTTP client"),
    ("tungstenite", "a WebSocket client"),
    ("std::net", "the network"),
    ("std::fs", "the file system"),
    ("File::open", "the file system"),
    ("SystemTime", "the wall clock"),
    ("Instant::now", "the monotonic clock"),
    ("system_now_ms", "the wall clock"),
    ("from_os_rng", "OS randomness"),
    ("getrandom", "OS randomness"),
    ("thread_rng", "OS randomness"),
    (
        "crate::config",
        "the configuration file types (the core takes plain settings)",
    ),
    ("crate::actors", "a host (the actix pipeline)"),
    ("crate::pipeline", "a host (the actix pipeline)"),
    (
        "crate::replay",
        "a host (the replay server and in-process replay)",
    ),
    ("crate::audit_replay", "a host (the auditor's replay)"),
    ("crate::recording", "the input recording (files)"),
    ("crate::sink", "the sinks (files, Kafka)"),
    ("crate::assemble", "start-up wiring"),
    ("crate::snapshot", "snapshot files"),
    ("crate::warm_start", "start-up I/O"),
    (
        "crate::metrics",
        "the metrics registry (hosts record metrics)",
    ),
    ("crate::market::rest", "the REST client"),
    ("crate::market::fetch", "REST requests"),
    (
        "crate::clock",
        "the engine clock (time arrives in the input)",
    ),
];

/// Core files that still break the rule, with the reason; each entry names the patterns it
/// may use. Remove an entry when its file is made pure.
const KNOWN: &[(&str, &[&str], &str)] = &[
    (
        "src/elf/worker.rs",
        &["Instant::now"],
        "the L3 worker thread bounds its spin-wait with the monotonic clock",
    ),
    (
        "src/elf/rules.rs",
        &["std::fs"],
        "loads the rule file beside the rule language",
    ),
];

/// The core: every file of these folders and these files.
const CORE_DIRS: &[&str] = &[
    "src/engine",
    "src/var",
    "src/risk",
    "src/elf",
    "src/market/feed",
];
const CORE_FILES: &[&str] = &[
    "src/audit/mod.rs",
    "src/audit/anchor.rs",
    "src/audit/chain.rs",
    "src/audit/jcs.rs",
    "src/audit/merkle.rs",
    "src/audit/proof.rs",
    "src/audit/verify.rs",
    "src/audit/wire.rs",
    "src/market/binance.rs",
    "src/market/compact.rs",
    "src/market/depth.rs",
    "src/market/health.rs",
    "src/market/sequence.rs",
    "src/market/skew.rs",
    "src/control/mod.rs",
    "src/control/rate.rs",
    "src/market/subscription.rs",
    "src/market/synthetic.rs",
    "src/optimizer/kpi.rs",
    "src/optimizer/prometheus_text.rs",
    "src/optimizer/recommend.rs",
    "src/optimizer/tuning.rs",
    "src/optimizer/watch.rs",
    "src/roles/handover.rs",
    "src/roles/records.rs",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its unit tests (tests may read files and clocks).
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every (file, pattern) in the core that is not a known exception.
fn violations(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for d in CORE_DIRS {
        rust_files(&root.join(d), &mut files);
    }
    files.extend(CORE_FILES.iter().map(|f| root.join(f)));
    files.sort();
    let mut found = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let allowed: &[&str] = KNOWN
            .iter()
            .find(|(f, _, _)| *f == rel)
            .map_or(&[], |(_, patterns, _)| patterns);
        let code = code_of(file);
        for (pattern, what) in FORBIDDEN {
            if code.contains(pattern) && !allowed.contains(pattern) {
                found.push(format!("{rel} uses {pattern} ({what})"));
            }
        }
    }
    found
}

#[test]
fn the_core_reaches_for_no_runtime_network_file_clock_randomness_or_config() {
    let root = common::repo();
    let found = violations(&root);
    assert!(
        found.is_empty(),
        "core boundary broken:\n{}",
        found.join("\n")
    );
    // Each known exception still needs each of its patterns: the list only shrinks.
    for (file, patterns, why) in KNOWN {
        let code = code_of(&root.join(file));
        for p in *patterns {
            assert!(
                code.contains(p),
                "{file} no longer uses {p} ({why}): remove it from KNOWN"
            );
        }
    }
}

#[test]
fn a_violation_is_caught() {
    // A copy of the core with one forbidden import added to a pure file must fail.
    let root = common::repo();
    let tmp = tempfile::tempdir().unwrap();
    for d in CORE_DIRS {
        let mut files = Vec::new();
        rust_files(&root.join(d), &mut files);
        for f in files {
            let to = tmp.path().join(f.strip_prefix(&root).unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&f, &to).unwrap();
        }
    }
    for f in CORE_FILES {
        let to = tmp.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(f), &to).unwrap();
    }
    assert!(violations(tmp.path()).is_empty());
    let guard = tmp.path().join("src/market/feed/guard.rs");
    let text = std::fs::read_to_string(&guard).unwrap();
    std::fs::write(&guard, format!("use std::time::SystemTime;\n{text}")).unwrap();
    let found = violations(tmp.path());
    assert_eq!(
        found,
        ["src/market/feed/guard.rs uses SystemTime (the wall clock)"]
    );
}
