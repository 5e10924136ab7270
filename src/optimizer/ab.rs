//! A/B replays: the same capture through the configuration before (A) and after (B) a
//! change, in alternating runs so that the machine's drift falls on both sides, each run
//! in the in-process replay host. The KPI is compared by its median over the runs; the
//! decisions of A and B are compared one by one (verdict, deciding layer, reasons), so a
//! change that alters any decision is seen.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::kpi::{median, Kpis};
use super::tuning::{parse_u64, TuningError};
use crate::audit::wire::{parse_record, AbEvidence, KpiName, Num, Payload, Setting, SettingChange};
use crate::config::Config;
use crate::replay::in_process::{self, InProcessError};
use crate::replay::ReplayOptions;

#[derive(Debug, thiserror::Error)]
pub enum AbError {
    #[error(transparent)]
    Replay(#[from] InProcessError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: a record of the replay's trail does not parse: {problem}")]
    Trail { path: PathBuf, problem: String },
    #[error("the replay measured no {0}: no decisions?")]
    NoKpi(&'static str),
}

/// What every replay of an A/B comparison shares.
pub struct AbInput {
    pub opts: ReplayOptions,
    /// Each run writes its trail under a directory of its own here.
    pub work_dir: PathBuf,
    pub runs_per_side: usize,
    pub kpi: KpiName,
}

/// One decision as far as the comparison is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub action: String,
    pub verdict: String,
    pub layer: String,
    pub reasons: Vec<String>,
}

/// Decisions by chain and sequence number.
pub type Outcomes = BTreeMap<(String, u64), Outcome>;

/// One replay: its KPIs and its decisions.
pub struct Measured {
    pub kpis: Kpis,
    pub outcomes: Outcomes,
}

pub struct AbResult {
    pub evidence: AbEvidence,
    pub base_runs: Vec<Kpis>,
    pub candidate_runs: Vec<Kpis>,
    /// The first decision that differs, in words.
    pub first_difference: Option<String>,
}

/// `config` with `changes` applied (any setting, thresholds too: the replay shows what
/// they change).
pub fn candidate_config(config: &Config, changes: &[SettingChange]) -> Result<Config, TuningError> {
    let mut c = config.clone();
    for ch in changes {
        let to = ch.setting.normalise(&ch.to)?;
        let e = &mut c.elf;
        match ch.setting {
            Setting::ParallelizeL2L3 => e.parallelize_l2_l3 = to == "true",
            Setting::EnableDecisionCache => e.enable_decision_cache = to == "true",
            Setting::DecisionCacheSize => e.decision_cache_size = parse_u64(&to),
            Setting::DecisionCacheTtlS => e.decision_cache_ttl_s = parse_u64(&to),
            Setting::ConstitutionalCompliance => {
                e.constitutional_compliance = to.parse().unwrap_or(e.constitutional_compliance)
            }
        }
    }
    Ok(c)
}

/// A setting's value in `config`, as a TOML literal.
pub fn value_in(setting: Setting, config: &Config) -> String {
    match setting {
        Setting::ConstitutionalCompliance => {
            super::tuning::literal(config.elf.constitutional_compliance)
        }
        _ => setting
            .value_in_tuning(&config.elf.gate_settings().tuning())
            .unwrap_or_default(),
    }
}

/// Replay `config` once into `work_dir/<label>` (emptied first).
pub fn measure(config: &Config, input: &AbInput, label: &str) -> Result<Measured, AbError> {
    let dir = input.work_dir.join(label);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|source| AbError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    let mut c = config.clone();
    c.sink.dir = dir.join("events");
    c.signing.heads_file = dir.join("state").join("chain_heads.json");
    c.var.snapshot.dir = dir.join("state");
    c.sink.record_inputs = false;
    let (summary, throughput) = in_process::run(c.clone(), &input.opts)?;
    let kpis = Kpis::from_run(
        &summary.gates,
        throughput.decide_latency_us,
        throughput.gate_latency_us,
        throughput.market_events_per_s,
        throughput.decisions_per_s,
    );
    let outcomes = read_outcomes(&c.sink.dir)?;
    Ok(Measured { kpis, outcomes })
}

/// Compare `candidate` with `base` over the same input.
pub fn compare(base: &Config, candidate: &Config, input: &AbInput) -> Result<AbResult, AbError> {
    let runs = input.runs_per_side.max(1);
    let (mut a_runs, mut b_runs) = (Vec::new(), Vec::new());
    let (mut a_first, mut b_first) = (None, None);
    for i in 0..runs {
        // A then B, then B then A: neither side always runs on a warmer machine.
        let order: [(bool, &Config); 2] = if i % 2 == 0 {
            [(false, base), (true, candidate)]
        } else {
            [(true, candidate), (false, base)]
        };
        for (is_b, config) in order {
            let label = format!("{}-{i}", if is_b { "b" } else { "a" });
            let m = measure(config, input, &label)?;
            if is_b {
                b_runs.push(m.kpis);
                b_first.get_or_insert(m.outcomes);
            } else {
                a_runs.push(m.kpis);
                a_first.get_or_insert(m.outcomes);
            }
        }
    }
    let (a_out, b_out) = (a_first.unwrap_or_default(), b_first.unwrap_or_default());
    let (changed, first_difference) = differences(&a_out, &b_out);
    let value = |runs: &[Kpis]| -> Result<f64, AbError> {
        let v: Vec<f64> = runs.iter().filter_map(|k| k.value(input.kpi)).collect();
        if v.is_empty() {
            return Err(AbError::NoKpi(input.kpi.as_str()));
        }
        Ok(median(&v))
    };
    let (baseline, cand) = (value(&a_runs)?, value(&b_runs)?);
    let pairs_better = pairs_better_pct(
        input.kpi,
        &a_runs
            .iter()
            .filter_map(|k| k.value(input.kpi))
            .collect::<Vec<_>>(),
        &b_runs
            .iter()
            .filter_map(|k| k.value(input.kpi))
            .collect::<Vec<_>>(),
    );
    let improvement = input.kpi.improvement_pct(baseline, cand);
    let evidence = AbEvidence {
        baseline: Num(round(baseline)),
        candidate: Num(round(cand)),
        decisions_compared: i64::try_from(a_out.len().max(b_out.len())).unwrap_or(i64::MAX),
        decisions_changed: i64::try_from(changed).unwrap_or(i64::MAX),
        improvement_pct: Num((improvement * 100.0).round() / 100.0),
        kpi: input.kpi,
        pairs_better_pct: Num((pairs_better * 100.0).round() / 100.0),
        input_sha256: input_sha256(&input.opts),
        runs_per_side: i64::try_from(runs).unwrap_or(i64::MAX),
    };
    Ok(AbResult {
        evidence,
        base_runs: a_runs,
        candidate_runs: b_runs,
        first_difference,
    })
}

/// Of all (a, b) pairs, the share in which b is better, percent (ties count half).
pub fn pairs_better_pct(kpi: KpiName, a: &[f64], b: &[f64]) -> f64 {
    let mut score = 0.0;
    for x in a {
        for y in b {
            let better = kpi.improvement_pct(*x, *y);
            score += if better > 0.0 {
                1.0
            } else if better == 0.0 {
                0.5
            } else {
                0.0
            };
        }
    }
    let pairs = (a.len() * b.len()).max(1) as f64;
    score / pairs * 100.0
}

/// Four significant decimals of a microsecond figure are plenty.
fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// How many decisions differ (or exist on one side only), and the first in words.
pub fn differences(a: &Outcomes, b: &Outcomes) -> (usize, Option<String>) {
    let mut changed = 0;
    let mut first = None;
    let keys: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let (x, y) = (a.get(key), b.get(key));
        if x != y {
            changed += 1;
            first.get_or_insert_with(|| {
                let show = |o: Option<&Outcome>| match o {
                    Some(o) => format!(
                        "{} {} at {} {:?}",
                        o.action,
                        o.verdict,
                        if o.layer.is_empty() { "-" } else { &o.layer },
                        o.reasons
                    ),
                    None => "no decision".into(),
                };
                format!("{} seq {}: A {} / B {}", key.0, key.1, show(x), show(y))
            });
        }
    }
    (changed, first)
}

