//! The feed step of one market-data connection: frames and REST answers in, ticks to
//! deliver, REST requests to make, rejections and quarantined events out. It holds the
//! feed's policy (plausibility, trade-ID continuity and backfill, depth-book sync, health,
//! clock skew, the engine clock under `event_time`) and no I/O, clock or thread: the host
//! (the ingest actor, a replay) reads the socket, makes the requests and routes the ticks.
//!
//! Protocol: after an output `Fetch`, the host answers with [`FeedStep::on_fetched`]
//! before it hands in the next frame; the frame that caused the fetch is finished then.

pub mod books;
pub mod digest;
pub mod guard;
pub mod report;

use crate::fast_hash::FastSet;

use books::{Books, DepthSyncEvent};
use digest::{InputDigest, InputMark};
use guard::{Guard, Implausible, PlausibilitySettings};
pub use report::IngestReport;

use super::binance::is_server_shutdown;
use super::depth::{DepthSnapshot, DepthUpdate};
use super::health::FeedHealth;
use super::sequence::{TradeOrder, TradeSequence};
use super::skew::ClockSkew;
use super::{parse_combined, BookTicker, MarketDataError, MarketEvent, StreamKind, Symbol, Trade};

/// Where the engine's "now" comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// The host's receive time of each frame (live).
    Receive,
    /// The newest accepted trade time (replays): advanced only by accepted events.
    Event,
}

/// The step's settings, as plain values (the host builds them from its configuration).
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// Subscribed stream kinds; with `trade` among them aggregates are only checked.
    pub streams: Vec<StreamKind>,
    pub time: TimeSource,
    pub max_frame_bytes: usize,
    pub stale_after_ms: i64,
    pub gap_unhealthy_ms: i64,
    /// Fetch trades missing from the stream, at most `backfill_max_trades` per gap, and
    /// confirm implausible trades over REST.
    pub backfill_gaps: bool,
    pub backfill_max_trades: u64,
    pub clock_skew_warn_ms: i64,
    pub depth_snapshot_limit: usize,
    pub max_book_levels: usize,
    pub plausibility: PlausibilitySettings,
}

/// A market event for the symbol's step.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedTick {
    /// A trade (aggregates that drive the models arrive as trades) or a quote.
    pub event: MarketEvent,
    /// Engine time of the tick: the decision time of what it closes.
    pub received_at_ms: i64,
    pub feed_healthy: bool,
    /// The connection's input digest once this tick's input was consumed (trades: a trade
    /// may close a bar, whose decisions carry it; quotes close none).
    pub input: Option<InputMark>,
}

/// A REST request the host makes, then answers with [`FeedStep::on_fetched`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchRequest {
    /// Trades (or aggregates) `first..=last` by ID, paged by the host
    /// (`historicalTrades` / `aggTrades`); fewer when the endpoint has fewer.
    Trades {
        aggregate: bool,
        symbol: Symbol,
        first: u64,
        last: u64,
    },
    /// `GET /api/v3/depth` for `symbol`.
    DepthSnapshot { symbol: Symbol, limit: usize },
}

/// A trade from REST with its continuity ID (trade ID, or aggregate ID for aggregates).
#[derive(Debug, Clone, PartialEq)]
pub struct IdTrade {
    pub id: u64,
    pub trade: Trade,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FetchAnswer {
    Trades(Result<Vec<IdTrade>, String>),
    DepthSnapshot(Result<DepthSnapshot, String>),
}

/// What the step asks of its host.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedOutput {
    Deliver(FeedTick),
    /// Make this request and answer it before the next frame.
    Fetch(FetchRequest),
    /// `count` events of `kind` were accepted (metrics).
    Accepted {
        kind: StreamKind,
        count: u64,
    },
    /// A frame that could not be used (malformed, unknown symbol, oversized…).
    Rejected {
        code: &'static str,
        detail: String,
        bytes: usize,
    },
    /// A well-formed event that is not believed: recorded for auditors, never delivered.
    Quarantined {
        code: &'static str,
        symbol: Symbol,
        detail: String,
    },
    /// Trades (or aggregates) `first..=last` were missing from the stream; `filled` of
    /// them were fetched and delivered before the trade that revealed the gap.
    TradeGap {
        symbol: Symbol,
        aggregate: bool,
        first: u64,
        last: u64,
        filled: u64,
    },
    DepthSync {
        symbol: Symbol,
        event: DepthSyncEvent,
    },
    BookInSync {
        symbol: Symbol,
        in_sync: bool,
    },
    /// Receive time minus exchange time of a trade (live clock only).
    ClockSkew {
        symbol: Symbol,
        skew_ms: i64,
        over_threshold: bool,
    },
    /// Binance's `serverShutdown` notice: replace the connection.
    ServerShutdown,
}

