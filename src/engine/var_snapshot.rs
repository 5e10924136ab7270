//! The VaR snapshot message for dashboards: the figures of one signed decision, light to
//! read, pointing at the signed event (chain, seq, hash) that carries them.

use serde::{Deserialize, Serialize};

use crate::audit::wire::{ActionRecord, DecisionRecord, ModelRecord, Num};
use crate::audit::SignedEvent;
use crate::elf::Verdict;
use crate::var::PrimaryModel;

pub const VAR_SNAPSHOT_VERSION: u32 = 1;

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
}

impl VarSnapshot {
    /// The snapshot of `record`, once it has been signed as `signed` at `ts_ms`.
    pub fn new(record: &DecisionRecord, signed: &SignedEvent, ts_ms: i64) -> Self {
        let e = &record.evidence;
        let primary_model = match &record.model {
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
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
