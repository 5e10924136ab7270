//! Engine configuration: embedded defaults, an optional file, environment overrides,
//! and one `validate()` that lists every problem at once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::var::fhs::FhsParams;
use crate::var::nig::NigParams;
use crate::var::portfolio_risk::PortfolioModelSettings;
use crate::var::symbol_risk::SymbolModelSettings;
pub use crate::var::PrimaryModel;

fn errors_push(check: &mut impl FnMut(bool, String), message: String) {
    check(false, message);
}

fn nig_problems(n: &NigConfig) -> Vec<String> {
    let mut out = Vec::new();
    if !(n.lambda > 0.0 && n.lambda <= 1.0) {
        out.push(format!("lambda must be in (0, 1], got {}", n.lambda));
    }
    if !n.prior_m0.is_finite() {
        out.push("prior_m0 must be finite".into());
    }
    for (name, value) in [
        ("prior_k0", n.prior_k0),
        ("prior_a0", n.prior_a0),
        ("prior_b0", n.prior_b0),
    ] {
        if !(value > 0.0 && value.is_finite()) {
            out.push(format!("{name} must be finite and > 0, got {value}"));
        }
    }
    out
}

/// The configuration compiled into the binary (`config/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
/// Environment prefix: `BIZRA_KAFKA__BROKERS` sets `kafka.brokers`.
pub const ENV_PREFIX: &str = "BIZRA_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Load(String),
    #[error("invalid configuration ({} problem(s)):\n  - {}", .0.len(), .0.join("\n  - "))]
    Invalid(Vec<String>),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub engine: EngineConfig,
    pub feed: FeedConfig,
    pub bars: BarsConfig,
    pub var: VarConfig,
    pub portfolio: PortfolioConfig,
    pub limits: LimitsConfig,
    pub instruments: Vec<InstrumentConfig>,
    pub elf: ElfConfig,
    pub signing: SigningConfig,
    pub sink: SinkConfig,
    pub kafka: KafkaConfig,
    pub http: HttpConfig,
}

/// The HTTP side: metrics, health, readiness and the dashboard (read-only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port`; empty serves nothing. `run` serves it; `demo` and `replay` do not.
    pub bind: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    /// Wall clock: live trading.
    System,
    /// Time advances with the exchange timestamps of the data: deterministic replays.
    EventTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    pub engine_id: String,
    pub seed: u64,
    pub clock: ClockMode,
    /// After SIGTERM/SIGINT: how long draining (actors, producer) may take before exit.
    pub shutdown_timeout_ms: u64,
}

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
    /// REST base URL (klines, historical trades); empty derives it from `url`.
    pub rest_url: String,
    /// Timeout of one REST request made while streaming (gap backfill, depth snapshot);
    /// ingest waits for it, so it is kept short.
    pub rest_timeout_ms: u64,
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BarsConfig {
    pub interval_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VarConfig {
    pub levels: Vec<f64>,
    pub primary_model: PrimaryModel,
    /// Bars summed by the simulated multi-bar NIG VaR (1 disables it).
    pub horizon_bars: u32,
    pub mc_draws: usize,
    pub credible_level: f64,
    /// Bayesian-bootstrap draws of the FHS credible interval.
    pub bootstrap_draws: usize,
    pub nig: NigConfig,
    pub fhs: FhsConfig,
    pub warm_start: WarmStartConfig,
    pub snapshot: SnapshotConfig,
}

/// Normal-Inverse-Gamma prior and forgetting; see docs/var.md.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NigConfig {
    pub lambda: f64,
    pub prior_m0: f64,
    pub prior_k0: f64,
    pub prior_a0: f64,
    pub prior_b0: f64,
    /// Returns absorbed before the NIG VaR may drive actions.
    pub min_returns: u32,
}

/// Filtered historical simulation; see docs/var.md.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FhsConfig {
    pub lambda: f64,
    pub kappa: f64,
    pub window: usize,
    pub aci_step: f64,
    pub init_returns: usize,
    pub z_start: usize,
    pub t0: usize,
}

