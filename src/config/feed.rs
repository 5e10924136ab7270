//! `[feed]`: the market-data connection, REST, feed health and plausibility.

use super::*;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnServerClose {
    Reconnect,
    Stop,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    pub url: String,
    pub streams: Vec<String>,
    pub max_frame_bytes: usize,
    /// The WebSocket layer refuses a message or frame larger than this and the connection
    /// is replaced (counted as `ws_message_bytes`). Frames between `max_frame_bytes` and
    /// this are read, refused and counted, and the connection survives them.
    pub max_ws_message_bytes: usize,
    /// A connection that delivers more messages than this in one second is misbehaving:
    /// it is closed and replaced (counted as `ws_messages_per_s`). 0: no limit.
    pub max_messages_per_s: u32,
    /// PEM bundle of the certificate authorities trusted for `wss://` and `https://`
    /// (instead of the built-in Mozilla roots); empty: the built-in roots.
    pub ca_file: PathBuf,
    pub connect_timeout_ms: u64,
    pub reconnect_initial_backoff_ms: u64,
    pub reconnect_max_backoff_ms: u64,
    pub on_server_close: OnServerClose,
    pub mailbox_capacity: usize,
    /// Warn when local receive time minus exchange event time exceeds this (live clock).
    pub clock_skew_warn_ms: i64,
    /// Connection attempts allowed per window (Binance: 300 per 5 minutes per IP).
    pub max_connects_per_window: usize,
    pub connect_window_s: u64,
    /// A connection that delivers no frame for this long is dead and is replaced.
    pub idle_timeout_ms: u64,
    /// Replace a connection this old before the server cuts it (Binance: 24 h), opening
    /// the replacement first (make-before-break); also done at once on `serverShutdown`.
    pub rotate_after_s: u64,
    /// After the replacement is open, how long the old connection may still deliver what
    /// it has before the switch.
    pub rotate_drain_ms: u64,
    /// Streams per WebSocket connection (Binance allows 1024); more symbols are sharded
    /// across connections.
    pub max_streams_per_connection: usize,
    /// Streams named in the connection URL; a connection's other streams are subscribed
    /// with `SUBSCRIBE` messages once it is open (a URL of many streams is too long).
    pub url_max_streams: usize,
    /// Streams per `SUBSCRIBE` message, and messages per second (Binance closes a
    /// connection that sends more than 5 messages a second, pongs included).
    pub subscribe_batch_streams: usize,
    pub subscribe_messages_per_s: u32,
    /// REST base URL (klines, historical trades); empty derives it from `url`.
    pub rest_url: String,
    /// Timeout of one REST request made while streaming (gap backfill, depth snapshot);
    /// ingest waits for it, so it is kept short.
    pub rest_timeout_ms: u64,
    /// Request weight the engine spends per minute at its REST base, all connections and
    /// the warm start together (Binance allows 6 000 per IP); a request over it is not
    /// sent and is retried by its caller's back-off. Older configurations lack it: 5000.
    #[serde(default = "default_rest_weight_per_minute")]
    pub rest_weight_per_minute: u32,
    /// Fetch trades missing from the stream (trade-ID gaps) from the REST endpoint.
    pub backfill_gaps: bool,
    /// At most this many trades are fetched for one gap; the rest is reported missing.
    pub backfill_max_trades: u64,
    /// A symbol whose subscribed streams have not all delivered within this is stale.
    pub stale_after_ms: i64,
    /// After trades are lost for good, the symbol stays unhealthy this long.
    pub gap_unhealthy_ms: i64,
    /// Levels per side asked of `GET /api/v3/depth` when the local book is (re)synced.
    pub depth_snapshot_limit: usize,
    /// The local book keeps at most this many levels per side (the farthest are dropped).
    pub max_book_levels: usize,
    /// Plausibility: a trade or quote further than this from the symbol's last good price
    /// (percent) is believed only when REST (or several consistent events) confirms it.
    pub max_price_deviation_pct: f64,
    /// An event time further ahead of / behind the stream's clock than this is refused.
    pub max_event_ahead_ms: i64,
    pub max_event_behind_ms: i64,
    /// A trade-ID jump larger than this is confirmed over REST before it is believed.
    pub max_trade_id_jump: u64,
    /// Without REST, this many consistent events in a row confirm a new level or range.
    pub confirm_events: u32,
}

fn default_rest_weight_per_minute() -> u32 {
    5000
}

impl FeedConfig {
    /// The REST base URL: `rest_url`, else the one that belongs to `url`.
    pub fn rest_base(&self) -> String {
        if self.rest_url.is_empty() {
            crate::market::rest::rest_base_for_feed(&self.url)
        } else {
            self.rest_url.clone()
        }
    }
}