/// The host handed in a frame while a fetch was unanswered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a REST request is unanswered: call on_fetched first")]
pub struct FetchPending;

/// A trade or aggregate on its way through the checks.
#[derive(Debug, Clone)]
struct Item {
    aggregate: bool,
    /// Continuity ID: trade ID, or aggregate ID.
    id: u64,
    /// The trade as the models see it.
    trade: Trade,
    received_ms: i64,
}

/// The continuation of a frame while its REST request is out.
#[derive(Debug)]
enum Waiting {
    Confirm {
        item: Item,
        gap: Option<(u64, u64)>,
        id_jump: bool,
        price_off: bool,
    },
    Backfill {
        item: Item,
        first: u64,
        last: u64,
    },
    Snapshot {
        symbol: Symbol,
        received_ms: i64,
    },
}

pub struct FeedStep {
    settings: FeedSettings,
    symbols: FastSet<Symbol>,
    aggs_drive_models: bool,
    trades: TradeSequence,
    aggregates: TradeSequence,
    guard: Guard,
    books: Books,
    health: FeedHealth,
    skew: ClockSkew,
    /// Under `TimeSource::Event`: the newest accepted trade time.
    event_clock_ms: i64,
    waiting: Option<Waiting>,
    report: IngestReport,
    digest: InputDigest,
}

