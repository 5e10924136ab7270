//! Builds one engine's steps from the configuration, for every host: the rules, the signing
//! key, each chain's head (reconciled with its trail, rotated to a new key when asked), the
//! gate, symbol and portfolio steps, and where the models start from.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::audit::wire::RunProvenance;
use crate::audit::{keys, ChainHead, ChainSigner, CheckpointPolicy, SignedEvent};
use crate::config::{ClockMode, Config};
use crate::elf::{ElfGate, KillSwitch, RuleError, RuleSet};
use crate::engine::{GateStep, PortfolioStep, SymbolStep};
use crate::heads::{self, HeadsError};
use crate::sink::{FileSink, SinkError};
use crate::warm_start::StartState;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Rules(#[from] RuleError),
    #[error(transparent)]
    Key(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Heads(#[from] HeadsError),
    #[error(
        "chain {chain} was last signed by key {head_key}, not by the configured key {key}: \
         to rotate, set signing.previous_key_file to the key {head_key} for one start"
    )]
    KeyMismatch {
        chain: String,
        head_key: String,
        key: String,
    },
    #[error("metrics: {0}")]
    Metrics(String),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error(transparent)]
    Tokens(#[from] crate::control::TokenError),
    #[error(transparent)]
    Tls(#[from] crate::market::tls::TlsError),
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    #[error(
        "operator state (kill switch, trading states) unreadable: {0}; fix or remove the file \
         after checking the control chain's last accepted requests"
    )]
    ControlState(String),
    #[error(
        "http.bind {bind} is not a loopback address and the control endpoints have no token: \
         set http.control_tokens_file (or BIZRA_CONTROL_TOKENS), or http.control_enabled = false"
    )]
    ControlWithoutTokens { bind: String },
}

pub fn chain_id(engine_id: &str, symbol: &str) -> String {
    format!("{engine_id}.{symbol}")
}

/// The active rule set and, in shadow mode, the candidate one.
pub fn load_rules(config: &Config) -> Result<(Arc<RuleSet>, Option<Arc<RuleSet>>), RuleError> {
    let active = Arc::new(RuleSet::load(&config.elf.rules_file)?);
    let shadow = if config.elf.shadow_rules_file.as_os_str().is_empty() {
        None
    } else {
        Some(Arc::new(RuleSet::load(&config.elf.shadow_rules_file)?))
    };
    Ok((active, shadow))
}

/// Every gate of an engine, ready to sign.
pub struct Gates {
    pub provenance: RunProvenance,
    pub verifying_key_hex: String,
    pub key_id: String,
    /// The portfolio's gate, when the portfolio is on.
    pub portfolio: Option<GateStep>,
    /// One per instrument, in configuration order.
    pub symbols: Vec<GateStep>,
    /// Key rotations signed at start, to publish before anything else.
    pub rotations: Vec<SignedEvent>,
    /// Chains that continue an earlier trail, with where they continue from.
    pub continued: BTreeMap<String, ChainHead>,
    /// The signer of the engine's control chain (taken by the host that serves control).
    pub control: Option<ChainSigner>,
}

impl Gates {
    /// The sequence number each chain continues at (after any rotation signed at start).
    pub fn next_seqs(&self) -> BTreeMap<String, u64> {
        self.portfolio
            .iter()
            .chain(&self.symbols)
            .map(|g| (g.chain().to_string(), g.stats().next_seq))
            .collect()
    }

    /// This run starts from `snapshots` and the `warm_start` answers over `shards`: every
    /// chain's first checkpoint signs the hash of that state. Returns where each chain
    /// continues.
    pub fn start_run(
        &mut self,
        shards: &[Vec<String>],
        snapshots: &crate::recording::LoadedSnapshots,
        warm_start: &[crate::recording::RestGet],
    ) -> BTreeMap<String, u64> {
        let next_seq = self.next_seqs();
        self.note_run_start(crate::recording::start_sha256(
            shards, &next_seq, snapshots, warm_start,
        ));
        next_seq
    }

    /// The hash of the state this run starts from, for every chain's first checkpoint.
    pub fn note_run_start(&mut self, start_sha256: String) {
        for g in self.portfolio.iter_mut().chain(self.symbols.iter_mut()) {
            g.note_run_start(start_sha256.clone());
        }
    }
}

/// The chains of an engine: the portfolio's first (when on), then one per instrument.
pub fn chain_keys(config: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    if config.portfolio.enabled {
        keys.push(crate::PORTFOLIO_CHAIN.to_string());
    }
    keys.extend(config.symbols());
    keys
}

