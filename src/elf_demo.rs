//! `elf-demo`: a handful of PASS and BLOCK decisions with their reasons, then latency
//! percentiles of the gate measured call by call (also used by `benches/elf.rs`).

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use ed25519_dalek::{Signer, SigningKey};
use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StudentT};

use crate::audit::wire::{self, BarRecords, DecisionRecord, Payload, RunProvenance};
use crate::audit::{ChainHead, ChainSigner, CheckpointPolicy};
use crate::config::Config;
use crate::elf::{
    ActionRequest, Decision, ElfGate, Evidence, InputRange, KillSwitch, RuleError, RuleSet,
};
use crate::risk::RiskAction;
use crate::var::symbol_risk::{ModelScratch, SymbolRiskModel};
use crate::var::ModelFigures;

/// The time every demo request is decided at.
const NOW_MS: i64 = 1_723_161_600_000;

fn evidence() -> Evidence {
    Evidence {
        level: 0.99,
        var_usd: 60.0,
        es_usd: 75.0,
        limit_usd: 50.0,
        limit_cap_usd: 200.0,
        var_ci_low_usd: 55.0,
        var_ci_high_usd: 66.0,
        position_qty: 2.0,
        price: 61_000.0,
        ess: 180.0,
        mc_z: 0.4,
        exceedances: 2.0,
        expected_exceedances: 2.5,
        model_warming_up: false,
    }
}

fn request(id: &str, symbol: &str, action: RiskAction, age_ms: i64) -> ActionRequest {
    ActionRequest {
        action_id: id.to_string(),
        symbol: symbol.to_string(),
        action,
        data_time_ms: NOW_MS - age_ms,
        decided_at_ms: NOW_MS,
        feed_healthy: true,
        evidence: evidence(),
        input: InputRange {
            first_trade_id: Some(3_735_693_000),
            last_trade_id: Some(3_735_693_015),
            bar_start_ms: NOW_MS - 1000,
            bar_end_ms: NOW_MS,
            returns_seen: 600,
        },
    }
}

/// A gate with `config`'s ELF settings for BTCUSDT and ETHUSDT.
pub fn demo_gate(config: &Config, rules: Arc<RuleSet>, cache: bool, parallel: bool) -> ElfGate {
    let mut settings = config.elf.gate_settings();
    settings.decision_cache = cache;
    settings.parallelize_l2_l3 = parallel;
    let known: HashSet<String> = ["BTCUSDT".to_string(), "ETHUSDT".to_string()].into();
    ElfGate::new(settings, known, rules, KillSwitch::default())
}

