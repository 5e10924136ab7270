//! The gate step of one chain: decide (L0-L3), build the decision record, sign and link it
//! (L4), seal a checkpoint when one is due, and build the VaR snapshot from the signed
//! record. Deciding and sealing are separate calls so a host can time each.

use std::collections::BTreeMap;
use std::sync::Arc;

use hdrhistogram::Histogram;

use super::{GateRequest, VarSnapshot};
use crate::audit::encoded::Encoded;
use crate::audit::wire::{DecisionRecord, InputsRecord, Payload, Provenance, RunProvenance};
use crate::audit::{AuditError, ChainSigner, SignedEvent};
use crate::elf::{ActionRequest, Decision, ElfGate, Layer, ReasonCode, RuleSet};

/// Counts and latencies of one gate, for the run summary. Latencies are recorded by the
/// host, which owns the clock.
#[derive(Debug, Clone)]
pub struct GateStats {
    pub chain: String,
    pub by_verdict: BTreeMap<&'static str, u64>,
    pub blocks_by_reason: BTreeMap<(Layer, ReasonCode), u64>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub shadow_divergences: u64,
    /// Requests L0 refused (input it could not evaluate).
    pub refused_at_l0: u64,
    /// L0-L3 decision time, nanoseconds.
    pub decide_ns: LatencyCounts,
    /// Decision plus L4 signing, nanoseconds.
    pub gate_ns: LatencyCounts,
    /// L0, L1, L2 and L3 each, nanoseconds, when the host times layers (`set_timer`).
    pub layer_ns: [LatencyCounts; 4],
    pub next_seq: u64,
}

/// What one request produced, in publishing order: the signed decision, the checkpoint it
/// completed (if one was due) and the VaR snapshot for dashboards.
#[derive(Debug, Clone)]
pub struct GateOutput {
    pub signed: SignedEvent,
    pub checkpoint: Option<SignedEvent>,
    /// Always present for a decision.
    pub snapshot: Option<VarSnapshot>,
}

/// A chain's latency counts, nanoseconds: two significant digits (1 % resolution), up to
/// 10 s (longer is counted as 10 s), in 32-bit counts (they saturate; a chain does not
/// decide four billion times in one bucket). Six of these per chain cost 80 KB, where
/// 64-bit counts up to a minute cost 180 KB and three digits 1.3 MB: at a thousand chains
/// that is the engine's memory.
pub type LatencyCounts = Histogram<u32>;

fn histogram() -> LatencyCounts {
    Histogram::new_with_bounds(1, 10_000_000_000, 2).expect("constant histogram bounds are valid")
}

/// Add a chain's counts to a run-wide histogram.
pub fn add_counts(into: &mut Histogram<u64>, from: &LatencyCounts) {
    for v in from.iter_recorded() {
        into.saturating_record_n(v.value_iterated_to(), u64::from(v.count_at_value()));
    }
}

pub struct GateStep {
    gate: ElfGate,
    signer: ChainSigner,
    provenance: RunProvenance,
    /// `provenance` as every decision signs it, encoded once (again when the rules change).
    provenance_record: Encoded<Provenance>,
    /// Kafka key of this chain's records (its symbol or PORTFOLIO).
    partition_key: String,
    stats: GateStats,
}

impl GateStep {
    pub fn new(
        gate: ElfGate,
        signer: ChainSigner,
        provenance: RunProvenance,
        partition_key: String,
    ) -> Self {
        let stats = GateStats {
            chain: signer.chain().to_string(),
            by_verdict: BTreeMap::new(),
            blocks_by_reason: BTreeMap::new(),
            cache_hits: 0,
            cache_misses: 0,
            shadow_divergences: 0,
            refused_at_l0: 0,
            decide_ns: histogram(),
            gate_ns: histogram(),
            layer_ns: [histogram(), histogram(), histogram(), histogram()],
            next_seq: signer.head().next_seq,
        };
        Self {
            gate,
            signer,
            provenance_record: provenance.record(),
            provenance,
            partition_key,
            stats,
        }
    }

    pub fn chain(&self) -> &str {
        self.signer.chain()
    }

    /// Time each layer with `timer` (monotonic nanoseconds from the host) for the latency
    /// metrics; off by default.
    pub fn set_timer(&mut self, timer: Option<fn() -> u64>) {
        self.gate.set_timer(timer);
    }

