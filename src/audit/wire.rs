//! The signed wire format, version 1 (documented in docs/audit-format.md).
//!
//! A record is one line: `{"event":EVENT,"payload":PAYLOAD,"sig":"<128 hex>"}` where EVENT
//! is the RFC 8785 canonical JSON of the envelope [`Event`] and PAYLOAD that of the
//! [`Payload`], whose SHA-256 the envelope carries. The signature and the chain hash both
//! cover `SIGNING_DOMAIN || EVENT`, so a signature cannot be replayed in another context.
//! Non-finite numbers, which JSON cannot carry, appear as the strings "NaN", "Infinity"
//! and "-Infinity" so that blocked bad input is still recorded exactly.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::encoded::Encoded;
use crate::elf::{ActionRequest, Decision, Evidence, InputRange, Layer, ReasonCode, Verdict};
use crate::risk::RiskAction;
use crate::var::{ModelFigures, PrimaryModel};

pub const FORMAT_VERSION: u32 = 1;
/// Checkpoints gained `prev_checkpoint_sha256` in version 2; events are still version 1.
pub const CHECKPOINT_VERSION: u32 = 2;
pub const SIGNING_DOMAIN: &[u8] = b"BIZRA-RISK/EVENT/V1\0";
/// Checkpoints are signed under their own domain, so neither kind of signature can pass
/// for the other.
pub const CHECKPOINT_DOMAIN: &[u8] = b"BIZRA-RISK/CHECKPOINT/V1\0";
/// `prev` of the first event of a chain.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A float that survives JSON: finite values as numbers, others as strings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Num(pub f64);

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        if x.is_finite() {
            // RFC 8785 has no negative zero.
            s.serialize_f64(if x == 0.0 { 0.0 } else { x })
        } else if x.is_nan() {
            s.serialize_str("NaN")
        } else if x > 0.0 {
            s.serialize_str("Infinity")
        } else {
            s.serialize_str("-Infinity")
        }
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            N(f64),
            S(String),
        }
        match Repr::deserialize(d)? {
            Repr::N(x) => Ok(Num(x)),
            Repr::S(s) => match s.as_str() {
                "NaN" => Ok(Num(f64::NAN)),
                "Infinity" => Ok(Num(f64::INFINITY)),
                "-Infinity" => Ok(Num(f64::NEG_INFINITY)),
                _ => Err(serde::de::Error::custom(format!("bad number {s:?}"))),
            },
        }
    }
}

/// Integers of the signed format. RFC 8785 numbers are IEEE doubles, exact only up to
/// 2^53 - 1; a larger value (a timestamp or seed from bad input or configuration) is
/// written as its decimal string instead, so that it is recorded exactly and reads back.
/// Every value has one encoding: a string within the exact range is refused.
mod exact {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    const MAX_EXACT: i128 = (1 << 53) - 1;

    pub fn serialize<T, S>(v: &T, s: S) -> Result<S::Ok, S::Error>
    where
        T: Copy + Into<i128> + std::fmt::Display,
        S: Serializer,
    {
        let wide: i128 = (*v).into();
        match i64::try_from(wide) {
            Ok(small) if wide.abs() <= MAX_EXACT => s.serialize_i64(small),
            _ => s.collect_str(v),
        }
    }

    struct Exact;

    impl Visitor<'_> for Exact {
        type Value = i128;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer, or a decimal string beyond 2^53 - 1")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i128, E> {
            number(v.into())
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i128, E> {
            number(v.into())
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<i128, E> {
            // Only the string this module writes: no sign, padding or in-range value.
            match v.parse::<i128>() {
                Ok(wide) if wide.abs() > MAX_EXACT && wide.to_string() == v => Ok(wide),
                _ => Err(E::custom(format!(
                    "{v:?} is not an integer beyond 2^53 - 1"
                ))),
            }
        }
    }

    /// A JSON number must be within the exact range (beyond it the value is a string).
    fn number<E: de::Error>(wide: i128) -> Result<i128, E> {
        if wide.abs() <= MAX_EXACT {
            Ok(wide)
        } else {
            Err(E::custom(format!("{wide} must be written as a string")))
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: TryFrom<i128>,
        D: Deserializer<'de>,
    {
        let wide = d.deserialize_any(Exact)?;
        T::try_from(wide).map_err(|_| de::Error::custom(format!("{wide} is out of range")))
    }

    pub mod option {
        use super::*;

        pub fn serialize<T, S>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error>
        where
            T: Copy + Into<i128> + std::fmt::Display,
            S: Serializer,
        {
            match v {
                Some(x) => super::serialize(x, s),
                None => s.serialize_none(),
            }
        }

        struct MaybeExact;

        impl<'de> Visitor<'de> for MaybeExact {
            type Value = Option<i128>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("null, an integer, or a decimal string beyond 2^53 - 1")
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(Exact).map(Some)
            }
        }

        pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
        where
            T: TryFrom<i128>,
            D: Deserializer<'de>,
        {
            match d.deserialize_option(MaybeExact)? {
                None => Ok(None),
                Some(wide) => T::try_from(wide)
                    .map(Some)
                    .map_err(|_| de::Error::custom(format!("{wide} is out of range"))),
            }
        }
    }
}

/// The signed envelope of a record; it commits to the payload by hash. Read back with
/// its strings owned; the signer writes one that borrows them (`Event<&str>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event<S = String> {
    pub chain: S,
    pub key_id: S,
    pub kind: PayloadKind,
    /// Hex SHA-256 of the payload's canonical bytes.
    pub payload_sha256: S,
    /// Hex SHA-256 of the previous event's signing input; zeros for seq 0.
    pub prev: S,
    #[serde(with = "exact")]
    pub seq: u64,
    #[serde(with = "exact")]
    pub ts_ms: i64,
    pub v: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub enum Payload {
    RiskDecision(Box<DecisionRecord>),
    /// Hands the chain to a new signing key; signed by the key it retires.
    KeyRotation(KeyRotationRecord),
    /// A request to the control plane (HTTP or signal), accepted or refused.
    ControlRequest(Box<ControlRecord>),
}

/// One control-plane request and what became of it. Names the token's ID, never the token;
/// holds the path, never the query string (which may carry a token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlRecord {
    /// The client's IP address (HTTP); `None` for a signal.
    pub client: Option<String>,
    /// What was done or why not, in words (e.g. the rule problems of a rejected reload).
    pub detail: Option<String>,
    pub method: String,
    pub outcome: ControlOutcome,
    pub path: String,
    /// Why it was refused or failed; `None` when accepted.
    pub reason: Option<ControlReason>,
    /// The request as understood; `None` when refused before its body was read.
    pub request: Option<ControlCommand>,
    /// The caller's `X-Request-Id` when it is a valid ID, else one the engine assigns:
    /// the correlation ID that logs and the HTTP answer carry too.
    pub request_id: String,
    pub role: Option<crate::control::Role>,
    pub source: ControlSource,
    /// The ID of the bearer token that authenticated the request.
    pub token_id: Option<String>,
}