/// Equal up to the last digits of a decimal string's parse.
fn same_number(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

impl FeedStep {
    /// A step for one connection carrying `symbols`.
    pub fn new(settings: FeedSettings, symbols: &[String]) -> Self {
        let aggs_drive_models = !settings.streams.contains(&StreamKind::Trade);
        Self {
            health: FeedHealth::new(
                settings.streams.clone(),
                settings.stale_after_ms,
                settings.gap_unhealthy_ms,
            ),
            skew: ClockSkew::new(settings.clock_skew_warn_ms),
            guard: Guard::new(settings.plausibility),
            books: Books::new(settings.max_book_levels),
            symbols: symbols.iter().map(|s| Symbol::from(s.as_str())).collect(),
            aggs_drive_models,
            trades: TradeSequence::default(),
            aggregates: TradeSequence::default(),
            event_clock_ms: 0,
            waiting: None,
            report: IngestReport::default(),
            digest: InputDigest::new(0),
            settings,
        }
    }

    /// A step for connection number `connection` of a run (its input marks name it).
    pub fn for_connection(settings: FeedSettings, symbols: &[String], connection: u32) -> Self {
        let mut step = Self::new(settings, symbols);
        step.digest = InputDigest::new(connection);
        step
    }

    /// Where this connection's input stands.
    pub fn input_mark(&self) -> InputMark {
        self.digest.mark()
    }

    /// The counters so far (the host adds its own connection figures).
    pub fn report(&self) -> IngestReport {
        let mut r = self.report.clone();
        r.clock_skew = self.skew.summary();
        r.books_out_of_sync = self.books.out_of_sync();
        r
    }

    /// The receive time, when it is the engine's clock (live).
    fn live(&self, received_ms: i64) -> Option<i64> {
        (self.settings.time == TimeSource::Receive).then_some(received_ms)
    }

    /// Engine time for an event received at `received_ms`.
    fn now(&self, received_ms: i64) -> i64 {
        match self.settings.time {
            TimeSource::Receive => received_ms,
            TimeSource::Event => self.event_clock_ms,
        }
    }

    fn reject(&mut self, err: &MarketDataError, bytes: usize, out: &mut Vec<FeedOutput>) {
        *self.report.rejected.entry(err.code()).or_default() += 1;
        out.push(FeedOutput::Rejected {
            code: err.code(),
            detail: err.to_string(),
            bytes,
        });
    }

    fn quarantine(
        &mut self,
        why: Implausible,
        symbol: &str,
        detail: String,
        out: &mut Vec<FeedOutput>,
    ) {
        *self.report.quarantined.entry(why.code()).or_default() += 1;
        out.push(FeedOutput::Quarantined {
            code: why.code(),
            symbol: symbol.into(),
            detail,
        });
    }

    fn accepted(&mut self, kind: StreamKind, count: u64, out: &mut Vec<FeedOutput>) {
        if count > 0 {
            *self.report.accepted.entry(kind.as_str()).or_default() += count;
            out.push(FeedOutput::Accepted { kind, count });
        }
    }

    /// A binary WebSocket message, where Binance sends text.
    pub fn on_binary_frame(&mut self, bytes: usize, out: &mut Vec<FeedOutput>) {
        self.digest.binary(bytes);
        self.report.frames += 1;
        self.reject(&MarketDataError::BinaryFrame, bytes, out);
    }

    /// One text frame received at `received_ms` (the host's wall clock).
    pub fn on_frame(
        &mut self,
        text: &str,
        received_ms: i64,
        out: &mut Vec<FeedOutput>,
    ) -> Result<(), FetchPending> {
        let parsed = self.parse(text);
        self.on_parsed(text, parsed, received_ms, out)
    }

    /// The parse of a text frame, `None` when it is too large to be parsed at all. A host
    /// that times parsing apart from the step calls this, then [`Self::on_parsed`].
    pub fn parse(&self, text: &str) -> Option<Result<MarketEvent, MarketDataError>> {
        (text.len() <= self.settings.max_frame_bytes).then(|| parse_combined(text))
    }

    /// A text frame and its [`Self::parse`].
    pub fn on_parsed(
        &mut self,
        text: &str,
        parsed: Option<Result<MarketEvent, MarketDataError>>,
        received_ms: i64,
        out: &mut Vec<FeedOutput>,
    ) -> Result<(), FetchPending> {
        if self.waiting.is_some() {
            return Err(FetchPending);
        }
        self.digest.frame(text, self.live(received_ms));
        self.report.frames += 1;
        let Some(parsed) = parsed else {
            let err = MarketDataError::Oversized {
                size: text.len(),
                limit: self.settings.max_frame_bytes,
            };
            self.reject(&err, text.len(), out);
            return Ok(());
        };
        let event = match parsed {
            Ok(e) => e,
            Err(_) if is_server_shutdown(text) => {
                self.report.server_shutdowns += 1;
                out.push(FeedOutput::ServerShutdown);
                return Ok(());
            }
            Err(e) => {
                self.reject(&e, text.len(), out);
                return Ok(());
            }
        };
        if !self.symbols.contains(event.symbol()) {
            let err = MarketDataError::UnknownSymbol(event.symbol().to_string());
            self.reject(&err, text.len(), out);
            return Ok(());
        }
        match event {
            MarketEvent::Trade(trade) => {
                let item = Item {
                    aggregate: false,
                    id: trade.trade_id,
                    trade,
                    received_ms,
                };
                self.on_item(item, out);
            }
            MarketEvent::AggTrade(a) => {
                let item = Item {
                    aggregate: true,
                    id: a.agg_id,
                    trade: a.as_trade(),
                    received_ms,
                };
                self.on_item(item, out);
            }
            MarketEvent::BookTicker(quote) => self.on_quote(quote, received_ms, out),
            MarketEvent::Depth(update) => self.on_depth(update, received_ms, out),
        }
        Ok(())
    }

    /// The answer to the last `Fetch`, received at `received_ms`.
    pub fn on_fetched(&mut self, answer: FetchAnswer, received_ms: i64, out: &mut Vec<FeedOutput>) {
        self.digest.answer(&answer, self.live(received_ms));
        match (self.waiting.take(), answer) {
            (
                Some(Waiting::Confirm {
                    item,
                    gap,
                    id_jump,
                    price_off,
                }),
                FetchAnswer::Trades(found),
            ) => match found {
                Ok(list) => {
                    let confirmed = list.iter().any(|t| {
                        t.id == item.id
                            && same_number(t.trade.price, item.trade.price)
                            && same_number(t.trade.qty, item.trade.qty)
                    });
                    if confirmed {
                        self.proceed(item, gap, out);
                    } else {
                        let why = if id_jump {
                            Implausible::TradeId
                        } else {
                            Implausible::Price
                        };
                        let detail = format!("{:?}; not in the exchange's history", item.trade);
                        self.quarantine(why, &item.trade.symbol.clone(), detail, out);
                    }
                }
                Err(_) => self.unconfirmed(item, gap, id_jump, price_off, out),
            },
            (Some(Waiting::Backfill { item, first, last }), FetchAnswer::Trades(found)) => {
                let fetched = found.unwrap_or_default();
                self.finish(item, Some((first, last)), fetched, out);
            }
            (
                Some(Waiting::Snapshot {
                    symbol,
                    received_ms: at,
                }),
                FetchAnswer::DepthSnapshot(snapshot),
            ) => {
                let mut events = Vec::new();
                self.books
                    .on_snapshot(&symbol, snapshot, received_ms, &mut events);
                self.depth_events(&symbol, events, out);
                self.finish_depth(&symbol, at, out);
            }
            // An answer to another question (a host bug): the frame is finished as if
            // the request had failed, so nothing is held for ever.
            (Some(Waiting::Confirm { item, gap, .. }), _) => {
                self.finish(item, gap, Vec::new(), out)
            }
            (Some(Waiting::Backfill { item, first, last }), _) => {
                self.finish(item, Some((first, last)), Vec::new(), out)
            }
            (
                Some(Waiting::Snapshot {
                    symbol,
                    received_ms,
                }),
                _,
            ) => self.finish_depth(&symbol, received_ms, out),
            (None, _) => {}
        }
    }

    fn on_item(&mut self, item: Item, out: &mut Vec<FeedOutput>) {
        let symbol = item.trade.symbol.clone();
        if item.trade.qty <= 0.0 {
            return self.quarantine(
                Implausible::ZeroQuantity,
                &symbol,
                format!("{:?}", item.trade),
                out,
            );
        }
        if let Err(why) = self
            .guard
            .check_time(item.trade.event_time_ms, self.live(item.received_ms))
        {
            let detail = format!(
                "{:?}; stream clock {:?}",
                item.trade,
                self.guard.stream_ms()
            );
            return self.quarantine(why, &symbol, detail, out);
        }
        let sequence = if item.aggregate {
            &self.aggregates
        } else {
            &self.trades
        };
        let gap = match sequence.classify(&symbol, item.id) {
            TradeOrder::Duplicate => {
                if item.aggregate {
                    self.report.duplicate_agg_trades += 1;
                } else {
                    self.report.duplicate_trades += 1;
                }
                return;
            }
            TradeOrder::Next => None,
            TradeOrder::Gap { first, last } => Some((first, last)),
        };
        let id_jump = gap.is_some_and(|(f, l)| l - f >= self.settings.plausibility.max_id_jump);
        let price_off = !self.guard.price_in_band(&symbol, item.trade.price);
        if !id_jump && !price_off {
            return self.proceed(item, gap, out);
        }
        if self.settings.backfill_gaps {
            out.push(FeedOutput::Fetch(FetchRequest::Trades {
                aggregate: item.aggregate,
                symbol,
                first: item.id,
                last: item.id,
            }));
            self.waiting = Some(Waiting::Confirm {
                item,
                gap,
                id_jump,
                price_off,
            });
        } else {
            self.unconfirmed(item, gap, id_jump, price_off, out);
        }
    }

    /// An implausible item REST could not confirm: believed only when the stream itself
    /// confirms it (several consistent events in a row).
    fn unconfirmed(
        &mut self,
        item: Item,
        gap: Option<(u64, u64)>,
        id_jump: bool,
        price_off: bool,
        out: &mut Vec<FeedOutput>,
    ) {
        let symbol = item.trade.symbol.clone();
        let id_ok = !id_jump || self.guard.id_by_consensus(&symbol, item.aggregate, item.id);
        let price_ok = !price_off || self.guard.price_by_consensus(&symbol, item.trade.price);
        if id_ok && price_ok {
            self.proceed(item, gap, out);
        } else {
            let why = if id_ok {
                Implausible::Price
            } else {
                Implausible::TradeId
            };
            let detail = format!("{:?}; not confirmed", item.trade);
            self.quarantine(why, &symbol, detail, out);
        }
    }

    /// A believed item: fill its gap first when its kind drives the models.
    fn proceed(&mut self, item: Item, gap: Option<(u64, u64)>, out: &mut Vec<FeedOutput>) {
        let drives = !item.aggregate || self.aggs_drive_models;
        match gap {
            Some((first, last)) if self.settings.backfill_gaps && drives => {
                let max = self.settings.backfill_max_trades.max(1);
                out.push(FeedOutput::Fetch(FetchRequest::Trades {
                    aggregate: item.aggregate,
                    symbol: item.trade.symbol.clone(),
                    first,
                    last: last.min(first.saturating_add(max - 1)),
                }));
                self.waiting = Some(Waiting::Backfill { item, first, last });
            }
            _ => self.finish(item, gap, Vec::new(), out),
        }
    }

    /// Accept `item`: deliver the usable backfilled trades of its gap in ID order, then it.
    fn finish(
        &mut self,
        item: Item,
        gap: Option<(u64, u64)>,
        fetched: Vec<IdTrade>,
        out: &mut Vec<FeedOutput>,
    ) {
        let symbol = item.trade.symbol.clone();
        let drives = !item.aggregate || self.aggs_drive_models;
        let kind = if item.aggregate {
            StreamKind::AggTrade
        } else {
            StreamKind::Trade
        };
        if item.aggregate {
            self.aggregates.accept(&symbol, item.id);
        } else {
            self.trades.accept(&symbol, item.id);
        }
        self.guard.accept_id(&symbol, item.aggregate);
        if let Some((first, last)) = gap {
            let mut next = first;
            let mut filled = 0u64;
            for f in fetched {
                let t = f.trade;
                // Strictly increasing, inside the gap, usable; whatever the endpoint sent.
                if f.id < next
                    || f.id > last
                    || t.symbol != symbol
                    || !(t.price > 0.0 && t.price.is_finite() && t.qty.is_finite())
                    || t.qty < 0.0
                {
                    continue;
                }
                next = f.id.saturating_add(1);
                filled += 1;
                // The time the trade would have had live, whatever the other symbols of
                // the connection did meanwhile: its own (never past the trade that
                // revealed the gap) under event time, the revealing frame's receipt under
                // the live clock.
                let own = t.event_time_ms.min(item.trade.event_time_ms);
                let received_at_ms = match self.settings.time {
                    TimeSource::Event => own,
                    TimeSource::Receive => item.received_ms,
                };
                if self.settings.time == TimeSource::Event && drives {
                    self.event_clock_ms = self.event_clock_ms.max(own);
                }
                self.guard.accept_price(&symbol, t.price);
                out.push(FeedOutput::Deliver(FeedTick {
                    event: MarketEvent::Trade(t),
                    received_at_ms,
                    feed_healthy: true,
                    input: Some(self.digest.mark()),
                }));
            }
            self.accepted(kind, filled, out);
            let missing = last - first + 1;
            if item.aggregate {
                self.report.agg_trade_gaps += 1;
                self.report.backfilled_agg_trades += filled;
                self.report.missing_agg_trades += missing.saturating_sub(filled);
            } else {
                self.report.trade_gaps += 1;
                self.report.backfilled_trades += filled;
                self.report.missing_trades += missing.saturating_sub(filled);
            }
            // Only lost trades that feed the models make the symbol unhealthy.
            if filled < missing && drives {
                let now = self.now(item.received_ms);
                self.health.gap_unfilled(&symbol, now);
            }
            out.push(FeedOutput::TradeGap {
                symbol: symbol.clone(),
                aggregate: item.aggregate,
                first,
                last,
                filled,
            });
        }
        self.guard.accept_time(item.trade.event_time_ms);
        if drives {
            self.guard.accept_price(&symbol, item.trade.price);
            if self.settings.time == TimeSource::Event {
                self.event_clock_ms = self.event_clock_ms.max(item.trade.event_time_ms);
            }
        }
        if !item.aggregate && self.settings.time == TimeSource::Receive {
            let skew_ms = item.received_ms - item.trade.event_time_ms;
            let over_threshold = self
                .skew
                .observe(item.received_ms, item.trade.event_time_ms);
            out.push(FeedOutput::ClockSkew {
                symbol: symbol.clone(),
                skew_ms,
                over_threshold,
            });
        }
        let now = self.now(item.received_ms);
        self.health.seen(&symbol, kind, now);
        let feed_healthy = self.health.healthy(&symbol, now);
        self.accepted(kind, 1, out);
        if !drives {
            return;
        }
        self.report.unhealthy_ticks += u64::from(!feed_healthy);
        out.push(FeedOutput::Deliver(FeedTick {
            event: MarketEvent::Trade(item.trade),
            received_at_ms: now,
            feed_healthy,
            input: Some(self.digest.mark()),
        }));
    }

    fn on_quote(&mut self, quote: BookTicker, received_ms: i64, out: &mut Vec<FeedOutput>) {
        let symbol = quote.symbol.as_str();
        let mid = 0.5 * (quote.bid_price + quote.ask_price);
        let in_band = self
            .guard
            .prices_in_band(symbol, [quote.bid_price, quote.ask_price].into_iter());
        if !in_band && !self.guard.price_by_consensus(symbol, mid) {
            return self.quarantine(Implausible::Price, symbol, format!("{quote:?}"), out);
        }
        if !in_band {
            self.guard.accept_price(symbol, mid);
        }
        let now = self.now(received_ms);
        self.health.seen(symbol, StreamKind::BookTicker, now);
        let feed_healthy = self.health.healthy(symbol, now);
        self.report.unhealthy_ticks += u64::from(!feed_healthy);
        self.accepted(StreamKind::BookTicker, 1, out);
        out.push(FeedOutput::Deliver(FeedTick {
            event: MarketEvent::BookTicker(quote),
            received_at_ms: now,
            feed_healthy,
            input: None,
        }));
    }

    fn on_depth(&mut self, update: DepthUpdate, received_ms: i64, out: &mut Vec<FeedOutput>) {
        let symbol = update.symbol.clone();
        if let Err(why) = self
            .guard
            .check_time(update.event_time_ms, self.live(received_ms))
        {
            let detail = format!(
                "depth update {}..={} at {}; stream clock {:?}",
                update.first_update_id,
                update.final_update_id,
                update.event_time_ms,
                self.guard.stream_ms()
            );
            return self.quarantine(why, &symbol, detail, out);
        }
        // Passive levels far from the touch are real; a bid far above the market or an
        // ask far below it is not.
        let bids_ok = update
            .bids
            .iter()
            .all(|l| l.qty <= 0.0 || self.guard.level_plausible(&symbol, l.price, true));
        let asks_ok = update
            .asks
            .iter()
            .all(|l| l.qty <= 0.0 || self.guard.level_plausible(&symbol, l.price, false));
        if !(bids_ok && asks_ok) {
            let detail = format!(
                "depth update {}..={} with a level across the market",
                update.first_update_id, update.final_update_id
            );
            return self.quarantine(Implausible::Price, &symbol, detail, out);
        }
        self.guard.accept_time(update.event_time_ms);
        let mut events = Vec::new();
        let wants_snapshot = self.books.on_update(update, received_ms, &mut events);
        self.depth_events(&symbol, events, out);
        if wants_snapshot {
            out.push(FeedOutput::Fetch(FetchRequest::DepthSnapshot {
                symbol: symbol.clone(),
                limit: self.settings.depth_snapshot_limit,
            }));
            self.waiting = Some(Waiting::Snapshot {
                symbol,
                received_ms,
            });
            return;
        }
        self.finish_depth(&symbol, received_ms, out);
    }

    fn depth_events(
        &mut self,
        symbol: &str,
        events: Vec<DepthSyncEvent>,
        out: &mut Vec<FeedOutput>,
    ) {
        for event in events {
            match &event {
                DepthSyncEvent::Gap { .. } => self.report.depth_gaps += 1,
                DepthSyncEvent::Crossed => self.report.depth_crossed += 1,
                DepthSyncEvent::SnapshotLoaded => self.report.depth_snapshots += 1,
                DepthSyncEvent::SnapshotFailed { .. } => self.report.depth_snapshot_failures += 1,
                DepthSyncEvent::SnapshotUnbridged { .. } => {}
            }
            out.push(FeedOutput::DepthSync {
                symbol: symbol.into(),
                event,
            });
        }
    }

    fn finish_depth(&mut self, symbol: &str, received_ms: i64, out: &mut Vec<FeedOutput>) {
        let in_sync = self.books.reliable(symbol);
        out.push(FeedOutput::BookInSync {
            symbol: symbol.into(),
            in_sync,
        });
        self.health.book_in_sync(symbol, in_sync);
        let now = self.now(received_ms);
        self.health.seen(symbol, StreamKind::Depth, now);
        self.accepted(StreamKind::Depth, 1, out);
    }
}

#[cfg(test)]
mod tests;
