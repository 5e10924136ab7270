//! Price series for backtests: a generic CSV with a date and a close column, the public
//! Binance trades CSV, or a Binance capture, turned into closes of fixed bars.

use std::io::Read;
use std::path::Path;

use crate::market::binance::{parse_combined, MarketEvent};
use crate::market::capture::CaptureReader;

#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{path}: no column named {wanted} in header {header:?}")]
    NoColumn {
        path: String,
        wanted: String,
        header: String,
    },
    #[error("{path}: cannot tell the format; pass --format")]
    UnknownFormat { path: String },
    #[error("{path}: {reason}")]
    Capture { path: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeriesFormat {
    /// Decide from the content.
    Auto,
    /// Header row with a date and a close column.
    Csv,
    /// Binance public trades CSV: id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch.
    BinanceTrades,
    /// `<local_ns> <json>` capture lines (optionally gzip).
    Capture,
}

/// Closes in time order, each with a label (date or bar start).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceSeries {
    pub labels: Vec<String>,
    pub closes: Vec<f64>,
}

impl PriceSeries {
    /// Log returns of consecutive closes; return i is labelled with close i + 1.
    pub fn log_returns(&self) -> Vec<f64> {
        self.closes.windows(2).map(|w| (w[1] / w[0]).ln()).collect()
    }
}

/// Read a series file (gzip or plain) in `format`; trades and captures become bars of
/// `bar_ms` (the last trade price in each non-empty bar).
pub fn read_series(
    path: &Path,
    format: SeriesFormat,
    bar_ms: i64,
    date_column: Option<&str>,
    close_column: Option<&str>,
) -> Result<PriceSeries, SeriesError> {
    let name = path.display().to_string();
    let io = |source| SeriesError::Io {
        path: name.clone(),
        source,
    };
    if format == SeriesFormat::Capture {
        return read_capture(path, bar_ms);
    }
    // Everything else is read once, as text.
    let text = read_text(path).map_err(io)?;
    let format = match format {
        SeriesFormat::Auto => detect(&text, &name)?,
        f => f,
    };
    match format {
        SeriesFormat::Capture => read_capture(path, bar_ms),
        SeriesFormat::Csv => parse_csv(&text, &name, date_column, close_column),
        SeriesFormat::BinanceTrades => parse_binance_trades(&text, &name, bar_ms),
        SeriesFormat::Auto => Err(SeriesError::UnknownFormat { path: name }),
    }
}