/// What a control request asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub enum ControlCommand {
    /// Engage (block every action but risk snapshots) or release the kill switch.
    KillSwitch { engaged: bool },
    /// Set a symbol's trading state, or the global one when `symbol` is `None`.
    TradingState {
        state: TradingStateName,
        symbol: Option<String>,
    },
    /// Reload the rule files (and the candidate set in shadow mode).
    RulesReload,
    /// Read the control state.
    State,
    /// Change settings that only change how fast the gates decide, never what they decide,
    /// with the evidence that justified it; the engine then watches its KPI.
    ConfigApply {
        changes: Vec<SettingChange>,
        /// The A/B replay that showed the change better; `None` for an operator's own change.
        evidence: Option<AbEvidence>,
        /// How the engine watches the change; `None` when nothing is watched (a restart).
        watch: Option<WatchTerms>,
    },
    /// Put back the settings the last applied change replaced.
    ConfigRollback {
        changes: Vec<SettingChange>,
        cause: RollbackCause,
        /// What the watch measured (automatic rollback only).
        evidence: Option<WatchEvidence>,
    },
}

/// A setting the optimizer may recommend. Performance settings never change a decision and
/// may be applied at run time; a threshold changes decisions and is only ever recommended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Setting {
    #[serde(rename = "elf.parallelize_l2_l3")]
    ParallelizeL2L3,
    #[serde(rename = "elf.enable_decision_cache")]
    EnableDecisionCache,
    #[serde(rename = "elf.decision_cache_size")]
    DecisionCacheSize,
    #[serde(rename = "elf.decision_cache_ttl_s")]
    DecisionCacheTtlS,
    #[serde(rename = "elf.constitutional_compliance")]
    ConstitutionalCompliance,
}

/// One setting's old and new value, as TOML literals (`true`, `2048`, `0.9`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingChange {
    pub from: String,
    pub setting: Setting,
    pub to: String,
}

/// A lower-is-better or higher-is-better figure of a measured run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KpiName {
    /// L0-L3 decision time, mean / percentiles, microseconds.
    DecideMeanUs,
    DecideP50Us,
    DecideP95Us,
    DecideP99Us,
    /// The whole gate (L0-L3 and the L4 signature), microseconds.
    GateMeanUs,
    GateP99Us,
    /// Market events per second of engine time over a replay.
    MarketEventsPerS,
}

/// The A/B replay behind an applied change: the same input through the configuration
/// before (A) and after (B), in alternating runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbEvidence {
    /// Median of the A runs and of the B runs.
    pub baseline: Num,
    pub candidate: Num,
    /// Decisions compared between A and B, and how many differed in verdict, layer or
    /// reasons (0 for any change that is applied).
    #[serde(with = "exact")]
    pub decisions_compared: i64,
    #[serde(with = "exact")]
    pub decisions_changed: i64,
    /// Improvement of the KPI, percent (positive: better).
    pub improvement_pct: Num,
    pub kpi: KpiName,
    /// Of all (A run, B run) pairs, the share in which B was better, percent: how
    /// consistently, not only how much.
    pub pairs_better_pct: Num,
    /// SHA-256 of the replayed input's file names and sizes.
    pub input_sha256: String,
    #[serde(with = "exact")]
    pub runs_per_side: i64,
}

/// How the engine watches an applied change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchTerms {
    /// The live KPI before the change, over `baseline_decisions` decisions.
    pub baseline: Num,
    #[serde(with = "exact")]
    pub baseline_decisions: i64,
    /// Rolled back when the KPI is this much worse, percent.
    pub degradation_pct: Num,
    pub kpi: KpiName,
    /// The watch ends (the change stays) at this time, ms since the Unix epoch (wall clock,
    /// like the control chain's `ts_ms`).
    #[serde(with = "exact")]
    pub until_ms: i64,
}

/// What the watch measured when it rolled a change back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchEvidence {
    pub baseline: Num,
    pub degradation_pct: Num,
    pub kpi: KpiName,
    pub observed: Num,
    #[serde(with = "exact")]
    pub observed_decisions: i64,
}

/// Why a change was rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RollbackCause {
    /// The watched KPI degraded by at least the configured percentage.
    KpiDegraded,
    /// An operator asked for it.
    Operator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TradingStateName {
    Active,
    Reducing,
    Halted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ControlOutcome {
    Accepted,
    Refused,
    /// Authorised, but it could not be carried out (e.g. a rule file that does not parse).
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ControlSource {
    Http,
    Signal,
    /// A setting of the previous run's operator state, put back at start.
    Restart,
    /// The engine's own watch of an applied change (automatic rollback).
    Watchdog,
}

/// Stable codes for refused and failed control requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ControlReason {
    /// No `Authorization` header.
    Unauthenticated,
    /// An `Authorization` header that is not `Bearer <token>`.
    TokenMalformed,
    /// A bearer token that matches no configured token.
    TokenUnknown,
    /// A token passed in the query string: never accepted there.
    TokenInQuery,
    /// The token's role may not make this request.
    Forbidden,
    /// Too many control requests from this client.
    RateLimited,
    /// A body that is not the request's JSON, or a query string.
    BadRequest,
    /// A body over `http.max_body_bytes`.
    BodyTooLarge,
    /// No such control endpoint (or method).
    UnknownEndpoint,
    /// A symbol the engine does not trade.
    UnknownSymbol,
    /// The rule files did not load; the rules in force stay.
    RulesRejected,
    /// A setting that changes decisions: recommended, never applied at run time.
    DecisionAltering,
    /// A rollback with no applied change to put back.
    NothingToRollBack,
}

impl ControlReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::TokenMalformed => "TOKEN_MALFORMED",
            Self::TokenUnknown => "TOKEN_UNKNOWN",
            Self::TokenInQuery => "TOKEN_IN_QUERY",
            Self::Forbidden => "FORBIDDEN",
            Self::RateLimited => "RATE_LIMITED",
            Self::BadRequest => "BAD_REQUEST",
            Self::BodyTooLarge => "BODY_TOO_LARGE",
            Self::UnknownEndpoint => "UNKNOWN_ENDPOINT",
            Self::UnknownSymbol => "UNKNOWN_SYMBOL",
            Self::RulesRejected => "RULES_REJECTED",
            Self::DecisionAltering => "DECISION_ALTERING",
            Self::NothingToRollBack => "NOTHING_TO_ROLL_BACK",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotationRecord {
    pub new_key_id: String,
    /// Hex of the new 32-byte Ed25519 verifying key.
    pub new_public_key: String,
}

impl Payload {
    pub fn kind(&self) -> PayloadKind {
        match self {
            Payload::RiskDecision(_) => PayloadKind::RiskDecision,
            Payload::KeyRotation(_) => PayloadKind::KeyRotation,
            Payload::ControlRequest(_) => PayloadKind::ControlRequest,
        }
    }
}

/// What kind of payload an event carries; the envelope names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PayloadKind {
    RiskDecision,
    KeyRotation,
    ControlRequest,
}