    pub fn set_rules(&mut self, active: Arc<RuleSet>, shadow: Option<Arc<RuleSet>>) {
        self.provenance.rules_sha256 = active.hash_hex().to_string();
        self.provenance_record = self.provenance.record();
        self.gate.set_rules(active);
        self.gate.set_shadow_rules(shadow);
    }

    /// New performance settings (decisions unchanged), from the next request.
    pub fn set_tuning(&mut self, tuning: crate::elf::GateTuning) {
        self.gate.set_tuning(tuning);
    }

    /// An operator's trading-state change for this chain's symbol, or the global state.
    pub fn set_trading_state(&mut self, symbol: Option<&str>, state: crate::elf::TradingState) {
        self.gate.set_trading_state(symbol, state);
    }

    /// Hand the chain from `old` to this gate's key (a KEY_ROTATION event signed by `old`).
    pub fn rotate_from(
        &mut self,
        old: &ed25519_dalek::SigningKey,
        ts_ms: i64,
    ) -> Result<SignedEvent, AuditError> {
        let event = self.signer.rotate_from(old, ts_ms, &self.partition_key)?;
        self.stats.next_seq = self.signer.head().next_seq;
        Ok(event)
    }

    /// The hash of the state the run started from, for the chain's next checkpoint.
    pub fn note_run_start(&mut self, sha256: String) {
        self.signer.note_run_start(sha256);
    }

    /// L0-L3.
    pub fn decide(&mut self, req: &ActionRequest) -> Decision {
        let decision = self.gate.decide(req);
        self.count(&decision);
        decision
    }

    /// L4: record, sign and link the decision; the checkpoint when due; the snapshot.
    pub fn seal(
        &mut self,
        request: &GateRequest,
        decision: &Decision,
    ) -> Result<GateOutput, AuditError> {
        let req = &request.req;
        let mut record = DecisionRecord::new(req, decision, &request.bar, &self.provenance_record);
        record.source = request.source.clone();
        let payload = Payload::RiskDecision(Box::new(record));
        self.signer.note_inputs(request.input.map(|m| InputsRecord {
            connection: m.connection,
            position: m.position,
            sha256: hex::encode(m.sha256),
        }));
        let signed = self.signer.sign(req.decided_at_ms, &req.symbol, &payload)?;
        self.stats.next_seq = self.signer.head().next_seq;
        let checkpoint = self.signer.checkpoint_if_due(&req.symbol)?;
        let snapshot = match &payload {
            Payload::RiskDecision(record) => {
                Some(VarSnapshot::new(record, &signed, req.decided_at_ms))
            }
            _ => None,
        };
        Ok(GateOutput {
            signed,
            checkpoint,
            snapshot,
        })
    }

    /// Decide and seal in one call.
    pub fn step(&mut self, request: &GateRequest) -> Result<(Decision, GateOutput), AuditError> {
        let decision = self.decide(&request.req);
        let out = self.seal(request, &decision)?;
        Ok((decision, out))
    }

    /// Seal the open checkpoint now (at shutdown), stamped with the time of its last event
    /// so that replays seal identically.
    pub fn seal_checkpoint(&mut self) -> Result<Option<SignedEvent>, AuditError> {
        self.signer.checkpoint(&self.partition_key)
    }

    /// Latencies measured by the host around `decide` and `decide` + `seal`.
    pub fn record_latency(&mut self, decide_ns: u64, gate_ns: u64) {
        self.stats.decide_ns.saturating_record(decide_ns.max(1));
        self.stats.gate_ns.saturating_record(gate_ns.max(1));
    }

    pub fn stats(&self) -> &GateStats {
        &self.stats
    }

    fn count(&mut self, decision: &Decision) {
        let s = &mut self.stats;
        *s.by_verdict.entry(decision.verdict.as_str()).or_default() += 1;
        s.refused_at_l0 += u64::from(decision.layer == Some(Layer::L0));
        for r in decision.refusals() {
            *s.blocks_by_reason.entry((r.layer(), *r)).or_default() += 1;
        }
        match decision.cache_hit() {
            Some(true) => s.cache_hits += 1,
            Some(false) => s.cache_misses += 1,
            None => {}
        }
        if let Some(shadow) = &decision.shadow {
            s.shadow_divergences += u64::from(shadow.diverged);
        }
        if let Some(ns) = decision.layer_ns {
            for (h, ns) in s.layer_ns.iter_mut().zip(ns) {
                h.saturating_record(ns.max(1));
            }
        }
    }
}
