//! Ingest: one Binance combined-stream connection, typed parsing, routing to symbol actors.
//! A bad frame is counted and logged with its reason; it never stops the stream.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::symbol::{SymbolActor, Tick};
use super::PipelineError;
use rand::SeedableRng;

use crate::clock::Clock;
use crate::config::{FeedConfig, OnServerClose};
use crate::market::backoff::{Backoff, ConnectLimiter};
use crate::market::binance::is_server_shutdown;
use crate::market::depth::{BookSync, DepthOutcome, DepthUpdate, OrderBook};
use crate::market::health::FeedHealth;
use crate::market::sequence::{TradeOrder, TradeSequence};
use crate::market::skew::{ClockSkew, SkewSummary};
use crate::market::{parse_combined, AggTrade, MarketDataError, MarketEvent, StreamKind, Trade};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Hard cap on a WebSocket message; frames above `max_frame_bytes` but below this are read,
/// rejected and counted, so the connection survives them.
const WS_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// During make-before-break, this much silence on the old connection means it has
/// delivered what it had.
const DRAIN_IDLE: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    pub connections: u32,
    pub frames: u64,
    pub accepted: BTreeMap<&'static str, u64>,
    pub rejected: BTreeMap<&'static str, u64>,
    pub elapsed: Duration,
    pub ended_by: String,
    /// Trades already seen (e.g. replayed by a new connection), dropped.
    pub duplicate_trades: u64,
    /// Trade-ID gaps (missing trades) seen, and how many trades they miss.
    pub trade_gaps: u64,
    /// Trades of those gaps fetched from the REST endpoint and delivered in order.
    pub backfilled_trades: u64,
    /// Trades of those gaps that could not be fetched.
    pub missing_trades: u64,
    /// The same for aggregate trades (`aggTrade`, continuity by aggregate ID).
    pub duplicate_agg_trades: u64,
    pub agg_trade_gaps: u64,
    pub backfilled_agg_trades: u64,
    pub missing_agg_trades: u64,
    /// Connections replaced because they went silent.
    pub idle_reconnects: u32,
    /// Make-before-break replacements (age or `serverShutdown`), and the notices seen.
    pub rotations: u32,
    pub server_shutdowns: u32,
    /// Events delivered while their symbol was unhealthy (stale stream or lost trades).
    pub unhealthy_ticks: u64,
    /// For every connection after the first: from the moment the previous one ended to the
    /// first market event of the new one (backoff and handshake included), microseconds
    /// (bounded: the last 64).
    pub reconnect_to_first_event_us: Vec<u64>,
    /// Local receive time minus exchange event time of trades (live clock only).
    pub clock_skew: Option<SkewSummary>,
    /// Depth snapshots loaded into local books (the first sync and every resync).
    pub depth_snapshots: u64,
    /// Breaks in the diff-depth sequence (lost updates) and crossed books, each followed
    /// by a resync.
    pub depth_gaps: u64,
    pub depth_crossed: u64,
    /// Snapshot requests that failed (retried at most once a second per symbol).
    pub depth_snapshot_failures: u64,
    /// Symbols whose local book was not in step when ingest ended.
    pub books_out_of_sync: Vec<String>,
}

