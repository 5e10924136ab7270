//! One gate actor per chain: L0-L3 decision, L4 signature and chain link, then publish.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use hdrhistogram::Histogram;

use super::publisher::{Publish, PublisherActor};
use super::PipelineError;
use crate::audit::wire::{DecisionRecord, Payload, RunProvenance};
use crate::audit::ChainSigner;
use crate::elf::{ActionRequest, ElfGate, Layer, ReasonCode, RuleSet, Verdict};
use crate::metrics::Metrics;
use crate::sink::{Outgoing, VarSnapshot};
use crate::var::ModelFigures;

#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct GateRequest {
    pub req: ActionRequest,
    pub figures: Arc<ModelFigures>,
    /// When the market event that caused it arrived (end-to-end latency).
    pub origin: Option<Instant>,
}

/// Counts and latencies of one gate, for the run summary.
/// Swap the active (and candidate) rule sets at run time.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct ReloadRules {
    pub active: Arc<RuleSet>,
    pub shadow: Option<Arc<RuleSet>>,
}

#[derive(Debug, Clone)]
pub struct GateStats {
    pub chain: String,
    pub by_verdict: BTreeMap<&'static str, u64>,
    pub blocks_by_reason: BTreeMap<(Layer, ReasonCode), u64>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub shadow_divergences: u64,
    /// L0-L3 decision time, nanoseconds.
    pub decide_ns: Histogram<u64>,
    /// Decision plus L4 signing, nanoseconds.
    pub gate_ns: Histogram<u64>,
    pub next_seq: u64,
}

#[derive(Message)]
#[rtype(result = "GateStats")]
pub struct GetGateStats;

/// Seal the chain's open checkpoint now (at shutdown), stamped with the time of its last
/// event so that replays seal identically.
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct SealCheckpoint;

pub struct GateActor {
    gate: ElfGate,
    signer: ChainSigner,
    provenance: RunProvenance,
    publisher: Addr<PublisherActor>,
    metrics: Arc<Metrics>,
    stats: GateStats,
    mailbox_capacity: usize,
    /// Kafka key of this chain's records (its symbol or PORTFOLIO).
    partition_key: String,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("constant histogram bounds are valid")
}

impl GateActor {
    pub fn new(
        gate: ElfGate,
        signer: ChainSigner,
        provenance: RunProvenance,
        publisher: Addr<PublisherActor>,
        metrics: Arc<Metrics>,
        mailbox_capacity: usize,
        partition_key: String,
    ) -> Self {
        let stats = GateStats {
            chain: signer.chain().to_string(),
            by_verdict: BTreeMap::new(),
            blocks_by_reason: BTreeMap::new(),
            cache_hits: 0,
            cache_misses: 0,
            shadow_divergences: 0,
            decide_ns: histogram(),
            gate_ns: histogram(),
            next_seq: signer.head().next_seq,
        };
        let mut gate = gate;
        gate.set_timing(true);
        Self {
            gate,
            signer,
            provenance,
            publisher,
            metrics,
            stats,
            mailbox_capacity,
            partition_key,
        }
    }

    fn record_metrics(&mut self, verdict: Verdict, layer: Option<Layer>, reasons: &[ReasonCode]) {
        let m = &self.metrics;
        // A request reaches each layer up to the one that stopped it.
        let reached = match layer {
            Some(Layer::L0) => 1,
            Some(Layer::L1) => 2,
            _ => 4,
        };
        for l in &[Layer::L0, Layer::L1, Layer::L2, Layer::L3][..reached] {
            m.elf_requests_total.with_label_values(&[l.as_str()]).inc();
        }
        m.elf_requests_total
            .with_label_values(&[Layer::L4.as_str()])
            .inc();
        *self.stats.by_verdict.entry(verdict.as_str()).or_default() += 1;
        // Flags on a passed action are not refusals; refusals count at their own layer.
        if layer.is_some() {
            for r in reasons {
                let at = r.layer();
                m.elf_blocks_total
                    .with_label_values(&[at.as_str(), r.as_str()])
                    .inc();
                *self.stats.blocks_by_reason.entry((at, *r)).or_default() += 1;
            }
        }
    }
}

