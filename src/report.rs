//! Human-readable run summaries and verification of the file sink.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;

use crate::audit::{Verifier, VerifyReport};
use crate::pipeline::RunSummary;

/// Verify every `*.jsonl` file under `path` (or `path` itself when it is a file).
pub fn verify_path(path: &Path, keys: &[VerifyingKey]) -> std::io::Result<VerifyReport> {
    let mut v = Verifier::new(keys);
    push_paths(&mut v, &[path.to_path_buf()])?;
    Ok(v.finish())
}

pub use crate::trail::{record_files, RecordFile};

/// Feed every record file of `paths` to `v`.
pub fn push_paths(v: &mut Verifier, paths: &[PathBuf]) -> std::io::Result<()> {
    for f in record_files(paths)? {
        f.push_file(v)?;
    }
    Ok(())
}

pub fn render_verify(report: &VerifyReport) -> String {
    let mut s = String::new();
    let verdict = if report.ok() { "OK" } else { "FAILED" };
    let _ = writeln!(
        s,
        "verification: {verdict}: {} records, {} chains, {} failures",
        report.records,
        report.chains.len(),
        report.failures.len()
    );
    for (chain, c) in &report.chains {
        let _ = writeln!(
            s,
            "  chain {chain}: {} events, seq {}..{}, head {}, {} checkpoints verified, keys {}",
            c.events,
            c.first_seq,
            c.last_seq,
            &c.head_sha256.get(..16).unwrap_or(""),
            c.checkpoints_verified,
            c.key_ids.join(" -> ")
        );
    }
    if report.duplicates_skipped > 0 {
        let _ = writeln!(
            s,
            "  {} byte-identical copies of records skipped (--allow-duplicates)",
            report.duplicates_skipped
        );
    }
    if report.checkpoints_unchecked > 0 {
        let _ = writeln!(
            s,
            "  {} checkpoints cover events before the starting point and were not checked",
            report.checkpoints_unchecked
        );
    }
    for f in report.failures.iter().take(20) {
        let _ = writeln!(
            s,
            "  FAIL {} {} chain={} seq={}: {}",
            f.position,
            f.reason.code(),
            f.chain.as_deref().unwrap_or("?"),
            f.seq.map_or("?".into(), |x| x.to_string()),
            f.detail
        );
    }
    if report.failures.len() > 20 {
        let _ = writeln!(s, "  ... {} more failures", report.failures.len() - 20);
    }
    s
}