impl IngestReport {
    /// Add the report of another connection shard.
    pub fn merge(&mut self, other: IngestReport) {
        self.connections += other.connections;
        self.frames += other.frames;
        for (k, v) in other.accepted {
            *self.accepted.entry(k).or_default() += v;
        }
        for (k, v) in other.rejected {
            *self.rejected.entry(k).or_default() += v;
        }
        self.elapsed = self.elapsed.max(other.elapsed);
        if !other.ended_by.is_empty() && !self.ended_by.contains(&other.ended_by) {
            if !self.ended_by.is_empty() {
                self.ended_by.push_str("; ");
            }
            self.ended_by.push_str(&other.ended_by);
        }
        self.duplicate_trades += other.duplicate_trades;
        self.trade_gaps += other.trade_gaps;
        self.backfilled_trades += other.backfilled_trades;
        self.missing_trades += other.missing_trades;
        self.duplicate_agg_trades += other.duplicate_agg_trades;
        self.agg_trade_gaps += other.agg_trade_gaps;
        self.backfilled_agg_trades += other.backfilled_agg_trades;
        self.missing_agg_trades += other.missing_agg_trades;
        self.idle_reconnects += other.idle_reconnects;
        self.rotations += other.rotations;
        self.server_shutdowns += other.server_shutdowns;
        self.unhealthy_ticks += other.unhealthy_ticks;
        self.reconnect_to_first_event_us
            .extend(other.reconnect_to_first_event_us);
        self.depth_snapshots += other.depth_snapshots;
        self.depth_gaps += other.depth_gaps;
        self.depth_crossed += other.depth_crossed;
        self.depth_snapshot_failures += other.depth_snapshot_failures;
        self.books_out_of_sync.extend(other.books_out_of_sync);
        self.clock_skew = match (self.clock_skew.take(), other.clock_skew) {
            (Some(a), Some(b)) => Some(a.combine(&b)),
            (a, b) => a.or(b),
        };
    }
}

/// Split `symbols` into connection shards of at most `max_streams` streams each (all
/// streams of a symbol on one connection, so its trade-ID continuity stays on one stream).
pub fn shard_symbols(
    symbols: &[String],
    streams_per_symbol: usize,
    max_streams: usize,
) -> Vec<Vec<String>> {
    let per_shard = (max_streams / streams_per_symbol.max(1)).max(1);
    symbols.chunks(per_shard).map(<[String]>::to_vec).collect()
}

/// Local order books of one connection's symbols, synced from REST snapshots.
struct Books {
    books: HashMap<String, OrderBook>,
    /// After a failed or unusable snapshot, no new request before this, and the wait
    /// before it (doubling while requests keep failing).
    retry_at: HashMap<String, (Instant, Duration)>,
    /// Books that broke (gap or crossed) and have not been bridged since.
    recovering: HashSet<String>,
    rest_base: String,
    snapshot_limit: usize,
    max_levels: usize,
    timeout: Duration,
}

/// Pending updates kept per book while a snapshot is awaited.
const MAX_BUFFERED_DEPTH_UPDATES: usize = 1000;
/// Snapshot requests for one symbol after a failure: the first retry after this, doubling
/// up to `SNAPSHOT_RETRY_MAX`, so an unreachable endpoint holds ingest up only rarely.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(1);
const SNAPSHOT_RETRY_MAX: Duration = Duration::from_secs(60);

/// Schedule the next snapshot request of `symbol`; returns the wait.
fn retry_later(retry_at: &mut HashMap<String, (Instant, Duration)>, symbol: &str) -> Duration {
    let wait = retry_at.get(symbol).map_or(SNAPSHOT_RETRY, |(_, last)| {
        (*last * 2).min(SNAPSHOT_RETRY_MAX)
    });
    retry_at.insert(symbol.to_string(), (Instant::now() + wait, wait));
    wait
}

