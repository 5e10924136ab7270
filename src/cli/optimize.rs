//! `bizra-risk optimize`: measure the gate's KPIs over a replay of a capture (or read them
//! from a live engine's `/metrics`), recommend setting changes with their expected effect
//! and evidence, confirm each by an A/B replay of the same capture, and, with `--apply`,
//! send the best confirmed change to a running engine as an authenticated control request
//! (the engine signs it and watches its KPI). Dry run by default.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use bizra_risk::config::Config;
use bizra_risk::optimizer::ab::candidate_config;
use bizra_risk::optimizer::ab::{self, AbInput, AbResult};
use bizra_risk::optimizer::tuning::as_toml;
use bizra_risk::optimizer::{
    prometheus_text, recommend, AbEvidence, Applies, KpiName, Kpis, Recommendation, Setting,
    SettingChange,
};
use bizra_risk::replay::{ReplayOptions, Speed};
use serde::Serialize;

use super::captures::{default_data_dir, expand_capture_paths, split_history};
use super::demo::output_config;

#[derive(clap::Args)]
pub struct OptimizeArgs {
    /// The configuration measured (layered over the embedded defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Capture directory replayed to measure and to compare (default: the bundled one).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Recommend from a live engine's KPIs: its /metrics URL ...
    #[arg(long, conflicts_with = "metrics_file")]
    pub metrics_url: Option<String>,
    /// ... or a saved /metrics page.
    #[arg(long)]
    pub metrics_file: Option<PathBuf>,
    /// The KPI the A/B replays compare: DECIDE_MEAN_US, DECIDE_P50_US, DECIDE_P95_US,
    /// DECIDE_P99_US, GATE_MEAN_US, GATE_P99_US or MARKET_EVENTS_PER_S.
    #[arg(long, default_value = "DECIDE_MEAN_US")]
    pub kpi: String,
    /// Replays per side of each A/B comparison (alternating A and B).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// A change is applied only when the KPI improves by at least this much, percent.
    #[arg(long, default_value_t = 1.0)]
    pub min_improvement_pct: f64,
    /// ... and B beats A in at least this share of (A run, B run) pairs, percent.
    #[arg(long, default_value_t = 75.0)]
    pub min_pairs_better_pct: f64,
    /// Also compare this change (SETTING=VALUE, e.g. elf.decision_cache_ttl_s=300).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Send the best confirmed change to the engine at --engine (otherwise: dry run).
    #[arg(long, requires = "engine")]
    pub apply: bool,
    /// The engine's HTTP address, e.g. http://127.0.0.1:9464.
    #[arg(long)]
    pub engine: Option<String>,
    /// File holding an operator token (owner-only); else BIZRA_CONTROL_TOKEN.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Where the replays write their trails.
    #[arg(long, default_value = "out/optimize")]
    pub out: PathBuf,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// What became of a candidate change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Verdict {
    /// Better by at least the minimum, every decision the same.
    Confirmed,
    /// Every decision the same, but not better by the minimum.
    NotBetter,
    /// Some decision differs: never applied.
    DecisionsChanged,
    /// Changes decisions by nature (a threshold): for a person to decide.
    RecommendOnly,
}

#[derive(Serialize)]
struct Candidate {
    changes: Vec<SettingChange>,
    applies: Applies,
    expected: String,
    evidence: String,
    verdict: Verdict,
    ab: AbEvidence,
    first_difference: Option<String>,
    baseline_runs: Vec<f64>,
    candidate_runs: Vec<f64>,
}

#[derive(Serialize)]
struct Report {
    kpi: KpiName,
    kpis_from: String,
    kpis: Kpis,
    candidates: Vec<Candidate>,
    /// The change applied, or that --apply would apply.
    chosen: Option<usize>,
    applied: Option<serde_json::Value>,
}

