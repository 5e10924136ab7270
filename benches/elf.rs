//! Per-call latency percentiles of the ELF gate (p50 / p99 / p99.9 need one timing per
//! call, which criterion does not report): the decision with the cache off and on, with
//! L2 || L3 on two threads, a bare Ed25519 signature of the same bytes as a signed event,
//! and the full gate L0-L4. `cargo bench --bench elf [-- CALLS]`.

use bizra_risk::config::Config;
use bizra_risk::elf_demo;

fn main() {
    let calls = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<u64>().ok())
        .unwrap_or(200_000);
    let config = Config::embedded().expect("embedded configuration");
    let rules = elf_demo::default_rules().expect("config/rules.yaml");
    let latencies = elf_demo::latencies(&config, rules, calls).expect("histogram");
    print!("{}", elf_demo::render(&[], &latencies));
}