impl Books {
    /// Apply one diff update; (re)sync from a snapshot when the book is not in step.
    /// Returns whether the book can be relied on: a snapshot is loaded and no break has
    /// been seen since, or the break has been bridged. (A freshly loaded snapshot counts
    /// before its bridging update arrives: nothing is known to be missing, and replays
    /// must not depend on how far ahead of the client the server is.)
    async fn on_update(
        &mut self,
        update: DepthUpdate,
        report: &mut IngestReport,
        metrics: &Metrics,
    ) -> bool {
        let symbol = update.symbol.clone();
        let book = self
            .books
            .entry(symbol.clone())
            .or_insert_with(|| OrderBook::new(self.max_levels, MAX_BUFFERED_DEPTH_UPDATES));
        match book.on_update(update) {
            DepthOutcome::Applied | DepthOutcome::AlreadyApplied | DepthOutcome::Buffered => {}
            DepthOutcome::Gap { expected, got } => {
                report.depth_gaps += 1;
                self.recovering.insert(symbol.clone());
                metrics
                    .feed_depth_sync_total
                    .with_label_values(&["gap"])
                    .inc();
                tracing::warn!(%symbol, expected, got, "depth updates lost: book out of step, resyncing");
            }
            DepthOutcome::Crossed => {
                report.depth_crossed += 1;
                self.recovering.insert(symbol.clone());
                metrics
                    .feed_depth_sync_total
                    .with_label_values(&["crossed"])
                    .inc();
                book.reset();
                tracing::warn!(%symbol, "local book crossed: resyncing");
            }
        }
        if book.sync() == BookSync::AwaitingSnapshot
            && self
                .retry_at
                .get(&symbol)
                .is_none_or(|(t, _)| Instant::now() >= *t)
        {
            let (base, sym, limit, timeout) = (
                self.rest_base.clone(),
                symbol.clone(),
                self.snapshot_limit,
                self.timeout,
            );
            let fetched = tokio::task::spawn_blocking(move || {
                crate::market::rest::fetch_depth_snapshot(&base, &sym, limit, timeout)
            })
            .await;
            match fetched {
                Ok(Ok(snapshot)) => {
                    report.depth_snapshots += 1;
                    metrics
                        .feed_depth_sync_total
                        .with_label_values(&["snapshot_loaded"])
                        .inc();
                    if let Some(outcome) = book.load_snapshot(&snapshot) {
                        // Older than what was buffered: ask again, paced.
                        tracing::info!(%symbol, last_update_id = snapshot.last_update_id, ?outcome, "depth snapshot cannot be bridged yet");
                        retry_later(&mut self.retry_at, &symbol);
                    } else {
                        self.retry_at.remove(&symbol);
                    }
                }
                Ok(Err(e)) => {
                    report.depth_snapshot_failures += 1;
                    metrics
                        .feed_depth_sync_total
                        .with_label_values(&["snapshot_failed"])
                        .inc();
                    let wait = retry_later(&mut self.retry_at, &symbol);
                    tracing::warn!(%symbol, error = %e, retry_in_ms = wait.as_millis() as u64, "depth snapshot failed");
                }
                Err(e) => {
                    report.depth_snapshot_failures += 1;
                    tracing::warn!(%symbol, error = %e, "depth snapshot task failed");
                    retry_later(&mut self.retry_at, &symbol);
                }
            }
        }
        let reliable = match book.sync() {
            BookSync::InSync => {
                self.recovering.remove(&symbol);
                true
            }
            BookSync::Bridging => !self.recovering.contains(&symbol),
            BookSync::AwaitingSnapshot => false,
        };
        metrics
            .feed_book_in_sync
            .with_label_values(&[&symbol])
            .set(i64::from(reliable));
        reliable
    }

    fn out_of_sync(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .books
            .iter()
            .filter(|(s, b)| {
                b.sync() == BookSync::AwaitingSnapshot
                    || (b.sync() == BookSync::Bridging && self.recovering.contains(*s))
            })
            .map(|(s, _)| s.clone())
            .collect();
        v.sort();
        v
    }
}

/// Run until the server closes (with `on_server_close = stop`) or a stage fails.
#[derive(Message)]
#[rtype(result = "Result<IngestReport, PipelineError>")]
pub struct RunIngest;

pub struct IngestActor {
    feed: FeedConfig,
    url: String,
    routes: Arc<HashMap<String, Addr<SymbolActor>>>,
    clock: Clock,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
}

impl IngestActor {
    pub fn new(
        feed: FeedConfig,
        symbols: &[String],
        routes: HashMap<String, Addr<SymbolActor>>,
        clock: Clock,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> Self {
        let url = stream_url(&feed.url, symbols, &feed.streams);
        Self {
            feed,
            url,
            routes: Arc::new(routes),
            clock,
            metrics,
            shutdown,
        }
    }
}

/// Why ingest stopped waiting: the wait ended, or shutdown was requested.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut Shutdown) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.requested() => true,
    }
}

