//! `bizra-risk backtest`.

use super::prelude::*;
use bizra_risk::backtest::{
    self,
    models::ModelSpec,
    series::{read_series, SeriesFormat},
    BacktestSettings,
};

#[derive(clap::Args)]
pub struct BacktestArgs {
    /// Price series: CSV with date and close columns, Binance trades CSV, or a capture.
    pub series: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    pub format: SeriesFormat,
    /// Bar length for trades and captures: e.g. 1s, 1m, 1h, 1d.
    #[arg(long, default_value = "1m")]
    pub bar: String,
    /// Date column of a generic CSV (default: date/datetime/time/timestamp).
    #[arg(long)]
    pub date_column: Option<String>,
    /// Close column of a generic CSV (default: adj close/close/price).
    #[arg(long)]
    pub close_column: Option<String>,
    /// Only rows whose label is >= this (e.g. 2014-01-01).
    #[arg(long)]
    pub from: Option<String>,
    /// Tail probabilities, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.025,0.05")]
    pub alphas: Vec<f64>,
    /// Forgetting factors of the NIG models, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.97,0.99,0.995")]
    pub nig_lambdas: Vec<f64>,
    #[arg(long, default_value_t = 0.94)]
    pub ewma_lambda: f64,
    #[arg(long, default_value_t = 250)]
    pub hs_window: usize,
    /// Machine-readable report.
    #[arg(long)]
    pub json: bool,
    /// Write every forecast to this CSV.
    #[arg(long)]
    pub forecasts: Option<PathBuf>,
}

pub fn run(args: BacktestArgs) -> anyhow::Result<ExitCode> {
    let BacktestArgs {
        series,
        format,
        bar,
        date_column,
        close_column,
        from,
        alphas,
        nig_lambdas,
        ewma_lambda,
        hs_window,
        json,
        forecasts,
    } = args;
    let bar_ms = parse_duration_ms(&bar)?;
    let mut prices = read_series(
        &series,
        format,
        bar_ms,
        date_column.as_deref(),
        close_column.as_deref(),
    )?;
    if let Some(from) = &from {
        let start = prices
            .labels
            .partition_point(|l| l.as_str() < from.as_str());
        prices.labels.drain(..start);
        prices.closes.drain(..start);
    }
    let returns = prices.log_returns();
    let labels = prices.labels.get(1..).unwrap_or_default();
    let mut settings = BacktestSettings {
        alphas,
        ..BacktestSettings::default()
    };
    settings
        .models
        .retain(|m| matches!(m, ModelSpec::Fhs { .. }));
    settings
        .models
        .extend(nig_lambdas.iter().map(|&lambda| ModelSpec::Nig { lambda }));
    settings.models.push(ModelSpec::Ewma {
        lambda: ewma_lambda,
    });
    settings.models.push(ModelSpec::Hs { window: hs_window });
    let problems = backtest_problems(&settings, returns.len());
    if !problems.is_empty() {
        bail!("invalid backtest:\n  {}", problems.join("\n  "));
    }
    let (report, table) = backtest::run(&returns, labels, &settings);
    if let Some(path) = &forecasts {
        let file =
            std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        backtest::write_forecasts_csv(&mut w, &table, &returns, labels)?;
        w.flush()?;
    }
    let mut stdout = std::io::stdout().lock();
    if json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(stdout, "{}", backtest::render_table(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `500ms`, `1s`, `1m`, `1h`, `1d`.
fn parse_duration_ms(text: &str) -> anyhow::Result<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: i64 = n
        .parse()
        .with_context(|| format!("bar {text:?}: expected e.g. 1s, 1m, 1h, 1d"))?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("bar {text:?}: unit must be ms, s, m, h or d"),
    };
    if n <= 0 {
        bail!("bar {text:?}: must be positive");
    }
    Ok(n * unit_ms)
}

fn backtest_problems(settings: &BacktestSettings, returns: usize) -> Vec<String> {
    let mut problems = Vec::new();
    for a in &settings.alphas {
        if !(*a > 0.0 && *a < 1.0 / 3.0) {
            problems.push(format!("alpha {a} must be in (0, 1/3)"));
        }
    }
    for m in &settings.models {
        match m {
            ModelSpec::Nig { lambda } | ModelSpec::Ewma { lambda }
                if !(*lambda > 0.0 && *lambda <= 1.0) =>
            {
                problems.push(format!("{}: lambda must be in (0, 1]", m.label()))
            }
            ModelSpec::Hs { window } if *window < 2 => {
                problems.push(format!("{}: window must be >= 2", m.label()))
            }
            _ => {}
        }
    }
    if returns <= settings.init_returns {
        problems.push(format!(
            "the series has {returns} returns; more than {} are needed",
            settings.init_returns
        ));
    }
    problems
}
