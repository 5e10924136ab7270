//! The VaR snapshot message for dashboards: the figures of one signed decision, light to
//! read, pointing at the signed event (chain, seq, hash) that carries them.

use serde::{Deserialize, Serialize};

use crate::audit::wire::{ActionRecord, DecisionRecord, ModelRecord, Num};
use crate::audit::SignedEvent;
use crate::elf::{ReasonCode, Verdict};
use crate::var::PrimaryModel;

pub const VAR_SNAPSHOT_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VarSnapshot {
    pub v: u32,
    pub symbol: String,
    pub chain: String,
    pub seq: u64,
    pub event_sha256: String,
    pub ts_ms: i64,
    pub data_time_ms: i64,
    /// None before the first return (no model yet).
    pub primary_model: Option<PrimaryModel>,
    pub level: Num,
    pub var_usd: Num,
    pub es_usd: Num,
    pub var_ci_low_usd: Num,
    pub var_ci_high_usd: Num,
    pub limit_usd: Num,
    pub position_qty: Num,
    pub price: Num,
    pub model_warming_up: bool,
    pub feed_healthy: bool,
    pub action: ActionRecord,
    pub verdict: Verdict,
    /// Why the gate refused, held or flagged the action (empty for a clean pass). This and
    /// the next two fields came with version 2; version 1 snapshots read without them.
    #[serde(default)]
    pub reasons: Vec<ReasonCode>,
    /// End of the bar the figures were computed after (the next bar's loss is what they
    /// forecast).
    #[serde(default)]
    pub bar_end_ms: i64,
    /// Both models at the level that drives limits, in USD (absent while a model has no
    /// figure yet).
    #[serde(default)]
    pub models: ModelsUsd,
}

/// VaR and ES of one model, in USD.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VarEsUsd {
    pub var_usd: Num,
    pub es_usd: Num,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelsUsd {
    pub fhs_aci: Option<VarEsUsd>,
    /// NIG (symbols) or NIW (the portfolio).
    pub bayes: Option<VarEsUsd>,
}

impl ModelsUsd {
    fn of(record: &DecisionRecord) -> Self {
        let notional = record.evidence.position_qty.0 * record.evidence.price.0;
        let usd = |var: Num, es: Num, scale: f64| VarEsUsd {
            var_usd: Num(var.0 * scale),
            es_usd: Num(es.0 * scale),
        };
        match &*record.model {
            ModelRecord::Symbol {
                fhs_aci,
                nig_student_t,
                ..
            } => Self {
                fhs_aci: (fhs_aci.warmup_remaining == 0)
                    .then(|| fhs_aci.levels.first())
                    .flatten()
                    .map(|l| usd(l.var, l.es, notional)),
                bayes: nig_student_t
                    .as_ref()
                    .and_then(|n| n.levels.first())
                    .map(|l| usd(l.var, l.es, notional)),
            },
            ModelRecord::Portfolio {
                fhs_aci,
                niw_multivariate_t,
                ..
            } => Self {
                fhs_aci: fhs_aci
                    .as_ref()
                    .filter(|f| f.warmup_remaining == 0)
                    .map(|f| usd(f.var_usd, f.es_usd, 1.0)),
                bayes: niw_multivariate_t
                    .as_ref()
                    .map(|n| usd(n.var_usd, n.es_usd, 1.0)),
            },
            ModelRecord::NoData => Self::default(),
        }
    }
}

impl VarSnapshot {
    /// The snapshot of `record`, once it has been signed as `signed` at `ts_ms`.
    pub fn new(record: &DecisionRecord, signed: &SignedEvent, ts_ms: i64) -> Self {
        let e = &record.evidence;
        let primary_model = match &*record.model {
            ModelRecord::Symbol { primary, .. } | ModelRecord::Portfolio { primary, .. } => {
                Some(*primary)
            }
            ModelRecord::NoData => None,
        };
        Self {
            v: VAR_SNAPSHOT_VERSION,
            symbol: record.symbol.clone(),
            chain: signed.chain.clone(),
            seq: signed.seq,
            event_sha256: signed.hash_hex.clone(),
            ts_ms,
            data_time_ms: record.data_time_ms,
            primary_model,
            level: e.level,
            var_usd: e.var_usd,
            es_usd: e.es_usd,
            var_ci_low_usd: e.var_ci_low_usd,
            var_ci_high_usd: e.var_ci_high_usd,
            limit_usd: e.limit_usd,
            position_qty: e.position_qty,
            price: e.price,
            model_warming_up: e.model_warming_up,
            feed_healthy: record.feed_healthy,
            action: record.action.clone(),
            verdict: record.verdict,
            reasons: record.reasons.clone(),
            bar_end_ms: record.input.bar_end_ms,
            models: ModelsUsd::of(record),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
