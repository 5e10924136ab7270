//! Time bars in exchange time and the log returns between their closes.

use serde::Serialize;

/// Empty bars filled after a silence longer than this are not emitted one by one.
pub const MAX_FILLED_BARS: i64 = 3600;

/// A closed bar and the log return from the previous close (none for the first bar).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClosedBar {
    pub start_ms: i64,
    pub end_ms: i64,
    pub close: f64,
    pub log_return: Option<f64>,
    /// Trade IDs inside the bar; `None` for a bar without trades.
    pub first_trade_id: Option<u64>,
    pub last_trade_id: Option<u64>,
    pub trades: u32,
}

#[derive(Debug, Clone)]
struct OpenBar {
    start_ms: i64,
    close: f64,
    first_trade_id: u64,
    last_trade_id: u64,
    trades: u32,
}

/// Builds fixed-length bars from trades; a bar closes when a trade arrives past its end.
#[derive(Debug, Clone)]
pub struct BarBuilder {
    interval_ms: i64,
    open: Option<OpenBar>,
    last_close: Option<f64>,
    /// Start of the newest closed bar, so a silence after it is filled.
    last_closed_start: Option<i64>,
}

impl BarBuilder {
    pub fn new(interval_ms: i64) -> Self {
        Self {
            interval_ms: interval_ms.max(1),
            open: None,
            last_close: None,
            last_closed_start: None,
        }
    }

    /// Continue after history (klines or a snapshot): the bar starting at
    /// `last_bar_start_ms` closed at `close`; the next bar's return is taken from it.
    pub fn resume(&mut self, last_bar_start_ms: i64, close: f64) {
        self.open = None;
        self.last_close = Some(close);
        self.last_closed_start = Some(last_bar_start_ms);
    }

    /// Close price and start of the newest closed bar.
    pub fn last_closed(&self) -> Option<(i64, f64)> {
        self.last_closed_start.zip(self.last_close)
    }

    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// Add a trade; closed bars (including empty bars during a silence) go to `out`.
    pub fn push(&mut self, time_ms: i64, price: f64, trade_id: u64, out: &mut Vec<ClosedBar>) {
        let start = time_ms.div_euclid(self.interval_ms) * self.interval_ms;
        if let Some(bar) = self.open.as_mut().filter(|b| start <= b.start_ms) {
            bar.close = price;
            bar.last_trade_id = trade_id;
            bar.trades += 1;
            return;
        }
        let prev_start = match self.open.take() {
            Some(bar) => {
                let prev = bar.start_ms;
                self.close_bar(bar, out);
                Some(prev)
            }
            None => self.last_closed_start.filter(|p| *p < start),
        };
        if let Some(prev_start) = prev_start {
            let missing = ((start - prev_start) / self.interval_ms - 1).min(MAX_FILLED_BARS);
            let first_missing = start - missing * self.interval_ms;
            let close = self.last_close.unwrap_or(price);
            for i in 0..missing {
                let s = first_missing + i * self.interval_ms;
                out.push(ClosedBar {
                    start_ms: s,
                    end_ms: s + self.interval_ms,
                    close,
                    log_return: Some(0.0),
                    first_trade_id: None,
                    last_trade_id: None,
                    trades: 0,
                });
            }
        }
        self.open = Some(OpenBar {
            start_ms: start,
            close: price,
            first_trade_id: trade_id,
            last_trade_id: trade_id,
            trades: 1,
        });
    }

    fn close_bar(&mut self, bar: OpenBar, out: &mut Vec<ClosedBar>) {
        let log_return = self.last_close.map(|prev| (bar.close / prev).ln());
        self.last_close = Some(bar.close);
        self.last_closed_start = Some(bar.start_ms);
        out.push(ClosedBar {
            start_ms: bar.start_ms,
            end_ms: bar.start_ms + self.interval_ms,
            close: bar.close,
            log_return,
            first_trade_id: Some(bar.first_trade_id),
            last_trade_id: Some(bar.last_trade_id),
            trades: bar.trades,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_bars_and_fills_silences() {
        let mut b = BarBuilder::new(1000);
        let mut out = Vec::new();
        b.push(100, 100.0, 1, &mut out);
        b.push(900, 101.0, 2, &mut out);
        assert!(out.is_empty());
        b.push(1_100, 102.0, 3, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].close, 101.0);
        assert_eq!(out[0].log_return, None);
        assert_eq!(
            (out[0].first_trade_id, out[0].last_trade_id),
            (Some(1), Some(2))
        );
        out.clear();
        b.push(4_000, 103.0, 4, &mut out);
        // bar [1000,2000) closes with a return, then [2000,3000) and [3000,4000) are empty
        assert_eq!(out.len(), 3);
        assert!((out[0].log_return.unwrap() - (102.0f64 / 101.0).ln()).abs() < 1e-15);
        assert_eq!(out[1].start_ms, 2000);
        assert_eq!(out[2].start_ms, 3000);
        assert_eq!(out[2].log_return, Some(0.0));
        assert_eq!(out[2].trades, 0);
    }

    #[test]
    fn resumes_after_history_with_a_return_and_fills_the_gap() {
        let mut b = BarBuilder::new(1000);
        b.resume(5_000, 100.0);
        let mut out = Vec::new();
        b.push(8_100, 110.0, 9, &mut out);
        b.push(9_000, 111.0, 10, &mut out);
        // [6000,7000) and [7000,8000) are filled; [8000,9000) closes with a return vs 100
        assert_eq!(out.len(), 3);
        assert_eq!((out[0].start_ms, out[0].log_return), (6_000, Some(0.0)));
        assert!((out[2].log_return.unwrap() - (1.1f64).ln()).abs() < 1e-15);
        assert_eq!(b.last_closed(), Some((8_000, 110.0)));
    }
}
