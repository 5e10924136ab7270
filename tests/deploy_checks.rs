//! The deployment files checked by the real tools (`deploy/scripts/validate.sh`:
//! kubernetes-validate --strict, promtool check config / check rules / test rules with a
//! unit test firing every alert, amtool, docker-compose config, shellcheck), and every
//! metric named by the alert rules, the Grafana dashboard and docs/metrics.md is one the
//! engine (or `verify --metrics-file`) exports.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

const TOOLS: &[&str] = &[
    "kubernetes-validate",
    "promtool",
    "amtool",
    "docker-compose",
    "shellcheck",
];

#[test]
fn deploy_files_pass_the_real_validators() {
    let missing: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .map_or(true, |o| !o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{missing:?} not installed in CI: .ci/run must install them"
        );
        eprintln!("skipping: {missing:?} not installed");
        return;
    }
    let out = Command::new("bash")
        .arg(common::repo().join("deploy/scripts/validate.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Metric names the code exports: string literals `bizra_*` / `elf_*` in every file of the
/// metrics module and the verify command, with the histogram series suffixes.
fn exported() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut files: Vec<String> = std::fs::read_dir(common::repo().join("src/metrics"))
        .unwrap()
        .map(|e| format!("src/metrics/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".rs"))
        .collect();
    files.push("src/cli/verify.rs".into());
    for f in files {
        let text: String = std::fs::read_to_string(common::repo().join(f))
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if (token.starts_with("bizra_") || token.starts_with("elf_"))
                && token.len() > 6
                && !token.starts_with("bizra_risk")
            {
                names.insert(token.to_string());
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{token}{suffix}"));
                }
            }
        }
    }
    names
}

fn named_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| (t.starts_with("bizra_") || t.starts_with("elf_")) && t.len() > 6)
        // Rust identifiers and test names that share the prefix are not metrics.
        .filter(|t| !t.starts_with("bizra_risk"))
        .map(str::to_string)
        .collect()
}

#[test]
fn dashboards_alerts_and_docs_name_metrics_that_exist() {
    let exported = exported();
    let repo = common::repo();
    let grafana: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo.join("deploy/grafana/bizra-risk.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = String::new();
    for panel in grafana["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push_str(target["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    let rules = std::fs::read_to_string(repo.join("deploy/prometheus/rules.yml")).unwrap();
    let docs = std::fs::read_to_string(repo.join("docs/metrics.md")).unwrap();
    for (what, text) in [
        ("grafana", &exprs),
        ("alert rules", &rules),
        ("docs/metrics.md", &docs),
    ] {
        let unknown: Vec<_> = named_in(text)
            .into_iter()
            .filter(|n| !exported.contains(n))
            .collect();
        assert!(
            unknown.is_empty(),
            "{what} names metrics nobody exports: {unknown:?}"
        );
    }
    // Every exported metric is documented.
    let documented = named_in(&docs);
    let undocumented: Vec<_> = exported
        .iter()
        .filter(|n| !n.ends_with("_bucket") && !n.ends_with("_sum") && !n.ends_with("_count"))
        .filter(|n| !documented.contains(*n))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/metrics.md: {undocumented:?}"
    );
}