pub fn run(args: OptimizeArgs) -> anyhow::Result<ExitCode> {
    let kpi = KpiName::parse(&args.kpi)
        .with_context(|| format!("--kpi {:?} is not a KPI the A/B replays measure", args.kpi))?;
    let pct_ok = |x: f64| x.is_finite() && (0.0..=100.0).contains(&x);
    if !pct_ok(args.min_improvement_pct) || !pct_ok(args.min_pairs_better_pct) {
        bail!("--min-improvement-pct and --min-pairs-better-pct must be in [0, 100]");
    }
    let data = args.data.clone().unwrap_or_else(default_data_dir);
    let (history, files) = split_history(&expand_capture_paths(&[data])?);
    let config = output_config(&args.out, args.config.as_deref(), None, true)?;
    config.validate()?;
    let mut opts = ReplayOptions::new(files, Speed::Max);
    opts.history = history;
    let input = AbInput {
        opts,
        work_dir: args.out.join("runs"),
        runs_per_side: args.runs.max(1),
        kpi,
    };
    let mut out = std::io::stdout().lock();

    // What the recommendations start from: the live engine's KPIs, or a replay's.
    let (kpis, kpis_from) = match (&args.metrics_url, &args.metrics_file) {
        (Some(url), _) => (
            prometheus_text::parse(&http_get(url)?)?,
            format!("live metrics at {url}"),
        ),
        (None, Some(file)) => (
            prometheus_text::parse(&std::fs::read_to_string(file)?)?,
            format!("metrics page {}", file.display()),
        ),
        (None, None) => (
            ab::measure(&config, &input, "measure")?.kpis,
            "a replay of the capture".to_string(),
        ),
    };
    let tuning = config.elf.gate_settings().tuning();
    let mut recs = recommend(&kpis, &tuning, config.elf.constitutional_compliance);
    for s in &args.set {
        recs.push(asked_for(s, &config)?);
    }
    writeln!(out, "KPIs ({kpis_from}):")?;
    write_kpis(&mut out, &kpis)?;
    if recs.is_empty() {
        writeln!(
            out,
            "\nno change recommended: the settings suit what was measured"
        )?;
    }

    let mut candidates = Vec::new();
    for rec in recs {
        writeln!(
            out,
            "\ncomparing {} {} -> {} ({} runs per side) ...",
            rec.change.setting.key(),
            rec.change.from,
            rec.change.to,
            input.runs_per_side
        )?;
        let changes = vec![rec.change.clone()];
        let candidate = candidate_config(&config, &changes)?;
        let result = ab::compare(&config, &candidate, &input)?;
        let c = judge(
            changes,
            rec.applies,
            rec.expected,
            rec.evidence,
            result,
            &args,
        );
        write_candidate(&mut out, &c)?;
        candidates.push(c);
    }

    // Several confirmed changes: their combination is compared too.
    let confirmed: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].verdict == Verdict::Confirmed)
        .collect();
    let best_single = confirmed.iter().copied().max_by(|&a, &b| {
        candidates[a]
            .ab
            .improvement_pct
            .0
            .total_cmp(&candidates[b].ab.improvement_pct.0)
    });
    let mut chosen = best_single;
    if confirmed.len() > 1 {
        let changes: Vec<SettingChange> = confirmed
            .iter()
            .flat_map(|&i| candidates[i].changes.clone())
            .collect();
        let distinct: std::collections::BTreeSet<Setting> =
            changes.iter().map(|c| c.setting).collect();
        if distinct.len() == changes.len() {
            writeln!(out, "\ncomparing the confirmed changes together ...")?;
            let candidate = candidate_config(&config, &changes)?;
            let result = ab::compare(&config, &candidate, &input)?;
            let c = judge(
                changes,
                Applies::AfterAbReplay,
                "the confirmed changes together".into(),
                "each was confirmed alone".into(),
                result,
                &args,
            );
            write_candidate(&mut out, &c)?;
            let better = best_single
                .is_none_or(|b| c.ab.improvement_pct.0 > candidates[b].ab.improvement_pct.0);
            if c.verdict == Verdict::Confirmed && better {
                chosen = Some(candidates.len());
            }
            candidates.push(c);
        }
    }

    let mut applied = None;
    let mut code = ExitCode::SUCCESS;
    match chosen.map(|i| &candidates[i]) {
        Some(c) => {
            writeln!(
                out,
                "\nchange to make ({} {:+.2} %):\n{}",
                kpi.as_str(),
                c.ab.improvement_pct.0,
                as_toml(&c.changes)
            )?;
            if args.apply {
                let engine = args.engine.as_deref().unwrap_or_default();
                let (status, body) = apply(engine, args.token_file.as_ref(), c)?;
                writeln!(out, "applied at {engine}: HTTP {status} {body}")?;
                if status != 200 {
                    code = ExitCode::from(1);
                }
                applied = Some(serde_json::json!({"status": status, "answer": body}));
            } else {
                writeln!(
                    out,
                    "dry run: nothing applied (--apply --engine URL applies it)"
                )?;
            }
        }
        None => {
            writeln!(
                out,
                "\nnothing to apply: no change was confirmed by the A/B replays"
            )?;
            if args.apply {
                code = ExitCode::from(1);
            }
        }
    }
    if let Some(path) = &args.json {
        let report = Report {
            kpi,
            kpis_from,
            kpis,
            candidates,
            chosen,
            applied,
        };
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(code)
}