/// Labelled example decisions, in order, on one gate.
pub fn cases(config: &Config, rules: Arc<RuleSet>) -> Vec<(&'static str, ActionRequest, Decision)> {
    let mut gate = demo_gate(config, rules, false, false);
    let breach = RiskAction::LimitBreach {
        var_usd: 60.0,
        limit_usd: 50.0,
    };
    let mut nan = request("demo/4", "BTCUSDT", breach, 200);
    nan.evidence.var_usd = f64::NAN;
    let mut negative = request(
        "demo/5",
        "BTCUSDT",
        RiskAction::ReduceExposure {
            current_qty: 2.0,
            target_qty: -1.0,
        },
        200,
    );
    negative.evidence.position_qty = 2.0;
    let mut thin = request("demo/8", "ETHUSDT", RiskAction::Resume, 200);
    thin.evidence.ess = 5.0;
    let mut wide = request("demo/9", "ETHUSDT", RiskAction::Halt, 200);
    wide.evidence.var_ci_low_usd = 10.0;
    wide.evidence.var_ci_high_usd = 150.0;
    let mut unhealthy = request(
        "demo/10",
        "ETHUSDT",
        RiskAction::SetLimit {
            new_limit_usd: 55.0,
        },
        200,
    );
    unhealthy.feed_healthy = false;
    let list: Vec<(&'static str, ActionRequest)> = vec![
        (
            "risk snapshot, fresh data",
            request("demo/1", "BTCUSDT", RiskAction::PublishRiskSnapshot, 200),
        ),
        (
            "limit breach, posterior under 200 effective returns",
            request("demo/2", "BTCUSDT", breach, 200),
        ),
        (
            "reduce BTCUSDT from 2 to 1",
            request(
                "demo/3",
                "BTCUSDT",
                RiskAction::ReduceExposure {
                    current_qty: 2.0,
                    target_qty: 1.0,
                },
                200,
            ),
        ),
        ("VaR is NaN", nan),
        ("negative target size", negative),
        (
            "unknown symbol",
            request("demo/6", "XRPUSDT", RiskAction::Halt, 200),
        ),
        (
            "stale data (9 s old)",
            request("demo/7", "ETHUSDT", RiskAction::Halt, 9_000),
        ),
        ("resume on a thin posterior", thin),
        ("halt with a VaR interval wider than the VaR", wide),
        ("limit change while the feed is unhealthy", unhealthy),
        (
            "replayed action ID",
            request("demo/2", "BTCUSDT", breach, 200),
        ),
        (
            "raise limit above its cap while reducing",
            request(
                "demo/11",
                "BTCUSDT",
                RiskAction::SetLimit {
                    new_limit_usd: 500.0,
                },
                200,
            ),
        ),
    ];
    list.into_iter()
        .map(|(label, req)| {
            let d = gate.decide(&req);
            (label, req, d)
        })
        .collect()
}

/// Latency of one measured operation, nanoseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    pub name: &'static str,
    pub samples: u64,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
}

fn histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)
}

fn summary(name: &'static str, h: &Histogram<u64>) -> Latency {
    Latency {
        name,
        samples: h.len(),
        mean_ns: h.mean(),
        p50_ns: h.value_at_quantile(0.5),
        p99_ns: h.value_at_quantile(0.99),
        p999_ns: h.value_at_quantile(0.999),
    }
}

