//! The replay server's own speed: frames per second it streams to one fast client over
//! loopback WebSocket at maximum speed, and its CPU per frame, apart from the client's.
//!
//! `cargo bench --bench replay_server` streams the bundled capture (both symbols, trade,
//! bookTicker and diff depth) `BIZRA_BENCH_PASSES` times (default 10), one connection after
//! another, and prints a JSON report: frames, wall_s, frames_per_s (wall), server_cpu_s,
//! server_cpu_ns_per_frame, server_frames_per_cpu_s (frames per second of one core busy
//! serving them), client_cpu_ns_per_frame, max_rss_mb (whole process, client included).
//! `BIZRA_BENCH_DATA=<dir>` streams that directory's `*_20240809.gz` captures instead
//! (e.g. `bizra-risk synth` output), every symbol's three streams.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use bizra_risk::replay::{spawn_in_thread, ReplayOptions, Speed};

/// CPU time of the whole process and of the calling thread, in seconds.
fn cpu_seconds(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn max_rss_mb() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

fn captures() -> Vec<PathBuf> {
    match std::env::var("BIZRA_BENCH_DATA") {
        Ok(dir) => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .expect("BIZRA_BENCH_DATA is a directory")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with("_20240809.gz"))
                .collect();
            files.sort();
            files
        }
        Err(_) => vec![
            "data/binance/btcusdt_20240809.gz".into(),
            "data/binance/ethusdt_20240809.gz".into(),
        ],
    }
}

fn streams(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter_map(|p| {
            p.file_name()?
                .to_str()?
                .split('_')
                .next()
                .map(str::to_string)
        })
        .flat_map(|s| ["trade", "bookTicker", "depth@100ms"].map(move |k| format!("{s}@{k}")))
        .collect()
}

/// One connection from subscription to the server's close: the frames received.
async fn one_pass(addr: SocketAddr, streams: &[String]) -> u64 {
    let url = format!("ws://{addr}/stream?streams={}", streams.join("/"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect to the replay server");
    let mut frames = 0u64;
    while let Some(msg) = ws.next().await {
        match msg.expect("frame") {
            Message::Text(_) => frames += 1,
            Message::Close(_) => break,
            _ => {}
        }
    }
    frames
}

fn main() {
    let passes: usize = std::env::var("BIZRA_BENCH_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let files = captures();
    let streams = streams(&files);
    let server = spawn_in_thread(
        "127.0.0.1:0".parse().expect("address"),
        ReplayOptions::new(files.clone(), Speed::Max),
    )
    .expect("replay server");
    let addr = server.addr;
    // The REST index is built before the server answers: wait for it, outside the timing.
    let ping = format!("http://{addr}/api/v3/ping");
    let deadline = Instant::now() + Duration::from_secs(300);
    while ureq::get(&ping).call().is_err() {
        assert!(Instant::now() < deadline, "replay server never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let (process0, client0, wall0) = (
        cpu_seconds(libc::CLOCK_PROCESS_CPUTIME_ID),
        cpu_seconds(libc::CLOCK_THREAD_CPUTIME_ID),
        Instant::now(),
    );
    let mut frames = 0u64;
    for _ in 0..passes {
        frames += rt.block_on(one_pass(addr, &streams));
    }
    let wall = wall0.elapsed().as_secs_f64();
    // The server's threads end with their connections: count them through the process.
    std::thread::sleep(Duration::from_millis(200));
    let client = cpu_seconds(libc::CLOCK_THREAD_CPUTIME_ID) - client0;
    let server_cpu = cpu_seconds(libc::CLOCK_PROCESS_CPUTIME_ID) - process0 - client;
    drop(server);
    let report = serde_json::json!({
        "bench": "replay_server",
        "files": files.len(),
        "streams": streams.len(),
        "passes": passes,
        "frames": frames,
        "wall_s": (wall * 1000.0).round() / 1000.0,
        "frames_per_s": (frames as f64 / wall).round(),
        "server_cpu_s": (server_cpu * 1000.0).round() / 1000.0,
        "server_cpu_ns_per_frame": (server_cpu * 1e9 / frames as f64).round(),
        "server_frames_per_cpu_s": (frames as f64 / server_cpu).round(),
        "client_cpu_ns_per_frame": (client * 1e9 / frames as f64).round(),
        "max_rss_mb": (max_rss_mb() * 10.0).round() / 10.0,
    });
    println!("{report}");
}
