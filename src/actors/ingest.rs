//! Ingest: the host of one Binance combined-stream connection. It connects, reconnects and
//! rotates connections, hands every frame to the feed step (`market::feed`), makes the REST
//! requests the step asks for, and hands the trades to the symbols' steps; the step holds
//! the policy. A bad frame is counted and logged with its reason; it never stops the stream.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::symbol::{SymbolHandle, Tick};
use super::PipelineError;
use rand::SeedableRng;

use crate::clock::Clock;
use crate::config::{FeedConfig, OnServerClose};
use crate::fast_hash::FastMap;
use crate::market::backoff::{Backoff, ConnectLimiter};
use crate::market::feed::books::DepthSyncEvent;
use crate::market::feed::guard::PlausibilitySettings;
use crate::market::feed::{FeedOutput, FeedSettings, FeedStep, FeedTick, TimeSource};
use crate::market::fetch;
use crate::market::rest::Http;
use crate::market::subscription;
use crate::market::StreamKind;
use crate::metrics::Metrics;
use crate::quarantine::Quarantine;
use crate::recording::tape::Taping;
use crate::recording::writer::ConnectionWriter;
use crate::recording::{RecordingError, RestUse};
use crate::shutdown::Shutdown;

/// During make-before-break, this much silence on the old connection means it has
/// delivered what it had.
const DRAIN_IDLE: Duration = Duration::from_millis(50);

/// Bytes a WebSocket read asks of the socket (larger frames still arrive whole).
const WS_READ_BUFFER_BYTES: usize = 16 * 1024;

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

/// The connection shards the configuration asks for: its symbols, all streams of each.
pub fn connection_shards(config: &crate::config::Config) -> Vec<Vec<String>> {
    shard_symbols(
        &config.symbols(),
        config.feed.streams.len(),
        config.feed.max_streams_per_connection,
    )
}

/// Which connection shard each symbol of `shards` is on: where its actors must run, and
/// which feed step reads it.
pub fn shard_index(shards: &[Vec<String>]) -> FastMap<&str, usize> {
    shards
        .iter()
        .enumerate()
        .flat_map(|(k, shard)| shard.iter().map(move |s| (s.as_str(), k)))
        .collect()
}

pub use crate::market::feed::IngestReport;

/// Run one ingest actor per connection shard of `config` until every connection ends, and
/// merge their reports. The per-IP connection-rate limit is split between them so that
/// together they never exceed it. `route` names where a shard's symbols' ticks go,
/// `recorder` where connection `k` records its inputs, and `threads` the thread it runs on
/// (its symbols' actors must be there too).
pub async fn run_shards(
    config: &crate::config::Config,
    mut route: impl FnMut(&str) -> Option<TickRoute>,
    mut recorder: impl FnMut(u32) -> Option<ConnectionWriter>,
    threads: &super::threads::RunThreads,
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
    roots: &Option<Arc<crate::market::tls::TrustedRoots>>,
) -> Result<IngestReport, PipelineError> {
    let shards = connection_shards(config);
    let mut shard_feed = config.feed.clone();
    shard_feed.max_connects_per_window =
        (config.feed.max_connects_per_window / shards.len().max(1)).max(1);
    let runs: Vec<_> = shards
        .iter()
        .enumerate()
        .map(|(k, shard)| {
            let routes = shard
                .iter()
                .filter_map(|s| route(s).map(|r| (s.clone(), r)))
                .collect();
            let actor = IngestActor::new(
                shard_feed.clone(),
                shard,
                routes,
                Clock::from_mode(config.engine.clock),
                metrics.clone(),
                shutdown.clone(),
                Some(config.sink.dir.join("quarantine").join("quarantine.jsonl")),
            )
            .with_connection(k as u32, recorder(k as u32))
            .with_roots(roots.clone());
            IngestActor::start_in_arbiter(&threads.shard(k), move |_| actor).send(RunIngest)
        })
        .collect();
    let mut report = IngestReport::default();
    for result in futures_util::future::join_all(runs).await {
        report.merge(result??);
    }
    Ok(report)
}

