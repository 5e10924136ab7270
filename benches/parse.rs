//! Parse throughput of the bundled Binance capture on one core: every combined-stream line
//! (trades, book tickers, depth updates) through `parse_combined`, as the ingest does.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use bizra_risk::market::capture::{list_capture_files, CaptureReader};
use bizra_risk::market::parse_combined;

fn lines() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/binance");
    let mut out = Vec::new();
    for f in list_capture_files(&dir).expect("bundled capture") {
        let mut r = CaptureReader::open(&f).expect("capture file");
        while let Some(line) = r.next_line().expect("capture line") {
            if line.stream().is_some() {
                out.push(line.json);
            }
        }
    }
    out
}

fn benches(c: &mut Criterion) {
    let all = lines();
    let trades_and_quotes: Vec<&String> = all
        .iter()
        .filter(|l| l.contains("@trade\"") || l.contains("@bookTicker\""))
        .collect();
    let mut g = c.benchmark_group("parse_bundled_capture");
    g.throughput(Throughput::Elements(trades_and_quotes.len() as u64));
    g.bench_function("trade_and_bookTicker_frames", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for l in &trades_and_quotes {
                ok += parse_combined(black_box(l)).is_ok() as usize;
            }
            ok
        })
    });
    let depth: Vec<&String> = all.iter().filter(|l| l.contains("@depth")).collect();
    g.throughput(Throughput::Elements(depth.len() as u64));
    g.bench_function("depth_frames", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for l in &depth {
                ok += parse_combined(black_box(l)).is_ok() as usize;
            }
            ok
        })
    });
    g.throughput(Throughput::Elements(all.len() as u64));
    g.bench_function("all_frames", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for l in &all {
                ok += parse_combined(black_box(l)).is_ok() as usize;
            }
            ok
        })
    });
    g.finish();
}

criterion_group!(parse, benches);
criterion_main!(parse);