/// A signed Merkle tree head over a run of one chain's events (RFC 6962 hashing; the
/// entry of leaf i is the 32-byte hash of event `first_seq + i`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub chain: String,
    #[serde(with = "exact")]
    pub first_seq: u64,
    /// The input digest of the chain's connection at its last event (symbol chains of an
    /// engine that digests its input): ties the trail to the recording of that input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<InputsRecord>,
    pub key_id: String,
    /// Hash of event `last_seq`, so the checkpoint also pins the chain head.
    pub last_event_sha256: String,
    #[serde(with = "exact")]
    pub last_seq: u64,
    /// Checkpoint hash of the chain's previous checkpoint (64 zeros for its first), so
    /// that a checkpoint cannot be deleted unnoticed.
    pub prev_checkpoint_sha256: String,
    pub root_sha256: String,
    /// The first checkpoint of each chain in a run: the hash of the state the run started
    /// from (`recording::start_sha256`), so a replay that starts there uses what was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_start_sha256: Option<String>,
    #[serde(with = "exact")]
    pub tree_size: u64,
    #[serde(with = "exact")]
    pub ts_ms: i64,
    pub v: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecord {
    pub action: ActionRecord,
    pub action_id: String,
    pub compliance: Option<ComplianceRecord>,
    #[serde(with = "exact")]
    pub data_time_ms: i64,
    pub evidence: Encoded<EvidenceRecord>,
    pub feed_healthy: bool,
    pub input: Encoded<InputRecord>,
    pub layer: Option<Layer>,
    pub model: EncodedModel,
    pub provenance: Encoded<Provenance>,
    pub reasons: Vec<ReasonCode>,
    pub rules_fired: Vec<RuleFired>,
    /// Shadow mode: what the candidate rule set would have decided (not enforced).
    pub shadow: Option<ShadowRecord>,
    /// The input record the decision came from, when the engine consumes a topic (the
    /// `risk` and `portfolio` roles); absent for engines fed by WebSockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceOffset>,
    pub symbol: String,
    pub verdict: Verdict,
}