/// The feed step's settings from the configuration and the engine clock.
pub fn feed_settings(feed: &FeedConfig, clock: Clock) -> FeedSettings {
    FeedSettings {
        streams: feed
            .streams
            .iter()
            .filter_map(|s| StreamKind::from_suffix(s))
            .collect(),
        time: match clock {
            Clock::System => TimeSource::Receive,
            Clock::EventTime { .. } | Clock::Manual { .. } => TimeSource::Event,
        },
        max_frame_bytes: feed.max_frame_bytes,
        stale_after_ms: feed.stale_after_ms,
        gap_unhealthy_ms: feed.gap_unhealthy_ms,
        backfill_gaps: feed.backfill_gaps,
        backfill_max_trades: feed.backfill_max_trades,
        clock_skew_warn_ms: feed.clock_skew_warn_ms,
        depth_snapshot_limit: feed.depth_snapshot_limit,
        max_book_levels: feed.max_book_levels,
        plausibility: PlausibilitySettings {
            max_price_deviation: feed.max_price_deviation_pct / 100.0,
            max_event_ahead_ms: feed.max_event_ahead_ms,
            max_event_behind_ms: feed.max_event_behind_ms,
            max_id_jump: feed.max_trade_id_jump,
            confirm_events: feed.confirm_events,
        },
    }
}

/// Run until the server closes (with `on_server_close = stop`) or a stage fails.
#[derive(Message)]
#[rtype(result = "Result<IngestReport, PipelineError>")]
pub struct RunIngest;

pub struct IngestActor {
    feed: FeedConfig,
    url: String,
    symbols: Vec<String>,
    /// The streams subscribed by `SUBSCRIBE` once a connection is open (the URL names the
    /// first `feed.url_max_streams`).
    batches: Vec<Vec<String>>,
    routes: Arc<HashMap<String, TickRoute>>,
    clock: Clock,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    quarantine_file: Option<PathBuf>,
    connection: u32,
    recorder: Option<ConnectionWriter>,
    /// The CAs trusted for `wss://` and `https://` (`feed.ca_file`); `None`: built-in.
    roots: Option<Arc<crate::market::tls::TrustedRoots>>,
}

impl IngestActor {
    /// Trust `roots` (from `feed.ca_file`) instead of the built-in roots.
    pub fn with_roots(mut self, roots: Option<Arc<crate::market::tls::TrustedRoots>>) -> Self {
        self.roots = roots;
        self
    }