/// Time `n` calls of each operation, taking them in turn (a, b, c, a, b, c, ...) so that
/// every operation meets the same machine noise and their percentiles compare fairly.
fn measure_in_turn(
    n: u64,
    ops: &mut [(&'static str, &mut dyn FnMut(u64))],
) -> Result<Vec<Latency>, hdrhistogram::CreationError> {
    let mut hists = ops
        .iter()
        .map(|_| histogram())
        .collect::<Result<Vec<_>, _>>()?;
    // Warm-up, not recorded (calls u64::MAX, u64::MAX - 1, ...).
    for i in 0..n / 10 + 100 {
        for (_, f) in ops.iter_mut() {
            f(u64::MAX - i);
        }
    }
    for i in 0..n {
        for ((_, f), h) in ops.iter_mut().zip(&mut hists) {
            let t = Instant::now();
            f(i);
            let _ = h.record(t.elapsed().as_nanos().max(1) as u64);
        }
    }
    Ok(ops
        .iter()
        .zip(&hists)
        .map(|((name, _), h)| summary(name, h))
        .collect())
}

fn measure(
    name: &'static str,
    n: u64,
    mut f: impl FnMut(u64),
) -> Result<Latency, hdrhistogram::CreationError> {
    let mut ops: [(&'static str, &mut dyn FnMut(u64)); 1] = [(name, &mut f)];
    Ok(measure_in_turn(n, &mut ops)?.remove(0))
}

/// A realistic decision record as the gate signs it (the first demo case, both models'
/// figures), for benches and tests of signing and verification.
pub fn sample_decision(config: &Config) -> Result<DecisionRecord, RuleError> {
    let (_, req, decision) = cases(config, default_rules()?).remove(0);
    let provenance = RunProvenance {
        config_sha256: "0".repeat(64),
        rules_sha256: "0".repeat(64),
    };
    let bar = BarRecords::of(&req.evidence, &req.input, &sample_figures(config));
    Ok(DecisionRecord::new(
        &req,
        &decision,
        &bar,
        &provenance.record(),
    ))
}

/// Realistic model figures for the signed record (both models, two levels).
pub fn sample_figures(config: &Config) -> ModelFigures {
    let mut model = SymbolRiskModel::new(config.symbol_model(0));
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // Fat-tailed returns: a t with 4 degrees of freedom, as a sum of squares is not needed.
    let returns: Vec<f64> = match StudentT::new(4.0) {
        Ok(t) => (0..400).map(|_| t.sample(&mut rng) * 2e-4).collect(),
        Err(_) => (0..400)
            .map(|i| ((i * 7919) % 200) as f64 * 1e-6 - 1e-4)
            .collect(),
    };
    model.warm(&returns);
    ModelFigures::Symbol(Box::new(
        model.forecast(&mut ModelScratch::default()).figures,
    ))
}

/// Per-call latency of the decision (cache off/on, L2 || L3 off/on), a bare Ed25519
/// signature of the same bytes as a signed event, and the full gate L0-L4.
pub fn latencies(
    config: &Config,
    rules: Arc<RuleSet>,
    n: u64,
) -> Result<Vec<Latency>, hdrhistogram::CreationError> {
    let provenance = RunProvenance {
        config_sha256: config.hash_hex(),
        rules_sha256: rules.hash_hex().to_string(),
    }
    .record();
    // Snapshots pass every layer without throttling, so every call does the full work.
    let action = RiskAction::PublishRiskSnapshot;
    let mut out = Vec::new();
    for (name, cache, parallel, iterations) in [
        ("decide L0-L3, uncached", false, false, n),
        ("decide L0-L3, cached L3", true, false, n),
        (
            "decide L0-L3, L2 || L3 on 2 threads",
            false,
            true,
            n / 20 + 1,
        ),
    ] {
        let mut gate = demo_gate(config, rules.clone(), cache, parallel);
        let mut id = String::with_capacity(24);
        out.push(measure(name, iterations, |i| {
            use std::fmt::Write;
            id.clear();
            let _ = write!(id, "bench/{i}");
            let mut req = request("", "BTCUSDT", action, 200);
            req.action_id.clone_from(&id);
            black_box(gate.decide(black_box(&req)));
        })?);
    }
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let mut gate = demo_gate(config, rules.clone(), false, false);
    let sample_req = request("bench/sample", "BTCUSDT", action, 200);
    // Encoded once, as the engine encodes a bar's records where the bar closes.
    let bar = BarRecords::of(
        &sample_req.evidence,
        &sample_req.input,
        &sample_figures(config),
    );
    let decision = gate.decide(&sample_req);
    let record = DecisionRecord::new(&sample_req, &decision, &bar, &provenance);
    let mut sample_signer = ChainSigner::new(
        key.clone(),
        "bizra.BTCUSDT".into(),
        ChainHead::genesis(),
        CheckpointPolicy::default(),
    );
    let sample = sample_signer
        .sign(NOW_MS, "BTCUSDT", &Payload::RiskDecision(Box::new(record)))
        .map(|e| e.line)
        .unwrap_or_default();
    let (signed_bytes, whole_bytes) = match wire::parse_envelope(&sample) {
        Ok(env) => (
            wire::signing_input(env.event_bytes),
            [env.event_bytes, env.payload_bytes].concat(),
        ),
        Err(_) => (Vec::new(), Vec::new()),
    };
    let mut signer = ChainSigner::new(
        key.clone(),
        "bizra.BTCUSDT".into(),
        ChainHead::genesis(),
        CheckpointPolicy::default(),
    );
    let mut gate = demo_gate(config, rules, false, false);
    let mut bare_envelope = |_| {
        black_box(key.sign(black_box(&signed_bytes)));
    };
    let mut bare_whole = |_| {
        black_box(key.sign(black_box(&whole_bytes)));
    };
    // The gate's input, made beforehand as the symbol step makes it (each with an ID of
    // its own, or L0 would refuse it as a replay).
    let gate_calls = n / 10 + 1;
    let warm_up_calls = gate_calls / 10 + 100;
    let requests: Vec<ActionRequest> = (0..gate_calls + warm_up_calls)
        .map(|i| {
            let mut req = sample_req.clone();
            req.action_id = format!("gate/{i}");
            req
        })
        .collect();
    let mut full_gate = |i: u64| {
        // Warm-up calls count down from u64::MAX (`measure_in_turn`).
        let index = if i < gate_calls {
            i
        } else {
            gate_calls + (u64::MAX - i)
        };
        let Some(req) = usize::try_from(index).ok().and_then(|i| requests.get(i)) else {
            return;
        };
        let d = gate.decide(req);
        let record = DecisionRecord::new(req, &d, &bar, &provenance);
        let _ = black_box(signer.sign(NOW_MS, "BTCUSDT", &Payload::RiskDecision(Box::new(record))));
    };
    out.extend(measure_in_turn(
        gate_calls,
        &mut [
            (
                "bare Ed25519 sign, same bytes (signed envelope)",
                &mut bare_envelope,
            ),
            (
                "bare Ed25519 sign, envelope + payload bytes",
                &mut bare_whole,
            ),
            (
                "full gate L0-L4 (decide, record, sign, link)",
                &mut full_gate,
            ),
        ],
    )?);
    Ok(out)
}

/// The rule set of `config/rules.yaml` (from the working directory or the sources).
pub fn default_rules() -> Result<Arc<RuleSet>, RuleError> {
    let local = std::path::Path::new("config/rules.yaml");
    let path = if local.exists() {
        local.to_path_buf()
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.yaml")
    };
    RuleSet::load(&path).map(Arc::new)
}

/// The printed demo.
pub fn render(cases: &[(&'static str, ActionRequest, Decision)], latencies: &[Latency]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "ELF gate demo (embedded defaults, config/rules.yaml)\n");
    for (label, req, d) in cases {
        let reasons: Vec<&str> = d.reasons.iter().map(|r| r.as_str()).collect();
        let rules: Vec<&str> = d.rules_fired.iter().map(|h| &*h.rule_id).collect();
        let _ = writeln!(
            s,
            "  {:<14} {:<4} {:<44} {} {}{}{}",
            d.verdict.as_str(),
            d.layer.map_or("", |l| l.as_str()),
            label,
            req.action.kind().as_str(),
            req.symbol,
            if reasons.is_empty() {
                String::new()
            } else {
                format!("  reasons {reasons:?}")
            },
            if rules.is_empty() {
                String::new()
            } else {
                format!("  rules {rules:?}")
            },
        );
    }
    let _ = writeln!(
        s,
        "\nlatency per call (ns; includes ~20-40 ns of clock reads):"
    );
    let _ = writeln!(
        s,
        "  {:<46} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "operation", "calls", "mean", "p50", "p99", "p99.9"
    );
    for l in latencies {
        let _ = writeln!(
            s,
            "  {:<46} {:>9} {:>9.0} {:>9} {:>9} {:>9}",
            l.name, l.samples, l.mean_ns, l.p50_ns, l.p99_ns, l.p999_ns
        );
    }
    if let Some(gate) = latencies.iter().find(|l| l.name.starts_with("full gate")) {
        for sign in latencies.iter().filter(|l| l.name.starts_with("bare")) {
            let _ = writeln!(
                s,
                "  full gate / {}: mean {:.2}x, p99 {:.2}x",
                sign.name,
                gate.mean_ns / sign.mean_ns.max(1.0),
                gate.p99_ns as f64 / sign.p99_ns.max(1) as f64
            );
        }
    }
    s
}
