//! L2 guardrails: data health, hard limit caps, trading states, throttle, kill switch.
//! `check` only reads state; `commit` applies an allowed action's effect afterwards.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{ActionRequest, ReasonCode};
use crate::risk::{ActionKind, RiskAction};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TradingState {
    Active,
    Reducing,
    Halted,
}

impl TradingState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Reducing => "REDUCING",
            Self::Halted => "HALTED",
        }
    }
}

/// Operators flip it at run time; it blocks every action except risk snapshots.
#[derive(Debug, Clone, Default)]
pub struct KillSwitch(Arc<AtomicBool>);

impl KillSwitch {
    pub fn engage(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn release(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
    pub fn is_engaged(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
pub struct Guardrails {
    pub global_state: TradingState,
    states: HashMap<String, TradingState>,
    recent: HashMap<String, VecDeque<i64>>,
    throttle_max: usize,
    throttle_window_ms: i64,
    kill_switch: KillSwitch,
}

impl Guardrails {
    pub fn new(throttle_max: u32, throttle_window_ms: i64, kill_switch: KillSwitch) -> Self {
        Self {
            global_state: TradingState::Active,
            states: HashMap::new(),
            recent: HashMap::new(),
            throttle_max: throttle_max.max(1) as usize,
            throttle_window_ms,
            kill_switch,
        }
    }

    pub fn state(&self, symbol: &str) -> TradingState {
        self.states
            .get(symbol)
            .copied()
            .unwrap_or(TradingState::Active)
    }

    /// The stricter of the symbol's and the global state.
    fn effective_state(&self, symbol: &str) -> TradingState {
        match (self.global_state, self.state(symbol)) {
            (TradingState::Halted, _) | (_, TradingState::Halted) => TradingState::Halted,
            (TradingState::Reducing, _) | (_, TradingState::Reducing) => TradingState::Reducing,
            _ => TradingState::Active,
        }
    }

    pub(crate) fn check(&self, req: &ActionRequest, out: &mut Vec<ReasonCode>) {
        let kind = req.action.kind();
        if kind == ActionKind::PublishRiskSnapshot {
            // Desks always see the risk picture; only its inputs are validated (L0/L1).
            return;
        }
        if self.kill_switch.is_engaged() {
            out.push(ReasonCode::KillSwitch);
        }
        if !req.feed_healthy {
            out.push(ReasonCode::DataUnhealthy);
        }
        if let RiskAction::SetLimit { new_limit_usd } = req.action {
            if new_limit_usd > req.evidence.limit_cap_usd {
                out.push(ReasonCode::LimitAboveCap);
            }
        }
        match self.effective_state(&req.symbol) {
            TradingState::Halted
                if !matches!(
                    kind,
                    ActionKind::Resume | ActionKind::LimitBreach | ActionKind::Halt
                ) =>
            {
                out.push(ReasonCode::TradingHalted)
            }
            TradingState::Reducing if !kind.is_risk_reducing() && kind != ActionKind::Resume => {
                out.push(ReasonCode::OnlyReducingAllowed)
            }
            _ => {}
        }
        if let Some(times) = self.recent.get(&req.symbol) {
            let in_window = times
                .iter()
                .filter(|t| req.decided_at_ms - **t < self.throttle_window_ms)
                .count();
            if in_window >= self.throttle_max {
                out.push(ReasonCode::Throttled);
            }
        }
    }

    /// Apply an allowed action: state transitions and throttle accounting.
    pub(crate) fn commit(&mut self, req: &ActionRequest) {
        let kind = req.action.kind();
        if kind == ActionKind::PublishRiskSnapshot {
            return;
        }
        let next = match kind {
            ActionKind::Halt => Some(TradingState::Halted),
            ActionKind::ReduceExposure => Some(TradingState::Reducing),
            ActionKind::Resume => Some(TradingState::Active),
            _ => None,
        };
        if let Some(s) = next {
            self.states.insert(req.symbol.clone(), s);
        }
        let times = self.recent.entry(req.symbol.clone()).or_default();
        times.push_back(req.decided_at_ms);
        while times.len() > self.throttle_max {
            times.pop_front();
        }
    }
}
