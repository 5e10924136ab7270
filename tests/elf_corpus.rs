//! The labelled ELF corpus (tests/data/elf_corpus.jsonl, written by scripts/gen-elf-corpus):
//! every case must get exactly its expected verdict, layer and reason codes, with the
//! decision cache and L2 || L3 each on and off.

mod common;

use std::sync::Arc;

use serde_json::Value;

use bizra_risk::config::Config;
use bizra_risk::elf::{ActionRequest, ElfGate, Evidence, InputRange, KillSwitch, RuleSet};
use bizra_risk::risk::RiskAction;

const NOW_MS: i64 = 1_000_000_000;

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => match s.as_str() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            other => panic!("bad number {other}"),
        },
        other => panic!("bad number {other}"),
    }
}

fn action(kind: &str, f: &Value) -> RiskAction {
    let n = |k: &str| num(&f[k]);
    match kind {
        "PUBLISH_RISK_SNAPSHOT" => RiskAction::PublishRiskSnapshot,
        "LIMIT_BREACH" => RiskAction::LimitBreach {
            var_usd: n("var_usd"),
            limit_usd: n("limit_usd"),
        },
        "REDUCE_EXPOSURE" => RiskAction::ReduceExposure {
            current_qty: n("current_qty"),
            target_qty: n("target_qty"),
        },
        "HALT" => RiskAction::Halt,
        "RESUME" => RiskAction::Resume,
        "SET_LIMIT" => RiskAction::SetLimit {
            new_limit_usd: n("new_limit_usd"),
        },
        other => panic!("unknown action {other}"),
    }
}

fn request(case: &Value, id: String, symbol: &str, kind: &str, fields: &Value) -> ActionRequest {
    let e = &case["evidence"];
    let n = |k: &str| num(&e[k]);
    ActionRequest {
        action_id: id,
        symbol: symbol.to_string(),
        action: action(kind, fields),
        data_time_ms: NOW_MS - case["data_age_ms"].as_i64().unwrap(),
        decided_at_ms: NOW_MS,
        feed_healthy: case["feed_healthy"].as_bool().unwrap(),
        evidence: Evidence {
            level: n("level"),
            var_usd: n("var_usd"),
            es_usd: n("es_usd"),
            limit_usd: n("limit_usd"),
            limit_cap_usd: n("limit_cap_usd"),
            var_ci_low_usd: n("var_ci_low_usd"),
            var_ci_high_usd: n("var_ci_high_usd"),
            position_qty: n("position_qty"),
            price: n("price"),
            ess: n("ess"),
            mc_z: n("mc_z"),
            exceedances: n("exceedances"),
            expected_exceedances: n("expected_exceedances"),
            model_warming_up: e["model_warming_up"].as_bool().unwrap(),
        },
        input: InputRange::default(),
    }
}