    /// This actor's connection index in the run, and where it records its inputs.
    pub fn with_connection(mut self, connection: u32, recorder: Option<ConnectionWriter>) -> Self {
        self.connection = connection;
        self.recorder = recorder;
        self
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        feed: FeedConfig,
        symbols: &[String],
        routes: HashMap<String, TickRoute>,
        clock: Clock,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
        quarantine_file: Option<PathBuf>,
    ) -> Self {
        let plan = subscription::plan(
            &stream_names(symbols, &feed.streams),
            feed.url_max_streams,
            feed.subscribe_batch_streams,
        );
        let url = format!(
            "{}/stream?streams={}",
            feed.url.trim_end_matches('/'),
            plan.url_streams.join("/")
        );
        Self {
            feed,
            url,
            batches: plan.batches,
            symbols: symbols.to_vec(),
            routes: Arc::new(routes),
            clock,
            metrics,
            shutdown,
            quarantine_file,
            connection: 0,
            recorder: None,
            roots: None,
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

/// `btcusdt@trade`, `btcusdt@bookTicker`, ... for every symbol and stream.
pub fn stream_names(symbols: &[String], streams: &[String]) -> Vec<String> {
    symbols
        .iter()
        .flat_map(|s| {
            streams
                .iter()
                .map(move |k| format!("{}@{}", s.to_lowercase(), k))
        })
        .collect()
}

/// `<base>/stream?streams=btcusdt@trade/btcusdt@bookTicker/...`
pub fn stream_url(base: &str, symbols: &[String], streams: &[String]) -> String {
    let names = stream_names(symbols, streams);
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
        let step = FeedStep::for_connection(
            feed_settings(&feed, self.clock),
            &self.symbols,
            self.connection,
        );
        let host = Host {
            routes: routes_with_gauges(&self.routes, &self.metrics),
            frames_accepted: frame_counters(&self.metrics),
            metrics: self.metrics.clone(),
            rest: Http::new(
                &feed.rest_base(),
                Duration::from_millis(feed.rest_timeout_ms),
                feed.rest_weight_per_minute,
            )
            .with_roots(self.roots.clone()),
            connector: self.roots.as_ref().map(|r| r.ws_connector()),
            quarantine: self.quarantine_file.clone().map(Quarantine::new),
            recorder: self.recorder.take(),
            rotate_now: false,
            first_event_pending: false,
            dropped_at: None,
            reconnect_to_first_event_us: Vec::new(),
        };
        let shutdown = self.shutdown.clone();
        let batches = self.batches.clone();
        Box::pin(async move { run(feed, url, batches, step, host, shutdown).await })
    }
}

async fn run(
    feed: FeedConfig,
    url: String,
    batches: Vec<Vec<String>>,
    mut step: FeedStep,
    mut host: Host,
    mut shutdown: Shutdown,
) -> Result<IngestReport, PipelineError> {
    let started = Instant::now();
    let mut connections = 0u32;
    let mut idle_reconnects = 0u32;
    let mut rotations = 0u32;
    let mut ended;
    let mut outputs = Vec::new();
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
    ws_config.max_message_size = Some(feed.max_ws_message_bytes);
    ws_config.max_frame_size = Some(feed.max_ws_message_bytes);
    // tungstenite zeroes the free part of its read buffer before every read of the
    // socket, the read that finds it empty included: at real-time rates each wake-up reads
    // a few frames, and its 128 KiB default cost more in zeroing than the frames in parsing.
    ws_config.read_buffer_size = WS_READ_BUFFER_BYTES;

    loop {
        if shutdown.is_requested() {
            ended = "shutdown".into();
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
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            Some(ws_config),
            true,
            host.connector.clone(),
        );
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
        connections += 1;
        backoff.reset();
        host.metrics.health.feed_connected.inc();
        host.metrics.health.feed_connections_total.inc();
        tracing::info!(url = %url, "market data connected");
        let (mut write, mut read) = ws.split();
        // The streams not named in the URL, subscribed at a pace Binance accepts.
        let send_every =
            Duration::from_millis(1000 / u64::from(feed.subscribe_messages_per_s.max(1)));
        let mut subscribing = Subscribing::new(&batches);
        let mut send_at = tokio::time::Instant::now();
        let idle = Duration::from_millis(feed.idle_timeout_ms);
        let mut went_idle = false;
        host.first_event_pending = host.dropped_at.is_some();
        // Make-before-break: the replacement connection, open while the old one drains.
        let mut connected_at = Instant::now();
        host.rotate_now = false;
        let mut retry_rotation_at: Option<Instant> = None;
        let mut replacement = None;
        let (mut rate_second, mut rate_count) = (0i64, 0u32);
        let ended_by = loop {
            let due = host.rotate_now
                || connected_at.elapsed() >= Duration::from_secs(feed.rotate_after_s);
            if replacement.is_none() && due && retry_rotation_at.is_none_or(|t| Instant::now() >= t)
            {
                limiter.record(crate::clock::system_now_ms());
                let connect = tokio_tungstenite::connect_async_tls_with_config(
                    url.as_str(),
                    Some(ws_config),
                    true,
                    host.connector.clone(),
                );
                match tokio::time::timeout(Duration::from_millis(feed.connect_timeout_ms), connect)
                    .await
                {
                    Ok(Ok((ws, _))) => {
                        connections += 1;
                        rotations += 1;
                        let (mut w, r) = ws.split();
                        // The replacement subscribes now, paced; its answers arrive on it.
                        let mut pending = Subscribing::new(&batches);
                        while let Some(message) = pending.next_request() {
                            if w.send(Message::text(message)).await.is_err() {
                                break;
                            }
                            if pending.has_more() {
                                tokio::time::sleep(send_every).await;
                            }
                        }
                        let drain_until =
                            Instant::now() + Duration::from_millis(feed.rotate_drain_ms);
                        replacement = Some(((w, r), drain_until, pending));
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
                Some((_, until, _)) => {
                    DRAIN_IDLE.min(until.saturating_duration_since(Instant::now()))
                }
                None => idle,
            };
            // A frame already read from the socket is taken without arming the select's
            // shutdown wait and idle timer, which cost more than the frame's parse.
            let ready =
                (replacement.is_none() && !subscribing.has_more() && !shutdown.is_requested())
                    .then(|| read.next().now_or_never())
                    .flatten();
            let next = if let Some(frame) = ready {
                Ok(frame)
            } else {
                tokio::select! {
                    biased;
                    _ = shutdown.requested() => break "shutdown".to_string(),
                    _ = tokio::time::sleep_until(send_at), if subscribing.has_more() => {
                        if let Some(message) = subscribing.next_request() {
                            if let Err(e) = write.send(Message::text(message)).await {
                                break format!("error: {e}");
                            }
                        }
                        send_at = tokio::time::Instant::now() + send_every;
                        continue;
                    }
                    next = tokio::time::timeout(wait, read.next()) => next,
                }
            };
            let old_done = match &next {
                Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => true,
                Ok(Some(Ok(_))) => false,
            };
            if let Some(((w, r), until, pending)) = replacement.take() {
                if old_done || Instant::now() >= until {
                    write = w;
                    read = r;
                    subscribing = pending;
                    (rate_second, rate_count) = (0, 0);
                    connected_at = Instant::now();
                    host.rotate_now = false;
                    retry_rotation_at = None;
                    tracing::info!("switched to the replacement connection");
                    if old_done {
                        continue;
                    }
                } else {
                    replacement = Some(((w, r), until, pending));
                }
            }
            let msg = match next {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => {
                    if matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)) {
                        host.breach("ws_message_bytes");
                        tracing::warn!(error = %e, limit = feed.max_ws_message_bytes, "feed.max_ws_message_bytes exceeded; replacing the connection");
                    }
                    break format!("error: {e}");
                }
                Ok(None) => break "eof".to_string(),
                Err(_) => {
                    went_idle = true;
                    break format!("no frame for {} ms", feed.idle_timeout_ms);
                }
            };
            let now_ns = crate::clock::system_now_ns();
            let now_ms = crate::clock::ns_to_ms(now_ns);
            if feed.max_messages_per_s > 0 {
                let second = now_ms.div_euclid(1000);
                if second != rate_second {
                    rate_second = second;
                    rate_count = 0;
                }
                rate_count += 1;
                if rate_count > feed.max_messages_per_s {
                    host.breach("ws_messages_per_s");
                    tracing::warn!(limit = feed.max_messages_per_s, "feed.max_messages_per_s exceeded; the connection is misbehaving and is replaced");
                    break format!(
                        "more than {} messages in one second",
                        feed.max_messages_per_s
                    );
                }
            }
            host.metrics
                .health
                .feed_last_frame_timestamp_seconds
                .set(now_ms as f64 / 1000.0);
            let fed = match msg {
                Message::Text(text) => {
                    // The answer to a SUBSCRIBE is not market data: never recorded or parsed.
                    if let Some(reply) = subscription::reply(text.as_str()) {
                        subscribing.answered(reply, &host.metrics);
                        continue;
                    }
                    host.record(|w| w.frame(now_ns, text.as_str()));
                    step.on_frame(text.as_str(), now_ms, &mut outputs)
                }
                Message::Binary(b) => {
                    host.record(|w| w.binary(now_ns, b.len()));
                    step.on_binary_frame(b.len(), &mut outputs);
                    Ok(())
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
            if fed.is_err() {
                // Every fetch is answered below before the next frame; this cannot happen.
                tracing::error!("feed step refused a frame while a fetch was unanswered");
                continue;
            }
            host.drive(&mut step, &mut outputs).await?;
        };
        tracing::info!(reason = %ended_by, "market data connection ended");
        host.metrics.health.feed_connected.dec();
        ended = ended_by;
        host.dropped_at = Some(Instant::now());
        if went_idle {
            // A silent connection is dead whatever the close policy: replace it.
            idle_reconnects += 1;
            host.metrics.health.feed_reconnects_total.inc();
            continue;
        }
        if feed.on_server_close == OnServerClose::Stop || shutdown.is_requested() {
            break;
        }
        host.metrics.health.feed_reconnects_total.inc();
        sleep_or_shutdown(backoff.next_delay(&mut jitter), &mut shutdown).await;
    }
    let mut report = step.report();
    report.connections = connections;
    report.idle_reconnects = idle_reconnects;
    report.rotations = rotations;
    report.ended_by = ended;
    report.elapsed = started.elapsed();
    report.reconnect_to_first_event_us = host.reconnect_to_first_event_us;
    Ok(report)
}

/// The `SUBSCRIBE` messages of one connection: sent in turn, answered by ID.
struct Subscribing {
    queue: std::collections::VecDeque<(u64, Vec<String>)>,
    awaiting: HashMap<u64, usize>,
    streams: usize,
}

impl Subscribing {
    fn new(batches: &[Vec<String>]) -> Self {
        Self {
            queue: batches
                .iter()
                .enumerate()
                .map(|(i, b)| (i as u64 + 1, b.clone()))
                .collect(),
            awaiting: HashMap::new(),
            streams: 0,
        }
    }

    fn has_more(&self) -> bool {
        !self.queue.is_empty()
    }

    fn next_request(&mut self) -> Option<String> {
        let (id, streams) = self.queue.pop_front()?;
        self.awaiting.insert(id, streams.len());
        Some(subscription::subscribe_request(id, &streams))
    }

    fn answered(&mut self, reply: subscription::Reply, metrics: &Metrics) {
        match reply {
            subscription::Reply::Confirmed { id } => {
                if let Some(n) = id.and_then(|id| self.awaiting.remove(&id)) {
                    self.streams += n;
                    if self.awaiting.is_empty() && self.queue.is_empty() {
                        tracing::info!(
                            streams = self.streams,
                            "SUBSCRIBE confirmed for every stream not in the URL"
                        );
                    }
                }
            }
            subscription::Reply::Rejected { id, code, msg } => {
                metrics
                    .ingest_rejected_total
                    .with_label_values(&["SUBSCRIBE_REJECTED"])
                    .inc();
                tracing::error!(id, code, msg = %msg, "the server rejected a SUBSCRIBE: those streams will not arrive and their symbols go stale");
            }
        }
    }
}

/// What the host keeps besides the step: where ticks go, how REST is reached, where
/// quarantined events are recorded, and the connection's own timings.
struct Host {
    routes: FastMap<String, Route>,
    /// `bizra_ingest_frames_total` by stream kind, looked up once, not per frame.
    frames_accepted: [prometheus::IntCounter; StreamKind::COUNT],
    metrics: Arc<Metrics>,
    rest: Http,
    quarantine: Option<Quarantine>,
    /// Where every input handed to the step is recorded; dropped after a write error.
    recorder: Option<ConnectionWriter>,
    /// A `serverShutdown` notice asked for a replacement connection.
    rotate_now: bool,
    first_event_pending: bool,
    dropped_at: Option<Instant>,
    /// Bounded: the last 64.
    reconnect_to_first_event_us: Vec<u64>,
    /// TLS with `feed.ca_file`'s roots; `None`: the built-in roots.
    connector: Option<tokio_tungstenite::Connector>,
}

/// Where a symbol's trades go: its step, called in ingest's own task, or another host's
/// handler (the ingest role's market topic).
#[derive(Clone)]
pub enum TickRoute {
    Symbol(SymbolHandle),
    Handler(Recipient<Tick>),
}

impl TickRoute {
    async fn deliver(&self, tick: Tick) -> Result<(), PipelineError> {
        match self {
            Self::Symbol(symbol) => symbol.tick(tick).await,
            Self::Handler(handler) => handler.send(tick).await?,
        }
    }
}

/// Where one symbol's ticks go, and its feed-health gauge (looked up once, not per tick).
struct Route {
    ticks: TickRoute,
    healthy: prometheus::IntGauge,
}

/// The routes of a connection, each with its symbol's gauge.
fn routes_with_gauges(
    routes: &HashMap<String, TickRoute>,
    metrics: &Metrics,
) -> FastMap<String, Route> {
    routes
        .iter()
        .map(|(symbol, ticks)| {
            let healthy = metrics
                .health
                .feed_symbol_healthy
                .with_label_values(&[symbol.as_str()]);
            let ticks = ticks.clone();
            (symbol.clone(), Route { ticks, healthy })
        })
        .collect()
}

/// `bizra_ingest_frames_total`'s counter of each stream kind, by `StreamKind::index`.
fn frame_counters(metrics: &Metrics) -> [prometheus::IntCounter; StreamKind::COUNT] {
    StreamKind::ALL.map(|k| metrics.ingest_frames_total.with_label_values(&[k.as_str()]))
}

impl Host {
    /// Count a broken input limit.
    fn breach(&self, limit: &str) {
        self.metrics
            .input_limit_breaches_total
            .with_label_values(&[limit])
            .inc();
    }

    fn record(&mut self, write: impl FnOnce(&mut ConnectionWriter) -> Result<(), RecordingError>) {
        let Some(w) = &mut self.recorder else {
            return;
        };
        if let Err(e) = write(w) {
            tracing::error!(error = %e, "input recording failed: it stops here, and audit-replay will not re-derive what follows");
            self.metrics.recording_errors_total.inc();
            self.recorder = None;
        }
    }
    /// Carry out the step's outputs; make each REST request it asks for and hand the
    /// answer back, until the frame is finished.
    async fn drive(
        &mut self,
        step: &mut FeedStep,
        outputs: &mut Vec<FeedOutput>,
    ) -> Result<(), PipelineError> {
        loop {
            let mut fetch = None;
            for output in outputs.drain(..) {
                match output {
                    FeedOutput::Deliver(tick) => self.deliver(tick).await?,
                    FeedOutput::Fetch(request) => fetch = Some(request),
                    other => self.note(other),
                }
            }
            let Some(request) = fetch else {
                return Ok(());
            };
            let rest = Taping::new(self.rest.clone());
            let asked = request.clone();
            let (answer, gets) = tokio::task::spawn_blocking(move || {
                let answer = fetch::answer(asked, &rest);
                (answer, rest.take())
            })
            .await
            .unwrap_or_else(|e| {
                let answer = fetch::failed(&request, format!("fetch task failed: {e}"));
                (answer, Vec::new())
            });
            let used_ns = crate::clock::system_now_ns();
            let used_ms = crate::clock::ns_to_ms(used_ns);
            self.record(|w| w.rest(used_ns, &RestUse { used_ms, gets }));
            step.on_fetched(answer, used_ms, outputs);
        }
    }

    async fn deliver(&mut self, tick: FeedTick) -> Result<(), PipelineError> {
        let Some(route) = self.routes.get(tick.event.symbol()) else {
            return Ok(());
        };
        route.healthy.set(i64::from(tick.feed_healthy));
        if self.first_event_pending {
            self.first_event_pending = false;
            if self.reconnect_to_first_event_us.len() >= 64 {
                self.reconnect_to_first_event_us.remove(0);
            }
            if let Some(at) = self.dropped_at {
                self.reconnect_to_first_event_us
                    .push(at.elapsed().as_micros() as u64);
            }
        }
        // Only trades feed the models; quotes count for the feed's health (above).
        if !matches!(tick.event, crate::market::MarketEvent::Trade(_)) {
            return Ok(());
        }
        route
            .ticks
            .deliver(Tick {
                event: tick.event,
                received_at_ms: tick.received_at_ms,
                arrived: Instant::now(),
                feed_healthy: tick.feed_healthy,
                input: tick.input,
            })
            .await
    }

    /// Metrics and logs for everything but ticks and fetches.
    fn note(&mut self, output: FeedOutput) {
        let m = &self.metrics;
        match output {
            FeedOutput::Deliver(_) | FeedOutput::Fetch(_) => {}
            FeedOutput::Accepted { kind, count } => {
                self.frames_accepted[kind.index()].inc_by(count)
            }
            FeedOutput::Rejected {
                code,
                detail,
                bytes,
            } => {
                m.ingest_rejected_total.with_label_values(&[code]).inc();
                tracing::warn!(reason = code, bytes, error = %detail, "market data frame rejected");
            }
            FeedOutput::Quarantined {
                code,
                symbol,
                detail,
            } => {
                m.ingest_rejected_total.with_label_values(&[code]).inc();
                tracing::warn!(reason = code, %symbol, event = %detail, "implausible market event quarantined");
                if let Some(q) = &mut self.quarantine {
                    q.record(code, &symbol, &detail, crate::clock::system_now_ms());
                }
            }
            FeedOutput::TradeGap {
                symbol,
                aggregate,
                first,
                last,
                filled,
            } => {
                let what = if aggregate { "aggTrade" } else { "trade" };
                let wanted = last.saturating_sub(first).saturating_add(1);
                let h = &m.health;
                h.feed_trades_backfilled_total
                    .with_label_values(&[&symbol])
                    .inc_by(filled.min(wanted));
                h.feed_trades_missing_total
                    .with_label_values(&[&symbol])
                    .inc_by(wanted.saturating_sub(filled));
                if filled > last - first {
                    tracing::info!(%symbol, stream = what, first, last, filled, "ID gap filled from REST");
                } else {
                    tracing::warn!(%symbol, stream = what, first, last, filled, "ID gap: items missing from the stream");
                }
            }
            FeedOutput::DepthSync { symbol, event } => {
                m.feed_depth_sync_total
                    .with_label_values(&[event.label()])
                    .inc();
                match event {
                    DepthSyncEvent::Gap { expected, got } => {
                        tracing::warn!(%symbol, expected, got, "depth updates lost: book out of step, resyncing")
                    }
                    DepthSyncEvent::Crossed => {
                        tracing::warn!(%symbol, "local book crossed: resyncing")
                    }
                    DepthSyncEvent::SnapshotLoaded => {}
                    DepthSyncEvent::SnapshotUnbridged { last_update_id } => {
                        tracing::info!(%symbol, last_update_id, "depth snapshot cannot be bridged yet")
                    }
                    DepthSyncEvent::SnapshotFailed { error, retry_in_ms } => {
                        tracing::warn!(%symbol, %error, retry_in_ms, "depth snapshot failed")
                    }
                }
            }
            FeedOutput::BookInSync { symbol, in_sync } => m
                .feed_book_in_sync
                .with_label_values(&[&symbol])
                .set(i64::from(in_sync)),
            FeedOutput::ClockSkew {
                symbol,
                skew_ms,
                over_threshold,
            } => {
                m.feed_clock_skew_seconds.observe(skew_ms as f64 / 1000.0);
                if over_threshold {
                    tracing::warn!(%symbol, skew_ms, "clock skew above threshold (local receive time minus exchange event time)");
                }
            }
            FeedOutput::ServerShutdown => {
                self.rotate_now = true;
                tracing::info!("serverShutdown notice: replacing the connection");
            }
        }
    }
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
