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

fn parse_all(lines: &[&String]) -> usize {
    lines
        .iter()
        .filter(|l| parse_combined(black_box(l)).is_ok())
        .count()
}

fn benches(c: &mut Criterion) {
    let all = lines();
    let sets: [(&str, Vec<&String>); 3] = [
        (
            "trade_and_bookTicker_frames",
            all.iter()
                .filter(|l| l.contains("@trade\"") || l.contains("@bookTicker\""))
                .collect(),
        ),
        (
            "depth_frames",
            all.iter().filter(|l| l.contains("@depth")).collect(),
        ),
        ("all_frames", all.iter().collect()),
    ];
    let mut g = c.benchmark_group("parse_bundled_capture");
    for (name, set) in &sets {
        g.throughput(Throughput::Elements(set.len() as u64));
        g.bench_function(*name, |b| b.iter(|| parse_all(set)));
    }
    g.finish();
}

criterion_group!(parse, benches);
criterion_main!(parse);
