use serde::{Deserialize, Serialize};

/// What the engine proposes to trading desks. Every action passes the ELF gate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RiskAction {
    /// Latest VaR / ES for the desk's dashboards.
    PublishRiskSnapshot,
    /// VaR exceeds the limit.
    LimitBreach { var_usd: f64, limit_usd: f64 },
    /// Cut the position to bring VaR back under the limit.
    ReduceExposure { current_qty: f64, target_qty: f64 },
    /// Stop adding risk on the symbol (or portfolio).
    Halt,
    /// Back to normal after a reduce or halt.
    Resume,
    /// Change the VaR limit (operator or limit-management request).
    SetLimit { new_limit_usd: f64 },
}

/// The closed set of action kinds, as named in signed events and policy rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionKind {
    PublishRiskSnapshot,
    LimitBreach,
    ReduceExposure,
    Halt,
    Resume,
    SetLimit,
}

impl ActionKind {
    pub const ALL: [ActionKind; 6] = [
        Self::PublishRiskSnapshot,
        Self::LimitBreach,
        Self::ReduceExposure,
        Self::Halt,
        Self::Resume,
        Self::SetLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PublishRiskSnapshot => "PUBLISH_RISK_SNAPSHOT",
            Self::LimitBreach => "LIMIT_BREACH",
            Self::ReduceExposure => "REDUCE_EXPOSURE",
            Self::Halt => "HALT",
            Self::Resume => "RESUME",
            Self::SetLimit => "SET_LIMIT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Actions that only lower risk; the only ones allowed while REDUCING.
    pub fn is_risk_reducing(self) -> bool {
        matches!(
            self,
            Self::PublishRiskSnapshot | Self::LimitBreach | Self::ReduceExposure | Self::Halt
        )
    }
}

impl RiskAction {
    pub fn kind(&self) -> ActionKind {
        match self {
            Self::PublishRiskSnapshot => ActionKind::PublishRiskSnapshot,
            Self::LimitBreach { .. } => ActionKind::LimitBreach,
            Self::ReduceExposure { .. } => ActionKind::ReduceExposure,
            Self::Halt => ActionKind::Halt,
            Self::Resume => ActionKind::Resume,
            Self::SetLimit { .. } => ActionKind::SetLimit,
        }
    }

    /// Named numeric fields, for validation and signing.
    pub fn numbers(&self) -> Vec<(&'static str, f64)> {
        match *self {
            Self::LimitBreach { var_usd, limit_usd } => {
                vec![("var_usd", var_usd), ("limit_usd", limit_usd)]
            }
            Self::ReduceExposure {
                current_qty,
                target_qty,
            } => {
                vec![("current_qty", current_qty), ("target_qty", target_qty)]
            }
            Self::SetLimit { new_limit_usd } => vec![("new_limit_usd", new_limit_usd)],
            Self::PublishRiskSnapshot | Self::Halt | Self::Resume => Vec::new(),
        }
    }
}