/// The decisions of a trail directory's record files.
pub fn read_outcomes(dir: &Path) -> Result<Outcomes, AbError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AbError::Io { path, source }
    };
    let mut out = Outcomes::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".jsonl") && !name.ends_with(".checkpoints.jsonl")
        })
        .collect();
    files.sort();
    for path in files {
        let file = std::fs::File::open(&path).map_err(io(&path))?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(io(&path))?;
            if line.is_empty() {
                continue;
            }
            let record = parse_record(line.as_bytes()).map_err(|e| AbError::Trail {
                path: path.clone(),
                problem: format!("{e:?}"),
            })?;
            if let Payload::RiskDecision(d) = record.payload {
                let name = |v: serde_json::Value| {
                    v.get("type")
                        .and_then(|t| t.as_str())
                        .map(str::to_string)
                        .or_else(|| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                };
                out.insert(
                    (record.event.chain, record.event.seq),
                    Outcome {
                        action: name(serde_json::to_value(&d.action).unwrap_or_default()),
                        verdict: name(serde_json::to_value(d.verdict).unwrap_or_default()),
                        layer: name(serde_json::to_value(d.layer).unwrap_or_default()),
                        reasons: d.reasons.iter().map(|r| r.as_str().to_string()).collect(),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// SHA-256 over the replayed files' names and sizes (what the evidence was measured on).
pub fn input_sha256(opts: &ReplayOptions) -> String {
    let mut h = Sha256::new();
    for (role, files) in [("history", &opts.history), ("stream", &opts.files)] {
        for f in files.iter() {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let len = std::fs::metadata(f).map_or(0, |m| m.len());
            h.update(format!("{role} {name} {len}\n").as_bytes());
        }
    }
    hex::encode(h.finalize())
}
