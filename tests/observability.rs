//! The engine watched by real tools while it runs over the bundled capture (replay server at
//! 20x): its HTTP endpoints answer, a real Prometheus server scrapes `/metrics` and every VaR
//! sample it stored is a VaR the engine signed, and the dashboard in a real headless
//! Chromium (driven over the DevTools protocol) shows the latest signed VaR of a symbol and
//! BLOCK decisions with their reason codes. A screenshot is kept in
//! `target/artifacts/dashboard.png`.
//!
//! Needs `prometheus` and `chromium` (Debian packages; `.ci/run` installs them). In CI a
//! missing tool fails the test; elsewhere the test says so and skips.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bizra_risk::replay::{spawn_in_thread, ReplayOptions, Speed};
use serde_json::{json, Value};

fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => {
            panic!("{name} is not installed in CI: .ci/run must install it")
        }
        None => {
            eprintln!("skipping: {name} not found (apt-get install {name})");
            None
        }
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(url: &str) -> Option<(u16, String)> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut r = agent.get(url).call().ok()?;
    let status = r.status().as_u16();
    Some((status, r.body_mut().read_to_string().ok()?))
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

/// Every `evidence.var_usd` the BTCUSDT chain signed, as written so far.
fn signed_vars(events: &Path, chain: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(events.join(format!("{chain}.jsonl"))).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["payload"]["evidence"]["var_usd"].as_f64())
        .collect()
}

/// Event `seq` of `chain` once the file sink has flushed it (it flushes every second).
fn signed_event(events: &Path, chain: &str, seq: usize) -> Value {
    let mut found = None;
    wait_for("the signed event on disk", Duration::from_secs(10), || {
        let text =
            std::fs::read_to_string(events.join(format!("{chain}.jsonl"))).unwrap_or_default();
        found = text
            .lines()
            .nth(seq)
            .and_then(|l| serde_json::from_str::<Value>(l).ok());
        found.is_some()
    });
    found.unwrap()
}

fn start_prometheus(bin: &Path, dir: &Path, target: &str, port: u16) -> Killed {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: bizra-risk\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    Killed(child)
}

/// Headless Chromium with the DevTools protocol on `port`, showing `url`.
fn start_chromium(bin: &Path, dir: &Path, port: u16, url: &str) -> Killed {
    let child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1280,1600",
        ])
        .arg(format!("--remote-debugging-port={port}"))
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut child = Killed(child);
    // Drain its log so it never blocks on a full pipe.
    if let Some(err) = child.0.stderr.take() {
        std::thread::spawn(move || for _ in BufReader::new(err).lines() {});
    }
    child
}

/// A minimal DevTools-protocol client over one page's WebSocket.
struct Page {
    ws: tokio_tungstenite::tungstenite::WebSocket<
        tokio_tungstenite::tungstenite::stream::MaybeTlsStream<std::net::TcpStream>,
    >,
    next_id: u64,
}

impl Page {
    fn connect(devtools_port: u16) -> Page {
        let mut target = None;
        wait_for("a DevTools page target", Duration::from_secs(30), || {
            let list = get(&format!("http://127.0.0.1:{devtools_port}/json/list"));
            target = list
                .and_then(|(_, body)| serde_json::from_str::<Vec<Value>>(&body).ok())
                .and_then(|targets| {
                    targets
                        .into_iter()
                        .find(|t| t["type"] == "page")
                        .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_string))
                });
            target.is_some()
        });
        let (ws, _) = tokio_tungstenite::tungstenite::connect(target.unwrap()).unwrap();
        Page { ws, next_id: 0 }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        use tokio_tungstenite::tungstenite::Message;
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws.send(Message::text(msg.to_string())).unwrap();
        loop {
            let Message::Text(text) = self.ws.read().unwrap() else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }
}