/// Where on a Kafka topic the input of a decision was: the record whose consumption closed
/// the bar the decision is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceOffset {
    pub topic: String,
    pub partition: i32,
    #[serde(with = "exact")]
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub enum ActionRecord {
    PublishRiskSnapshot,
    LimitBreach { limit_usd: Num, var_usd: Num },
    ReduceExposure { current_qty: Num, target_qty: Num },
    Halt,
    Resume,
    SetLimit { new_limit_usd: Num },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFired {
    pub enforce: crate::elf::Enforcement,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowRecord {
    pub diverged: bool,
    pub rules_fired: Vec<RuleFired>,
    pub rules_sha256: String,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceRecord {
    pub backtest: Num,
    pub freshness: Num,
    pub mc_agreement: Num,
    pub sample: Num,
    pub score: Num,
    pub threshold: Num,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRecord {
    pub es_usd: Num,
    pub ess: Num,
    pub exceedances: Num,
    pub expected_exceedances: Num,
    pub level: Num,
    pub limit_cap_usd: Num,
    pub limit_usd: Num,
    pub mc_z: Num,
    /// The primary model has not produced a forecast yet.
    pub model_warming_up: bool,
    pub position_qty: Num,
    pub price: Num,
    pub var_ci_high_usd: Num,
    pub var_ci_low_usd: Num,
    pub var_usd: Num,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelRecord {
    pub es: Num,
    pub level: Num,
    pub mc_std_error: Num,
    pub mc_var: Num,
    pub var: Num,
    pub var_ci_high: Num,
    pub var_ci_low: Num,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HorizonRecord {
    pub bars: u32,
    pub es: Num,
    pub level: Num,
    pub var: Num,
}

/// Normal-Inverse-Gamma posterior and its Student-t predictive figures (fractions of
/// position value; multiply by notional for USDT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NigRecord {
    pub a: Num,
    pub b: Num,
    pub horizon: Option<HorizonRecord>,
    pub k: Num,
    pub lambda: Num,
    pub levels: Vec<LevelRecord>,
    pub m: Num,
    #[serde(with = "exact")]
    pub mc_draws: u64,
    #[serde(with = "exact")]
    pub mc_seed: u64,
    /// Decimal string: ChaCha8 word position (u128) before the draws.
    pub mc_stream_pos: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhsLevelRecord {
    pub adjusted_alpha: Num,
    pub es: Num,
    pub es_ci_high: Num,
    pub es_ci_low: Num,
    pub level: Num,
    pub var: Num,
    pub var_ci_high: Num,
    pub var_ci_low: Num,
}

/// Filtered historical simulation figures (fractions of position value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhsRecord {
    pub aci_step: Num,
    #[serde(with = "exact")]
    pub bootstrap_draws: u64,
    /// Decimal string: ChaCha8 word position (u128) of the bootstrap stream.
    pub bootstrap_stream_pos: String,
    pub kappa: Num,
    pub lambda: Num,
    pub levels: Vec<FhsLevelRecord>,
    #[serde(with = "exact")]
    pub observations: u64,
    #[serde(with = "exact")]
    pub pool_size: u64,
    pub sigma: Option<Num>,
    #[serde(with = "exact")]
    pub warmup_remaining: u64,
    #[serde(with = "exact")]
    pub window: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortfolioFhsRecord {
    pub adjusted_alpha: Num,
    pub component_var_usd: Vec<Num>,
    pub es_usd: Num,
    pub level: Num,
    #[serde(with = "exact")]
    pub scenarios: u64,
    pub var_usd: Num,
    #[serde(with = "exact")]
    pub warmup_remaining: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NiwRecord {
    pub component_var_usd: Vec<Num>,
    pub es_usd: Num,
    pub lambda: Num,
    pub level: Num,
    pub marginal_var: Vec<Num>,
    pub regularised: bool,
    pub var_usd: Num,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "scope",
    rename_all = "SCREAMING_SNAKE_CASE",
    deny_unknown_fields
)]
pub enum ModelRecord {
    /// Both per-symbol models; `primary` is the one whose VaR drives limits.
    Symbol {
        primary: PrimaryModel,
        fhs_aci: FhsRecord,
        nig_student_t: Option<NigRecord>,
    },
    /// Both portfolio models for the configured positions.
    Portfolio {
        primary: PrimaryModel,
        symbols: Vec<String>,
        notionals_usd: Vec<Num>,
        #[serde(with = "exact")]
        observations: u64,
        fhs_aci: Option<PortfolioFhsRecord>,
        niw_multivariate_t: Option<NiwRecord>,
    },
    /// No return observed yet.
    NoData,
}

/// A decision's model figures with their canonical bytes, made once where the figures are
/// computed and shared by every decision signed with them.
pub type EncodedModel = Encoded<ModelRecord>;

/// The parts of a decision record that every action proposed at one bar shares, encoded
/// once where the bar closes: the gate's own encoding is then the decision's outcome.
#[derive(Debug, Clone)]
pub struct BarRecords {
    pub evidence: Encoded<EvidenceRecord>,
    pub input: Encoded<InputRecord>,
    pub model: EncodedModel,
}

impl BarRecords {
    /// The records of a bar's evidence, input range and model figures. Every request made
    /// at the bar carries the same `evidence` and `input` (the gate signs these records and
    /// decides on the request's).
    pub fn of(evidence: &Evidence, input: &InputRange, figures: &ModelFigures) -> Self {
        Self {
            evidence: Encoded::of(EvidenceRecord::from(evidence)),
            input: Encoded::of(InputRecord::from(input)),
            model: Encoded::of(model_record(figures)),
        }
    }
}

impl From<&Evidence> for EvidenceRecord {
    fn from(e: &Evidence) -> Self {
        EvidenceRecord {
            level: Num(e.level),
            var_usd: Num(e.var_usd),
            es_usd: Num(e.es_usd),
            limit_usd: Num(e.limit_usd),
            limit_cap_usd: Num(e.limit_cap_usd),
            var_ci_low_usd: Num(e.var_ci_low_usd),
            var_ci_high_usd: Num(e.var_ci_high_usd),
            position_qty: Num(e.position_qty),
            price: Num(e.price),
            ess: Num(e.ess),
            mc_z: Num(e.mc_z),
            exceedances: Num(e.exceedances),
            expected_exceedances: Num(e.expected_exceedances),
            model_warming_up: e.model_warming_up,
        }
    }
}

impl From<&InputRange> for InputRecord {
    fn from(i: &InputRange) -> Self {
        InputRecord {
            first_trade_id: i.first_trade_id,
            last_trade_id: i.last_trade_id,
            bar_start_ms: i.bar_start_ms,
            bar_end_ms: i.bar_end_ms,
            returns_seen: i.returns_seen,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputRecord {
    #[serde(with = "exact")]
    pub bar_end_ms: i64,
    #[serde(with = "exact")]
    pub bar_start_ms: i64,
    #[serde(with = "exact::option")]
    pub first_trade_id: Option<u64>,
    #[serde(with = "exact::option")]
    pub last_trade_id: Option<u64>,
    #[serde(with = "exact")]
    pub returns_seen: u64,
}

/// Where a connection's input stood (`market::feed::digest`): its index in the run, how
/// many inputs it had consumed, and the SHA-256 of those inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputsRecord {
    pub connection: u32,
    #[serde(with = "exact")]
    pub position: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    pub build: String,
    pub config_sha256: String,
    pub rules_sha256: String,
}

/// What `provenance.build` names: the crate version and, after `+`, the commit it was
/// built from (when known at build time).
pub const BUILD: &str = env!("RISK_ENGINE_BUILD");

/// Provenance shared by every event of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunProvenance {
    pub config_sha256: String,
    pub rules_sha256: String,
}

impl RunProvenance {
    /// The record every decision of the run signs, encoded once.
    pub fn record(&self) -> Encoded<Provenance> {
        Encoded::of(Provenance {
            build: BUILD.to_string(),
            config_sha256: self.config_sha256.clone(),
            rules_sha256: self.rules_sha256.clone(),
        })
    }
}

impl DecisionRecord {
    /// The record of `decision` on `req`, with the records of its bar and of the run.
    pub fn new(
        req: &ActionRequest,
        decision: &Decision,
        bar: &BarRecords,
        provenance: &Encoded<Provenance>,
    ) -> Self {
        // Compared as signed (a NaN figure, recorded as "NaN", equals itself there).
        debug_assert!(
            super::jcs::to_vec(&*bar.evidence).ok()
                == super::jcs::to_vec(&EvidenceRecord::from(&req.evidence)).ok()
                && *bar.input == InputRecord::from(&req.input),
            "a request signed with another bar's records"
        );
        Self {
            action_id: req.action_id.clone(),
            symbol: req.symbol.clone(),
            action: action_record(&req.action),
            verdict: decision.verdict,
            layer: decision.layer,
            reasons: decision.reasons.clone(),
            rules_fired: rules_fired_records(&decision.rules_fired),
            shadow: decision.shadow.as_ref().map(|s| ShadowRecord {
                rules_sha256: s.rules_sha256.to_string(),
                verdict: s.verdict,
                rules_fired: rules_fired_records(&s.rules_fired),
                diverged: s.diverged,
            }),
            compliance: decision.compliance.map(|c| ComplianceRecord {
                score: Num(c.score),
                threshold: Num(c.threshold),
                freshness: Num(c.components.freshness),
                sample: Num(c.components.sample),
                mc_agreement: Num(c.components.mc_agreement),
                backtest: Num(c.components.backtest),
            }),
            data_time_ms: req.data_time_ms,
            feed_healthy: req.feed_healthy,
            source: None,
            evidence: bar.evidence.clone(),
            model: bar.model.clone(),
            input: bar.input.clone(),
            provenance: provenance.clone(),
        }
    }
}

fn action_record(a: &RiskAction) -> ActionRecord {
    match *a {
        RiskAction::PublishRiskSnapshot => ActionRecord::PublishRiskSnapshot,
        RiskAction::LimitBreach { var_usd, limit_usd } => ActionRecord::LimitBreach {
            var_usd: Num(var_usd),
            limit_usd: Num(limit_usd),
        },
        RiskAction::ReduceExposure {
            current_qty,
            target_qty,
        } => ActionRecord::ReduceExposure {
            current_qty: Num(current_qty),
            target_qty: Num(target_qty),
        },
        RiskAction::Halt => ActionRecord::Halt,
        RiskAction::Resume => ActionRecord::Resume,
        RiskAction::SetLimit { new_limit_usd } => ActionRecord::SetLimit {
            new_limit_usd: Num(new_limit_usd),
        },
    }
}

fn nums(xs: &[f64]) -> Vec<Num> {
    xs.iter().map(|x| Num(*x)).collect()
}

fn model_record(f: &ModelFigures) -> ModelRecord {
    match f {
        ModelFigures::Symbol(s) => ModelRecord::Symbol {
            primary: s.primary,
            fhs_aci: FhsRecord {
                lambda: Num(s.fhs.lambda),
                kappa: Num(s.fhs.kappa),
                window: s.fhs.window as u64,
                aci_step: Num(s.fhs.aci_step),
                observations: s.fhs.observations,
                warmup_remaining: s.fhs.warmup_remaining,
                sigma: s.fhs.sigma.map(Num),
                pool_size: s.fhs.pool_size as u64,
                levels: s
                    .fhs
                    .levels
                    .iter()
                    .map(|l| FhsLevelRecord {
                        level: Num(l.level),
                        adjusted_alpha: Num(l.adjusted_alpha),
                        var: Num(l.var),
                        es: Num(l.es),
                        var_ci_low: Num(l.var_ci_low),
                        var_ci_high: Num(l.var_ci_high),
                        es_ci_low: Num(l.es_ci_low),
                        es_ci_high: Num(l.es_ci_high),
                    })
                    .collect(),
                bootstrap_draws: s.fhs.bootstrap_draws as u64,
                bootstrap_stream_pos: s.fhs.bootstrap_stream_pos.to_string(),
            },
            nig_student_t: s.nig.as_ref().map(|n| NigRecord {
                m: Num(n.params.m),
                k: Num(n.params.k),
                a: Num(n.params.a),
                b: Num(n.params.b),
                lambda: Num(n.lambda),
                levels: n
                    .levels
                    .iter()
                    .map(|l| LevelRecord {
                        level: Num(l.level),
                        var: Num(l.var),
                        es: Num(l.es),
                        var_ci_low: Num(l.var_ci_low),
                        var_ci_high: Num(l.var_ci_high),
                        mc_var: Num(l.mc_var),
                        mc_std_error: Num(l.mc_std_error),
                    })
                    .collect(),
                horizon: n.horizon.map(|h| HorizonRecord {
                    bars: h.bars,
                    level: Num(h.level),
                    var: Num(h.var),
                    es: Num(h.es),
                }),
                mc_draws: n.mc_draws as u64,
                mc_seed: n.mc_seed,
                mc_stream_pos: n.mc_stream_pos.to_string(),
            }),
        },
        ModelFigures::Portfolio(p) => ModelRecord::Portfolio {
            primary: p.primary,
            symbols: p.symbols.clone(),
            notionals_usd: nums(&p.notionals_usd),
            observations: p.observations,
            fhs_aci: p.fhs.as_ref().map(|f| PortfolioFhsRecord {
                warmup_remaining: f.warmup_remaining,
                scenarios: f.scenarios as u64,
                level: Num(f.level),
                adjusted_alpha: Num(f.adjusted_alpha),
                var_usd: Num(f.var_usd),
                es_usd: Num(f.es_usd),
                component_var_usd: nums(&f.component_var_usd),
            }),
            niw_multivariate_t: p.niw.as_ref().map(|r| NiwRecord {
                level: Num(r.level),
                var_usd: Num(r.var_usd),
                es_usd: Num(r.es_usd),
                component_var_usd: nums(&r.component_var_usd),
                marginal_var: nums(&r.marginal_var),
                regularised: r.regularised,
                lambda: Num(p.niw_lambda),
            }),
        },
        ModelFigures::None => ModelRecord::NoData,
    }
}

fn rules_fired_records(hits: &[crate::elf::RuleHit]) -> Vec<RuleFired> {
    hits.iter()
        .map(|h| RuleFired {
            id: h.rule_id.to_string(),
            enforce: h.enforce,
        })
        .collect()
}

/// RFC 8785 canonical bytes of an envelope.
pub fn canonical_event<S: Serialize>(event: &Event<S>) -> Result<Vec<u8>, String> {
    super::jcs::to_vec(event).map_err(|e| e.to_string())
}

/// RFC 8785 canonical bytes of a payload.
pub fn canonical_payload(payload: &Payload) -> Result<Vec<u8>, String> {
    super::jcs::to_vec(payload).map_err(|e| e.to_string())
}

/// The bytes that are signed and hashed.
pub fn signing_input(canonical_event: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(SIGNING_DOMAIN.len() + canonical_event.len());
    v.extend_from_slice(SIGNING_DOMAIN);
    v.extend_from_slice(canonical_event);
    v
}

/// A full record line without the trailing newline.
pub fn record_line(canonical_event: &[u8], canonical_payload: &[u8], sig: &[u8; 64]) -> Vec<u8> {
    let mut line = Vec::with_capacity(canonical_event.len() + canonical_payload.len() + 160);
    line.extend_from_slice(EVENT_PREFIX);
    line.extend_from_slice(canonical_event);
    line.extend_from_slice(PAYLOAD_INFIX);
    line.extend_from_slice(canonical_payload);
    push_sig(&mut line, sig);
    line
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordRepr<'a> {
    #[serde(borrow)]
    event: &'a RawValue,
    #[serde(borrow)]
    payload: &'a RawValue,
    sig: &'a str,
}

/// A record fully decoded; `event_bytes` are exactly the signed bytes.
pub struct ParsedRecord<'a> {
    pub event_bytes: &'a [u8],
    pub event: Event,
    pub payload: Payload,
    pub sig: [u8; 64],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseFailure {
    /// Not a record at all (bad JSON, wrong fields, bad signature encoding).
    Malformed(String),
    /// Valid content, but not in canonical form: the bytes were altered.
    NonCanonical,
    UnsupportedVersion(u64),
    /// The payload is not the one the envelope's `payload_sha256` commits to.
    PayloadMismatch,
}

/// Parse one record line (without newline), decode its payload and check that the whole
/// line is byte-for-byte canonical and the payload matches its hash.
pub fn parse_record(line: &[u8]) -> Result<ParsedRecord<'_>, ParseFailure> {
    let text =
        std::str::from_utf8(line).map_err(|_| ParseFailure::Malformed("not UTF-8".into()))?;
    let repr: RecordRepr<'_> =
        serde_json::from_str(text).map_err(|e| ParseFailure::Malformed(e.to_string()))?;
    if let Some(v) = other_version(repr.event.get(), FORMAT_VERSION) {
        return Err(ParseFailure::UnsupportedVersion(v));
    }
    let event: Event = serde_json::from_str(repr.event.get())
        .map_err(|e| ParseFailure::Malformed(e.to_string()))?;
    let payload: Payload = serde_json::from_str(repr.payload.get())
        .map_err(|e| ParseFailure::Malformed(format!("payload: {e}")))?;
    let sig: [u8; 64] = hex::decode(repr.sig)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ParseFailure::Malformed("sig is not 128 hex digits".into()))?;
    let canonical = canonical_event(&event).map_err(ParseFailure::Malformed)?;
    let canonical_p = canonical_payload(&payload).map_err(ParseFailure::Malformed)?;
    if record_line(&canonical, &canonical_p, &sig) != line {
        return Err(ParseFailure::NonCanonical);
    }
    if payload.kind() != event.kind
        || super::hex32(&Sha256::digest(&canonical_p).into()) != event.payload_sha256
    {
        return Err(ParseFailure::PayloadMismatch);
    }
    let event_bytes = &line[EVENT_PREFIX.len()..EVENT_PREFIX.len() + canonical.len()];
    Ok(ParsedRecord {
        event_bytes,
        event,
        payload,
        sig,
    })
}

/// The bytes a checkpoint signature covers.
pub fn checkpoint_signing_input(canonical_checkpoint: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + canonical_checkpoint.len());
    v.extend_from_slice(CHECKPOINT_DOMAIN);
    v.extend_from_slice(canonical_checkpoint);
    v
}

pub fn canonical_checkpoint(cp: &Checkpoint) -> Result<Vec<u8>, String> {
    super::jcs::to_vec(cp).map_err(|e| e.to_string())
}

/// `{"checkpoint":CP,"sig":"<128 hex>"}` without the trailing newline.
pub fn checkpoint_line(canonical_checkpoint: &[u8], sig: &[u8; 64]) -> Vec<u8> {
    let mut line = Vec::with_capacity(canonical_checkpoint.len() + 150);
    line.extend_from_slice(CHECKPOINT_PREFIX);
    line.extend_from_slice(canonical_checkpoint);
    push_sig(&mut line, sig);
    line
}

const EVENT_PREFIX: &[u8] = b"{\"event\":";
const PAYLOAD_INFIX: &[u8] = b",\"payload\":";
const CHECKPOINT_PREFIX: &[u8] = b"{\"checkpoint\":";
/// `,"sig":"` + 128 hex digits + `"}`.
const SIG_SUFFIX_LEN: usize = 8 + 128 + 2;

fn push_sig(line: &mut Vec<u8>, sig: &[u8; 64]) {
    line.extend_from_slice(b",\"sig\":\"");
    let mut hex_sig = [0u8; 128];
    if hex::encode_to_slice(sig, &mut hex_sig).is_ok() {
        line.extend_from_slice(&hex_sig);
    }
    line.extend_from_slice(b"\"}");
}

/// Which kind of record a line is, from its first field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Event,
    Checkpoint,
}

pub fn record_kind(line: &[u8]) -> Option<RecordKind> {
    if line.starts_with(EVENT_PREFIX) {
        Some(RecordKind::Event)
    } else if line.starts_with(CHECKPOINT_PREFIX) {
        Some(RecordKind::Checkpoint)
    } else {
        None
    }
}

/// Split a canonically laid-out line into (body, signature); None when the layout differs.
fn split_line<'a>(line: &'a [u8], prefix: &[u8]) -> Option<(&'a [u8], [u8; 64])> {
    if line.len() < prefix.len() + SIG_SUFFIX_LEN || !line.starts_with(prefix) {
        return None;
    }
    let (body, tail) = line[prefix.len()..].split_at(line.len() - prefix.len() - SIG_SUFFIX_LEN);
    if !tail.starts_with(b",\"sig\":\"") || !tail.ends_with(b"\"}") {
        return None;
    }
    let mut sig = [0u8; 64];
    hex::decode_to_slice(&tail[8..136], &mut sig).ok()?;
    // Lower-case hex only: the canonical form.
    if tail[8..136].iter().any(u8::is_ascii_uppercase) {
        return None;
    }
    Some((body, sig))
}

/// The signed envelope of an event and its payload's bytes, read without decoding the
/// payload: what the verifier needs to check signatures, links and the payload hash at
/// speed.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub event_bytes: &'a [u8],
    pub payload_bytes: &'a [u8],
    pub chain: std::borrow::Cow<'a, str>,
    pub seq: u64,
    pub prev: [u8; 32],
    pub key_id: std::borrow::Cow<'a, str>,
    pub ts_ms: i64,
    pub kind: PayloadKind,
    pub payload_sha256: [u8; 32],
    pub sig: [u8; 64],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeRepr<'a> {
    v: u32,
    #[serde(borrow)]
    chain: std::borrow::Cow<'a, str>,
    #[serde(with = "exact")]
    seq: u64,
    #[serde(borrow)]
    prev: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    key_id: std::borrow::Cow<'a, str>,
    #[serde(with = "exact")]
    ts_ms: i64,
    kind: PayloadKind,
    #[serde(borrow)]
    payload_sha256: std::borrow::Cow<'a, str>,
}

fn hash_field(name: &str, text: &str) -> Result<[u8; 32], ParseFailure> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(text.as_bytes(), &mut h)
        .map_err(|_| ParseFailure::Malformed(format!("{name} is not 64 hex digits")))?;
    Ok(h)
}

