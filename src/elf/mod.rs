//! The ELF gate: every risk action passes L0 input validation, the L1 compliance score,
//! L2 guardrails and L3 policy rules before L4 signs it (see `crate::audit`).
//! Everything here is synchronous and free of I/O; time arrives inside the request.

mod gate;
mod l0;
mod l1;
mod l2;
mod request;
pub mod rules;
mod worker;

use serde::{Deserialize, Serialize};

use crate::fast_hash::{FastMap, FastSet};

pub use gate::{Decision, ElfGate, GateSettings, GateTuning, ShadowOutcome};
pub use l0::DuplicateWindow;
pub use l1::{Compliance, ComplianceComponents, ComplianceWeights};
pub use l2::{Guardrails, KillSwitch, TradingState};
pub use request::{ActionRequest, Evidence, InputRange};
pub use rules::{Enforcement, RuleError, RuleHit, RuleSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Layer {
    L0,
    L1,
    L2,
    L3,
    L4,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::L0 => "L0",
            Self::L1 => "L1",
            Self::L2 => "L2",
            Self::L3 => "L3",
            Self::L4 => "L4",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// Desks may act on it.
    Pass,
    /// Desks may act on it; a rule attached a flag.
    PassFlagged,
    /// Held for a human: desks must not act on it automatically.
    RequireReview,
    /// Refused; published for auditors only.
    Block,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::PassFlagged => "PASS_FLAGGED",
            Self::RequireReview => "REQUIRE_REVIEW",
            Self::Block => "BLOCK",
        }
    }

    pub fn allows(self) -> bool {
        matches!(self, Self::Pass | Self::PassFlagged)
    }
}

/// Stable reason codes carried in signed events. Never rename one; add new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReasonCode {
    // L0
    NonFiniteField,
    NegativeValue,
    UnknownSymbol,
    StaleData,
    FutureTimestamp,
    DuplicateActionId,
    // L1
    ComplianceBelowThreshold,
    // L2
    DataUnhealthy,
    LimitAboveCap,
    TradingHalted,
    OnlyReducingAllowed,
    Throttled,
    KillSwitch,
    ModelWarmingUp,
    // L3
    RuleBlock,
    RuleReview,
    RuleFlag,
}

impl ReasonCode {
    /// The layer that raises this code.
    pub fn layer(self) -> Layer {
        match self {
            Self::NonFiniteField
            | Self::NegativeValue
            | Self::UnknownSymbol
            | Self::StaleData
            | Self::FutureTimestamp
            | Self::DuplicateActionId => Layer::L0,
            Self::ComplianceBelowThreshold => Layer::L1,
            Self::DataUnhealthy
            | Self::LimitAboveCap
            | Self::TradingHalted
            | Self::OnlyReducingAllowed
            | Self::Throttled
            | Self::KillSwitch
            | Self::ModelWarmingUp => Layer::L2,
            Self::RuleBlock | Self::RuleReview | Self::RuleFlag => Layer::L3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NonFiniteField => "NON_FINITE_FIELD",
            Self::NegativeValue => "NEGATIVE_VALUE",
            Self::UnknownSymbol => "UNKNOWN_SYMBOL",
            Self::StaleData => "STALE_DATA",
            Self::FutureTimestamp => "FUTURE_TIMESTAMP",
            Self::DuplicateActionId => "DUPLICATE_ACTION_ID",
            Self::ComplianceBelowThreshold => "COMPLIANCE_BELOW_THRESHOLD",
            Self::DataUnhealthy => "DATA_UNHEALTHY",
            Self::LimitAboveCap => "LIMIT_ABOVE_CAP",
            Self::TradingHalted => "TRADING_HALTED",
            Self::OnlyReducingAllowed => "ONLY_REDUCING_ALLOWED",
            Self::Throttled => "THROTTLED",
            Self::KillSwitch => "KILL_SWITCH",
            Self::ModelWarmingUp => "MODEL_WARMING_UP",
            Self::RuleBlock => "RULE_BLOCK",
            Self::RuleReview => "RULE_REVIEW",
            Self::RuleFlag => "RULE_FLAG",
        }
    }
}
