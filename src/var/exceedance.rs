//! Rolling count of VaR exceedances, for the L1 backtest component.

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct ExceedanceWindow {
    window: usize,
    alpha: f64,
    hits: VecDeque<bool>,
    count: usize,
}

impl ExceedanceWindow {
    /// `level` is the VaR confidence level; the last `window` forecasts are kept.
    pub fn new(level: f64, window: usize) -> Self {
        Self {
            window: window.max(1),
            alpha: 1.0 - level,
            hits: VecDeque::new(),
            count: 0,
        }
    }

    /// Record whether the realised loss exceeded the VaR forecast made for it.
    pub fn record(&mut self, loss: f64, forecast_var: f64) {
        let hit = loss > forecast_var;
        self.hits.push_back(hit);
        self.count += hit as usize;
        if self.hits.len() > self.window {
            if let Some(true) = self.hits.pop_front() {
                self.count -= 1;
            }
        }
    }

    pub fn exceedances(&self) -> f64 {
        self.count as f64
    }

    pub fn expected(&self) -> f64 {
        self.hits.len() as f64 * self.alpha
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_window() {
        let mut w = ExceedanceWindow::new(0.99, 3);
        w.record(2.0, 1.0);
        w.record(0.5, 1.0);
        w.record(3.0, 1.0);
        assert_eq!(w.exceedances(), 2.0);
        w.record(0.0, 1.0);
        assert_eq!(w.exceedances(), 1.0);
        assert!((w.expected() - 0.03).abs() < 1e-12);
    }
}
