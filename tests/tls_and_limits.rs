//! TLS to the market-data server, tested offline with a private CA: the engine streams
//! over `wss://` and warms up over `https://` from a replay server holding a certificate
//! of that CA, and refuses a server whose certificate comes from another CA. And the
//! feed's input limits: an oversized WebSocket message and a flood of messages each cut
//! the connection, are counted, and the engine reconnects and keeps running.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bizra_risk::config::OnServerClose;
use bizra_risk::metrics::Metrics;
use bizra_risk::replay::{conn::tls_server_config, spawn_in_thread, ReplayOptions, Speed};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `dir`.
fn pki(dir: &Path, name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let write = |file: &str, text: String| {
        let p = dir.join(format!("{name}-{file}"));
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", ca_cert.pem()),
        cert: write("cert.pem", leaf.pem()),
        key: write("key.pem", leaf_key.serialize_pem()),
    }
}

#[test]
fn the_engine_streams_over_wss_from_a_private_ca_and_refuses_another_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = pki(tmp.path(), "ours");
    let theirs = pki(tmp.path(), "theirs");
    let mut opts = ReplayOptions::new(common::capture_files_of_day("20240809"), Speed::Max);
    opts.history = common::capture_files_of_day("20240808");
    opts.tls = Some(tls_server_config(&ours.cert, &ours.key).unwrap());
    let server = spawn_in_thread("127.0.0.1:0".parse().unwrap(), opts).unwrap();
    assert!(server.url().starts_with("wss://"));

    // Trusting the server's CA: the whole day streams, and warm start reads klines over
    // https from the same server.
    let run_dir = tmp.path().join("trusted");
    let key = common::new_key(&run_dir);
    let mut config = common::test_config(&server.url(), &run_dir, &key);
    config.feed.ca_file = ours.ca.clone();
    config.feed.max_messages_per_s = 0;
    let metrics = Arc::new(Metrics::new().unwrap());
    let summary = common::run_with_metrics(config, metrics.clone());
    assert!(summary.ingest.connections >= 1);
    let decisions: u64 = summary.gates.iter().map(|g| g.next_seq).sum();
    assert!(decisions > 100, "{decisions} decisions over wss://");
    let start = std::fs::read_to_string(
        bizra_risk::recording::runs(&run_dir.join("events"))
            .unwrap()
            .first()
            .unwrap()
            .join("start.json"),
    )
    .unwrap();
    let start: serde_json::Value = serde_json::from_str(&start).unwrap();
    let gets = start["warm_start"].as_array().unwrap();
    assert!(
        gets.iter().any(|g| g["target"]
            .as_str()
            .unwrap_or("")
            .contains("/api/v3/klines")
            && g["body"].is_string()),
        "warm start fetched klines over https: {gets:?}"
    );
    assert!(gets.iter().all(|g| g.get("error").is_none()), "{gets:?}");

    // Trusting another CA: no connection is ever made.
    let run_dir = tmp.path().join("untrusted");
    let key = common::new_key(&run_dir);
    let mut config = common::test_config(&server.url(), &run_dir, &key);
    config.feed.ca_file = theirs.ca.clone();
    let (metrics, summary) = run_until(config, Duration::from_secs(4), |_| false);
    assert_eq!(metrics.health.feed_connections_total.get(), 0);
    assert_eq!(summary.ingest.connections, 0);
    let decisions: u64 = summary.gates.iter().map(|g| g.next_seq).sum();
    assert_eq!(decisions, 0);
}

