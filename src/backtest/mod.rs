//! One-step-ahead VaR / ES backtests of several models side by side, with Kupiec,
//! Christoffersen, the Basel traffic light and Acerbi-Szekely Z2. Pure: series in,
//! report out.
//!
//! Conventions (reproducible elsewhere): returns are log returns of consecutive closes;
//! each model is seeded with the population variance of the first `init_returns` returns
//! and absorbs them; the forecast for return t uses returns 0..t-1 only.

pub mod models;
pub mod series;
pub mod stats;

use std::fmt::Write as _;

use serde::Serialize;

use crate::var::fhs::FhsParams;
use models::{Forecast, Forecaster, ModelSpec};
use stats::{BaselZone, LrTest};

/// What to backtest and how.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestSettings {
    /// Tail probabilities (0.01 = 99 % VaR).
    pub alphas: Vec<f64>,
    pub models: Vec<ModelSpec>,
    pub init_returns: usize,
    /// Significance of the pass / fail verdicts.
    pub significance: f64,
    /// Observations of the Basel traffic light (at 1 %).
    pub basel_window: usize,
}

impl Default for BacktestSettings {
    fn default() -> Self {
        let fhs = FhsParams::default();
        Self {
            alphas: vec![0.01, 0.025, 0.05],
            models: vec![
                ModelSpec::Fhs {
                    params: fhs.clone(),
                },
                ModelSpec::Fhs {
                    params: FhsParams {
                        aci_step: 0.0,
                        ..fhs
                    },
                },
                ModelSpec::Nig { lambda: 0.97 },
                ModelSpec::Nig { lambda: 0.99 },
                ModelSpec::Nig { lambda: 0.995 },
                ModelSpec::Ewma { lambda: 0.94 },
                ModelSpec::Hs { window: 250 },
            ],
            init_returns: 50,
            significance: 0.05,
            basel_window: 250,
        }
    }
}

/// Results of one model at one tail probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelResult {
    pub alpha: f64,
    pub forecasts: usize,
    pub exceedances: usize,
    pub expected: f64,
    pub kupiec: LrTest,
    pub independence: LrTest,
    pub conditional_coverage: LrTest,
    /// Kupiec and conditional coverage both not rejected at the significance level.
    pub pass: bool,
    /// Traffic light over the last `basel_window` forecasts (reported at 1 % only).
    pub basel_zone: Option<BaselZone>,
    pub basel_exceedances: Option<usize>,
    /// Acerbi-Szekely Z2 of the ES forecasts, and whether it is above the 5 % threshold.
    pub z2: f64,
    pub z2_pass: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelResult {
    pub id: String,
    pub label: String,
    pub spec: ModelSpec,
    /// Index of the first return that got a forecast.
    pub first_forecast: Option<usize>,
    pub levels: Vec<LevelResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestReport {
    pub returns: usize,
    pub first_label: Option<String>,
    pub last_label: Option<String>,
    pub significance: f64,
    pub models: Vec<ModelResult>,
}

/// All forecasts, for `--forecasts`: `[model][return index]` -> per-level figures.
pub struct ForecastTable {
    pub models: Vec<String>,
    pub alphas: Vec<f64>,
    pub rows: Vec<Vec<Option<Vec<Forecast>>>>,
}

/// Run every model over `returns` (labels are those of the returns, for the report).
pub fn run(
    returns: &[f64],
    labels: &[String],
    settings: &BacktestSettings,
) -> (BacktestReport, ForecastTable) {
    let mut table = ForecastTable {
        models: settings.models.iter().map(ModelSpec::id).collect(),
        alphas: settings.alphas.clone(),
        rows: Vec::with_capacity(settings.models.len()),
    };
    let mut results = Vec::with_capacity(settings.models.len());
    let mut buf = Vec::with_capacity(settings.alphas.len());
    for spec in &settings.models {
        let mut model = Forecaster::new(spec.clone(), &settings.alphas, settings.init_returns);
        let mut per_return = Vec::with_capacity(returns.len());
        let mut first = None;
        let mut hits = vec![Vec::new(); settings.alphas.len()];
        let mut es = vec![Vec::new(); settings.alphas.len()];
        let mut realised = Vec::new();
        for (t, &r) in returns.iter().enumerate() {
            if model.forecast(&mut buf) {
                first.get_or_insert(t);
                realised.push(r);
                for (l, f) in buf.iter().enumerate() {
                    hits[l].push(-r > f.var);
                    es[l].push(f.es);
                }
                per_return.push(Some(buf.clone()));
            } else {
                per_return.push(None);
            }
            model.update(r);
        }
        let levels = settings
            .alphas
            .iter()
            .enumerate()
            .map(|(l, &alpha)| level_result(alpha, &hits[l], &es[l], &realised, settings))
            .collect();
        results.push(ModelResult {
            id: spec.id(),
            label: spec.label(),
            spec: spec.clone(),
            first_forecast: first,
            levels,
        });
        table.rows.push(per_return);
    }
    let report = BacktestReport {
        returns: returns.len(),
        first_label: labels.first().cloned(),
        last_label: labels.last().cloned(),
        significance: settings.significance,
        models: results,
    };
    (report, table)
}

fn level_result(
    alpha: f64,
    hits: &[bool],
    es: &[f64],
    realised: &[f64],
    settings: &BacktestSettings,
) -> LevelResult {
    let kupiec = stats::kupiec(hits, alpha);
    let independence = stats::christoffersen_independence(hits);
    let conditional_coverage = stats::christoffersen_cc(hits, alpha);
    let exceedances = hits.iter().filter(|h| **h).count();
    let (basel_zone, basel_exceedances) = if (alpha - 0.01).abs() < 1e-12 && !hits.is_empty() {
        let recent = &hits[hits.len().saturating_sub(settings.basel_window)..];
        let x = recent.iter().filter(|h| **h).count();
        (Some(stats::basel_zone(recent.len(), x, alpha)), Some(x))
    } else {
        (None, None)
    };
    let z2 = stats::acerbi_szekely_z2(realised, es, hits, alpha);
    LevelResult {
        alpha,
        forecasts: hits.len(),
        exceedances,
        expected: hits.len() as f64 * alpha,
        pass: kupiec.passes(settings.significance)
            && conditional_coverage.passes(settings.significance),
        kupiec,
        independence,
        conditional_coverage,
        basel_zone,
        basel_exceedances,
        z2,
        z2_pass: z2 >= stats::Z2_REJECT_5PCT,
    }
}

/// Human table: one row per model and level.
pub fn render_table(report: &BacktestReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} returns ({} .. {}); verdicts at {} % significance",
        report.returns,
        report.first_label.as_deref().unwrap_or("-"),
        report.last_label.as_deref().unwrap_or("-"),
        report.significance * 100.0
    );
    let _ = writeln!(
        out,
        "{:<20} {:>6} {:>6} {:>5} {:>7} {:>8} {:>7} {:>8} {:>7} {:>8} {:>7} {:>6} {:>7} {:>4}",
        "model",
        "alpha",
        "n",
        "exc",
        "exp",
        "LRpof",
        "p",
        "LRind",
        "p",
        "LRcc",
        "p",
        "basel",
        "Z2",
        ""
    );
    for m in &report.models {
        for l in &m.levels {
            let basel = match (l.basel_zone, l.basel_exceedances) {
                (Some(z), Some(x)) => format!("{}{x}", zone_letter(z)),
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "{:<20} {:>6} {:>6} {:>5} {:>7.1} {:>8.3} {:>7.4} {:>8.3} {:>7.4} {:>8.3} {:>7.4} {:>6} {:>7.3} {:>4}",
                m.label,
                format!("{}%", l.alpha * 100.0),
                l.forecasts,
                l.exceedances,
                l.expected,
                l.kupiec.lr,
                l.kupiec.p_value,
                l.independence.lr,
                l.independence.p_value,
                l.conditional_coverage.lr,
                l.conditional_coverage.p_value,
                basel,
                l.z2,
                if l.pass { "PASS" } else { "FAIL" }
            );
        }
    }
    let _ = writeln!(
        out,
        "PASS = Kupiec POF and Christoffersen cc not rejected; basel = zone (G/Y/R) and \
         exceedances over the last forecasts at 1 %; Z2 < {} rejects ES at 5 %.",
        stats::Z2_REJECT_5PCT
    );
    out
}