/// Load the key and rules and build every gate step. `kafka_heads` holds the newest record
/// of each chain on the topics and in the spool; without Kafka the trail files are read.
pub fn gates(
    config: &Config,
    kill_switch: &KillSwitch,
    kafka_heads: &HashMap<String, ChainHead>,
) -> Result<Gates, StartError> {
    let signing_key = keys::load_signing_key(&config.signing.key_file)?;
    let persisted = heads::load(&config.signing.heads_file)?.unwrap_or_default();
    let previous_key = previous_key(config)?;
    build_gates(
        config,
        &signing_key,
        previous_key.as_ref(),
        kill_switch,
        |chain| chain_head(config, &persisted, kafka_heads, chain),
    )
}

/// The gates an auditor's replay decides with: the configured rules, each chain continuing
/// from `heads` (genesis when absent), signed by `key` (the replay compares payloads, so any
/// key will do; the heads are taken over by it without a rotation event).
pub fn audit_gates(
    config: &Config,
    key: &ed25519_dalek::SigningKey,
    heads: &BTreeMap<String, ChainHead>,
) -> Result<Gates, StartError> {
    let key_id = keys::key_id(&key.verifying_key());
    build_gates(config, key, None, &KillSwitch::default(), |chain| {
        let mut head = heads.get(chain).cloned().unwrap_or_else(ChainHead::genesis);
        head.key_id = head.key_id.map(|_| key_id.clone());
        Ok(head)
    })
}

fn build_gates(
    config: &Config,
    signing_key: &ed25519_dalek::SigningKey,
    previous_key: Option<&ed25519_dalek::SigningKey>,
    kill_switch: &KillSwitch,
    head_of: impl Fn(&str) -> Result<ChainHead, StartError>,
) -> Result<Gates, StartError> {
    let (rules, shadow_rules) = load_rules(config)?;
    let verifying_key_hex = hex::encode(signing_key.verifying_key().as_bytes());
    let key_id = keys::key_id(&signing_key.verifying_key());
    let provenance = RunProvenance {
        config_sha256: config.hash_hex(),
        rules_sha256: rules.hash_hex().to_string(),
    };
    let policy = checkpoint_policy(config);
    let settings = config.elf.gate_settings();
    let mut out = Gates {
        provenance: provenance.clone(),
        verifying_key_hex,
        key_id: key_id.clone(),
        portfolio: None,
        symbols: Vec::new(),
        rotations: Vec::new(),
        continued: BTreeMap::new(),
        control: None,
    };
    // A chain's signer, continuing its head; a chain last signed by the previous key is
    // handed to the new one by a KEY_ROTATION event (published before anything else).
    let signer_for = |chain: String,
                      partition_key: &str,
                      clock: ClockMode,
                      out: &mut Gates|
     -> Result<ChainSigner, StartError> {
        let head = head_of(&chain)?;
        if head.next_seq > 0 {
            tracing::info!(chain = %chain, next_seq = head.next_seq, "continuing chain");
            out.continued.insert(chain.clone(), head.clone());
        }
        let head_key = head.key_id.clone();
        // The engine clock at start: under event time, the last signed event's time (no
        // later exchange time has been seen yet), so the chain's times never go back.
        let rotation_ms = match clock {
            ClockMode::System => crate::clock::system_now_ms().max(head.ts_ms),
            ClockMode::EventTime => head.ts_ms,
        };
        let mut signer = ChainSigner::new(signing_key.clone(), chain.clone(), head, policy);
        if let Some(head_key) = head_key.filter(|k| *k != key_id) {
            match previous_key {
                Some(old) if keys::key_id(&old.verifying_key()) == head_key => {
                    out.rotations
                        .push(signer.rotate_from(old, rotation_ms, partition_key)?);
                    tracing::info!(chain = %chain, from = %head_key, to = %key_id, "key rotated");
                }
                _ => {
                    return Err(StartError::KeyMismatch {
                        chain,
                        head_key,
                        key: key_id.clone(),
                    })
                }
            }
        }
        Ok(signer)
    };
    for (n, partition_key) in chain_keys(config).into_iter().enumerate() {
        let chain = chain_id(&config.engine.engine_id, &partition_key);
        let signer = signer_for(chain, &partition_key, config.engine.clock, &mut out)?;
        let step = gate_step(
            &settings,
            (&rules, shadow_rules.as_ref()),
            kill_switch,
            signer,
            &provenance,
            &partition_key,
        );
        if n == 0 && config.portfolio.enabled {
            out.portfolio = Some(step);
        } else {
            out.symbols.push(step);
        }
    }
    // Control requests are wall-clock events, whatever clock the decisions use.
    out.control = Some(signer_for(
        crate::control::control_chain(&config.engine.engine_id),
        crate::control::CONTROL_PARTITION_KEY,
        ClockMode::System,
        &mut out,
    )?);
    Ok(out)
}

fn checkpoint_policy(config: &Config) -> CheckpointPolicy {
    CheckpointPolicy {
        every_events: config.signing.checkpoint_every_events,
        every_ms: i64::try_from(config.signing.checkpoint_every_s)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000),
    }
}