/// `<base>/stream?streams=btcusdt@trade/btcusdt@bookTicker/...`
pub fn stream_url(base: &str, symbols: &[String], streams: &[String]) -> String {
    let names: Vec<String> = symbols
        .iter()
        .flat_map(|s| {
            streams
                .iter()
                .map(move |k| format!("{}@{}", s.to_lowercase(), k))
        })
        .collect();
    format!(
        "{}/stream?streams={}",
        base.trim_end_matches('/'),
        names.join("/")
    )
}

impl Actor for IngestActor {
    type Context = Context<Self>;
}

impl Handler<RunIngest> for IngestActor {
    type Result = ResponseFuture<Result<IngestReport, PipelineError>>;

    fn handle(&mut self, _: RunIngest, _: &mut Self::Context) -> Self::Result {
        let feed = self.feed.clone();
        let url = self.url.clone();
        let routes = self.routes.clone();
        let clock = self.clock;
        let metrics = self.metrics.clone();
        let shutdown = self.shutdown.clone();
        Box::pin(async move { run(feed, url, routes, clock, metrics, shutdown).await })
    }
}

async fn run(
    feed: FeedConfig,
    url: String,
    routes: Arc<HashMap<String, Addr<SymbolActor>>>,
    mut clock: Clock,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) -> Result<IngestReport, PipelineError> {
    let started = Instant::now();
    let mut report = IngestReport::default();
    let mut skew = ClockSkew::new(feed.clock_skew_warn_ms);
    let mut sequence = TradeSequence::default();
    let mut agg_sequence = TradeSequence::default();
    // With both subscribed, trades drive the models and aggregate trades are only checked.
    let aggs_drive_models = !feed.streams.iter().any(|s| s == "trade");
    let mut dropped_at: Option<Instant> = None;
    let mut health = FeedHealth::new(
        feed.streams
            .iter()
            .filter_map(|s| StreamKind::from_suffix(s))
            .collect(),
        feed.stale_after_ms,
        feed.gap_unhealthy_ms,
    );
    let rest_base = feed.rest_base();
    let rest_timeout = Duration::from_millis(feed.rest_timeout_ms);
    let mut books = Books {
        books: HashMap::new(),
        retry_at: HashMap::new(),
        recovering: HashSet::new(),
        rest_base: rest_base.clone(),
        snapshot_limit: feed.depth_snapshot_limit,
        max_levels: feed.max_book_levels,
        timeout: rest_timeout,
    };
    let mut backoff = Backoff::new(
        Duration::from_millis(feed.reconnect_initial_backoff_ms),
        Duration::from_millis(feed.reconnect_max_backoff_ms),
    );
    let mut limiter = ConnectLimiter::new(
        feed.max_connects_per_window,
        Duration::from_secs(feed.connect_window_s),
    );
    // Jitter only spreads reconnects; it never reaches a signed output.
    let mut jitter = rand::rngs::StdRng::from_os_rng();
    let mut ws_config = WebSocketConfig::default();
    ws_config.max_message_size = Some(WS_MAX_MESSAGE_BYTES);
    ws_config.max_frame_size = Some(WS_MAX_MESSAGE_BYTES);

    loop {
        if shutdown.is_requested() {
            report.ended_by = "shutdown".into();
            break;
        }
        let wait = limiter.wait(crate::clock::system_now_ms());
        if !wait.is_zero() {
            tracing::warn!(
                wait_ms = wait.as_millis() as u64,
                "connection rate limit reached; waiting"
            );
            if sleep_or_shutdown(wait, &mut shutdown).await {
                continue;
            }
        }
        limiter.record(crate::clock::system_now_ms());
        let connect =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config), true);
        let ws = match tokio::time::timeout(Duration::from_millis(feed.connect_timeout_ms), connect)
            .await
        {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => {
                let delay = backoff.next_delay(&mut jitter);
                tracing::warn!(url = %url, error = %e, backoff_ms = delay.as_millis() as u64, "connect failed");
                sleep_or_shutdown(delay, &mut shutdown).await;
                continue;
            }
            Err(_) => {
                let delay = backoff.next_delay(&mut jitter);
                tracing::warn!(url = %url, backoff_ms = delay.as_millis() as u64, "connect timed out");
                sleep_or_shutdown(delay, &mut shutdown).await;
                continue;
            }
        };
        report.connections += 1;
        backoff.reset();
        tracing::info!(url = %url, "market data connected");
        let (mut _write, mut read) = ws.split();
        let idle = Duration::from_millis(feed.idle_timeout_ms);
        let mut went_idle = false;
        let mut first_event_pending = dropped_at.is_some();
        // Make-before-break: the replacement connection, open while the old one drains.
        let mut connected_at = Instant::now();
        let mut rotate_now = false;
        let mut retry_rotation_at: Option<Instant> = None;
        let mut replacement = None;
        let ended_by = loop {
            let due =
                rotate_now || connected_at.elapsed() >= Duration::from_secs(feed.rotate_after_s);
            if replacement.is_none() && due && retry_rotation_at.is_none_or(|t| Instant::now() >= t)
            {
                limiter.record(crate::clock::system_now_ms());
                let connect = tokio_tungstenite::connect_async_with_config(
                    url.as_str(),
                    Some(ws_config),
                    true,
                );
                match tokio::time::timeout(Duration::from_millis(feed.connect_timeout_ms), connect)
                    .await
                {
                    Ok(Ok((ws, _))) => {
                        report.connections += 1;
                        report.rotations += 1;
                        let drain_until =
                            Instant::now() + Duration::from_millis(feed.rotate_drain_ms);
                        replacement = Some((ws.split(), drain_until));
                        tracing::info!(url = %url, "replacement connection open; draining the old one");
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(url = %url, error = %e, "replacement connection failed; retrying in 1 s");
                        retry_rotation_at = Some(Instant::now() + Duration::from_secs(1));
                    }
                    Err(_) => {
                        tracing::warn!(url = %url, "replacement connection timed out; retrying in 1 s");
                        retry_rotation_at = Some(Instant::now() + Duration::from_secs(1));
                    }
                }
            }
            // While draining, a short silence or the drain deadline ends the old connection.
            let wait = match &replacement {
                Some((_, until)) => DRAIN_IDLE.min(until.saturating_duration_since(Instant::now())),
                None => idle,
            };
            let next = tokio::select! {
                biased;
                _ = shutdown.requested() => break "shutdown".to_string(),
                next = tokio::time::timeout(wait, read.next()) => next,
            };
            let old_done = match &next {
                Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => true,
                Ok(Some(Ok(_))) => false,
            };
            if let Some(((w, r), until)) = replacement.take() {
                if old_done || Instant::now() >= until {
                    _write = w;
                    read = r;
                    connected_at = Instant::now();
                    rotate_now = false;
                    retry_rotation_at = None;
                    tracing::info!("switched to the replacement connection");
                    if old_done {
                        continue;
                    }
                } else {
                    replacement = Some(((w, r), until));
                }
            }
            let msg = match next {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => break format!("error: {e}"),
                Ok(None) => break "eof".to_string(),
                Err(_) => {
                    went_idle = true;
                    break format!("no frame for {} ms", feed.idle_timeout_ms);
                }
            };
            let text = match msg {
                Message::Text(t) => t,
                Message::Binary(b) => {
                    report.frames += 1;
                    reject(
                        &mut report,
                        &metrics,
                        &MarketDataError::BinaryFrame,
                        b.len(),
                    );
                    continue;
                }
                Message::Close(frame) => {
                    break format!(
                        "server close: {}",
                        frame.map(|f| f.reason.to_string()).unwrap_or_default()
                    )
                }
                // Pings are answered by the WebSocket layer with the same payload.
                _ => continue,
            };
            report.frames += 1;
            if text.len() > feed.max_frame_bytes {
                reject(
                    &mut report,
                    &metrics,
                    &MarketDataError::Oversized {
                        size: text.len(),
                        limit: feed.max_frame_bytes,
                    },
                    text.len(),
                );
                continue;
            }
            let event = match parse_combined(text.as_str()) {
                Ok(e) => e,
                Err(_) if is_server_shutdown(text.as_str()) => {
                    report.server_shutdowns += 1;
                    rotate_now = true;
                    tracing::info!("serverShutdown notice: replacing the connection");
                    continue;
                }
                Err(e) => {
                    reject(&mut report, &metrics, &e, text.len());
                    continue;
                }
            };
            let Some(route) = routes.get(event.symbol()) else {
                reject(
                    &mut report,
                    &metrics,
                    &MarketDataError::UnknownSymbol(event.symbol().to_string()),
                    text.len(),
                );
                continue;
            };
            let event = match event {
                MarketEvent::Depth(update) => {
                    // The book lives here; symbol actors need only trades and quotes.
                    let symbol = update.symbol.clone();
                    let in_sync = books.on_update(update, &mut report, &metrics).await;
                    health.book_in_sync(&symbol, in_sync);
                    health.seen(&symbol, StreamKind::Depth, clock.now_ms());
                    let kind = StreamKind::Depth.as_str();
                    *report.accepted.entry(kind).or_default() += 1;
                    metrics.ingest_frames_total.with_label_values(&[kind]).inc();
                    continue;
                }
                other => other,
            };
            if let MarketEvent::AggTrade(a) = &event {
                match agg_sequence.observe(&a.symbol, a.agg_id) {
                    TradeOrder::Next => {}
                    TradeOrder::Duplicate => {
                        report.duplicate_agg_trades += 1;
                        continue;
                    }
                    TradeOrder::Gap { first, last } => {
                        report.agg_trade_gaps += 1;
                        let missing = last - first + 1;
                        // Aggregates that are only checked (trades drive the models) are not fetched.
                        let fetched = if feed.backfill_gaps && aggs_drive_models {
                            let upto = backfill_upto(&feed, first, last);
                            backfill_agg(&rest_base, &a.symbol, first, upto, rest_timeout)
                                .await
                                .iter()
                                .map(AggTrade::as_trade)
                                .collect()
                        } else {
                            Vec::new()
                        };
                        let filled =
                            deliver_backfill(route, fetched, &clock, &mut report, "aggTrade")
                                .await?;
                        report.backfilled_agg_trades += filled;
                        report.missing_agg_trades += missing.saturating_sub(filled);
                        // Only lost aggregates that feed the models make the symbol
                        // unhealthy; with trades subscribed their own continuity counts.
                        if filled < missing && aggs_drive_models {
                            health.gap_unfilled(&a.symbol, clock.now_ms());
                        }
                        if filled < missing {
                            tracing::warn!(symbol = %a.symbol, first, last, filled, "aggregate-trade gap: aggregates missing from the stream");
                        }
                    }
                }
                if aggs_drive_models {
                    clock.observe(a.event_time_ms);
                }
            }
            if let MarketEvent::Trade(t) = &event {
                match sequence.observe(&t.symbol, t.trade_id) {
                    TradeOrder::Next => {}
                    TradeOrder::Duplicate => {
                        report.duplicate_trades += 1;
                        continue;
                    }
                    TradeOrder::Gap { first, last } => {
                        report.trade_gaps += 1;
                        let missing = last - first + 1;
                        let fetched = if feed.backfill_gaps {
                            let upto = backfill_upto(&feed, first, last);
                            backfill(&rest_base, &t.symbol, first, upto, rest_timeout).await
                        } else {
                            Vec::new()
                        };
                        let filled =
                            deliver_backfill(route, fetched, &clock, &mut report, "trade").await?;
                        report.backfilled_trades += filled;
                        report.missing_trades += missing.saturating_sub(filled);
                        if filled < missing {
                            health.gap_unfilled(&t.symbol, clock.now_ms());
                            tracing::warn!(symbol = %t.symbol, first, last, filled, "trade-ID gap: trades missing from the stream");
                        }
                    }
                }
                clock.observe(t.event_time_ms);
                if clock == Clock::System {
                    let now = clock.now_ms();
                    let skew_s = (now - t.event_time_ms) as f64 / 1000.0;
                    metrics.feed_clock_skew_seconds.observe(skew_s);
                    if skew.observe(now, t.event_time_ms) {
                        tracing::warn!(
                            symbol = %t.symbol,
                            skew_ms = now - t.event_time_ms,
                            threshold_ms = feed.clock_skew_warn_ms,
                            "clock skew above threshold (local receive time minus exchange event time)"
                        );
                    }
                }
            }
            if first_event_pending {
                first_event_pending = false;
                if report.reconnect_to_first_event_us.len() >= 64 {
                    report.reconnect_to_first_event_us.remove(0);
                }
                if let Some(at) = dropped_at {
                    report
                        .reconnect_to_first_event_us
                        .push(at.elapsed().as_micros() as u64);
                }
            }
            let now = clock.now_ms();
            health.seen(event.symbol(), event.kind(), now);
            let feed_healthy = health.healthy(event.symbol(), now);
            report.unhealthy_ticks += u64::from(!feed_healthy);
            let kind = event.kind().as_str();
            *report.accepted.entry(kind).or_default() += 1;
            metrics.ingest_frames_total.with_label_values(&[kind]).inc();
            let event = match event {
                MarketEvent::AggTrade(a) if aggs_drive_models => MarketEvent::Trade(a.as_trade()),
                MarketEvent::AggTrade(_) => continue,
                other => other,
            };
            route
                .send(Tick {
                    event,
                    received_at_ms: now,
                    arrived: Instant::now(),
                    feed_healthy,
                })
                .await??;
        };
        tracing::info!(reason = %ended_by, "market data connection ended");
        report.ended_by = ended_by;
        dropped_at = Some(Instant::now());
        if went_idle {
            // A silent connection is dead whatever the close policy: replace it.
            report.idle_reconnects += 1;
            continue;
        }
        if feed.on_server_close == OnServerClose::Stop || shutdown.is_requested() {
            break;
        }
        sleep_or_shutdown(backoff.next_delay(&mut jitter), &mut shutdown).await;
    }
    report.elapsed = started.elapsed();
    report.clock_skew = skew.summary();
    report.books_out_of_sync = books.out_of_sync();
    Ok(report)
}