/// Parse an event line's envelope and locate its payload. Lines not laid out canonically
/// fall back to the full check in [`parse_record`] so that they get its specific reason.
pub fn parse_envelope(line: &[u8]) -> Result<Envelope<'_>, ParseFailure> {
    let Some((body, sig)) = split_line(line, EVENT_PREFIX) else {
        return Err(misshapen(line));
    };
    let text =
        std::str::from_utf8(body).map_err(|_| ParseFailure::Malformed("not UTF-8".into()))?;
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<EnvelopeRepr<'_>>();
    let repr = match values.next() {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(misshapen(line).or_malformed(e.to_string())),
        None => return Err(ParseFailure::Malformed("empty event".into())),
    };
    if u64::from(repr.v) != u64::from(FORMAT_VERSION) {
        return Err(ParseFailure::UnsupportedVersion(u64::from(repr.v)));
    }
    let end = values.byte_offset();
    let Some(payload_bytes) = body[end..].strip_prefix(PAYLOAD_INFIX) else {
        return Err(misshapen(line));
    };
    Ok(Envelope {
        event_bytes: &body[..end],
        payload_bytes,
        prev: hash_field("prev", &repr.prev)?,
        payload_sha256: hash_field("payload_sha256", &repr.payload_sha256)?,
        chain: repr.chain,
        seq: repr.seq,
        key_id: repr.key_id,
        ts_ms: repr.ts_ms,
        kind: repr.kind,
        sig,
    })
}

