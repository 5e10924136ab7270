#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bizra_risk::audit::keys;
use bizra_risk::config::{ClockMode, Config, OnServerClose};
use bizra_risk::elf::KillSwitch;
use bizra_risk::metrics::Metrics;
use bizra_risk::pipeline::{self, RunSummary};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn capture_files() -> Vec<PathBuf> {
    bizra_risk::market::capture::list_capture_files(&repo().join("data/binance"))
        .expect("bundled capture")
}

/// A loopback replay server streaming one bundled capture day at `speed`.
pub fn replay_day(
    day: &str,
    speed: bizra_risk::replay::Speed,
) -> bizra_risk::replay::RunningReplay {
    bizra_risk::replay::spawn_in_thread(
        "127.0.0.1:0".parse().expect("loopback address"),
        bizra_risk::replay::ReplayOptions::new(capture_files_of_day(day), speed),
    )
    .expect("replay server")
}

/// Poll `ready` every `poll` while `child` runs; fails if the child ends first or nothing
/// is ready within 60 s (`what` names the wait).
pub fn wait_while_running(
    child: &mut std::process::Child,
    dir: &Path,
    what: &str,
    poll: std::time::Duration,
    mut ready: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {}",
            engine_log(dir)
        );
        assert!(
            child.try_wait().expect("child status").is_none(),
            "engine ended early: {}",
            engine_log(dir)
        );
        std::thread::sleep(poll);
    }
}

/// The bundled files of one capture day (`20240808` or `20240809`).
pub fn capture_files_of_day(day: &str) -> Vec<PathBuf> {
    capture_files()
        .into_iter()
        .filter(|f| f.to_string_lossy().contains(day))
        .collect()
}

/// Embedded defaults pointed at `url`, writing into `dir`, signing with `key`.
pub fn test_config(url: &str, dir: &Path, key: &Path) -> Config {
    let mut c = Config::embedded().expect("defaults");
    c.feed.url = url.to_string();
    c.feed.on_server_close = OnServerClose::Stop;
    c.feed.connect_timeout_ms = 5_000;
    // Captures are replayed far faster than any exchange sends.
    c.feed.max_messages_per_s = 0;
    c.engine.clock = ClockMode::EventTime;
    c.signing.key_file = key.to_path_buf();
    c.sink.dir = dir.join("events");
    c.var.snapshot.dir = dir.join("state");
    c.signing.heads_file = dir.join("state/chain_heads.json");
    c.kafka.spool_dir = dir.join("spool");
    c.elf.rules_file = repo().join("config/rules.yaml");
    // Tests run engines side by side: none serves HTTP unless it asks for a port.
    c.http.bind.clear();
    c
}

/// `test_config` publishing to Kafka at `brokers`: `topic`, `topic.checkpoints`,
/// `topic.var`, with room for a long drain at the end.
pub fn kafka_test_config(url: &str, dir: &Path, key: &Path, brokers: &str, topic: &str) -> Config {
    let mut c = test_config(url, dir, key);
    c.kafka.brokers = brokers.to_string();
    c.kafka.topic_decisions = topic.to_string();
    c.kafka.topic_checkpoints = format!("{topic}.checkpoints");
    c.kafka.topic_var_snapshots = format!("{topic}.var");
    c.engine.shutdown_timeout_ms = 90_000;
    c
}

/// The non-empty lines of a file (a trail file's records), without their newlines.
pub fn record_lines(path: &Path) -> Vec<Vec<u8>> {
    std::fs::read(path)
        .expect("read records")
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

pub fn new_key(dir: &Path) -> PathBuf {
    let path = dir.join("signing.key");
    if !path.exists() {
        keys::write_new(&path, &keys::generate().expect("rng")).expect("write key");
    }
    path
}

pub fn run(config: Config) -> RunSummary {
    run_with_metrics(config, Arc::new(Metrics::new().expect("metrics")))
}

pub fn run_with_metrics(config: Config, metrics: Arc<Metrics>) -> RunSummary {
    try_run(config, metrics).expect("pipeline run")
}

/// One run to the end of its input; start-up errors come back.
pub fn try_run(config: Config, metrics: Arc<Metrics>) -> anyhow::Result<RunSummary> {
    actix::System::new().block_on(pipeline::run(
        config,
        KillSwitch::default(),
        metrics,
        bizra_risk::shutdown::Shutdown::never(),
    ))
}

pub fn verifying_key(key: &Path) -> ed25519_dalek::VerifyingKey {
    keys::load_signing_key(key).expect("key").verifying_key()
}

/// Kafka bootstrap servers for integration tests. In CI a missing broker is a failure,
/// never a silent skip.
pub fn kafka_brokers() -> Option<String> {
    match std::env::var("BIZRA_TEST_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var_os("CI").is_some() => {
            panic!("BIZRA_TEST_KAFKA_BROKERS is not set in CI: .ci/run must start a Kafka-protocol broker")
        }
        _ => {
            eprintln!("skipping: BIZRA_TEST_KAFKA_BROKERS not set (scripts/test starts a broker and sets it)");
            None
        }
    }
}

/// The `tansu` broker binary (keeps acknowledged writes across kill -9), from
/// `BIZRA_TEST_TANSU` or PATH; CI must provide it, elsewhere its tests skip.
pub fn tansu_binary() -> Option<PathBuf> {
    let from_env = std::env::var_os("BIZRA_TEST_TANSU").map(PathBuf::from);
    let found = from_env.or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("tansu"))
                .find(|p| p.is_file())
        })
    });
    match found {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => {
            panic!("tansu is not installed in CI: .ci/run must install it (scripts/test)")
        }
        None => {
            eprintln!("skipping: tansu not found (scripts/test installs it)");
            None
        }
    }
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A tansu broker on `port` storing into `dir`; stopped with SIGKILL (as it must be).
pub struct Tansu {
    child: std::process::Child,
}

