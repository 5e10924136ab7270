//! The optimizer: KPIs of a measured run (`kpi`, or a live engine's metrics through
//! `prometheus_text`), recommended setting changes with their expected effect and evidence
//! (`recommend`), A/B replays of the same input that decide whether a change is applied
//! (`ab`), the settings it may change (`tuning`), and the watch that rolls an applied change
//! back when the live KPI degrades (`watch`). Everything but `ab` is pure: the hosts (the
//! `optimize` command, the control actor) measure, replay, sign and send.

pub mod ab;
pub mod kpi;
pub mod prometheus_text;
pub mod recommend;
pub mod tuning;
pub mod watch;

pub use crate::audit::wire::{
    AbEvidence, KpiName, Num, RollbackCause, Setting, SettingChange, WatchEvidence, WatchTerms,
};
pub use kpi::{Kpis, Percentiles};
pub use recommend::{recommend, Applies, Recommendation};
pub use tuning::TuningError;
pub use watch::{LiveSample, Watch, WatchOutcome};