impl Config {
    /// Problems of `[feed]`.
    pub(super) fn feed_problems(&self, check: &mut impl FnMut(bool, String)) {
        check(
            (self.feed.max_frame_bytes..=64 * 1024 * 1024)
                .contains(&self.feed.max_ws_message_bytes),
            format!(
                "feed.max_ws_message_bytes must be in feed.max_frame_bytes..=67108864, got {}",
                self.feed.max_ws_message_bytes
            ),
        );
        if let Err(e) = crate::market::tls::load(&self.feed.ca_file) {
            check(false, e.to_string());
        }
        check(
            self.feed.url.starts_with("ws://") || self.feed.url.starts_with("wss://"),
            format!(
                "feed.url must start with ws:// or wss://, got {:?}",
                self.feed.url
            ),
        );
        check(
            !self.feed.streams.is_empty(),
            "feed.streams must not be empty".into(),
        );
        for s in &self.feed.streams {
            check(
                crate::market::StreamKind::from_suffix(s).is_some(),
                format!("feed.streams: unsupported stream {s:?} (supported: trade, aggTrade, bookTicker, depth@100ms)"),
            );
        }
        check(
            self.feed
                .streams
                .iter()
                .any(|s| s == "trade" || s == "aggTrade"),
            "feed.streams must include \"trade\" or \"aggTrade\" (VaR is computed from trades)"
                .into(),
        );
        check(
            (256..=16 * 1024 * 1024).contains(&self.feed.max_frame_bytes),
            format!(
                "feed.max_frame_bytes must be in 256..=16777216, got {}",
                self.feed.max_frame_bytes
            ),
        );
        check(
            self.feed.connect_timeout_ms > 0,
            "feed.connect_timeout_ms must be > 0".into(),
        );
        check(
            self.feed.reconnect_initial_backoff_ms > 0
                && self.feed.reconnect_initial_backoff_ms <= self.feed.reconnect_max_backoff_ms,
            "feed.reconnect_initial_backoff_ms must be > 0 and <= feed.reconnect_max_backoff_ms"
                .into(),
        );
        check(
            self.feed.rest_weight_per_minute >= 1,
            "feed.rest_weight_per_minute must be at least 1".into(),
        );
        check(
            (1..=1_000_000).contains(&self.feed.mailbox_capacity),
            format!(
                "feed.mailbox_capacity must be in 1..=1000000, got {}",
                self.feed.mailbox_capacity
            ),
        );
        check(
            (1..=300).contains(&self.feed.max_connects_per_window) && self.feed.connect_window_s > 0,
            format!(
                "feed.max_connects_per_window must be in 1..=300 (Binance's limit) and feed.connect_window_s > 0, got {} / {}",
                self.feed.max_connects_per_window, self.feed.connect_window_s
            ),
        );
        check(
            (1..=1024).contains(&self.feed.max_streams_per_connection)
                && self.feed.streams.len() <= self.feed.max_streams_per_connection,
            "feed.max_streams_per_connection must be in 1..=1024 (Binance's limit) and hold one symbol's streams".into(),
        );
        check(
            self.feed.url_max_streams >= 1
                && (1..=1024).contains(&self.feed.subscribe_batch_streams)
                && (1..=4).contains(&self.feed.subscribe_messages_per_s),
            format!(
                "feed.url_max_streams must be >= 1, feed.subscribe_batch_streams in 1..=1024 and \
                 feed.subscribe_messages_per_s in 1..=4 (Binance allows 5 messages a second, pongs \
                 included), got {} / {} / {}",
                self.feed.url_max_streams,
                self.feed.subscribe_batch_streams,
                self.feed.subscribe_messages_per_s
            ),
        );
        check(
            self.feed.rotate_after_s >= 1 && self.feed.rotate_drain_ms >= 1,
            "feed.rotate_after_s and feed.rotate_drain_ms must be >= 1".into(),
        );
        check(
            self.feed.idle_timeout_ms >= 1000,
            format!(
                "feed.idle_timeout_ms must be >= 1000, got {}",
                self.feed.idle_timeout_ms
            ),
        );
        check(
            self.feed.stale_after_ms > 0 && self.feed.gap_unhealthy_ms >= 0,
            "feed.stale_after_ms must be > 0 and feed.gap_unhealthy_ms >= 0".into(),
        );
        check(
            (100..=60_000).contains(&self.feed.rest_timeout_ms),
            format!(
                "feed.rest_timeout_ms must be in 100..=60000, got {}",
                self.feed.rest_timeout_ms
            ),
        );
        check(
            crate::market::rest::DEPTH_LIMITS.contains(&self.feed.depth_snapshot_limit),
            format!(
                "feed.depth_snapshot_limit must be one of Binance's {:?}, got {}",
                crate::market::rest::DEPTH_LIMITS,
                self.feed.depth_snapshot_limit
            ),
        );
        check(
            (5..=100_000).contains(&self.feed.max_book_levels),
            "feed.max_book_levels must be in 5..=100000".into(),
        );
        check(
            (1..=100_000).contains(&self.feed.backfill_max_trades),
            "feed.backfill_max_trades must be in 1..=100000".into(),
        );
        check(
            self.feed.clock_skew_warn_ms > 0,
            "feed.clock_skew_warn_ms must be > 0".into(),
        );
        check(
            self.feed.max_price_deviation_pct > 0.0 && self.feed.max_price_deviation_pct <= 1000.0,
            format!(
                "feed.max_price_deviation_pct must be in (0, 1000], got {}",
                self.feed.max_price_deviation_pct
            ),
        );
        check(
            self.feed.max_event_ahead_ms >= 100 && self.feed.max_event_behind_ms >= 100,
            "feed.max_event_ahead_ms and feed.max_event_behind_ms must be >= 100".into(),
        );
        check(
            self.feed.max_trade_id_jump >= 1,
            "feed.max_trade_id_jump must be >= 1".into(),
        );
        check(
            (1..=100).contains(&self.feed.confirm_events),
            "feed.confirm_events must be in 1..=100".into(),
        );
    }
}