impl Tansu {
    pub fn start(bin: &Path, port: u16, dir: &Path) -> Self {
        Self::start_advertised(bin, port, port, dir)
    }

    /// Listening on `port`, telling clients to connect to `advertised` (a proxy).
    pub fn start_advertised(bin: &Path, port: u16, advertised: u16, dir: &Path) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised_url = format!("tcp://127.0.0.1:{advertised}");
        std::fs::create_dir_all(dir).expect("tansu dir");
        let log = std::fs::File::create(dir.join("tansu.log")).expect("tansu log");
        let child = std::process::Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised_url,
            ])
            // The sqlite path is relative to the broker's working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start tansu");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { child }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every record of `topic`, deduplicated by (chain, seq) as a desk would: returns the
/// distinct records in topic order and the number of exact duplicates dropped. A second
/// record with the same (chain, seq) but other bytes is a fork and fails the test.
pub fn read_deduplicated(brokers: &str, topic: &str) -> (Vec<Vec<u8>>, usize) {
    let source = bizra_risk::sink::KafkaSource::new(brokers, topic).expect("consumer");
    let mut seen: std::collections::HashMap<(String, u64), Vec<u8>> = Default::default();
    let mut out = Vec::new();
    let mut dups = 0;
    source
        .read_all(std::time::Duration::from_secs(60), |pos, payload| {
            let env = bizra_risk::audit::wire::parse_envelope(payload)
                .unwrap_or_else(|e| panic!("{pos}: {e:?}"));
            let key = (env.chain.to_string(), env.seq);
            match seen.get(&key) {
                Some(prev) => {
                    assert_eq!(prev.as_slice(), payload, "fork at {key:?}");
                    dups += 1;
                }
                None => {
                    seen.insert(key, payload.to_vec());
                    out.push(payload.to_vec());
                }
            }
        })
        .expect("read topic");
    (out, dups)
}

/// A compiled JSON Schema from `docs/schemas/<name>.schema.json`.
pub fn schema(name: &str) -> jsonschema::Validator {
    let path = repo().join(format!("docs/schemas/{name}.schema.json"));
    let text = std::fs::read_to_string(&path).expect("schema file");
    let value: serde_json::Value = serde_json::from_str(&text).expect("schema JSON");
    jsonschema::validator_for(&value).expect("valid schema")
}

/// Validate one message against a schema, naming where it came from on failure.
pub fn assert_valid(schema: &jsonschema::Validator, what: &str, message: &[u8]) {
    let value: serde_json::Value =
        serde_json::from_slice(message).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
    let errors: Vec<String> = schema
        .iter_errors(&value)
        .take(3)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:?}");
}

/// The engine binary's `run` against `url`, every file under `dir` (file sink in
/// `dir/events`, state in `dir/state`), its log appended to `dir/engine.log`. Callers add
/// what their test needs (Kafka settings, checkpoint interval).
pub fn engine_command(url: &str, dir: &Path, key: &Path) -> std::process::Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("engine.log"))
        .expect("engine log");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_bizra-risk"));
    cmd.arg("run")
        // The test harness's own settings are not engine configuration.
        .env_remove("BIZRA_TEST_KAFKA_BROKERS")
        .env_remove("BIZRA_TEST_TANSU")
        .env("BIZRA_FEED__URL", url)
        .env("BIZRA_FEED__ON_SERVER_CLOSE", "stop")
        .env("BIZRA_FEED__MAX_MESSAGES_PER_S", "0")
        .env("BIZRA_ENGINE__CLOCK", "event_time")
        .env("BIZRA_SIGNING__KEY_FILE", key)
        .env(
            "BIZRA_SIGNING__HEADS_FILE",
            dir.join("state/chain_heads.json"),
        )
        .env("BIZRA_SINK__DIR", dir.join("events"))
        .env("BIZRA_VAR__SNAPSHOT__DIR", dir.join("state"))
        .env("BIZRA_ELF__RULES_FILE", repo().join("config/rules.yaml"))
        .env("BIZRA_KAFKA__BROKERS", "")
        .env("BIZRA_HTTP__BIND", "")
        .stdout(std::process::Stdio::null())
        .stderr(log);
    cmd
}

/// The last lines of the engine's log, for failure messages.
pub fn engine_log(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("engine.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Send `signal` (e.g. "-STOP") to process `pid` with kill(1); it must be delivered.
pub fn send_signal(pid: &str, signal: &str) {
    let delivered = std::process::Command::new("kill")
        .args([signal, pid])
        .status()
        .unwrap()
        .success();
    assert!(delivered, "kill {signal} {pid}");
}

/// Run `bizra-risk ARGS`, require exit 0, return its standard output.
pub fn cli_ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Vec<u8> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bizra-risk"))
        .args(args)
        .output()
        .expect("run bizra-risk");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Poll `f` every 100 ms until it holds; fails after `timeout`, naming `what`.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < until {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// Write a secret file with `mode` (e.g. 0o600, owner only).
pub fn write_secret(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write secret file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .expect("set secret file mode");
    }
}

/// One HTTP/1.1 request on a fresh loopback connection: (status, head, body); status 0 and
/// nothing else when nobody listens on `port`.
pub fn http_request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new(), String::new());
    };
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("read timeout");
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send request head");
    s.write_all(body.as_bytes()).expect("send request body");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = h
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, h.to_string(), b.to_string())
}