/// The last ID of a gap `first..=last` to fetch: at most `backfill_max_trades` of it.
fn backfill_upto(feed: &FeedConfig, first: u64, last: u64) -> u64 {
    last.min(first.saturating_add(feed.backfill_max_trades - 1))
}

/// Send backfilled trades to the symbol's actor in ID order and count them as accepted
/// `kind` frames; returns how many.
async fn deliver_backfill(
    route: &Addr<SymbolActor>,
    trades: Vec<Trade>,
    clock: &Clock,
    report: &mut IngestReport,
    kind: &'static str,
) -> Result<u64, PipelineError> {
    let n = trades.len() as u64;
    for trade in trades {
        route
            .send(Tick {
                event: MarketEvent::Trade(trade),
                received_at_ms: clock.now_ms(),
                arrived: Instant::now(),
                feed_healthy: true,
            })
            .await??;
    }
    if n > 0 {
        *report.accepted.entry(kind).or_default() += n;
    }
    Ok(n)
}

/// Items `first..=last` of an ID-paged REST endpoint (`fetch(from_id)` returns up to 1000
/// from that ID), converted and in ID order; fewer when the endpoint has fewer, answers
/// something unusable or fails (logged).
async fn backfill_by_id<T, U, F>(
    what: &'static str,
    symbol: &str,
    first: u64,
    last: u64,
    fetch: F,
    id: impl Fn(&T) -> u64,
    convert: impl Fn(T) -> Option<U>,
) -> Vec<U>
where
    T: Send + 'static,
    F: Fn(u64) -> Result<Vec<T>, crate::market::rest::RestError> + Clone + Send + 'static,
{
    let mut out = Vec::new();
    let mut from = first;
    while from <= last {
        let f = fetch.clone();
        let page = match tokio::task::spawn_blocking(move || f(from)).await {
            Ok(Ok(items)) => items,
            Ok(Err(e)) => {
                tracing::warn!(%symbol, from, what, error = %e, "backfill failed");
                break;
            }
            Err(e) => {
                tracing::warn!(%symbol, from, what, error = %e, "backfill task failed");
                break;
            }
        };
        let before = out.len();
        let page_from = from;
        for item in page
            .into_iter()
            .filter(|t| (page_from..=last).contains(&id(t)))
        {
            // Strictly increasing and unique, whatever order the endpoint answers in.
            if id(&item) < from {
                continue;
            }
            let next = id(&item).saturating_add(1);
            if let Some(u) = convert(item) {
                from = next;
                out.push(u);
            }
        }
        if out.len() == before {
            break;
        }
    }
    out
}