fn read_text(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_string(&mut text)?;
        Ok(text)
    } else {
        String::from_utf8(bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

fn detect(text: &str, name: &str) -> Result<SeriesFormat, SeriesError> {
    let first = text.lines().next().unwrap_or("").trim();
    let is_capture = first
        .split_once(' ')
        .is_some_and(|(ns, json)| ns.parse::<u64>().is_ok() && json.starts_with('{'));
    if is_capture {
        return Ok(SeriesFormat::Capture);
    }
    let fields: Vec<&str> = first.split(',').collect();
    if fields.len() == 7 && fields[0].trim().parse::<u64>().is_ok() {
        return Ok(SeriesFormat::BinanceTrades);
    }
    if fields.iter().any(|f| f.chars().any(char::is_alphabetic)) {
        return Ok(SeriesFormat::Csv);
    }
    Err(SeriesError::UnknownFormat { path: name.into() })
}

fn find_column(header: &[&str], wanted: Option<&str>, defaults: &[&str]) -> Option<usize> {
    let norm = |s: &str| s.trim().trim_matches('"').to_ascii_lowercase();
    match wanted {
        Some(w) => header.iter().position(|h| norm(h) == norm(w)),
        None => defaults
            .iter()
            .find_map(|d| header.iter().position(|h| norm(h) == *d)),
    }
}

/// A CSV with a header; the date column is `date`/`datetime`/`time`/`timestamp` and the
/// close column `adj close`/`adj_close`/`close`/`price` unless named.
pub fn parse_csv(
    text: &str,
    name: &str,
    date_column: Option<&str>,
    close_column: Option<&str>,
) -> Result<PriceSeries, SeriesError> {
    let mut lines = text.lines().enumerate();
    let header_line = lines.next().map(|(_, l)| l).unwrap_or("");
    let header: Vec<&str> = header_line.split(',').collect();
    let missing = |wanted: &str| SeriesError::NoColumn {
        path: name.into(),
        wanted: wanted.into(),
        header: header_line.into(),
    };
    let date = find_column(
        &header,
        date_column,
        &["date", "datetime", "time", "timestamp"],
    )
    .ok_or_else(|| missing(date_column.unwrap_or("date")))?;
    let close = find_column(
        &header,
        close_column,
        &["adj close", "adj_close", "close", "price"],
    )
    .ok_or_else(|| missing(close_column.unwrap_or("close")))?;
    let mut series = PriceSeries::default();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let bad = |reason: String| SeriesError::Line {
            path: name.into(),
            line: i + 1,
            reason,
        };
        let label = fields
            .get(date)
            .ok_or_else(|| bad(format!("no field {}", date + 1)))?;
        let value = fields
            .get(close)
            .ok_or_else(|| bad(format!("no field {}", close + 1)))?;
        let price = parse_price(value).map_err(bad)?;
        series
            .labels
            .push(label.trim().trim_matches('"').to_string());
        series.closes.push(price);
    }
    Ok(series)
}

fn parse_price(value: &str) -> Result<f64, String> {
    let v = value.trim().trim_matches('"');
    let price: f64 = v
        .parse()
        .map_err(|_| format!("close {v:?} is not a number"))?;
    if !(price > 0.0 && price.is_finite()) {
        return Err(format!("close {v:?} must be a positive finite price"));
    }
    Ok(price)
}

/// Public Binance trades CSV, no header; times in ms, or in µs (files from 2025 on).
pub fn parse_binance_trades(
    text: &str,
    name: &str,
    bar_ms: i64,
) -> Result<PriceSeries, SeriesError> {
    let trades = crate::market::trades_csv::parse(text).map_err(|e| SeriesError::Line {
        path: name.into(),
        line: e.line,
        reason: e.reason,
    })?;
    let mut bars = Bars::new(bar_ms);
    for t in trades {
        bars.push(t.time_ms, t.price);
    }
    Ok(bars.finish())
}

fn read_capture(path: &Path, bar_ms: i64) -> Result<PriceSeries, SeriesError> {
    let name = path.display().to_string();
    let err = |reason: String| SeriesError::Capture {
        path: name.clone(),
        reason,
    };
    let mut reader = CaptureReader::open(path).map_err(|e| err(e.to_string()))?;
    let mut bars = Bars::new(bar_ms);
    while let Some(line) = reader.next_line().map_err(|e| err(e.to_string()))? {
        if !line.stream().is_some_and(|s| s.ends_with("@trade")) {
            continue;
        }
        if let Ok(MarketEvent::Trade(t)) = parse_combined(&line.json) {
            bars.push(t.trade_time_ms, t.price);
        }
    }
    Ok(bars.finish())
}

/// Last price of each non-empty bar, labelled by the bar start (UTC).
struct Bars {
    bar_ms: i64,
    current: Option<(i64, f64)>,
    series: PriceSeries,
}

impl Bars {
    fn new(bar_ms: i64) -> Self {
        Self {
            bar_ms: bar_ms.max(1),
            current: None,
            series: PriceSeries::default(),
        }
    }

    fn push(&mut self, time_ms: i64, price: f64) {
        let start = time_ms.div_euclid(self.bar_ms) * self.bar_ms;
        match &mut self.current {
            Some((s, close)) if *s == start => *close = price,
            _ => {
                self.close_bar();
                self.current = Some((start, price));
            }
        }
    }

    fn close_bar(&mut self) {
        if let Some((start, close)) = self.current.take() {
            self.series.labels.push(utc_label(start));
            self.series.closes.push(close);
        }
    }

    fn finish(mut self) -> PriceSeries {
        self.close_bar();
        self.series
    }
}

pub use crate::clock::utc_label;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_csv_finds_columns_and_rejects_bad_rows() {
        let s = parse_csv(
            "Date,Open,Close\n2020-01-02,1,10\n2020-01-03,1,11\n",
            "x",
            None,
            None,
        )
        .unwrap();
        assert_eq!(s.closes, vec![10.0, 11.0]);
        assert_eq!(s.labels[1], "2020-01-03");
        let e = parse_csv("date,close\n2020-01-02,abc\n", "x", None, None).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = parse_csv("date,close\n2020-01-02,-1\n", "x", None, None).unwrap_err();
        assert!(e.to_string().contains("positive"), "{e}");
        let e = parse_csv("when,px\n", "x", None, None).unwrap_err();
        assert!(matches!(e, SeriesError::NoColumn { .. }));
        let s = parse_csv("when,px\nd1,2\n", "x", Some("WHEN"), Some("px")).unwrap();
        assert_eq!(s.closes, vec![2.0]);
    }

    #[test]
    fn binance_trades_csv_in_ms_and_us_make_the_same_bars() {
        let ms = "1,100.0,1,100,1700000000000,true,true\n\
                  2,101.0,1,101,1700000000500,false,true\n\
                  3,102.0,1,102,1700000001200,false,true\n";
        let us = ms
            .replace("000000,", "000000000,")
            .replace("000500,", "000500000,");
        let us = us.replace("001200,", "001200000,");
        let a = parse_binance_trades(ms, "x", 1000).unwrap();
        let b = parse_binance_trades(&us, "x", 1000).unwrap();
        assert_eq!(a.closes, vec![101.0, 102.0]);
        assert_eq!(a, b);
        assert_eq!(a.labels[0], "2023-11-14T22:13:20.000Z");
        let e = parse_binance_trades("2,1,1,1,1,true,true\n1,1,1,1,2,true,true\n", "x", 1000)
            .unwrap_err();
        assert!(e.to_string().contains("not increasing"), "{e}");
    }

    #[test]
    fn utc_labels() {
        assert_eq!(utc_label(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_label(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc_label(-1), "1969-12-31T23:59:59.999Z");
    }
}
