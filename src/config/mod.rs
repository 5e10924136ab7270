//! Engine configuration: embedded defaults, an optional file, environment overrides, and
//! one `validate()` that lists every problem at once. Each section lives in its own file
//! with its checks; this file loads, validates, hashes, and turns sections into the
//! engine steps' plain settings.

mod elf;
mod engine;
mod feed;
mod optimizer;
mod output;
mod risk;
mod roles;
mod var;

pub use elf::ElfConfig;
pub use engine::{ClockMode, EngineConfig};
pub use feed::{FeedConfig, OnServerClose};
pub use optimizer::OptimizerConfig;
pub use output::{HttpConfig, KafkaConfig, SigningConfig, SinkConfig};
pub use risk::{InstrumentConfig, LimitsConfig, PortfolioConfig};
pub use roles::RolesConfig;
pub use var::{
    BarsConfig, FhsConfig, FhsOverride, NigConfig, NigOverride, SnapshotConfig, VarConfig,
    WarmStartConfig,
};

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

/// The configuration compiled into the binary (`config/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Environment prefix: `BIZRA_KAFKA__BROKERS` sets `kafka.brokers`.
pub const ENV_PREFIX: &str = "BIZRA_";

/// The largest configuration file read.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

/// `BIZRA_*` variables that hold secrets, not configuration: the configuration never reads
/// (or records) them.
pub const SECRET_ENV_KEYS: &[&str] = &["CONTROL_TOKENS", "KAFKA_SASL_PASSWORD"];

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
    pub optimizer: OptimizerConfig,
    pub roles: RolesConfig,
}

impl Config {
    /// Embedded defaults, then `file` (if any), then `BIZRA_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            let len = std::fs::metadata(path)
                .map_err(|e| ConfigError::Load(format!("{}: {e}", path.display())))?
                .len();
            if len > MAX_CONFIG_FILE_BYTES {
                return Err(ConfigError::Load(format!(
                    "{}: {len} bytes is over the limit of {MAX_CONFIG_FILE_BYTES}",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(
            Env::prefixed(ENV_PREFIX)
                .ignore(SECRET_ENV_KEYS)
                .split("__"),
        );
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
        self.engine_problems(&mut check);
        self.feed_problems(&mut check);
        self.var_problems(&mut check);
        self.risk_problems(&mut check);
        self.elf_problems(&mut check);
        self.optimizer_problems(&mut check);
        self.roles_problems(&mut check);
        self.output_problems(&mut check);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// SHA-256 of the canonical JSON of the effective configuration (hex), with the
    /// deployment-local fields blanked (feed and REST URLs, key file, sink and snapshot
    /// directories, input recording, rules path, brokers): they
    /// do not change any decision, and a replay on another machine must hash the same.
    pub fn hash_hex(&self) -> String {
        let mut c = self.clone();
        c.feed.url.clear();
        c.feed.ca_file = PathBuf::new();
        c.signing.key_file = PathBuf::new();
        c.signing.previous_key_file = PathBuf::new();
        c.signing.heads_file = PathBuf::new();
        c.kafka.spool_dir = PathBuf::new();
        c.sink.dir = PathBuf::new();
        c.sink.record_inputs = false;
        c.sink.recording_segment_mb = 0;
        c.var.snapshot.dir = PathBuf::new();
        c.feed.rest_url.clear();
        c.elf.rules_file = PathBuf::new();
        c.elf.shadow_rules_file = PathBuf::new();
        c.kafka.brokers.clear();
        c.kafka.security_protocol.clear();
        c.kafka.sasl_mechanism.clear();
        c.kafka.sasl_username.clear();
        c.kafka.sasl_password_file = PathBuf::new();
        c.kafka.ssl_ca_file = PathBuf::new();
        // How the engine is served and guarded changes no decision.
        c.http = HttpConfig {
            bind: String::new(),
            control_enabled: false,
            control_tokens_file: PathBuf::new(),
            control_requests_per_minute: 0,
            control_burst: 0,
            max_body_bytes: 0,
            max_header_bytes: 0,
            request_timeout_ms: 0,
            keep_alive_s: 0,
            max_connections: 0,
            dashboard_history_mb: 0,
        };
        c.feed.max_ws_message_bytes = 0;
        c.feed.max_messages_per_s = 0;
        // How fast the gate decides changes no decision (the optimizer tunes these at run
        // time, and an A/B replay checks each decision is the same).
        c.elf.parallelize_l2_l3 = false;
        c.elf.enable_decision_cache = false;
        c.elf.decision_cache_size = 0;
        c.elf.decision_cache_ttl_s = 0;
        c.optimizer.watch_kpi.clear();
        c.optimizer.watch_window_s = 0;
        c.optimizer.rollback_degradation_pct = 0.0;
        c.optimizer.watch_interval_ms = 0;
        c.optimizer.watch_min_decisions = 0;
        // Which topics and groups carry the roles' inputs changes no decision (a decision
        // consumed from a topic names its source record itself).
        c.roles = RolesConfig {
            market_topic: String::new(),
            market_partitions: 0,
            bars_topic: String::new(),
            risk_group: String::new(),
            portfolio_group: String::new(),
            commit_interval_ms: 0,
            session_timeout_ms: 0,
            max_poll_interval_ms: 0,
            group_instance_id: String::new(),
        };
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
    fn every_roles_problem_is_listed() {
        let mut c = Config::embedded().unwrap();
        c.roles.market_topic = "bad topic".into();
        c.roles.bars_topic = c.kafka.topic_decisions.clone();
        c.roles.market_partitions = 0;
        c.roles.portfolio_group = c.roles.risk_group.clone();
        c.roles.session_timeout_ms = 1_000;
        c.roles.max_poll_interval_ms = 500;
        match c.validate() {
            Err(ConfigError::Invalid(errs)) => {
                let text = errs.join("\n");
                for needle in [
                    "roles.market_topic must be a Kafka topic name",
                    "roles.bars_topic \"bizra.risk.decisions\" must differ",
                    "roles.market_partitions",
                    "roles.risk_group and roles.portfolio_group must differ",
                    "roles.session_timeout_ms",
                    "roles.max_poll_interval_ms",
                ] {
                    assert!(text.contains(needle), "{needle} missing from {text}");
                }
                assert_eq!(errs.len(), 6, "{errs:?}");
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