/// A `--set SETTING=VALUE` as a recommendation to compare.
fn asked_for(spec: &str, config: &Config) -> anyhow::Result<Recommendation> {
    let (key, value) = spec
        .split_once('=')
        .with_context(|| format!("--set {spec:?}: expected SETTING=VALUE"))?;
    let setting = Setting::parse(key.trim())?;
    let to = setting.normalise(value)?;
    Ok(Recommendation {
        change: SettingChange {
            from: ab::value_in(setting, config),
            setting,
            to,
        },
        applies: if setting.alters_decisions() {
            Applies::RecommendOnly
        } else {
            Applies::AfterAbReplay
        },
        expected: "asked for with --set".into(),
        evidence: "--set".into(),
    })
}

fn judge(
    changes: Vec<SettingChange>,
    applies: Applies,
    expected: String,
    evidence: String,
    result: AbResult,
    args: &OptimizeArgs,
) -> Candidate {
    let ab = result.evidence;
    let verdict = if ab.decisions_changed > 0 {
        Verdict::DecisionsChanged
    } else if applies == Applies::RecommendOnly {
        Verdict::RecommendOnly
    } else if ab.improvement_pct.0 >= args.min_improvement_pct
        && ab.pairs_better_pct.0 >= args.min_pairs_better_pct
    {
        Verdict::Confirmed
    } else {
        Verdict::NotBetter
    };
    let values = |runs: &[Kpis]| runs.iter().filter_map(|k| k.value(ab.kpi)).collect();
    Candidate {
        changes,
        applies,
        expected,
        evidence,
        verdict,
        baseline_runs: values(&result.base_runs),
        candidate_runs: values(&result.candidate_runs),
        ab,
        first_difference: result.first_difference,
    }
}

fn write_kpis(out: &mut impl Write, k: &Kpis) -> std::io::Result<()> {
    let p = |x: &bizra_risk::optimizer::Percentiles| {
        format!(
            "mean {:.3}  p50 {:.3}  p95 {:.3}  p99 {:.3}",
            x.mean, x.p50, x.p95, x.p99
        )
    };
    writeln!(out, "  decisions            {}", k.decisions)?;
    writeln!(out, "  decide L0-L3 (µs)    {}", p(&k.decide_us))?;
    writeln!(out, "  gate L0-L4 (µs)      {}", p(&k.gate_us))?;
    for (layer, v) in &k.layer_us {
        writeln!(out, "  {layer:<20} {}", p(v))?;
    }
    if let Some(x) = k.market_events_per_s {
        writeln!(out, "  market events/s      {x:.0}")?;
    }
    if let Some(x) = k.decisions_per_s {
        writeln!(out, "  decisions/s          {x:.0}")?;
    }
    writeln!(out, "  block rate           {:.2} %", k.block_rate * 100.0)?;
    for (reason, r) in &k.block_rate_by_reason {
        writeln!(out, "    {reason:<32} {:.2} %", r * 100.0)?;
    }
    match k.cache_hit_rate {
        Some(h) => writeln!(
            out,
            "  cache hit rate       {:.2} % of {} lookups",
            h * 100.0,
            k.cache_lookups
        )?,
        None => writeln!(out, "  cache hit rate       - (cache off)")?,
    }
    writeln!(out, "  error rate           {:.2} %", k.error_rate * 100.0)
}