/// Per-instrument NIG overrides (unset keys fall back to `[var.nig]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NigOverride {
    pub lambda: Option<f64>,
    pub prior_m0: Option<f64>,
    pub prior_k0: Option<f64>,
    pub prior_a0: Option<f64>,
    pub prior_b0: Option<f64>,
}

/// Per-instrument FHS overrides (unset keys fall back to `[var.fhs]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FhsOverride {
    pub lambda: Option<f64>,
    pub kappa: Option<f64>,
    pub window: Option<usize>,
    pub aci_step: Option<f64>,
}

/// History fetched from the REST klines endpoint at start so VaR exists from the first bar.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WarmStartConfig {
    pub enabled: bool,
    pub timeout_ms: u64,
}

/// Model state persisted so a restart continues without a warm-up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Empty disables snapshots.
    pub dir: PathBuf,
    pub every_bars: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PortfolioConfig {
    pub enabled: bool,
    pub lambda: f64,
    pub var_limit_usd: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub reduce_ratio: f64,
    pub halt_ratio: f64,
    pub resume_ratio: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstrumentConfig {
    pub symbol: String,
    pub position_qty: f64,
    pub var_limit_usd: f64,
    pub limit_cap_usd: f64,
    #[serde(default)]
    pub nig: NigOverride,
    #[serde(default)]
    pub fhs: FhsOverride,
}

/// ELF gate settings. The first six keys keep the names of the ELF v1.1 reference.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ElfConfig {
    pub constitutional_compliance: f64,
    pub enable_decision_cache: bool,
    pub decision_cache_ttl_s: u64,
    pub decision_cache_size: u64,
    pub parallelize_l2_l3: bool,
    pub input_validation_guardrail: bool,
    pub max_data_age_ms: i64,
    pub max_future_skew_ms: i64,
    pub duplicate_window: usize,
    pub weight_freshness: f64,
    pub weight_sample: f64,
    pub weight_mc_agreement: f64,
    pub weight_backtest: f64,
    pub ess_target: f64,
    pub throttle_max_actions: u32,
    pub throttle_window_ms: i64,
    pub rules_file: PathBuf,
    /// Candidate rules evaluated beside the active ones and never enforced; empty is off.
    pub shadow_rules_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    pub key_file: PathBuf,
    /// The key that signed the chains so far, when `key_file` is a new one: each chain
    /// then starts with a KEY_ROTATION event signed by this key. Empty: no rotation.
    pub previous_key_file: PathBuf,
    /// Seal a signed Merkle checkpoint after this many events of a chain...
    pub checkpoint_every_events: u64,
    /// ...or after this much engine time since the chain's last checkpoint.
    pub checkpoint_every_s: u64,
    /// Where each chain's head is persisted (atomically, after every durable flush).
    pub heads_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic_decisions: String,
    pub topic_checkpoints: String,
    pub topic_var_snapshots: String,
    /// Write-ahead spool of records not yet acknowledged by the brokers.
    pub spool_dir: PathBuf,
    pub spool_max_mb: u64,
    /// Acknowledged records stay in the spool until read back from the topic, up to this
    /// much: what a broker loses after acknowledging it is sent again from here.
    pub spool_retain_acked_mb: u64,
    /// How often acknowledged records are read back from the topic (and soon after any
    /// delivery error).
    pub readback_interval_ms: u64,
    /// Exactly-once publication: a transactional producer (ID from `engine.engine_id`)
    /// commits records in transactions aligned with the spool's flushes, so a
    /// `read_committed` consumer sees every record once, across crashes.
    pub transactional: bool,
    /// Create missing topics at start (brokers without auto-creation).
    pub create_topics: bool,
    pub topic_partitions: i32,
    pub replication_factor: i32,
    pub request_timeout_ms: u64,
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
    /// Embedded defaults, then `file` (if any), then `BIZRA_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Load(format!(
                    "{} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        Self::extract(figment)
    }

    /// Embedded defaults only (no file, no environment): used by tests and benches.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::extract(Figment::from(Toml::string(DEFAULT_TOML)))
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(|err| {
            ConfigError::Invalid(err.into_iter().map(|e| e.to_string()).collect())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Every semantic problem, not only the first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, msg: String| {
            if !ok {
                errors.push(msg);
            }
        };
        let in_open_unit = |x: f64| x > 0.0 && x < 1.0;

        check(
            !self.engine.engine_id.is_empty()
                && self
                    .engine
                    .engine_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            format!(
                "engine.engine_id must be non-empty [A-Za-z0-9_-], got {:?}",
                self.engine.engine_id
            ),
        );
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
        check(
            self.bars.interval_ms >= 100,
            format!(
                "bars.interval_ms must be >= 100, got {}",
                self.bars.interval_ms
            ),
        );

        let v = &self.var;
        check(!v.levels.is_empty(), "var.levels must not be empty".into());
        for l in &v.levels {
            // FHS calibration moves the tail probability up to 3 alpha, which must stay < 1.
            check(
                l.is_finite() && *l > 2.0 / 3.0 && *l < 1.0,
                format!("var.levels: {l} must be a confidence level in (2/3, 1)"),
            );
        }
        check(
            (1..=100_000).contains(&v.horizon_bars),
            format!(
                "var.horizon_bars must be in 1..=100000, got {}",
                v.horizon_bars
            ),
        );
        check(
            (100..=1_000_000).contains(&v.mc_draws),
            format!("var.mc_draws must be in 100..=1000000, got {}", v.mc_draws),
        );
        check(
            in_open_unit(v.credible_level),
            format!(
                "var.credible_level must be in (0, 1), got {}",
                v.credible_level
            ),
        );
        check(
            (20..=100_000).contains(&v.bootstrap_draws),
            format!(
                "var.bootstrap_draws must be in 20..=100000, got {}",
                v.bootstrap_draws
            ),
        );
        check(
            v.nig.min_returns >= 2,
            "var.nig.min_returns must be >= 2".into(),
        );
        check(
            v.warm_start.timeout_ms > 0,
            "var.warm_start.timeout_ms must be > 0".into(),
        );
        check(
            self.feed.rest_url.is_empty()
                || self.feed.rest_url.starts_with("http://")
                || self.feed.rest_url.starts_with("https://"),
            format!(
                "feed.rest_url must be empty or start with http:// or https://, got {:?}",
                self.feed.rest_url
            ),
        );
        check(
            !v.warm_start.enabled || crate::market::rest::kline_interval(self.bars.interval_ms).is_some(),
            format!(
                "var.warm_start needs bars.interval_ms to be a Binance kline interval (1s, 1m, 3m, 5m, 15m, 30m, 1h, ...), got {} ms",
                self.bars.interval_ms
            ),
        );
        check(
            v.snapshot.every_bars > 0,
            "var.snapshot.every_bars must be > 0".into(),
        );
        for (name, nig) in self.nig_settings_all() {
            for p in nig_problems(&nig) {
                errors_push(&mut check, format!("{name}: {p}"));
            }
        }
        for (name, fhs) in self.fhs_settings_all() {
            for p in fhs.problems() {
                errors_push(&mut check, format!("{name}: {p}"));
            }
        }

        check(
            self.portfolio.lambda > 0.0 && self.portfolio.lambda <= 1.0,
            format!(
                "portfolio.lambda must be in (0, 1], got {}",
                self.portfolio.lambda
            ),
        );
        check(
            self.portfolio.var_limit_usd > 0.0 && self.portfolio.var_limit_usd.is_finite(),
            "portfolio.var_limit_usd must be > 0".into(),
        );

        let l = &self.limits;
        check(
            l.resume_ratio > 0.0 && l.resume_ratio < l.reduce_ratio && l.reduce_ratio <= l.halt_ratio,
            format!(
                "limits must satisfy 0 < resume_ratio < reduce_ratio <= halt_ratio, got {} / {} / {}",
                l.resume_ratio, l.reduce_ratio, l.halt_ratio
            ),
        );

        check(
            !self.instruments.is_empty(),
            "instruments must not be empty".into(),
        );
        let mut seen = HashSet::new();
        for inst in &self.instruments {
            let s = &inst.symbol;
            check(
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
                format!("instruments: symbol {s:?} must be upper-case letters and digits"),
            );
            check(
                seen.insert(s.clone()),
                format!("instruments: symbol {s} listed twice"),
            );
            check(
                s != crate::PORTFOLIO_CHAIN,
                format!("instruments: symbol {s} is reserved"),
            );
            check(
                inst.position_qty.is_finite() && inst.position_qty >= 0.0,
                format!("instruments.{s}.position_qty must be finite and >= 0 (long positions)"),
            );
            check(
                inst.var_limit_usd > 0.0 && inst.var_limit_usd <= inst.limit_cap_usd,
                format!("instruments.{s}: need 0 < var_limit_usd <= limit_cap_usd"),
            );
            check(
                inst.limit_cap_usd.is_finite(),
                format!("instruments.{s}.limit_cap_usd must be finite"),
            );
        }

        let e = &self.elf;
        check(
            (0.0..=1.0).contains(&e.constitutional_compliance),
            format!(
                "elf.constitutional_compliance must be in [0, 1], got {}",
                e.constitutional_compliance
            ),
        );
        check(
            e.decision_cache_size > 0,
            "elf.decision_cache_size must be > 0".into(),
        );
        check(
            e.decision_cache_ttl_s > 0,
            "elf.decision_cache_ttl_s must be > 0".into(),
        );
        check(
            e.max_data_age_ms > 0,
            "elf.max_data_age_ms must be > 0".into(),
        );
        check(
            e.max_future_skew_ms >= 0,
            "elf.max_future_skew_ms must be >= 0".into(),
        );
        check(
            (1..=1_000_000).contains(&e.duplicate_window),
            "elf.duplicate_window must be in 1..=1000000".into(),
        );
        let weights = [
            e.weight_freshness,
            e.weight_sample,
            e.weight_mc_agreement,
            e.weight_backtest,
        ];
        check(
            weights.iter().all(|w| (0.0..=1.0).contains(w))
                && (weights.iter().sum::<f64>() - 1.0).abs() < 1e-9,
            format!("elf.weight_* must be in [0, 1] and sum to 1, got {weights:?}"),
        );
        check(e.ess_target > 0.0, "elf.ess_target must be > 0".into());
        check(
            e.throttle_max_actions > 0,
            "elf.throttle_max_actions must be > 0".into(),
        );
        check(
            e.throttle_window_ms > 0,
            "elf.throttle_window_ms must be > 0".into(),
        );

        check(
            !self.kafka.topic_decisions.is_empty(),
            "kafka.topic_decisions must not be empty".into(),
        );
        check(
            !self.kafka.topic_checkpoints.is_empty()
                && self.kafka.topic_checkpoints != self.kafka.topic_decisions,
            "kafka.topic_checkpoints must be set and differ from kafka.topic_decisions".into(),
        );
        check(
            (1..=1_000_000).contains(&self.signing.checkpoint_every_events),
            "signing.checkpoint_every_events must be in 1..=1000000".into(),
        );
        check(
            !self.kafka.topic_var_snapshots.is_empty()
                && self.kafka.topic_var_snapshots != self.kafka.topic_decisions
                && self.kafka.topic_var_snapshots != self.kafka.topic_checkpoints,
            "kafka.topic_var_snapshots must be set and differ from the other topics".into(),
        );
        check(
            self.kafka.spool_max_mb >= 1,
            "kafka.spool_max_mb must be >= 1".into(),
        );
        check(
            self.kafka.readback_interval_ms >= 100,
            "kafka.readback_interval_ms must be >= 100".into(),
        );
        check(
            !self.kafka.spool_dir.as_os_str().is_empty(),
            "kafka.spool_dir must be set".into(),
        );
        check(
            self.kafka.topic_partitions >= 1 && self.kafka.replication_factor >= 1,
            "kafka.topic_partitions and kafka.replication_factor must be >= 1".into(),
        );
        check(
            self.engine.shutdown_timeout_ms > 0,
            "engine.shutdown_timeout_ms must be > 0".into(),
        );
        check(
            self.signing.checkpoint_every_s > 0,
            "signing.checkpoint_every_s must be > 0".into(),
        );
        check(
            !self.signing.heads_file.as_os_str().is_empty(),
            "signing.heads_file must be set".into(),
        );
        check(
            self.kafka.request_timeout_ms > 0,
            "kafka.request_timeout_ms must be > 0".into(),
        );
        check(
            self.http.bind.is_empty()
                || self.http.bind.parse::<std::net::SocketAddr>().is_ok(),
            format!(
                "http.bind must be empty or host:port with an IP address (e.g. 127.0.0.1:9464), got {:?}",
                self.http.bind
            ),
        );

        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// SHA-256 of the canonical JSON of the effective configuration (hex), with the
    /// deployment-local fields blanked (feed and REST URLs, key file, sink and snapshot
    /// directories, rules path, brokers): they
    /// do not change any decision, and a replay on another machine must hash the same.
    pub fn hash_hex(&self) -> String {
        let mut c = self.clone();
        c.feed.url.clear();
        c.signing.key_file = PathBuf::new();
        c.signing.previous_key_file = PathBuf::new();
        c.signing.heads_file = PathBuf::new();
        c.kafka.spool_dir = PathBuf::new();
        c.sink.dir = PathBuf::new();
        c.var.snapshot.dir = PathBuf::new();
        c.feed.rest_url.clear();
        c.elf.rules_file = PathBuf::new();
        c.elf.shadow_rules_file = PathBuf::new();
        c.kafka.brokers.clear();
        c.http.bind.clear();
        let bytes = serde_json_canonicalizer::to_vec(&c).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }

    /// NIG settings of instrument `index` (its overrides over `[var.nig]`).
    pub fn nig_settings(&self, index: usize) -> NigConfig {
        let mut n = self.var.nig.clone();
        if let Some(o) = self.instruments.get(index).map(|i| &i.nig) {
            n.lambda = o.lambda.unwrap_or(n.lambda);
            n.prior_m0 = o.prior_m0.unwrap_or(n.prior_m0);
            n.prior_k0 = o.prior_k0.unwrap_or(n.prior_k0);
            n.prior_a0 = o.prior_a0.unwrap_or(n.prior_a0);
            n.prior_b0 = o.prior_b0.unwrap_or(n.prior_b0);
        }
        n
    }

    /// FHS parameters of instrument `index`; tail probabilities are 1 - `var.levels`.
    pub fn fhs_params(&self, index: usize) -> FhsParams {
        let f = &self.var.fhs;
        let o = self
            .instruments
            .get(index)
            .map(|i| i.fhs.clone())
            .unwrap_or_default();
        FhsParams {
            lambda: o.lambda.unwrap_or(f.lambda),
            kappa: o.kappa.unwrap_or(f.kappa),
            window: o.window.unwrap_or(f.window),
            aci_step: o.aci_step.unwrap_or(f.aci_step),
            alphas: self.var.levels.iter().map(|l| 1.0 - l).collect(),
            init_returns: f.init_returns,
            z_start: f.z_start,
            t0: f.t0,
        }
    }

    /// Settings of both per-symbol models of instrument `index`.
    pub fn symbol_model(&self, index: usize) -> SymbolModelSettings {
        let n = self.nig_settings(index);
        SymbolModelSettings {
            levels: self.var.levels.clone(),
            primary: self.var.primary_model,
            nig_prior: NigParams {
                m: n.prior_m0,
                k: n.prior_k0,
                a: n.prior_a0,
                b: n.prior_b0,
            },
            nig_lambda: n.lambda,
            nig_min_returns: u64::from(n.min_returns),
            fhs: self.fhs_params(index),
            horizon_bars: self.var.horizon_bars,
            mc_draws: self.var.mc_draws,
            credible_level: self.var.credible_level,
            bootstrap_draws: self.var.bootstrap_draws,
            seed: self.engine.seed,
            stream: index as u64,
        }
    }

    /// Settings of both portfolio models (the first level drives the portfolio limit).
    pub fn portfolio_model(&self) -> PortfolioModelSettings {
        let n = &self.var.nig;
        PortfolioModelSettings {
            symbols: self.symbols(),
            level: self.var.levels[0],
            primary: self.var.primary_model,
            niw_lambda: self.portfolio.lambda,
            niw_k0: n.prior_k0,
            niw_psi0: n.prior_b0,
            min_returns: u64::from(n.min_returns),
            fhs: self.fhs_params(usize::MAX),
        }
    }

    fn nig_settings_all(&self) -> Vec<(String, NigConfig)> {
        let mut out = vec![("var.nig".to_string(), self.var.nig.clone())];
        for (i, inst) in self.instruments.iter().enumerate() {
            if inst.nig != NigOverride::default() {
                out.push((
                    format!("instruments.{}.nig", inst.symbol),
                    self.nig_settings(i),
                ));
            }
        }
        out
    }

    fn fhs_settings_all(&self) -> Vec<(String, FhsParams)> {
        let mut out = vec![("var.fhs".to_string(), self.fhs_params(usize::MAX))];
        for (i, inst) in self.instruments.iter().enumerate() {
            if inst.fhs != FhsOverride::default() {
                out.push((
                    format!("instruments.{}.fhs", inst.symbol),
                    self.fhs_params(i),
                ));
            }
        }
        out
    }

    /// The step of instrument `index`, signing on `chain`.
    pub fn symbol_settings(
        &self,
        index: usize,
        chain: String,
    ) -> Option<crate::engine::SymbolSettings> {
        let inst = self.instruments.get(index)?;
        Some(crate::engine::SymbolSettings {
            symbol: inst.symbol.clone(),
            index,
            chain,
            position_qty: inst.position_qty,
            limit_cap_usd: inst.limit_cap_usd,
            interval_ms: self.bars.interval_ms,
            model: self.symbol_model(index),
            limits: self.limit_policy(inst.var_limit_usd),
            snapshot_every_bars: self.snapshot_every_bars(),
        })
    }

    /// The portfolio step, signing on `chain`.
    pub fn portfolio_settings(&self, chain: String) -> crate::engine::PortfolioSettings {
        crate::engine::PortfolioSettings {
            chain,
            position_qty: self.instruments.iter().map(|i| i.position_qty).collect(),
            interval_ms: self.bars.interval_ms,
            model: self.portfolio_model(),
            limits: self.limit_policy(self.portfolio.var_limit_usd),
            snapshot_every_bars: self.snapshot_every_bars(),
        }
    }

    fn limit_policy(&self, limit_usd: f64) -> crate::risk::LimitPolicy {
        crate::risk::LimitPolicy {
            limit_usd,
            reduce_ratio: self.limits.reduce_ratio,
            halt_ratio: self.limits.halt_ratio,
            resume_ratio: self.limits.resume_ratio,
        }
    }

    /// Where model snapshots go, when they are kept.
    pub fn snapshot_dir(&self) -> Option<PathBuf> {
        let dir = &self.var.snapshot.dir;
        (!dir.as_os_str().is_empty()).then(|| dir.clone())
    }

    fn snapshot_every_bars(&self) -> Option<u32> {
        self.snapshot_dir().map(|_| self.var.snapshot.every_bars)
    }

    pub fn symbols(&self) -> Vec<String> {
        self.instruments.iter().map(|i| i.symbol.clone()).collect()
    }

    pub fn instrument(&self, symbol: &str) -> Option<&InstrumentConfig> {
        self.instruments.iter().find(|i| i.symbol == symbol)
    }

    pub fn kafka_enabled(&self) -> bool {
        !self.kafka.brokers.trim().is_empty()
    }
}

impl ElfConfig {
    /// The gate's settings as plain values.
    pub fn gate_settings(&self) -> crate::elf::GateSettings {
        let c = self;
        crate::elf::GateSettings {
            input_validation: c.input_validation_guardrail,
            compliance_threshold: c.constitutional_compliance,
            parallelize_l2_l3: c.parallelize_l2_l3,
            max_data_age_ms: c.max_data_age_ms,
            max_future_skew_ms: c.max_future_skew_ms,
            duplicate_window: c.duplicate_window,
            weights: crate::elf::ComplianceWeights {
                freshness: c.weight_freshness,
                sample: c.weight_sample,
                mc_agreement: c.weight_mc_agreement,
                backtest: c.weight_backtest,
            },
            ess_target: c.ess_target,
            throttle_max_actions: c.throttle_max_actions,
            throttle_window_ms: c.throttle_window_ms,
            decision_cache: c.enable_decision_cache,
            decision_cache_size: c.decision_cache_size,
            decision_cache_ttl: std::time::Duration::from_secs(c.decision_cache_ttl_s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let c = Config::embedded().unwrap();
        assert_eq!(c.elf.constitutional_compliance, 0.90);
        assert_eq!(c.elf.decision_cache_size, 2048);
        assert_eq!(c.elf.decision_cache_ttl_s, 120);
        assert!(!c.kafka_enabled());
    }

    #[test]
    fn validate_lists_every_problem() {
        let mut c = Config::embedded().unwrap();
        c.var.nig.lambda = 1.5;
        c.elf.constitutional_compliance = 2.0;
        c.instruments[0].position_qty = -1.0;
        c.instruments[1].fhs.kappa = Some(2.0);
        c.feed.url = "http://x".into();
        match c.validate() {
            Err(ConfigError::Invalid(errs)) => {
                assert_eq!(errs.len(), 5, "{errs:?}");
                let text = ConfigError::Invalid(errs).to_string();
                assert!(text.contains("var.nig: lambda"));
                assert!(text.contains("instruments.ETHUSDT.fhs: kappa"));
                assert!(text.contains("constitutional_compliance"));
                assert!(text.contains("position_qty"));
                assert!(text.contains("feed.url"));
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn per_symbol_overrides_fall_back_to_the_defaults() {
        let mut c = Config::embedded().unwrap();
        c.instruments[1].nig.lambda = Some(0.97);
        c.instruments[1].fhs.window = Some(500);
        assert_eq!(c.nig_settings(0).lambda, c.var.nig.lambda);
        assert_eq!(c.nig_settings(1).lambda, 0.97);
        assert_eq!(c.nig_settings(1).prior_b0, c.var.nig.prior_b0);
        assert_eq!(c.fhs_params(1).window, 500);
        assert_eq!(c.fhs_params(1).kappa, c.var.fhs.kappa);
        assert_eq!(c.fhs_params(0).alphas.len(), c.var.levels.len());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let f = Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Toml::string("[elf]\nno_such_key = 1\n"));
        let err = Config::extract(f).unwrap_err().to_string();
        assert!(err.contains("no_such_key"), "{err}");
    }

    #[test]
    fn config_hash_is_stable_and_sensitive() {
        let a = Config::embedded().unwrap();
        let mut b = a.clone();
        assert_eq!(a.hash_hex(), b.hash_hex());
        b.feed.url = "ws://127.0.0.1:1".into();
        b.sink.dir = "/elsewhere".into();
        assert_eq!(
            a.hash_hex(),
            b.hash_hex(),
            "deployment-local fields do not count"
        );
        b.engine.seed += 1;
        assert_ne!(a.hash_hex(), b.hash_hex());
    }
}
