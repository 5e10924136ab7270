use super::*;
use crate::audit::{ChainHead, CheckpointPolicy};

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
