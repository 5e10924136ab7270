use crate::risk::RiskAction;

/// The bars and trades an action was derived from, so a replay can re-derive it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct InputRange {
    pub first_trade_id: Option<u64>,
    pub last_trade_id: Option<u64>,
    pub bar_start_ms: i64,
    pub bar_end_ms: i64,
    /// Returns absorbed by the model so far.
    pub returns_seen: u64,
}

/// Figures the gate checks and the L1 score is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Evidence {
    /// Confidence level of the VaR that drives limits (0.99).
    pub level: f64,
    pub var_usd: f64,
    pub es_usd: f64,
    pub limit_usd: f64,
    /// Hard cap no limit may be raised above.
    pub limit_cap_usd: f64,
    pub var_ci_low_usd: f64,
    pub var_ci_high_usd: f64,
    pub position_qty: f64,
    pub price: f64,
    /// Effective sample size of the posterior.
    pub ess: f64,
    /// |MC - closed form| / MC standard error.
    pub mc_z: f64,
    /// Recent exceedances of the forecast VaR, and how many were expected.
    pub exceedances: f64,
    pub expected_exceedances: f64,
    /// The primary model has no forecast yet; actions that need one are blocked (L2).
    pub model_warming_up: bool,
}

impl Evidence {
    /// Every number, in declaration order (for validation and exact cache keys).
    pub fn numbers(&self) -> [f64; 13] {
        [
            self.level,
            self.var_usd,
            self.es_usd,
            self.limit_usd,
            self.limit_cap_usd,
            self.var_ci_low_usd,
            self.var_ci_high_usd,
            self.position_qty,
            self.price,
            self.ess,
            self.mc_z,
            self.exceedances,
            self.expected_exceedances,
        ]
    }
}

/// One risk action with its context, ready for the gate.
#[derive(Debug, PartialEq)]
pub struct ActionRequest {
    /// Unique per chain: `<chain>/<n>`.
    pub action_id: String,
    pub symbol: String,
    pub action: RiskAction,
    /// Exchange time of the newest input behind the action.
    pub data_time_ms: i64,
    /// The injected clock's time when the action was proposed ("now" for the gate).
    pub decided_at_ms: i64,
    /// False when the feed for the symbol is stale, gappy or resyncing.
    pub feed_healthy: bool,
    pub evidence: Evidence,
    pub input: InputRange,
}

impl Clone for ActionRequest {
    fn clone(&self) -> Self {
        let mut copy = Self {
            action_id: String::new(),
            symbol: String::new(),
            action: self.action,
            data_time_ms: 0,
            decided_at_ms: 0,
            feed_healthy: false,
            evidence: Evidence::default(),
            input: InputRange::default(),
        };
        copy.clone_from(self);
        copy
    }

    /// Reuses this request's string buffers (the L3 worker's request is overwritten for
    /// every decision).
    fn clone_from(&mut self, source: &Self) {
        let Self {
            action_id,
            symbol,
            action,
            data_time_ms,
            decided_at_ms,
            feed_healthy,
            evidence,
            input,
        } = source;
        self.action_id.clone_from(action_id);
        self.symbol.clone_from(symbol);
        self.action = *action;
        self.data_time_ms = *data_time_ms;
        self.decided_at_ms = *decided_at_ms;
        self.feed_healthy = *feed_healthy;
        self.evidence = *evidence;
        self.input = *input;
    }
}