/// A REST price and quantity, if both are usable.
fn price_qty(price: &str, qty: &str) -> Option<(f64, f64)> {
    let (price, qty) = (price.parse::<f64>().ok()?, qty.parse::<f64>().ok()?);
    (price > 0.0 && price.is_finite() && qty >= 0.0 && qty.is_finite()).then_some((price, qty))
}

/// Trades `first..=last` of `symbol` from `GET /api/v3/historicalTrades`.
async fn backfill(
    base: &str,
    symbol: &str,
    first: u64,
    last: u64,
    timeout: Duration,
) -> Vec<Trade> {
    let (b, s) = (base.to_string(), symbol.to_string());
    let fetch =
        move |from| crate::market::rest::fetch_historical_trades(&b, &s, from, 1000, timeout);
    backfill_by_id(
        "historicalTrades",
        symbol,
        first,
        last,
        fetch,
        |h| h.id,
        |h| {
            let (price, qty) = price_qty(&h.price, &h.qty)?;
            Some(Trade {
                event_time_ms: h.time,
                symbol: symbol.to_string(),
                trade_id: h.id,
                price,
                qty,
                trade_time_ms: h.time,
                buyer_is_maker: h.is_buyer_maker,
            })
        },
    )
    .await
}

/// Aggregate trades `first..=last` of `symbol` from `GET /api/v3/aggTrades`.
async fn backfill_agg(
    base: &str,
    symbol: &str,
    first: u64,
    last: u64,
    timeout: Duration,
) -> Vec<AggTrade> {
    let (b, s) = (base.to_string(), symbol.to_string());
    let fetch = move |from| crate::market::rest::fetch_agg_trades(&b, &s, from, 1000, timeout);
    backfill_by_id(
        "aggTrades",
        symbol,
        first,
        last,
        fetch,
        |a| a.agg_id,
        |a| {
            let (price, qty) = price_qty(&a.price, &a.qty)?;
            Some(AggTrade {
                event_time_ms: a.time,
                symbol: symbol.to_string(),
                agg_id: a.agg_id,
                price,
                qty,
                first_trade_id: a.first_trade_id,
                last_trade_id: a.last_trade_id,
                trade_time_ms: a.time,
                buyer_is_maker: a.is_buyer_maker,
            })
        },
    )
    .await
}

fn reject(report: &mut IngestReport, metrics: &Metrics, err: &MarketDataError, len: usize) {
    *report.rejected.entry(err.code()).or_default() += 1;
    metrics
        .ingest_rejected_total
        .with_label_values(&[err.code()])
        .inc();
    tracing::warn!(reason = err.code(), bytes = len, error = %err, "market data frame rejected");
}

#[cfg(test)]
mod tests {
    #[test]
    fn shards_keep_a_symbols_streams_together_within_the_limit() {
        let syms: Vec<String> = (0..5).map(|i| format!("S{i}")).collect();
        let shards = super::shard_symbols(&syms, 2, 4);
        assert_eq!(shards.len(), 3);
        assert!(shards.iter().all(|s| s.len() * 2 <= 4));
        assert_eq!(shards.concat(), syms);
        assert_eq!(super::shard_symbols(&syms, 2, 1024).len(), 1);
    }
}