fn zone_letter(z: BaselZone) -> char {
    match z {
        BaselZone::Green => 'G',
        BaselZone::Yellow => 'Y',
        BaselZone::Red => 'R',
    }
}

/// CSV of every forecast: index,label,return, then `<model>_var_<alpha>`,
/// `<model>_es_<alpha>` per model and level (empty while a model warms up).
pub fn write_forecasts_csv<W: std::io::Write>(
    out: &mut W,
    table: &ForecastTable,
    returns: &[f64],
    labels: &[String],
) -> std::io::Result<()> {
    let mut header = String::from("index,label,return");
    for m in &table.models {
        for a in &table.alphas {
            let _ = write!(header, ",{m}_var_{a},{m}_es_{a}");
        }
    }
    writeln!(out, "{header}")?;
    let mut line = String::new();
    for (t, r) in returns.iter().enumerate() {
        if table.rows.iter().all(|rows| rows[t].is_none()) {
            continue;
        }
        line.clear();
        let label = labels.get(t).map(String::as_str).unwrap_or("");
        let _ = write!(line, "{t},{label},{r}");
        for rows in &table.rows {
            match &rows[t] {
                Some(fs) => {
                    for f in fs {
                        let _ = write!(line, ",{},{}", f.var, f.es);
                    }
                }
                None => line.push_str(&",,".repeat(table.alphas.len())),
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn iid_normal_series_passes_and_forecasts_start_where_documented() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let normal = Normal::new(0.0, 0.01).unwrap();
        let returns: Vec<f64> = (0..3000).map(|_| normal.sample(&mut rng)).collect();
        let labels: Vec<String> = (0..returns.len()).map(|i| i.to_string()).collect();
        let (report, table) = run(&returns, &labels, &BacktestSettings::default());
        for m in &report.models {
            let expected_first = if m.id.starts_with("fhs") { 250 } else { 50 };
            assert_eq!(m.first_forecast, Some(expected_first), "{}", m.id);
            let l = &m.levels[2];
            assert_eq!(l.forecasts, returns.len() - expected_first);
            assert!(l.kupiec.p_value > 0.001, "{} {:?}", m.id, l);
        }
        let mut csv = Vec::new();
        write_forecasts_csv(&mut csv, &table, &returns, &labels).unwrap();
        let text = String::from_utf8(csv).unwrap();
        assert_eq!(text.lines().count(), 1 + returns.len() - 50);
        let width = text.lines().next().unwrap().split(',').count();
        assert!(text.lines().all(|l| l.split(',').count() == width));
        assert!(render_table(&report).contains("FHS+ACI"));
    }
}