/// A WebSocket server whose first connection sends `first` and whose later connections
/// send nothing (they stay open).
fn misbehaving_server(first: Vec<String>) -> (String, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/stream", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut open = Vec::new();
        let mut connections = 0;
        listener.set_nonblocking(false).unwrap();
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { break };
            let Ok(mut ws) = tokio_tungstenite::tungstenite::accept(tcp) else {
                continue;
            };
            connections += 1;
            if connections == 1 {
                for m in &first {
                    if ws
                        .send(tokio_tungstenite::tungstenite::Message::text(m.clone()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
            open.push(ws);
            if connections >= 2 {
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
        connections
    });
    (url, handle)
}

fn run_against(
    url: &str,
    dir: &Path,
    configure: impl FnOnce(&mut bizra_risk::config::Config),
) -> Arc<Metrics> {
    let key = common::new_key(dir);
    let mut config = common::test_config(url, dir, &key);
    config.feed.on_server_close = OnServerClose::Reconnect;
    config.feed.reconnect_initial_backoff_ms = 50;
    config.var.warm_start.enabled = false;
    configure(&mut config);
    run_until(config, Duration::from_secs(20), |m| {
        m.health.feed_connections_total.get() >= 2
    })
    .0
}

/// Run the engine until `done` holds of its metrics or `limit` passes, then shut it down.
fn run_until(
    config: bizra_risk::config::Config,
    limit: Duration,
    done: impl Fn(&Metrics) -> bool,
) -> (Arc<Metrics>, bizra_risk::pipeline::RunSummary) {
    let metrics = Arc::new(Metrics::new().unwrap());
    let (trigger, shutdown) = bizra_risk::shutdown::channel();
    let m = metrics.clone();
    let engine = std::thread::spawn(move || {
        actix::System::new().block_on(bizra_risk::pipeline::run(
            config,
            bizra_risk::elf::KillSwitch::default(),
            m,
            shutdown,
        ))
    });
    let until = std::time::Instant::now() + limit;
    while !done(&metrics) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    trigger.request();
    let summary = engine.join().unwrap().unwrap();
    (metrics, summary)
}

#[test]
fn an_oversized_message_and_a_flood_cut_the_connection_and_the_engine_reconnects() {
    let tmp = tempfile::tempdir().unwrap();
    let frame = r#"{"stream":"btcusdt@trade","data":{"e":"trade"}}"#.to_string();
    type Configure = fn(&mut bizra_risk::config::Config);
    let cases: [(&str, Vec<String>, Configure); 2] = [
        ("ws_message_bytes", vec!["x".repeat(2 << 20)], |c| {
            c.feed.max_ws_message_bytes = 1 << 20
        }),
        ("ws_messages_per_s", vec![frame; 500], |c| {
            c.feed.max_messages_per_s = 100
        }),
    ];
    for (limit, first, configure) in cases {
        let (url, server) = misbehaving_server(first);
        let metrics = run_against(&url, &tmp.path().join(limit), configure);
        let breaches = metrics
            .input_limit_breaches_total
            .with_label_values(&[limit]);
        assert_eq!(breaches.get(), 1, "{limit}");
        let connections = metrics.health.feed_connections_total.get();
        assert_eq!(connections, 2, "{limit}: it reconnected");
        assert_eq!(server.join().unwrap(), 2);
    }
}

#[test]
fn deeply_nested_frames_and_rule_files_are_refused_not_overflowed() {
    // A frame nested far deeper than any Binance message: a typed error, no stack overflow.
    let deep = format!(
        "{{\"stream\":\"btcusdt@trade\",\"data\":{}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(bizra_risk::market::binance::parse_combined(&deep).is_err());
    let deep_object = format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    assert!(bizra_risk::market::binance::parse_combined(&deep_object).is_err());
    // A rules file nested beyond the YAML parser's depth limit is refused with an error.
    let yaml = format!(
        "version: 1\nrules: {}[]{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(bizra_risk::elf::RuleSet::parse(&yaml).is_err());
    // And one over the size limit is refused before it is read.
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("rules.yaml");
    std::fs::write(&big, "#".repeat(2 << 20)).unwrap();
    let e = bizra_risk::elf::RuleSet::load(&big)
        .unwrap_err()
        .to_string();
    assert!(e.contains("over the limit"), "{e}");
}