/// The `v` of a JSON object when it is a whole number other than `expected` (checked before
/// anything else, so a record of another version is reported as such, not as malformed).
fn other_version(object: &str, expected: u32) -> Option<u64> {
    let mut values = serde_json::Deserializer::from_str(object).into_iter::<serde_json::Value>();
    let v = values.next()?.ok()?.get("v")?.as_u64()?;
    (v != u64::from(expected)).then_some(v)
}

/// Why an event line that is not laid out canonically fails: another version, a part
/// that does not decode (`MALFORMED`), or only its layout (`NON_CANONICAL`). The payload
/// need only be JSON: its own fields are checked by `--strict` alone.
fn misshapen(line: &[u8]) -> ParseFailure {
    let Ok(text) = std::str::from_utf8(line) else {
        return ParseFailure::Malformed("not UTF-8".into());
    };
    let repr: RecordRepr<'_> = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => return ParseFailure::Malformed(e.to_string()),
    };
    if let Some(v) = other_version(repr.event.get(), FORMAT_VERSION) {
        return ParseFailure::UnsupportedVersion(v);
    }
    if let Err(e) = serde_json::from_str::<Event>(repr.event.get()) {
        return ParseFailure::Malformed(e.to_string());
    }
    if hex::decode(repr.sig).ok().is_none_or(|b| b.len() != 64) {
        return ParseFailure::Malformed("sig is not 128 hex digits".into());
    }
    ParseFailure::NonCanonical
}

