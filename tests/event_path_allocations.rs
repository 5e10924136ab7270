//! The event path allocates nothing: a captured trade or best-quote frame, once its symbol
//! has been seen, goes through the parse and the feed step without a heap allocation, and a
//! trade that closes no bar through its symbol's step too (a closing bar runs the models
//! and the gate, whose outputs do allocate). Counted by this binary's own allocator, on the
//! test's thread only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use bizra_risk::actors::ingest::feed_settings;
use bizra_risk::assemble::model_steps;
use bizra_risk::clock::Clock;
use bizra_risk::config::Config;
use bizra_risk::engine::{ModelScratch, SymbolOutput};
use bizra_risk::market::capture::CaptureReader;
use bizra_risk::market::feed::{FeedOutput, FeedStep, FeedTick};
use bizra_risk::market::{MarketEvent, StreamKind};
use bizra_risk::warm_start::StartState;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn count() {
    // `try_with`: the thread-locals may be gone while a thread exits.
    let on = COUNTING.try_with(Cell::get).unwrap_or(false);
    if on {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// The bundled capture's trade and best-quote frames, in capture order.
fn trade_and_quote_frames(limit: usize) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/binance/btcusdt_20240809.gz");
    let mut reader = CaptureReader::open(&path).expect("bundled capture opens");
    let mut frames = Vec::new();
    while let Some(line) = reader.next_line().expect("bundled capture reads") {
        let wanted = line
            .stream()
            .is_some_and(|s| s.ends_with("@trade") || s.ends_with("@bookTicker"));
        if wanted {
            frames.push(line.json);
        }
        if frames.len() == limit {
            break;
        }
    }
    frames
}

fn a_step(clock: Clock) -> FeedStep {
    let config = Config::embedded().expect("embedded configuration");
    let mut settings = feed_settings(&config.feed, clock);
    // Trades and best quotes only; a gap's REST round trip is not the common path.
    settings.streams = vec![StreamKind::Trade, StreamKind::BookTicker];
    settings.backfill_gaps = false;
    FeedStep::new(settings, &config.symbols())
}

fn frames_through(step: &mut FeedStep, frames: &[String], out: &mut Vec<FeedOutput>) -> u64 {
    let mut delivered = 0;
    for (k, frame) in frames.iter().enumerate() {
        let parsed = step.parse(frame);
        // Outputs are handed on between frames, as a host does.
        out.clear();
        let received_ms = 1_723_161_600_000 + k as i64;
        let _ = step.on_parsed(frame, parsed, received_ms, out);
        delivered += out
            .iter()
            .filter(|o| matches!(o, FeedOutput::Deliver(_)))
            .count() as u64;
    }
    delivered
}

fn assert_no_allocation(clock: Clock) {
    let frames = trade_and_quote_frames(6_000);
    assert_eq!(frames.len(), 6_000, "the bundled capture has the frames");
    let (warm, measured) = frames.split_at(1_000);
    let mut step = a_step(clock);
    let mut out = Vec::with_capacity(64);
    // The first frames make each symbol's entries and the output buffer's room.
    frames_through(&mut step, warm, &mut out);
    let mut delivered = 0;
    let allocations = allocations_in(|| delivered = frames_through(&mut step, measured, &mut out));
    assert!(delivered > 4_000, "the frames were delivered: {delivered}");
    assert_eq!(
        allocations,
        0,
        "{allocations} allocations for {} trade and best-quote frames",
        measured.len()
    );
}

#[test]
fn trades_and_quotes_allocate_nothing_under_event_time() {
    assert_no_allocation(Clock::EventTime { now_ms: 0 });
}

#[test]
fn trades_and_quotes_allocate_nothing_under_the_live_clock() {
    assert_no_allocation(Clock::System);
}

#[test]
fn a_trade_that_closes_no_bar_allocates_nothing_in_its_symbol_step() {
    let config = Config::embedded().expect("embedded configuration");
    let (mut steps, _) = model_steps(&config, StartState::default());
    let btc = config
        .symbols()
        .iter()
        .position(|s| s == "BTCUSDT")
        .expect("BTCUSDT is configured");
    let step = &mut steps[btc];
    // The bundled capture's BTCUSDT trades, as the feed step delivers them.
    let mut feed = a_step(Clock::EventTime { now_ms: 0 });
    let mut out = Vec::new();
    let mut trades: Vec<FeedTick> = Vec::new();
    for (k, frame) in trade_and_quote_frames(20_000).iter().enumerate() {
        out.clear();
        let parsed = feed.parse(frame);
        let _ = feed.on_parsed(frame, parsed, 1_723_161_600_000 + k as i64, &mut out);
        trades.extend(out.drain(..).filter_map(|o| match o {
            FeedOutput::Deliver(t) if matches!(t.event, MarketEvent::Trade(_)) => Some(t),
            _ => None,
        }));
    }
    let mut scratch = ModelScratch::default();
    let mut step_out = SymbolOutput::default();
    let (mut quiet, mut quiet_allocations, mut closing) = (0u64, 0u64, 0u64);
    for tick in &trades {
        let MarketEvent::Trade(trade) = &tick.event else {
            continue;
        };
        if trade.symbol != "BTCUSDT" {
            continue;
        }
        let n = allocations_in(|| {
            step.on_trade(
                trade,
                tick.received_at_ms,
                tick.feed_healthy,
                tick.input,
                &mut scratch,
                &mut step_out,
            )
        });
        if step_out.bars.is_empty() && step_out.requests.is_empty() {
            quiet += 1;
            // The first trades size the step's own buffers.
            if quiet > 100 {
                quiet_allocations += n;
            }
        } else {
            closing += 1;
        }
    }
    assert!(
        quiet > 1_000 && closing > 10,
        "{quiet} quiet trades, {closing} closing a bar"
    );
    assert_eq!(
        quiet_allocations, 0,
        "allocations over {quiet} trades that closed no bar"
    );
}

#[test]
fn the_counter_counts() {
    let n = allocations_in(|| drop(std::hint::black_box(vec![1u8; 100])));
    assert_eq!(n, 1);
}