impl Handler<ReloadRules> for GateActor {
    type Result = ();
    fn handle(&mut self, msg: ReloadRules, _: &mut Self::Context) {
        tracing::info!(
            chain = %self.signer.chain(),
            rules_sha256 = %msg.active.hash_hex(),
            shadow_sha256 = msg.shadow.as_ref().map(|s| s.hash_hex().to_string()),
            "rules reloaded"
        );
        self.provenance.rules_sha256 = msg.active.hash_hex().to_string();
        self.gate.set_rules(msg.active);
        self.gate.set_shadow_rules(msg.shadow);
    }
}

impl Actor for GateActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<GateRequest> for GateActor {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;

    fn handle(&mut self, msg: GateRequest, _: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let decision = self.gate.decide(&msg.req);
        let decided = started.elapsed();
        let record = DecisionRecord::new(&msg.req, &decision, &msg.figures, &self.provenance);
        let payload = Payload::RiskDecision(Box::new(record));
        let signed = self
            .signer
            .sign(msg.req.decided_at_ms, &msg.req.symbol, &payload);
        let total = started.elapsed();
        let snapshot = match (&signed, &payload) {
            (Ok(e), Payload::RiskDecision(r)) => {
                Some(VarSnapshot::new(r, e, msg.req.decided_at_ms))
            }
            _ => None,
        };

        self.record_metrics(decision.verdict, decision.layer, &decision.reasons);
        let _ = self
            .stats
            .decide_ns
            .record(decided.as_nanos().max(1) as u64);
        let _ = self.stats.gate_ns.record(total.as_nanos().max(1) as u64);
        self.metrics
            .elf_latency_seconds
            .with_label_values(&["L0_L3"])
            .observe(decided.as_secs_f64());
        if let Some(ns) = decision.layer_ns {
            for (layer, ns) in ["L0", "L1", "L2", "L3"].iter().zip(ns) {
                self.metrics
                    .elf_latency_seconds
                    .with_label_values(&[layer])
                    .observe(ns as f64 * 1e-9);
            }
        }
        if decision.compliance.is_some() && decision.layer != Some(Layer::L1) {
            let result = if decision.cached { "hit" } else { "miss" };
            self.metrics
                .elf_decision_cache_total
                .with_label_values(&[result])
                .inc();
            if decision.cached {
                self.stats.cache_hits += 1;
            } else {
                self.stats.cache_misses += 1;
            }
        }
        if let Some(s) = &decision.shadow {
            self.metrics
                .elf_shadow_decisions_total
                .with_label_values(&[if s.diverged { "true" } else { "false" }])
                .inc();
            self.stats.shadow_divergences += u64::from(s.diverged);
        }
        self.metrics
            .elf_latency_seconds
            .with_label_values(&["L4"])
            .observe((total - decided).as_secs_f64());
        self.stats.next_seq = self.signer.head().next_seq;
        let checkpoint = match &signed {
            Ok(_) => self.signer.checkpoint_if_due(&msg.req.symbol),
            Err(_) => Ok(None),
        };

        let publisher = self.publisher.clone();
        let origin = msg.origin;
        AtomicResponse::new(Box::pin(
            async move {
                publisher
                    .send(Publish {
                        out: Outgoing::Signed(signed?),
                        origin,
                    })
                    .await??;
                if let Some(cp) = checkpoint? {
                    publisher.send(Publish::from(cp)).await??;
                }
                if let Some(v) = snapshot {
                    publisher
                        .send(Publish {
                            out: Outgoing::VarSnapshot(Box::new(v)),
                            origin: None,
                        })
                        .await??;
                }
                Ok(())
            }
            .into_actor(self),
        ))
    }
}

impl Handler<SealCheckpoint> for GateActor {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;
    fn handle(&mut self, _: SealCheckpoint, _: &mut Self::Context) -> Self::Result {
        let key = self.partition_key.clone();
        let checkpoint = self.signer.checkpoint(&key);
        let publisher = self.publisher.clone();
        AtomicResponse::new(Box::pin(
            async move {
                if let Some(cp) = checkpoint? {
                    publisher.send(Publish::from(cp)).await??;
                }
                Ok(())
            }
            .into_actor(self),
        ))
    }
}

impl Handler<GetGateStats> for GateActor {
    type Result = MessageResult<GetGateStats>;
    fn handle(&mut self, _: GetGateStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.stats.clone())
    }
}