impl ParseFailure {
    /// Keep a specific verdict; a mere layout difference becomes `MALFORMED` with `detail`.
    fn or_malformed(self, detail: String) -> Self {
        match self {
            Self::NonCanonical => Self::Malformed(detail),
            other => other,
        }
    }
}

pub struct ParsedCheckpoint<'a> {
    pub bytes: &'a [u8],
    pub checkpoint: Checkpoint,
    pub sig: [u8; 64],
}

/// Parse a checkpoint line and check that it is byte-for-byte canonical.
pub fn parse_checkpoint(line: &[u8]) -> Result<ParsedCheckpoint<'_>, ParseFailure> {
    let Some((bytes, sig)) = split_line(line, CHECKPOINT_PREFIX) else {
        return Err(ParseFailure::Malformed(
            "not a {\"checkpoint\":…,\"sig\":…} record".into(),
        ));
    };
    let text =
        std::str::from_utf8(bytes).map_err(|_| ParseFailure::Malformed("not UTF-8".into()))?;
    if let Some(v) = other_version(text, CHECKPOINT_VERSION) {
        return Err(ParseFailure::UnsupportedVersion(v));
    }
    let checkpoint: Checkpoint =
        serde_json::from_str(text).map_err(|e| ParseFailure::Malformed(e.to_string()))?;
    if canonical_checkpoint(&checkpoint).map_err(ParseFailure::Malformed)? != bytes {
        return Err(ParseFailure::NonCanonical);
    }
    Ok(ParsedCheckpoint {
        bytes,
        checkpoint,
        sig,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(value: &impl Serialize) -> String {
        String::from_utf8(serde_json_canonicalizer::to_vec(value).unwrap()).unwrap()
    }

    fn ours(payload: &Payload) -> String {
        String::from_utf8(canonical_payload(payload).unwrap()).unwrap()
    }

    /// A bar whose figures are not finite (blocked at L0, still signed) is signed with the
    /// records its bar encoded, as the strings the format gives such numbers.
    #[test]
    fn a_decision_on_a_non_finite_figure_carries_its_bar_records() {
        let config = crate::config::Config::embedded().unwrap();
        let rules = crate::elf_demo::default_rules().unwrap();
        let (_, req, decision) = crate::elf_demo::cases(&config, rules)
            .into_iter()
            .find(|(name, _, _)| name.contains("NaN"))
            .unwrap();
        let bar = BarRecords::of(&req.evidence, &req.input, &ModelFigures::None);
        let provenance = RunProvenance {
            config_sha256: "0".repeat(64),
            rules_sha256: "0".repeat(64),
        }
        .record();
        let record = DecisionRecord::new(&req, &decision, &bar, &provenance);
        let signed = ours(&Payload::RiskDecision(Box::new(record)));
        assert!(signed.contains(r#""var_usd":"NaN""#), "{signed}");
    }

    /// Every shape the signed format uses (tagged enums, options, vectors, boxes,
    /// non-finite numbers) encodes exactly as the reference RFC 8785 canonicalizer does.
    #[test]
    fn every_record_shape_encodes_as_the_reference_canonicalizer_does() {
        let config = crate::config::Config::embedded().unwrap();
        let base = crate::elf_demo::sample_decision(&config).unwrap();
        let mut records = vec![base.clone()];
        for (i, action) in [
            ActionRecord::LimitBreach {
                limit_usd: Num(50.0),
                var_usd: Num(f64::NAN),
            },
            ActionRecord::ReduceExposure {
                current_qty: Num(2.5),
                target_qty: Num(f64::NEG_INFINITY),
            },
            ActionRecord::SetLimit {
                new_limit_usd: Num(1e21),
            },
            ActionRecord::Halt,
            ActionRecord::Resume,
        ]
        .into_iter()
        .enumerate()
        {
            let mut r = base.clone();
            r.action = action;
            r.verdict = Verdict::Block;
            r.layer = Some(Layer::L3);
            r.reasons = vec![ReasonCode::RuleBlock, ReasonCode::StaleData];
            r.rules_fired = vec![RuleFired {
                enforce: crate::elf::Enforcement::Block,
                id: format!("rule_{i}"),
            }];
            r.shadow = Some(ShadowRecord {
                diverged: i % 2 == 0,
                rules_fired: Vec::new(),
                rules_sha256: "ab".repeat(32),
                verdict: Verdict::PassFlagged,
            });
            r.compliance = None;
            r.evidence.mc_z = Num(-1.5e-7 * i as f64);
            r.input.first_trade_id = None;
            r.model = EncodedModel::from(match i {
                0 => ModelRecord::NoData,
                1 => ModelRecord::Portfolio {
                    primary: PrimaryModel::Nig,
                    symbols: vec!["BTCUSDT".into(), "ETHUSDT".into()],
                    notionals_usd: vec![Num(120_000.5), Num(-3.25e-5)],
                    observations: 77,
                    fhs_aci: Some(PortfolioFhsRecord {
                        adjusted_alpha: Num(0.0101),
                        component_var_usd: vec![Num(1.0), Num(2.5)],
                        es_usd: Num(5.0),
                        level: Num(0.99),
                        scenarios: 1000,
                        var_usd: Num(3.5),
                        warmup_remaining: 0,
                    }),
                    niw_multivariate_t: Some(NiwRecord {
                        component_var_usd: vec![Num(0.5)],
                        es_usd: Num(f64::INFINITY),
                        lambda: Num(0.97),
                        level: Num(0.975),
                        marginal_var: Vec::new(),
                        regularised: true,
                        var_usd: Num(2.0),
                    }),
                },
                _ => ModelRecord::clone(&r.model),
            });
            records.push(r);
        }
        for r in records {
            let payload = Payload::RiskDecision(Box::new(r));
            assert_eq!(ours(&payload), reference(&payload));
        }
        let rotation = Payload::KeyRotation(KeyRotationRecord {
            new_key_id: "0123456789abcdef".into(),
            new_public_key: "cd".repeat(32),
        });
        assert_eq!(ours(&rotation), reference(&rotation));
        let event = Event {
            chain: "bizra.BTCUSDT".into(),
            key_id: "0123456789abcdef".into(),
            kind: PayloadKind::RiskDecision,
            payload_sha256: "ef".repeat(32),
            prev: GENESIS_PREV.into(),
            seq: u64::from(u32::MAX) + 7,
            ts_ms: 1_723_161_600_000,
            v: FORMAT_VERSION,
        };
        assert_eq!(
            String::from_utf8(canonical_event(&event).unwrap()).unwrap(),
            reference(&event)
        );
    }

    #[test]
    fn integers_beyond_2_pow_53_are_exact_strings_and_read_back() {
        let config = crate::config::Config::embedded().unwrap();
        let mut r = crate::elf_demo::sample_decision(&config).unwrap();
        r.data_time_ms = i64::MIN;
        r.input.bar_start_ms = (1 << 53) - 1;
        r.input.bar_end_ms = 1 << 53;
        r.input.first_trade_id = Some(u64::MAX);
        r.input.last_trade_id = None;
        if let ModelRecord::Symbol {
            nig_student_t: Some(nig),
            ..
        } = &mut *r.model
        {
            nig.mc_seed = u64::MAX - 1;
        }
        let payload = Payload::RiskDecision(Box::new(r));
        let text = ours(&payload);
        for expected in [
            r#""data_time_ms":"-9223372036854775808""#,
            r#""bar_start_ms":9007199254740991"#,
            r#""bar_end_ms":"9007199254740992""#,
            r#""first_trade_id":"18446744073709551615""#,
            r#""last_trade_id":null"#,
            r#""mc_seed":"18446744073709551614""#,
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
        let back: Payload = serde_json::from_str(&text).unwrap();
        assert_eq!(back, payload);
        assert_eq!(text, reference(&payload));
        // One encoding per value: a string for an exactly representable integer, or a
        // padded one, is refused.
        for bad in [
            r#""12""#,
            r#""+9007199254740992""#,
            r#""09007199254740992""#,
            r#""-09007199254740992""#,
            "9007199254740992",
        ] {
            let tampered = text.replace(r#""9007199254740992""#, bad);
            assert!(serde_json::from_str::<Payload>(&tampered).is_err(), "{bad}");
        }
    }

    #[test]
    fn num_roundtrips_non_finite() {
        for x in [
            1.5,
            0.0,
            -2.0e-9,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let s = serde_json_canonicalizer::to_string(&Num(x)).unwrap();
            let back: Num = serde_json::from_str(&s).unwrap();
            assert!(back.0 == x || (x.is_nan() && back.0.is_nan()), "{x} -> {s}");
        }
        assert_eq!(
            serde_json_canonicalizer::to_string(&Num(-0.0)).unwrap(),
            "0"
        );
        assert_eq!(serde_json_canonicalizer::to_string(&Num(1.0)).unwrap(), "1");
    }
}