fn pct(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// `verify` is `None` when the events went to Kafka (verify the topic with `verify --topic`).
/// The engine's own throughput over an in-process replay.
pub fn render_throughput(t: &crate::replay::in_process::Throughput) -> String {
    let st = &t.stage_us_per_market_event;
    format!(
        "engine throughput (in process, one thread): {} market events in {:.3} s = {:.0} events/s, \
         {} signed events = {:.0} decisions/s; CPU {:.3} s = {:.2} us per market event \
         (read {:.2}, parse {:.2}, feed {:.2}, bars+models {:.2}, gate+sign {:.2}, write {:.2}); \
         bars+models {:.0} us per symbol bar ({} bars); per decision: decide {:.1} us, sign {:.1} us\n",
        t.market_events,
        t.wall_s,
        t.market_events_per_s,
        t.decisions,
        t.decisions_per_s,
        t.cpu_s,
        t.cpu_us_per_market_event,
        st.read,
        st.parse,
        st.feed,
        st.models,
        st.gate,
        st.write,
        t.models_us_per_bar,
        t.symbol_bars,
        t.decide_us_per_decision,
        t.sign_us_per_decision,
    )
}

pub fn render_summary(run: &RunSummary, verify: Option<&VerifyReport>, wall: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "bizra-risk run summary");
    let _ = writeln!(s, "======================");
    let ing = &run.ingest;
    let accepted: u64 = ing.accepted.values().sum();
    let secs = ing.elapsed.as_secs_f64().max(1e-9);
    let _ = writeln!(
        s,
        "market data: {} frames in {:.2} s ({:.0} frames/s), accepted {:?}, rejected {:?}, connection ended by {}",
        ing.frames, secs, ing.frames as f64 / secs, ing.accepted, ing.rejected, ing.ended_by
    );
    let _ = writeln!(
        s,
        "trade continuity: {} duplicate trades dropped, {} trade-ID gaps ({} trades backfilled, {} missing), {} silent connections replaced, {} events while their symbol was unhealthy",
        ing.duplicate_trades, ing.trade_gaps, ing.backfilled_trades, ing.missing_trades, ing.idle_reconnects, ing.unhealthy_ticks
    );
    if ing.accepted.contains_key("aggTrade") {
        let _ = writeln!(
            s,
            "aggregate-trade continuity: {} duplicates dropped, {} aggregate-ID gaps ({} aggregates backfilled, {} missing)",
            ing.duplicate_agg_trades, ing.agg_trade_gaps, ing.backfilled_agg_trades, ing.missing_agg_trades
        );
    }
    if ing.accepted.contains_key("depth@100ms") || ing.depth_snapshots > 0 {
        let _ = writeln!(
            s,
            "order books: {} snapshots loaded, {} depth gaps and {} crossed books resynced, {} snapshot requests failed, out of step at the end: {}",
            ing.depth_snapshots,
            ing.depth_gaps,
            ing.depth_crossed,
            ing.depth_snapshot_failures,
            if ing.books_out_of_sync.is_empty() { "none".to_string() } else { ing.books_out_of_sync.join(", ") }
        );
    }
    if !ing.quarantined.is_empty() {
        let by_reason: Vec<String> = ing
            .quarantined
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "quarantined (implausible, never delivered): {}",
            by_reason.join(", ")
        );
    }
    match &ing.clock_skew {
        Some(k) => {
            let _ = writeln!(
                s,
                "clock skew (local receive - exchange E), {} trades: min {} ms, p50 {} ms, p99 {} ms, max {} ms; {} above {} ms",
                k.samples, k.min_ms, k.p50_ms, k.p99_ms, k.max_ms, k.over_threshold, k.warn_ms
            );
        }
        None => {
            let _ = writeln!(s, "clock skew: not measured (event-time clock)");
        }
    }
    let _ = writeln!(
        s,
        "\nper-symbol VaR / ES (latest bar, USDT on the configured position):"
    );
    for r in &run.symbols {
        let notional = r.position_qty * r.price;
        let _ = writeln!(
            s,
            "  {} qty {} @ {:.2}: {} trades, {} bars, {} returns ({} from klines history{}), primary backtest {}/{:.1} exceedances",
            r.symbol,
            r.position_qty,
            r.price,
            r.trades,
            r.bars,
            r.returns,
            r.warm_start_returns,
            if r.restored_from_snapshot { ", restored from snapshot" } else { "" },
            r.exceedances,
            r.expected_exceedances
        );
        if r.fhs_latest.is_empty() {
            let _ = writeln!(
                s,
                "    FHS+ACI warming up: {} returns to go",
                r.fhs_warmup_remaining
            );
        }
        for l in &r.fhs_latest {
            let _ = writeln!(
                s,
                "    FHS+ACI {:>5.1}%  VaR {:>9.2}  ES {:>9.2}  90% credible VaR [{:.2}, {:.2}] ES [{:.2}, {:.2}]  level used {:.4}",
                l.level * 100.0,
                l.var * notional,
                l.es * notional,
                l.var_ci_low * notional,
                l.var_ci_high * notional,
                l.es_ci_low * notional,
                l.es_ci_high * notional,
                1.0 - l.adjusted_alpha
            );
        }
        for l in &r.nig_latest {
            let _ = writeln!(
                s,
                "    NIG     {:>5.1}%  VaR {:>9.2}  ES {:>9.2}  90% credible VaR [{:.2}, {:.2}]  MC VaR {:.2} (z {:.2})",
                l.level * 100.0,
                l.var * notional,
                l.es * notional,
                l.var_ci_low * notional,
                l.var_ci_high * notional,
                l.mc_var * notional,
                l.mc_z()
            );
        }
    }
    if let Some(p) = &run.portfolio {
        let round = |xs: &[f64]| {
            xs.iter()
                .map(|x| (x * 100.0).round() / 100.0)
                .collect::<Vec<_>>()
        };
        let _ = writeln!(
            s,
            "  PORTFOLIO: {} aligned bars, {} from klines history{}",
            p.aligned_bars,
            p.warm_start_returns,
            if p.restored_from_snapshot {
                ", restored from snapshot"
            } else {
                ""
            }
        );
        match p.latest.as_ref() {
            Some(f) => {
                match &f.fhs {
                    Some(r) => {
                        let _ = writeln!(
                            s,
                            "    FHS+ACI {:.1}% VaR {:.2}  ES {:.2}  components {:?}",
                            r.level * 100.0,
                            r.var_usd,
                            r.es_usd,
                            round(&r.component_var_usd)
                        );
                    }
                    None => {
                        let _ = writeln!(s, "    FHS+ACI warming up");
                    }
                }
                if let Some(r) = &f.niw {
                    let _ = writeln!(
                        s,
                        "    NIW     {:.1}% VaR {:.2}  ES {:.2}  components {:?}  marginal {:?}",
                        r.level * 100.0,
                        r.var_usd,
                        r.es_usd,
                        round(&r.component_var_usd),
                        r.marginal_var
                            .iter()
                            .map(|x| (x * 1e6).round() / 1e6)
                            .collect::<Vec<_>>()
                    );
                }
            }
            None => {
                let _ = writeln!(s, "    no aligned bars");
            }
        }
    }
    let _ = writeln!(s, "\nELF gate decisions:");
    let mut total = 0u64;
    let mut decide = hdrhistogram::Histogram::<u64>::new(3).ok();
    let mut gate = hdrhistogram::Histogram::<u64>::new(3).ok();
    for g in &run.gates {
        let n: u64 = g.by_verdict.values().sum();
        total += n;
        let _ = writeln!(
            s,
            "  {}: {} events {:?}; L3 decision cache {} hits / {} misses; shadow divergences {}",
            g.chain, n, g.by_verdict, g.cache_hits, g.cache_misses, g.shadow_divergences
        );
        for ((layer, reason), c) in &g.blocks_by_reason {
            let _ = writeln!(s, "      {} {}: {}", layer.as_str(), reason.as_str(), c);
        }
        if let Some(h) = decide.as_mut() {
            crate::engine::gate::add_counts(h, &g.decide_ns);
        }
        if let Some(h) = gate.as_mut() {
            crate::engine::gate::add_counts(h, &g.gate_ns);
        }
    }
    if let (Some(d), Some(g)) = (&decide, &gate) {
        let _ = writeln!(
            s,
            "ELF latency, L0-L3 decision (us): p50 {:.2}  p95 {:.2}  p99 {:.2}",
            pct(d, 0.5),
            pct(d, 0.95),
            pct(d, 0.99)
        );
        let _ = writeln!(
            s,
            "ELF latency, L0-L4 incl. signing (us): p50 {:.2}  p95 {:.2}  p99 {:.2}",
            pct(g, 0.5),
            pct(g, 0.95),
            pct(g, 0.99)
        );
    }
    let _ = writeln!(
        s,
        "\nthroughput: {accepted} market events and {total} signed events in {:.2} s wall ({:.0} market events/s)",
        wall.as_secs_f64(),
        accepted as f64 / wall.as_secs_f64().max(1e-9)
    );
    let _ = writeln!(s, "sink: {}", run.sink);
    if let Some(l) = &run.tick_to_signed_us {
        let _ = writeln!(
            s,
            "market event -> its decision signed (us): p50 {}  p99 {}  max {}  ({} decisions)",
            l.p50, l.p99, l.max, l.count
        );
    }
    if let Some(l) = &run.tick_to_ack_us {
        let _ = writeln!(
            s,
            "market event -> broker acknowledgement of its decisions (us): p50 {}  p99 {}  max {}  ({} decisions)",
            l.p50, l.p99, l.max, l.count
        );
    }
    if run.spooled_bytes_left > 0 {
        let _ = writeln!(
            s,
            "spool: {} bytes not yet acknowledged, sent at the next start",
            run.spooled_bytes_left
        );
    }
    if run.acked_records_resent > 0 {
        let _ = writeln!(
            s,
            "kafka: the broker lost {} records it had acknowledged; found by reading back and sent again",
            run.acked_records_resent
        );
    }
    for hole in &run.acked_records_unrecoverable {
        let _ = writeln!(
            s,
            "kafka: LOST for good (acknowledged, then lost by the broker, no longer retained): {hole}"
        );
    }
    let _ = writeln!(s, "verifying key: {}", run.verifying_key_hex);
    let _ = writeln!(
        s,
        "config sha256: {}\nrules sha256:  {}",
        run.config_sha256, run.rules_sha256
    );
    match verify {
        Some(v) => s.push_str(&render_verify(v)),
        None => s.push_str("verification: run `bizra-risk verify --kafka-brokers … --topic …`\n"),
    }
    s
}