fn write_candidate(out: &mut impl Write, c: &Candidate) -> std::io::Result<()> {
    writeln!(out, "  expected: {}", c.expected)?;
    writeln!(out, "  because:  {}", c.evidence)?;
    writeln!(
        out,
        "  A/B:      {} {:.4} -> {:.4} ({:+.2} %, B better in {:.0} % of run pairs; runs A {:?}, B {:?})",
        c.ab.kpi.as_str(),
        c.ab.baseline.0,
        c.ab.candidate.0,
        c.ab.improvement_pct.0,
        c.ab.pairs_better_pct.0,
        c.baseline_runs
            .iter()
            .map(|x| (x * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>(),
        c.candidate_runs
            .iter()
            .map(|x| (x * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>()
    )?;
    writeln!(
        out,
        "  decisions: {} compared, {} changed{}",
        c.ab.decisions_compared,
        c.ab.decisions_changed,
        c.first_difference
            .as_ref()
            .map(|d| format!(" (first: {d})"))
            .unwrap_or_default()
    )?;
    let verdict = match c.verdict {
        Verdict::Confirmed => "CONFIRMED: better, same decisions",
        Verdict::NotBetter => {
            "NOT_BETTER: same decisions, not better by the minimum or not consistently"
        }
        Verdict::DecisionsChanged => "DECISIONS_CHANGED: never applied",
        Verdict::RecommendOnly => "RECOMMEND_ONLY: changes decisions by nature; a person decides",
    };
    writeln!(out, "  verdict:  {verdict}")
}

/// The operator token: from `--token-file` (owner-only), else `BIZRA_CONTROL_TOKEN`.
fn token(file: Option<&PathBuf>) -> anyhow::Result<bizra_risk::secret::Secret> {
    match file {
        Some(path) => Ok(bizra_risk::secret::read_secret_file(path)?),
        None => match std::env::var("BIZRA_CONTROL_TOKEN") {
            Ok(t) if !t.trim().is_empty() => Ok(bizra_risk::secret::Secret::new(t.trim().into())),
            _ => bail!("--apply needs an operator token: --token-file or BIZRA_CONTROL_TOKEN"),
        },
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

fn http_get(url: &str) -> anyhow::Result<String> {
    let mut response = agent()
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    if response.status() != 200 {
        bail!("GET {url}: HTTP {}", response.status());
    }
    Ok(response
        .body_mut()
        .with_config()
        .limit(16 * 1024 * 1024)
        .read_to_string()?)
}

/// POST the change to the engine's control plane; its status and answer.
fn apply(
    engine: &str,
    token_file: Option<&PathBuf>,
    c: &Candidate,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let token = token(token_file)?;
    let body = serde_json::json!({
        "changes": c.changes.iter().map(|ch| serde_json::json!({
            "setting": ch.setting.key(),
            "to": ch.to,
        })).collect::<Vec<_>>(),
        "evidence": c.ab,
    });
    let url = format!("{}/control/config/apply", engine.trim_end_matches('/'));
    let mut response = agent()
        .post(&url)
        .header("Authorization", &format!("Bearer {}", token.expose()))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .with_context(|| format!("POST {url}"))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(1024 * 1024)
        .read_to_string()
        .unwrap_or_default();
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    ))
}