/// The gate step of one chain (`partition_key`: its symbol or PORTFOLIO).
fn gate_step(
    settings: &crate::elf::GateSettings,
    (rules, shadow): (&Arc<RuleSet>, Option<&Arc<RuleSet>>),
    kill_switch: &KillSwitch,
    signer: ChainSigner,
    provenance: &RunProvenance,
    partition_key: &str,
) -> GateStep {
    let known: HashSet<String> = [partition_key.to_string()].into();
    let mut gate = ElfGate::new(settings.clone(), known, rules.clone(), kill_switch.clone());
    gate.set_shadow_rules(shadow.cloned());
    GateStep::new(gate, signer, provenance.clone(), partition_key.to_string())
}

/// Builds the gate of any chain from its genesis, for hosts that take chains over one at a
/// time and re-derive them (the Kafka roles).
pub struct GateFactory {
    key: ed25519_dalek::SigningKey,
    rules: (Arc<RuleSet>, Option<Arc<RuleSet>>),
    settings: crate::elf::GateSettings,
    provenance: RunProvenance,
    policy: CheckpointPolicy,
    engine_id: String,
    kill_switch: KillSwitch,
}

impl GateFactory {
    /// The configured key and rules, loaded once.
    pub fn new(config: &Config) -> Result<Self, StartError> {
        let key = keys::load_signing_key(&config.signing.key_file)?;
        let rules = load_rules(config)?;
        Ok(Self {
            provenance: RunProvenance {
                config_sha256: config.hash_hex(),
                rules_sha256: rules.0.hash_hex().to_string(),
            },
            key,
            rules,
            settings: config.elf.gate_settings(),
            policy: checkpoint_policy(config),
            engine_id: config.engine.engine_id.clone(),
            kill_switch: KillSwitch::default(),
        })
    }

    pub fn verifying_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    pub fn key_id(&self) -> String {
        keys::key_id(&self.key.verifying_key())
    }

    /// The chain of `partition_key` (a symbol or PORTFOLIO) at genesis.
    pub fn genesis(&self, partition_key: &str) -> GateStep {
        let chain = chain_id(&self.engine_id, partition_key);
        let signer = ChainSigner::new(self.key.clone(), chain, ChainHead::genesis(), self.policy);
        gate_step(
            &self.settings,
            (&self.rules.0, self.rules.1.as_ref()),
            &self.kill_switch,
            signer,
            &self.provenance,
            partition_key,
        )
    }
}

pub fn model_steps(config: &Config, start: StartState) -> (Vec<SymbolStep>, Option<PortfolioStep>) {
    let mut starts = start.symbols.into_iter();
    let symbols = (0..config.instruments.len())
        .filter_map(|i| {
            let chain = chain_id(&config.engine.engine_id, &config.instruments[i].symbol);
            let settings = config.symbol_settings(i, chain)?;
            Some(SymbolStep::new(settings, starts.next().unwrap_or_default()))
        })
        .collect();
    let portfolio = config.portfolio.enabled.then(|| {
        let chain = chain_id(&config.engine.engine_id, crate::PORTFOLIO_CHAIN);
        PortfolioStep::new(config.portfolio_settings(chain), start.portfolio)
    });
    (symbols, portfolio)
}

/// Where each chain continues from: its persisted head reconciled with its last record
/// in the sink (the file, or the Kafka topic read once at start), or genesis.
fn chain_head(
    config: &Config,
    persisted: &BTreeMap<String, ChainHead>,
    kafka_heads: &HashMap<String, ChainHead>,
    chain: &str,
) -> Result<ChainHead, StartError> {
    let trail = if config.kafka_enabled() {
        kafka_heads
            .get(chain)
            .cloned()
            .unwrap_or_else(ChainHead::genesis)
    } else {
        FileSink::recover_head(&config.sink.dir, chain)?
    };
    Ok(heads::reconcile(chain, persisted.get(chain), trail)?)
}

/// The key that signed the chains so far, when rotating to a new one.
fn previous_key(config: &Config) -> Result<Option<ed25519_dalek::SigningKey>, StartError> {
    let path = &config.signing.previous_key_file;
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    Ok(Some(keys::load_signing_key(path)?))
}

/// Beside the trail, `keys/<key_id>.pub` holds each verifying key that signed it, so an
/// auditor who receives the directory also receives the public keys to check it with.
pub fn publish_verifying_key(
    dir: &std::path::Path,
    key_id: &str,
    hex_key: &str,
) -> Result<(), StartError> {
    let keys_dir = dir.join("keys");
    let path = keys_dir.join(format!("{key_id}.pub"));
    std::fs::create_dir_all(&keys_dir)
        .and_then(|_| std::fs::write(&path, format!("{hex_key}\n")))
        .map_err(|source| {
            StartError::Sink(SinkError::Io {
                path: path.display().to_string(),
                source,
            })
        })
}