#[test]
fn prometheus_scrapes_signed_var_and_the_dashboard_shows_it_in_chromium() {
    let (Some(prometheus), Some(chromium)) = (tool("prometheus"), tool("chromium")) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = common::new_key(tmp.path());
    let mut opts = ReplayOptions::new(
        common::capture_files_of_day("20240809"),
        Speed::Factor(20.0),
    );
    opts.history = common::capture_files_of_day("20240808");
    let server = spawn_in_thread("127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let http_port = common::free_port();
    let base = format!("http://127.0.0.1:{http_port}");
    let mut config = common::test_config(&server.url(), tmp.path(), &key);
    config.http.bind = format!("127.0.0.1:{http_port}");
    let events = config.sink.dir.clone();
    let engine = std::thread::spawn(move || {
        common::try_run(
            config,
            std::sync::Arc::new(bizra_risk::metrics::Metrics::new().unwrap()),
        )
    });

    // The endpoints.
    wait_for("/healthz", Duration::from_secs(30), || {
        get(&format!("{base}/healthz")).is_some_and(|(s, _)| s == 200)
    });
    wait_for("/readyz to be ready", Duration::from_secs(30), || {
        get(&format!("{base}/readyz"))
            .is_some_and(|(s, body)| s == 200 && body.contains("\"ready\":true"))
    });
    let names = [
        "bizra_primary_var_usd{symbol=\"BTCUSDT\"}",
        "bizra_var_usd{model=\"fhs_aci\",symbol=\"BTCUSDT\"}",
        "bizra_es_usd{model=\"bayes\",symbol=\"PORTFOLIO\"}",
        "bizra_feed_connected 1",
        "bizra_basel_zone{symbol=\"ETHUSDT\"}",
        "bizra_chain_next_seq{chain=\"bizra.PORTFOLIO\"}",
        "elf_latency_seconds_bucket",
    ];
    let mut missing = Vec::new();
    wait_for("the risk metrics", Duration::from_secs(30), || {
        let metrics = get(&format!("{base}/metrics"))
            .map(|(_, m)| m)
            .unwrap_or_default();
        missing = names.iter().filter(|n| !metrics.contains(*n)).collect();
        missing.is_empty()
    });

    // A real Prometheus scrapes the engine.
    let prom_dir = tmp.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom_port = common::free_port();
    let _prom = start_prometheus(
        &prometheus,
        &prom_dir,
        &format!("127.0.0.1:{http_port}"),
        prom_port,
    );

    // The dashboard in a real browser.
    let devtools_port = common::free_port();
    let _browser = start_chromium(&chromium, tmp.path(), devtools_port, &format!("{base}/"));
    let mut page = Page::connect(devtools_port);
    wait_for(
        "the dashboard to show BTCUSDT's VaR",
        Duration::from_secs(30),
        || {
            page.eval("(document.getElementById('var-BTCUSDT')||{}).dataset?.seq !== undefined")
                == json!(true)
        },
    );
    wait_for(
        "a BLOCK decision with its reason",
        Duration::from_secs(30),
        || {
            page.eval("[...document.querySelectorAll('tr.BLOCK td:nth-child(6)')].map(t=>t.textContent).filter(t=>t.length>0).length")
            .as_u64()
            .unwrap_or(0)
            > 0
        },
    );
    let shown = page.eval(
        "(() => { const e = document.getElementById('var-BTCUSDT'); \
         return {seq: Number(e.dataset.seq), var_usd: Number(e.dataset.varUsd), text: e.textContent}; })()",
    );
    let seq = shown["seq"].as_u64().unwrap() as usize;
    let event = signed_event(&events, "bizra.BTCUSDT", seq);
    let signed = &event["payload"]["evidence"]["var_usd"];
    assert_eq!(
        shown["var_usd"].as_f64(),
        signed.as_f64(),
        "dashboard VaR {shown} vs signed {signed}"
    );
    assert_eq!(
        shown["text"].as_str().unwrap(),
        format!("{:.2}", signed.as_f64().unwrap()),
        "the figure on screen"
    );
    // Every reason shown on a BLOCK row is a reason code the chain signed on that event.
    let rows = page.eval(
        "[...document.querySelectorAll('tr.BLOCK')].map(r => [r.dataset.chain, Number(r.dataset.seq), r.children[5].textContent])",
    );
    let mut checked = 0;
    for row in rows.as_array().unwrap() {
        let (chain, seq, reasons) = (
            row[0].as_str().unwrap(),
            row[1].as_u64().unwrap(),
            row[2].as_str().unwrap(),
        );
        let event = signed_event(&events, chain, seq as usize);
        assert_eq!(event["payload"]["verdict"], "BLOCK");
        let signed: Vec<&str> = event["payload"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            reasons
                .split(' ')
                .filter(|r| !r.is_empty())
                .collect::<Vec<_>>(),
            signed
        );
        checked += 1;
    }
    assert!(checked > 0);
    let shot = page.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64_decode(shot["data"].as_str().unwrap());
    let artifacts = common::repo().join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("dashboard.png"), png).unwrap();

    // Prometheus has scraped for a while: every BTCUSDT VaR sample it stored was signed.
    std::thread::sleep(Duration::from_secs(4));
    let query = format!(
        "http://127.0.0.1:{prom_port}/api/v1/query?query=bizra_primary_var_usd%7Bsymbol%3D%22BTCUSDT%22%7D%5B1m%5D"
    );
    let mut samples = Vec::new();
    wait_for(
        "Prometheus samples of bizra_primary_var_usd",
        Duration::from_secs(30),
        || {
            let Some((200, body)) = get(&query) else {
                return false;
            };
            let v: Value = serde_json::from_str(&body).unwrap();
            samples = v["data"]["result"][0]["values"]
                .as_array()
                .map(|vals| {
                    vals.iter()
                        .filter_map(|p| p[1].as_str().and_then(|s| s.parse::<f64>().ok()))
                        .collect()
                })
                .unwrap_or_default();
            samples.len() >= 3
        },
    );
    let result = engine.join().unwrap();
    let summary = result.expect("engine run");
    assert!(summary.gates.iter().map(|g| g.next_seq).sum::<u64>() > 0);
    let signed: HashSet<u64> = signed_vars(&events, "bizra.BTCUSDT")
        .into_iter()
        .map(f64::to_bits)
        .collect();
    for s in &samples {
        assert!(
            signed.contains(&s.to_bits()),
            "Prometheus stored {s}, a VaR the engine never signed"
        );
    }
    drop(server);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64 screenshot")
}