fn run_corpus(cache: bool, parallel: bool) -> usize {
    let text = std::fs::read_to_string(common::repo().join("tests/data/elf_corpus.jsonl")).unwrap();
    let rules =
        Arc::new(RuleSet::load(&common::repo().join("tests/data/elf_corpus_rules.yaml")).unwrap());
    let config = Config::embedded().unwrap();
    let mut settings = config.elf.gate_settings();
    settings.decision_cache = cache;
    settings.parallelize_l2_l3 = parallel;
    let mut mismatches = Vec::new();
    let mut count = 0;
    for line in text.lines() {
        let case: Value = serde_json::from_str(line).unwrap();
        count += 1;
        let kill = KillSwitch::default();
        let mut gate = ElfGate::new(
            settings.clone(),
            ["BTCUSDT".to_string(), "ETHUSDT".to_string()].into(),
            rules.clone(),
            kill.clone(),
        );
        let id = format!("case-{}", case["id"]);
        let symbol = case["symbol"].as_str().unwrap();
        for (k, pre) in case["pre"].as_array().unwrap().iter().enumerate() {
            let kind = pre["action"].as_str().unwrap();
            let pre_id = if pre["same_id"].as_bool() == Some(true) {
                id.clone()
            } else {
                format!("{id}-pre{k}")
            };
            let pre_symbol = pre["symbol"].as_str().unwrap_or("BTCUSDT");
            let fields = serde_json::json!({
                "var_usd": 60.0, "limit_usd": 50.0, "current_qty": 2.0, "target_qty": 1.0,
                "new_limit_usd": 60.0
            });
            gate.decide(&request(&case, pre_id, pre_symbol, kind, &fields));
        }
        if case["kill_switch"].as_bool() == Some(true) {
            kill.engage();
        }
        let req = request(
            &case,
            id,
            symbol,
            case["action"].as_str().unwrap(),
            &case["action_fields"],
        );
        let d = gate.decide(&req);
        let want = &case["expect"];
        let reasons: Vec<&str> = d.reasons.iter().map(|r| r.as_str()).collect();
        let want_reasons: Vec<&str> = want["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let layer = d.layer.map(|l| l.as_str());
        if d.verdict.as_str() != want["verdict"].as_str().unwrap()
            || layer != want["layer"].as_str()
            || reasons != want_reasons
        {
            mismatches.push(format!(
                "{} {}: got {} {:?} {:?}, want {} {:?} {:?}",
                case["id"],
                case["name"],
                d.verdict.as_str(),
                layer,
                reasons,
                want["verdict"],
                want["layer"],
                want_reasons
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {count} cases mismatched (cache {cache}, parallel {parallel}):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    count
}

#[test]
fn every_labelled_case_matches() {
    for cache in [false, true] {
        for parallel in [false, true] {
            assert!(run_corpus(cache, parallel) >= 200);
        }
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(1e308),
            Just(-0.0),
            -1e3f64..1e3,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Hostile requests never panic the gate, and nothing non-finite or negative passes.
        #[test]
        fn hostile_requests_are_decided_safely(
            numbers in prop::collection::vec(any_f64(), 15),
            kind in 0u8..6,
            symbol in prop_oneof![Just("BTCUSDT".to_string()), "\\PC{0,10}"],
            times in (any::<i64>(), any::<i64>()),
            flags in any::<u8>(),
        ) {
            let rules = Arc::new(RuleSet::load(&common::repo().join("config/rules.yaml")).unwrap());
            let config = Config::embedded().unwrap();
            let mut settings = config.elf.gate_settings();
            settings.decision_cache = flags & 1 != 0;
            settings.parallelize_l2_l3 = flags & 2 != 0;
            let mut gate = ElfGate::new(settings, ["BTCUSDT".to_string()].into(), rules, KillSwitch::default());
            let n = |i: usize| numbers[i];
            let action = match kind {
                0 => RiskAction::PublishRiskSnapshot,
                1 => RiskAction::LimitBreach { var_usd: n(13), limit_usd: n(14) },
                2 => RiskAction::ReduceExposure { current_qty: n(13), target_qty: n(14) },
                3 => RiskAction::Halt,
                4 => RiskAction::Resume,
                _ => RiskAction::SetLimit { new_limit_usd: n(13) },
            };
            let req = ActionRequest {
                action_id: format!("p/{flags}"),
                symbol,
                action,
                data_time_ms: times.0,
                decided_at_ms: times.1,
                feed_healthy: flags & 4 != 0,
                evidence: Evidence {
                    level: n(0), var_usd: n(1), es_usd: n(2), limit_usd: n(3), limit_cap_usd: n(4),
                    var_ci_low_usd: n(5), var_ci_high_usd: n(6), position_qty: n(7), price: n(8),
                    ess: n(9), mc_z: n(10), exceedances: n(11), expected_exceedances: n(12),
                    model_warming_up: flags & 8 != 0,
                },
                input: InputRange::default(),
            };
            let d = gate.decide(&req);
            let mut all = numbers[..13].to_vec();
            all.extend(req.action.numbers().iter().map(|(_, v)| *v));
            if all.iter().any(|v| !v.is_finite() || *v < 0.0) {
                prop_assert!(!d.verdict.allows(), "{:?}", d);
            }
        }
    }
}
