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
        // Bounded by construction: a throttle above this many actions per window is no throttle.
        let throttle_max = throttle_max.clamp(1, 100_000);
        Self {
            global_state: TradingState::Active,
            states: HashMap::new(),
            recent: HashMap::new(),
            throttle_max: throttle_max as usize,
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

    /// Set a symbol's trading state, or the global one (an operator's control request).
    pub fn set_state(&mut self, symbol: Option<&str>, state: TradingState) {
        match symbol {
            Some(s) => {
                self.states.insert(s.to_string(), state);
            }
            None => self.global_state = state,
        }
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
        if req.evidence.model_warming_up {
            out.push(ReasonCode::ModelWarmingUp);
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
            // `times` holds at most `throttle_max` entries, newest last: the window is full
            // when it holds that many and the oldest is still inside it.
            let full = times.len() >= self.throttle_max
                && times.front().is_some_and(|t| {
                    req.decided_at_ms.saturating_sub(*t) < self.throttle_window_ms
                });
            if full {
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
        while times.len() > self.throttle_max
            || times
                .front()
                .is_some_and(|t| req.decided_at_ms.saturating_sub(*t) >= self.throttle_window_ms)
        {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::{Evidence, InputRange};

    fn req(t: i64) -> ActionRequest {
        ActionRequest {
            action_id: format!("x/{t}"),
            symbol: "BTCUSDT".into(),
            action: RiskAction::LimitBreach {
                var_usd: 2.0,
                limit_usd: 1.0,
            },
            data_time_ms: t,
            decided_at_ms: t,
            feed_healthy: true,
            evidence: Evidence::default(),
            input: InputRange::default(),
        }
    }

    #[test]
    fn throttle_counts_only_the_window_and_stays_bounded() {
        let mut g = Guardrails::new(2, 1_000, KillSwitch::default());
        let mut out = Vec::new();
        for t in [0, 100] {
            g.check(&req(t), &mut out);
            assert!(out.is_empty());
            g.commit(&req(t));
        }
        g.check(&req(500), &mut out);
        assert_eq!(out, vec![ReasonCode::Throttled]);
        out.clear();
        g.check(&req(1_050), &mut out);
        assert!(out.is_empty(), "the first action left the window");
        for t in 0..10_000 {
            g.commit(&req(2_000 + t));
        }
        assert!(g.recent["BTCUSDT"].len() <= 2);
    }

    #[test]
    fn kill_switch_blocks_all_but_snapshots() {
        let ks = KillSwitch::default();
        let g = Guardrails::new(10, 1_000, ks.clone());
        ks.engage();
        let mut out = Vec::new();
        g.check(&req(0), &mut out);
        assert_eq!(out, vec![ReasonCode::KillSwitch]);
        out.clear();
        let mut snap = req(0);
        snap.action = RiskAction::PublishRiskSnapshot;
        g.check(&snap, &mut out);
        assert!(out.is_empty());
        ks.release();
        g.check(&req(0), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn warming_model_blocks_actions_that_need_a_var_but_not_snapshots() {
        let g = Guardrails::new(10, 1_000, KillSwitch::default());
        let mut warming = req(0);
        warming.evidence.model_warming_up = true;
        let mut out = Vec::new();
        g.check(&warming, &mut out);
        assert_eq!(out, vec![ReasonCode::ModelWarmingUp]);
        out.clear();
        warming.action = RiskAction::PublishRiskSnapshot;
        g.check(&warming, &mut out);
        assert!(out.is_empty());
    }
}
