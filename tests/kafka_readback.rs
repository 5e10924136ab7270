//! A broker that loses records it acknowledged, and a network that silently drops
//! packets: the engine reads back what was acknowledged, sends again what the topic lost,
//! names what it could not, and resumes within seconds of the network's return.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bizra_risk::audit::Verifier;
use bizra_risk::config::Config;
use bizra_risk::metrics::Metrics;
use bizra_risk::replay::Speed;

/// A noida-db Kafka broker in a process group of its own (the command on PATH is a
/// wrapper that starts the broker as a child), killed as a group with SIGKILL.
struct Noida {
    child: Child,
}

impl Noida {
    fn start(port: u16, dir: &Path) -> Option<Self> {
        use std::os::unix::process::CommandExt;
        std::fs::create_dir_all(dir).unwrap();
        let log = std::fs::File::create(dir.join("noida.log")).unwrap();
        let child = match Command::new("noida-db")
            .args(["start", "--only", "kafka", "--kafka-port"])
            .arg(port.to_string())
            .arg("--data-dir")
            .arg(dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
        {
            Ok(c) => c,
            Err(_) if std::env::var_os("CI").is_none() => {
                eprintln!("skipping: noida-db not installed (scripts/test installs it)");
                return None;
            }
            Err(e) => panic!("noida-db is not installed in CI: {e}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "noida-db did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { child })
    }

    /// SIGKILL to the whole process group: the wrapper and the broker it started.
    fn kill_group(&mut self) -> bool {
        let group = format!("-{}", self.child.id());
        let killed = Command::new("kill")
            .args(["-KILL", "--", &group])
            .status()
            .is_ok_and(|s| s.success());
        let _ = self.child.wait();
        killed
    }

    fn kill(mut self) {
        assert!(self.kill_group(), "kill -KILL the broker's process group");
    }
}

impl Drop for Noida {
    fn drop(&mut self) {
        self.kill_group();
    }
}

fn kafka_config(url: &str, dir: &Path, key: &Path, brokers: &str, topic: &str) -> Config {
    let mut c = common::kafka_test_config(url, dir, key, brokers, topic);
    c.kafka.topic_partitions = 1;
    c.kafka.readback_interval_ms = 500;
    c
}

/// The events on the topic, deduplicated and put in sequence order as a desk does (records
/// sent again after a broker lost them stand later on the topic), and whether every chain
/// verifies complete from genesis.
fn seqs_on_topic(brokers: &str, topic: &str, key: &Path) -> (u64, bool) {
    // A broker restarted under load can refuse its first metadata request.
    let source = bizra_risk::sink::KafkaSource::new(brokers, topic).unwrap();
    let mut attempts = 0;
    while source.read_all(Duration::from_secs(10), |_, _| {}).is_err() {
        attempts += 1;
        assert!(attempts < 10, "the topic cannot be read");
        std::thread::sleep(Duration::from_secs(1));
    }
    let (mut records, _) = common::read_deduplicated(brokers, topic);
    records.sort_by_key(|r| {
        let env = bizra_risk::audit::wire::parse_envelope(r).unwrap();
        (env.chain.into_owned(), env.seq)
    });
    let mut v = Verifier::new(&[common::verifying_key(key)]);
    for (i, r) in records.iter().enumerate() {
        v.push(&format!("{topic}#{i}"), r);
    }
    let report = v.finish();
    for f in report.failures.iter().take(5) {
        eprintln!("{f:?}");
    }
    let complete = report.ok()
        && report
            .chains
            .values()
            .all(|c| c.first_seq == 0 && c.events == c.last_seq + 1);
    (report.chains.values().map(|c| c.events).sum(), complete)
}

struct Forgotten {
    summary: bizra_risk::pipeline::RunSummary,
    metrics: Arc<Metrics>,
    brokers: String,
    key: PathBuf,
    _broker: Noida,
    _tmp: tempfile::TempDir,
}

/// Run the engine against a broker that is killed once records were acknowledged and
/// comes back empty: it lost every write it had acknowledged. (Nothing is read back
/// before: the read-back interval is longer than the run.)
fn run_with_a_broker_that_forgets(retain_acked_mb: u64, spool_max_mb: u64) -> Option<Forgotten> {
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let port = common::free_port();
    let brokers = format!("127.0.0.1:{port}");
    let broker = Noida::start(port, &tmp.path().join("broker-1"))?;
    let server = common::replay_day("20240809", Speed::Factor(20.0));
    let mut config = kafka_config(&server.url(), tmp.path(), &key, &brokers, "forgets");
    config.kafka.spool_retain_acked_mb = retain_acked_mb;
    config.kafka.spool_max_mb = spool_max_mb;
    config.kafka.readback_interval_ms = 600_000;
    let metrics = Arc::new(Metrics::new().unwrap());
    let m = metrics.clone();
    let run = std::thread::spawn(move || common::run_with_metrics(config, m));
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.kafka_acked_total.get() < 300 {
        assert!(Instant::now() < deadline, "nothing acknowledged");
        assert!(!run.is_finished(), "the run ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    let acked = metrics.kafka_acked_total.get();
    broker.kill();
    // It comes back without what it had acknowledged; the topics are created again.
    let broker = Noida::start(port, &tmp.path().join("broker-2"))?;
    let topics = ["forgets", "forgets.checkpoints", "forgets.var"];
    actix::System::new()
        .block_on(bizra_risk::sink::ensure_topics(
            &brokers,
            &topics,
            1,
            1,
            Duration::from_secs(30),
        ))
        .unwrap();
    let summary = run.join().unwrap();
    eprintln!(
        "{acked} records acknowledged before the broker forgot them; {} resent, unrecoverable: {:?}",
        summary.acked_records_resent, summary.acked_records_unrecoverable
    );
    Some(Forgotten {
        summary,
        metrics,
        brokers,
        key,
        _broker: broker,
        _tmp: tmp,
    })
}

#[test]
fn acknowledged_records_a_broker_lost_are_found_by_reading_back_and_sent_again() {
    // The broker must outlive the reads below: bind it, do not let `..` drop it.
    let Some(Forgotten {
        summary,
        metrics,
        brokers,
        key,
        _broker,
        _tmp,
    }) = run_with_a_broker_that_forgets(256, 1024)
    else {
        return;
    };
    assert!(summary.acked_records_resent > 0, "the loss was found");
    assert!(summary.acked_records_unrecoverable.is_empty());
    assert_eq!(
        metrics.kafka_acked_records_lost_total.get(),
        summary.acked_records_resent
    );
    let produced: u64 = summary.gates.iter().map(|g| g.next_seq).sum();
    let (on_topic, complete) = seqs_on_topic(&brokers, "forgets", &key);
    assert!(complete, "every chain complete from genesis on the topic");
    assert_eq!(on_topic, produced);
}

#[test]
fn a_loss_older_than_the_retained_window_is_named_and_fails_the_run() {
    let Some(Forgotten {
        summary, metrics, ..
    }) = run_with_a_broker_that_forgets(0, 1)
    else {
        return;
    };
    assert!(
        !summary.acked_records_unrecoverable.is_empty(),
        "the hole is named"
    );
    assert!(summary.acked_records_unrecoverable[0].contains("seq 0..="));
    assert!(metrics.kafka_acked_records_unrecoverable_total.get() > 0);
}

/// A TCP proxy in front of the broker that can stop forwarding without closing anything,
/// as a network that silently drops packets does.
struct Blackhole {
    port: u16,
    dropping: Arc<AtomicBool>,
}

impl Blackhole {
    fn start(upstream: u16) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let dropping = Arc::new(AtomicBool::new(false));
        let d = dropping.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let d = d.clone();
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = vec![0u8; 65536];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            // While dropping, bytes vanish and the connection stays open:
                            // once a connection has lost bytes it never recovers.
                            if d.load(Ordering::SeqCst) {
                                loop {
                                    if from.read(&mut buf).map_or(true, |n| n == 0) {
                                        return;
                                    }
                                }
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Self { port, dropping }
    }
}

#[test]
fn delivery_resumes_within_seconds_of_a_silent_network_cut_ending() {
    let Some(tansu) = common::tansu_binary() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let broker_port = common::free_port();
    let proxy = Blackhole::start(broker_port);
    // The broker tells clients to reach it through the proxy.
    let _broker = common::Tansu::start_advertised(
        &tansu,
        broker_port,
        proxy.port,
        &tmp.path().join("broker"),
    );
    let brokers = format!("127.0.0.1:{}", proxy.port);
    let server = common::replay_day("20240809", Speed::Factor(5.0));
    let config = kafka_config(&server.url(), tmp.path(), &key, &brokers, "cut");
    let metrics = Arc::new(Metrics::new().unwrap());
    let m = metrics.clone();
    let run = std::thread::spawn(move || common::run_with_metrics(config, m));
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.kafka_acked_total.get() < 50 {
        assert!(Instant::now() < deadline, "nothing acknowledged");
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy.dropping.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(30));
    let during = metrics.kafka_acked_total.get();
    std::thread::sleep(Duration::from_millis(100));
    assert!(metrics.spool_bytes.get() > 0, "records waited in the spool");
    proxy.dropping.store(false, Ordering::SeqCst);
    let back = Instant::now();
    while metrics.kafka_acked_total.get() <= during {
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "delivery did not resume within 10 s of the network's return"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let resumed = back.elapsed();
    eprintln!(
        "delivery resumed {} ms after the network returned",
        resumed.as_millis()
    );
    let summary = run.join().unwrap();
    let produced: u64 = summary.gates.iter().map(|g| g.next_seq).sum();
    let (on_topic, complete) = seqs_on_topic(&brokers, "cut", &key);
    assert!(complete);
    assert_eq!(on_topic, produced);
}
