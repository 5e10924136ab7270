use super::*;
use crate::audit::{ChainHead, CheckpointPolicy};
use crate::elf::GateTuning;
use crate::optimizer::{LiveSample, RollbackCause};

const OP: &str = "operator-token-0123456789abcdef0123";
const VIEW: &str = "viewer-token-0123456789abcdef012345";

fn step() -> ControlStep {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let signer = ChainSigner::new(
        key,
        control_chain("e"),
        ChainHead::genesis(),
        CheckpointPolicy {
            every_events: 2,
            every_ms: 60_000,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    std::fs::write(
        &path,
        format!(
            "[[tokens]]\nid = \"ops\"\nrole = \"operator\"\ntoken = \"{OP}\"\n\
             [[tokens]]\nid = \"dash\"\nrole = \"viewer\"\ntoken = \"{VIEW}\"\n"
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let tokens = Tokens::load(&path).unwrap();
    ControlStep::new(
        signer,
        tokens,
        RateLimit::new(60, 5),
        vec!["BTCUSDT".into()],
        "rules".into(),
    )
}

fn http(method: &str, path: &str, token: Option<&str>, body: &str) -> ControlInput {
    ControlInput::Http(HttpRequest {
        request_id: Some("req-1".into()),
        client_ip: "127.0.0.1".into(),
        method: method.into(),
        path: path.into(),
        query: Secret::default(),
        authorization: token.map(|t| Secret::new(format!("Bearer {t}"))),
        body: Some(body.as_bytes().to_vec()),
    })
}

fn refused(a: Admission) -> ControlRecord {
    match a {
        Admission::Refused { record: Some(r) } => r,
        Admission::Refused { record: None } => panic!("refused unsigned"),
        Admission::Do { .. } => panic!("admitted"),
    }
}

#[test]
fn refusals_name_their_reason_and_never_the_token() {
    let mut s = step();
    let ks = r#"{"engaged": true}"#;
    let r = refused(s.admit(&http("POST", "/control/kill-switch", None, ks), 0));
    assert_eq!(
        (r.reason, http_status(&r)),
        (Some(ControlReason::Unauthenticated), 401)
    );
    let r = refused(s.admit(
        &http(
            "POST",
            "/control/kill-switch",
            Some("not-a-real-token-0123456789abcdef"),
            ks,
        ),
        0,
    ));
    assert_eq!(r.reason, Some(ControlReason::TokenUnknown));
    let r = refused(s.admit(&http("POST", "/control/kill-switch", Some(VIEW), ks), 0));
    assert_eq!(
        (r.reason, http_status(&r), r.token_id.as_deref(), r.role),
        (
            Some(ControlReason::Forbidden),
            403,
            Some("dash"),
            Some(Role::Viewer)
        )
    );
    let ControlInput::Http(mut q) = http("POST", "/control/kill-switch", None, ks) else {
        unreachable!()
    };
    q.query = Secret::new(format!("access_token={OP}"));
    let r = refused(s.admit(&ControlInput::Http(q), 0));
    assert_eq!(r.reason, Some(ControlReason::TokenInQuery));
    let line = serde_json::to_string(&r).unwrap();
    assert!(!line.contains(OP), "{line}");
    let r = refused(s.admit(
        &http("POST", "/control/kill-switch", Some(OP), "{\"on\":1}"),
        0,
    ));
    assert_eq!(r.reason, Some(ControlReason::BadRequest));
}

#[test]
fn operators_are_admitted_and_the_record_is_signed_on_the_control_chain() {
    let mut s = step();
    let a = s.admit(
        &http(
            "POST",
            "/control/trading-state",
            Some(OP),
            r#"{"state":"HALTED","symbol":"BTCUSDT"}"#,
        ),
        5,
    );
    let Admission::Do {
        command,
        mut record,
    } = a
    else {
        panic!("refused")
    };
    assert_eq!(record.request_id, "req-1");
    assert_eq!(record.token_id.as_deref(), Some("ops"));
    s.finish(&mut record, Ok(None));
    s.commit(&command);
    assert_eq!(
        s.state().symbol_trading_states.get("BTCUSDT"),
        Some(&TradingStateName::Halted)
    );
    let signed = s.sign(record.clone(), 5).unwrap();
    assert_eq!(
        (signed.event.chain.as_str(), signed.event.seq),
        ("e.control", 0)
    );
    let parsed = crate::audit::wire::parse_record(&signed.event.line).unwrap();
    assert_eq!(parsed.payload, Payload::ControlRequest(Box::new(record)));
    let r = refused(s.admit(
        &http(
            "POST",
            "/control/trading-state",
            Some(OP),
            r#"{"state":"HALTED","symbol":"XRPUSDT"}"#,
        ),
        6,
    ));
    assert_eq!(r.reason, Some(ControlReason::UnknownSymbol));
    // The second signed record completes a checkpoint (every 2 events).
    assert!(s.sign(r, 6).unwrap().checkpoint.is_some());
}

#[test]
fn a_flood_is_limited_and_only_its_first_refusal_a_minute_is_signed() {
    let mut s = step();
    let mut signed = 0;
    let mut unsigned = 0;
    for t in 0..50 {
        match s.admit(&http("GET", "/control/state", Some(VIEW), ""), t) {
            Admission::Do { .. } => {}
            Admission::Refused { record: Some(r) } => {
                assert_eq!(r.reason, Some(ControlReason::RateLimited));
                signed += 1;
            }
            Admission::Refused { record: None } => unsigned += 1,
        }
    }
    assert_eq!((signed, unsigned), (1, 44));
}

#[test]
fn a_hangup_is_an_authorised_rules_reload() {
    let mut s = step();
    let Admission::Do { command, record } = s.admit(&ControlInput::Hangup, 1) else {
        panic!("refused")
    };
    assert_eq!(command, ControlCommand::RulesReload);
    assert_eq!(record.source, ControlSource::Signal);
}

#[test]
fn an_anonymous_flood_from_the_operators_address_does_not_starve_the_operator() {
    let mut s = step();
    for t in 0..100 {
        let _ = s.admit(&http("POST", "/control/kill-switch", None, "{}"), t);
    }
    let engage = r#"{"engaged": true}"#;
    assert!(matches!(
        s.admit(&http("POST", "/control/kill-switch", Some(OP), engage), 100),
        Admission::Do { .. }
    ));
    // A token in the query string is refused as anonymous, and limited like one.
    let ControlInput::Http(mut q) = http("POST", "/control/kill-switch", Some(OP), engage) else {
        unreachable!()
    };
    q.query = Secret::new(format!("token={OP}"));
    assert!(matches!(
        s.admit(&ControlInput::Http(q), 101),
        Admission::Refused { record: None }
    ));
}

fn tuned() -> ControlStep {
    step().with_tuning(
        GateTuning {
            parallelize_l2_l3: true,
            enable_decision_cache: false,
            decision_cache_size: 2048,
            decision_cache_ttl_s: 120,
        },
        WatchSettings {
            kpi: crate::optimizer::KpiName::DecideMeanUs,
            window_ms: 60_000,
            degradation_pct: 5.0,
            min_decisions: 100,
        },
    )
}

fn sample(decisions: u64, mean_us: f64) -> LiveSample {
    LiveSample {
        decisions,
        decide_sum_s: decisions as f64 * mean_us * 1e-6,
        gate_sum_s: 0.0,
    }
}

fn admitted(a: Admission) -> (ControlCommand, ControlRecord) {
    match a {
        Admission::Do { command, record } => (command, record),
        Admission::Refused { record } => panic!("refused: {record:?}"),
    }
}

const APPLY: &str = "/control/config/apply";

#[test]
fn an_apply_names_what_it_replaces_and_is_watched_against_the_kpi_before_it() {
    let mut s = tuned();
    s.note_sample(sample(500, 2.0));
    let body = r#"{"changes": [{"setting": "elf.parallelize_l2_l3", "to": false}]}"#;
    let (command, record) = admitted(s.admit(&http("POST", APPLY, Some(OP), body), 1_000));
    let ControlCommand::ConfigApply {
        changes,
        evidence,
        watch,
    } = &command
    else {
        panic!("{command:?}")
    };
    assert_eq!(
        (changes[0].from.as_str(), changes[0].to.as_str()),
        ("true", "false")
    );
    assert!(evidence.is_none());
    let terms = watch.clone().unwrap();
    assert_eq!((terms.baseline.0, terms.baseline_decisions), (2.0, 500));
    assert_eq!(terms.until_ms, 61_000);
    assert_eq!(record.request.as_ref(), Some(&command));

    // Carried out: the watch measures from the sample taken once the gates changed.
    s.note_sample(sample(510, 2.0));
    assert!(s.commit(&command));
    assert!(!s.tuning().unwrap().parallelize_l2_l3);
    let mut later = sample(510, 2.0);
    later.decisions += 200;
    later.decide_sum_s += 200.0 * 2.2e-6;
    s.note_sample(later);
    let Some(Admission::Do { command, record }) = s.watch_step(2_000) else {
        panic!("a 10 % degradation rolls back")
    };
    assert_eq!(record.source, ControlSource::Watchdog);
    let ControlCommand::ConfigRollback {
        changes,
        cause,
        evidence,
    } = &command
    else {
        panic!("{command:?}")
    };
    assert_eq!(*cause, RollbackCause::KpiDegraded);
    assert_eq!(changes[0].to, "true");
    assert!((evidence.as_ref().unwrap().degradation_pct.0 - 10.0).abs() < 1e-6);
    assert!(s.watch_step(2_100).is_none(), "asked for once");
    assert!(s.commit(&command));
    assert!(s.tuning().unwrap().parallelize_l2_l3, "put back");
    assert!(s.watch().is_none());
    let r = refused(s.admit(
        &http("POST", "/control/config/rollback", Some(OP), ""),
        3_000,
    ));
    assert_eq!(
        (r.reason, http_status(&r)),
        (Some(ControlReason::NothingToRollBack), 409)
    );
}

#[test]
fn thresholds_no_ops_bad_values_and_viewers_are_refused() {
    let mut s = tuned();
    // A second apart: within the rate limit.
    let mut now_ms = 0;
    let mut apply = |s: &mut ControlStep, token, body: &str| {
        now_ms += 1_000;
        refused(s.admit(&http("POST", APPLY, Some(token), body), now_ms))
    };
    let r = apply(
        &mut s,
        OP,
        r#"{"changes": [{"setting": "elf.constitutional_compliance", "to": 0.8}]}"#,
    );
    assert_eq!(
        (r.reason, http_status(&r)),
        (Some(ControlReason::DecisionAltering), 422)
    );
    let r = apply(
        &mut s,
        OP,
        r#"{"changes": [{"setting": "elf.parallelize_l2_l3", "to": true}]}"#,
    );
    assert_eq!(r.reason, Some(ControlReason::BadRequest), "changes nothing");
    for body in [
        r#"{"changes": [{"setting": "elf.decision_cache_size", "to": 0}]}"#,
        r#"{"changes": [{"setting": "elf.rules_file", "to": "x"}]}"#,
        r#"{"changes": []}"#,
        r#"{"changes": [{"setting": "elf.parallelize_l2_l3", "to": [1]}]}"#,
        r#"{"changes": [{"setting": "elf.parallelize_l2_l3", "to": false}], "evidence": {"baseline": 2.0, "candidate": 1.0, "decisions_compared": 10, "decisions_changed": 0, "improvement_pct": 50.0, "kpi": "DECIDE_MEAN_US", "pairs_better_pct": 100.0, "input_sha256": "not-hex", "runs_per_side": 3}}"#,
    ] {
        assert_eq!(
            apply(&mut s, OP, body).reason,
            Some(ControlReason::BadRequest),
            "{body}"
        );
    }
    let r = apply(
        &mut s,
        VIEW,
        r#"{"changes": [{"setting": "elf.parallelize_l2_l3", "to": false}]}"#,
    );
    assert_eq!(r.reason, Some(ControlReason::Forbidden));
    // Without enough decisions before it, a change is applied but not watched.
    let (command, record) = admitted(s.admit(
        &http(
            "POST",
            APPLY,
            Some(OP),
            r#"{"changes": [{"setting": "elf.parallelize_l2_l3", "to": false}]}"#,
        ),
        60_000,
    ));
    assert!(matches!(
        command,
        ControlCommand::ConfigApply { watch: None, .. }
    ));
    assert!(record.detail.unwrap().contains("not watched"));
    // An engine without config changes enabled does not know the endpoint.
    let r = refused(step().admit(
        &http(
            "POST",
            APPLY,
            Some(OP),
            r#"{"changes": [{"setting": "elf.parallelize_l2_l3", "to": false}]}"#,
        ),
        0,
    ));
    assert_eq!(r.reason, Some(ControlReason::UnknownEndpoint));
}

#[test]
fn applied_settings_survive_a_restart_as_a_signed_restart_record() {
    let mut s = tuned();
    s.note_sample(sample(500, 2.0));
    let body = r#"{"changes": [{"setting": "elf.enable_decision_cache", "to": true}]}"#;
    let (command, _) = admitted(s.admit(&http("POST", APPLY, Some(OP), body), 0));
    assert!(s.commit(&command));
    let kept = s.state().clone();
    let json = serde_json::to_string(&kept).unwrap();

    let mut next = tuned();
    let records = next.restore(serde_json::from_str(&json).unwrap(), 5);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].source, ControlSource::Restart);
    assert!(matches!(
        &records[0].request,
        Some(ControlCommand::ConfigApply { changes, .. }) if changes[0].to == "true"
    ));
    assert!(next.tuning().unwrap().enable_decision_cache);
    // A state file from before config changes existed keeps the configuration's settings.
    let mut older = tuned();
    let records = older.restore(
        serde_json::from_str(r#"{"kill_switch_engaged": false, "global_trading_state": null, "symbol_trading_states": {}, "rules_sha256": ""}"#).unwrap(),
        5,
    );
    assert!(records.is_empty());
    assert!(older.tuning().unwrap().parallelize_l2_l3);
}
