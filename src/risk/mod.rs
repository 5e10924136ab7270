//! Risk actions and how they follow from VaR against configured limits. Pure, no I/O.

mod action;
mod limits;

pub use action::{ActionKind, RiskAction};
pub use limits::{LimitPolicy, LimitTracker, Posture};
