//! Wires the actors for one run: ingest -> symbol (VaR) actors -> gate actors -> publisher,
//! with bar returns also flowing to the portfolio actor and its gate.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;

use crate::actors::gate::{GateActor, GateStats, GetGateStats, ReloadRules, SealCheckpoint};
use crate::actors::ingest::{shard_symbols, IngestActor, IngestReport, RunIngest};
use crate::actors::portfolio::{GetPortfolioReport, PortfolioActor, PortfolioReport};
use crate::actors::publisher::{Drain, Publish, PublisherActor};
use crate::actors::symbol::{GetSymbolReport, SaveSnapshot, SymbolActor, SymbolReport};
use crate::actors::PipelineError;
use crate::audit::wire::RunProvenance;
use crate::audit::{keys, ChainHead, ChainSigner, CheckpointPolicy, SignedEvent};
use crate::clock::Clock;
use crate::config::Config;
use crate::elf::{ElfGate, GateSettings, KillSwitch, RuleError, RuleSet};
use crate::heads::{self, HeadsError};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::sink::spool::{Spool, TopicKind};
use crate::sink::{
    FileSink, KafkaSink, KafkaSource, NewestRecords, Readback, Sink, SinkError, Topics,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Rules(#[from] crate::elf::RuleError),
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
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub ingest: IngestReport,
    pub symbols: Vec<SymbolReport>,
    pub portfolio: Option<PortfolioReport>,
    pub gates: Vec<GateStats>,
    pub sink: String,
    pub verifying_key_hex: String,
    pub config_sha256: String,
    pub rules_sha256: String,
    /// Bytes left in the Kafka spool at exit (sent at the next start); 0 with files.
    pub spooled_bytes_left: u64,
    /// Market event arrival to the broker's acknowledgement of its decisions (Kafka).
    pub tick_to_ack_us: Option<crate::sink::LatencySummary>,
    /// Acknowledged records the broker lost, found by reading back and sent again.
    pub acked_records_resent: u64,
    /// Acknowledged records the broker lost that could no longer be sent again.
    pub acked_records_unrecoverable: Vec<String>,
}

pub fn chain_id(engine_id: &str, symbol: &str) -> String {
    format!("{engine_id}.{symbol}")
}

/// The file sink when no brokers are configured.
fn open_file_sink(config: &Config) -> Result<Sink, SinkError> {
    Ok(Sink::File(FileSink::open(&config.sink.dir)?))
}

/// Kafka: create missing topics, open the spool (what it still holds is sent first), and
/// return the sink with the newest event and checkpoint of every chain in the spool.
async fn open_kafka_sink(
    config: &Config,
    metrics: Arc<Metrics>,
) -> Result<(Sink, NewestRecords), SinkError> {
    let k = &config.kafka;
    let topics = Topics {
        decisions: k.topic_decisions.clone(),
        checkpoints: k.topic_checkpoints.clone(),
        var_snapshots: k.topic_var_snapshots.clone(),
    };
    if k.create_topics {
        crate::sink::ensure_topics(
            &k.brokers,
            &[
                &topics.decisions,
                &topics.checkpoints,
                &topics.var_snapshots,
            ],
            k.topic_partitions,
            k.replication_factor,
            std::time::Duration::from_millis(k.request_timeout_ms),
        )
        .await?;
    }
    let mut spool = Spool::open(
        &k.spool_dir,
        k.spool_max_mb.saturating_mul(1 << 20),
        k.spool_retain_acked_mb.saturating_mul(1 << 20),
    )?;
    // The newest spooled event and checkpoint of each chain: they may not be on the
    // topics yet.
    let mut records = crate::sink::NewestRecords::default();
    spool.scan(|rec| match rec.topic {
        TopicKind::Decisions => records.event(&rec.chain, rec.seq, &rec.payload),
        TopicKind::Checkpoints => records.checkpoint(&rec.chain, rec.seq, &rec.payload),
        TopicKind::VarSnapshots => {}
    })?;
    let readback = Readback::new(
        std::time::Duration::from_millis(k.readback_interval_ms),
        // A read-back runs beside sending; it gives up soon while the broker is away.
        std::time::Duration::from_millis(k.request_timeout_ms.min(5_000)),
    );
    // One transactional ID per engine: a restarted engine fences its earlier instance.
    let transactional_id = k
        .transactional
        .then(|| format!("bizra-risk.{}", config.engine.engine_id));
    let sink = KafkaSink::new(
        &k.brokers,
        topics,
        spool,
        readback,
        transactional_id,
        metrics,
    )?;
    Ok((Sink::Kafka(Box::new(sink)), records))
}

/// Where each chain continues from: its persisted head reconciled with its last record
/// in the sink (the file, or the Kafka topic read once at start), or genesis.
fn chain_head(
    config: &Config,
    persisted: &std::collections::BTreeMap<String, ChainHead>,
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

/// Beside the trail, `keys/<key_id>.pub` holds each verifying key that signed it, so an
/// auditor who receives the directory also receives the public keys to check it with.
fn publish_verifying_key(
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

/// The key that signed the chains so far, when rotating to a new one.
fn previous_key(config: &Config) -> Result<Option<ed25519_dalek::SigningKey>, StartError> {
    let path = &config.signing.previous_key_file;
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    Ok(Some(keys::load_signing_key(path)?))
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

/// On SIGHUP, reload the rule files; a file that does not parse or type-check keeps the
/// rules in force and is logged with its problems.
fn spawn_rule_reloader(config: Config, gates: Vec<Addr<GateActor>>, metrics: Arc<Metrics>) {
    #[cfg(unix)]
    actix::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("SIGHUP handler unavailable; rules reload disabled");
            return;
        };
        while hangups.recv().await.is_some() {
            match load_rules(&config) {
                Ok((active, shadow)) => {
                    metrics
                        .elf_rules_reloads_total
                        .with_label_values(&["ok"])
                        .inc();
                    for g in &gates {
                        let msg = ReloadRules {
                            active: active.clone(),
                            shadow: shadow.clone(),
                        };
                        if g.send(msg).await.is_err() {
                            tracing::warn!("a gate stopped before the rules reload reached it");
                        }
                    }
                }
                Err(e) => {
                    metrics
                        .elf_rules_reloads_total
                        .with_label_values(&["rejected"])
                        .inc();
                    tracing::error!(error = %e, "rules reload rejected; previous rules stay in force");
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (config, gates, metrics);
}

/// Run the whole pipeline inside the current actix system until ingest ends.
pub async fn run(
    config: Config,
    kill_switch: KillSwitch,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> Result<RunSummary, anyhow::Error> {
    let (rules, shadow_rules) = load_rules(&config).map_err(StartError::from)?;
    let signing_key = keys::load_signing_key(&config.signing.key_file).map_err(StartError::from)?;
    let verifying_key_hex = hex::encode(signing_key.verifying_key().as_bytes());
    tracing::info!(
        verifying_key = %verifying_key_hex,
        key_id = %keys::key_id(&signing_key.verifying_key()),
        "PoI signer ready"
    );
    let provenance = RunProvenance {
        config_sha256: config.hash_hex(),
        rules_sha256: rules.hash_hex().to_string(),
    };
    // With Kafka: create topics and open the spool first, then read the decisions and
    // checkpoints topics once; a chain continues after the later of its newest record on
    // the topics and in the spool.
    let (sink, kafka_heads) = if config.kafka_enabled() {
        let (mut sink, mut newest) = open_kafka_sink(&config, metrics.clone())
            .await
            .map_err(StartError::from)?;
        let brokers = config.kafka.brokers.clone();
        let topics = [
            config.kafka.topic_decisions.clone(),
            config.kafka.topic_checkpoints.clone(),
        ];
        let timeout = std::time::Duration::from_millis(config.kafka.request_timeout_ms);
        let on_topics = tokio::task::spawn_blocking(move || {
            let mut on_topics = NewestRecords::default();
            for topic in &topics {
                KafkaSource::new(&brokers, topic)?.scan_newest(timeout, &mut on_topics)?;
            }
            Ok::<_, SinkError>(on_topics)
        })
        .await
        .map_err(|e| anyhow::anyhow!("chain head recovery: {e}"))?
        .map_err(StartError::from)?;
        if let Sink::Kafka(k) = &mut sink {
            k.skip_on_topic(on_topics.seqs());
        }
        newest.absorb(&on_topics);
        let heads = newest.heads().map_err(|reason| {
            StartError::from(SinkError::Damaged {
                path: format!(
                    "{}, {}",
                    config.kafka.topic_decisions, config.kafka.topic_checkpoints
                ),
                reason,
            })
        })?;
        (sink, heads)
    } else {
        (
            open_file_sink(&config).map_err(StartError::from)?,
            HashMap::new(),
        )
    };
    let persisted = heads::load(&config.signing.heads_file)
        .map_err(StartError::from)?
        .unwrap_or_default();
    let previous_key = previous_key(&config)?;
    let key_id = keys::key_id(&signing_key.verifying_key());
    let policy = CheckpointPolicy {
        every_events: config.signing.checkpoint_every_events,
        every_ms: i64::try_from(config.signing.checkpoint_every_s)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000),
    };
    let symbols = config.symbols();
    let mut chains = Vec::new();
    if config.portfolio.enabled {
        chains.push(crate::PORTFOLIO_CHAIN.to_string());
    }
    chains.extend(symbols.iter().cloned());
    let mut start_heads = std::collections::BTreeMap::new();
    for sym in &chains {
        let chain = chain_id(&config.engine.engine_id, sym);
        let head = chain_head(&config, &persisted, &kafka_heads, &chain)?;
        if head.next_seq > 0 {
            tracing::info!(chain = %chain, next_seq = head.next_seq, "continuing chain");
            start_heads.insert(chain, head);
        }
    }
    let sink_label = sink.describe();
    if !config.kafka_enabled() {
        publish_verifying_key(&config.sink.dir, &key_id, &verifying_key_hex)?;
    }
    let cap = config.feed.mailbox_capacity;
    let publisher = PublisherActor::new(
        sink,
        config.signing.heads_file.clone(),
        start_heads.clone(),
        cap,
        metrics.clone(),
    )
    .start();
    let settings = GateSettings::from_config(&config.elf);
    let mut rotations: Vec<SignedEvent> = Vec::new();

    let mut make_gate = |chain: String,
                         partition_key: &str,
                         known: HashSet<String>|
     -> Result<Addr<GateActor>, StartError> {
        let head = start_heads
            .get(&chain)
            .cloned()
            .unwrap_or_else(ChainHead::genesis);
        let mut gate = ElfGate::new(settings.clone(), known, rules.clone(), kill_switch.clone());
        gate.set_shadow_rules(shadow_rules.clone());
        let head_key = head.key_id.clone();
        // The engine clock at start: under event time, the last signed event's time (no
        // later exchange time has been seen yet), so the chain's times never go back.
        let rotation_ms = match config.engine.clock {
            crate::config::ClockMode::System => crate::clock::system_now_ms().max(head.ts_ms),
            crate::config::ClockMode::EventTime => head.ts_ms,
        };
        let mut signer = ChainSigner::new(signing_key.clone(), chain.clone(), head, policy);
        if let Some(head_key) = head_key.filter(|k| *k != key_id) {
            match &previous_key {
                Some(old) if keys::key_id(&old.verifying_key()) == head_key => {
                    rotations.push(signer.rotate_from(old, rotation_ms, partition_key)?);
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
        Ok(GateActor::new(
            gate,
            signer,
            provenance.clone(),
            publisher.clone(),
            metrics.clone(),
            cap,
            partition_key.to_string(),
        )
        .start())
    };

    let start_config = config.clone();
    let now_ms = crate::clock::system_now_ms();
    let start = tokio::task::spawn_blocking(move || crate::warm_start::load(&start_config, now_ms))
        .await
        .map_err(|e| anyhow::anyhow!("warm start: {e}"))?;
    let mut symbol_starts = start.symbols.into_iter();

    let mut gates = Vec::new();
    let portfolio = if config.portfolio.enabled {
        let chain = chain_id(&config.engine.engine_id, crate::PORTFOLIO_CHAIN);
        let gate = make_gate(
            chain.clone(),
            crate::PORTFOLIO_CHAIN,
            [crate::PORTFOLIO_CHAIN.to_string()].into(),
        )?;
        gates.push(gate.clone());
        Some(PortfolioActor::new(&config, chain, gate, start.portfolio).start())
    } else {
        None
    };
    let mut routes = HashMap::new();
    let mut symbol_actors = Vec::new();
    for (i, sym) in symbols.iter().enumerate() {
        let chain = chain_id(&config.engine.engine_id, sym);
        let gate = make_gate(chain.clone(), sym, [sym.clone()].into())?;
        gates.push(gate.clone());
        let symbol_start = symbol_starts.next().unwrap_or_default();
        let Some(actor) =
            SymbolActor::new(&config, i, chain, gate, portfolio.clone(), symbol_start)
        else {
            continue;
        };
        let addr = actor.start();
        routes.insert(sym.clone(), addr.clone());
        symbol_actors.push(addr);
    }

    for r in rotations {
        publisher
            .send(Publish::from(r))
            .await
            .map_err(PipelineError::from)??;
    }
    spawn_rule_reloader(config.clone(), gates.clone(), metrics.clone());

    // One ingest actor per connection shard; the per-IP connection-rate limit is split
    // between them so that together they never exceed it.
    let shards = shard_symbols(
        &symbols,
        config.feed.streams.len(),
        config.feed.max_streams_per_connection,
    );
    let mut shard_feed = config.feed.clone();
    shard_feed.max_connects_per_window =
        (config.feed.max_connects_per_window / shards.len().max(1)).max(1);
    let runs: Vec<_> = shards
        .iter()
        .map(|shard| {
            let shard_routes = routes
                .iter()
                .filter(|(s, _)| shard.contains(s))
                .map(|(s, a)| (s.clone(), a.clone()))
                .collect();
            IngestActor::new(
                shard_feed.clone(),
                shard,
                shard_routes,
                Clock::from_mode(config.engine.clock),
                metrics.clone(),
                shutdown.clone(),
                Some(config.sink.dir.join("quarantine").join("quarantine.jsonl")),
            )
            .start()
            .send(RunIngest)
        })
        .collect();
    let mut ingest_report = IngestReport::default();
    for result in futures_util::future::join_all(runs).await {
        ingest_report.merge(result.map_err(PipelineError::from)??);
    }
    for g in &gates {
        g.send(SealCheckpoint)
            .await
            .map_err(PipelineError::from)??;
    }
    // Everything ingest handed on has passed the gates (every hop awaited its reply): make
    // it durable and, with Kafka, wait for the acknowledgements until the deadline.
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_millis(config.engine.shutdown_timeout_ms);
    let drained = publisher
        .send(Drain { deadline })
        .await
        .map_err(PipelineError::from)??;
    if drained.spooled_bytes_left > 0 {
        tracing::warn!(
            bytes = drained.spooled_bytes_left,
            "records not yet acknowledged stay in the spool; they are sent at the next start"
        );
    }
    for a in &symbol_actors {
        a.send(SaveSnapshot).await.map_err(PipelineError::from)?;
    }
    if let Some(p) = &portfolio {
        p.send(SaveSnapshot).await.map_err(PipelineError::from)?;
    }

    let mut symbol_reports = Vec::new();
    for a in &symbol_actors {
        symbol_reports.push(a.send(GetSymbolReport).await.map_err(PipelineError::from)?);
    }
    let portfolio_report = match &portfolio {
        Some(p) => Some(
            p.send(GetPortfolioReport)
                .await
                .map_err(PipelineError::from)?,
        ),
        None => None,
    };
    let mut gate_stats = Vec::new();
    for g in &gates {
        gate_stats.push(g.send(GetGateStats).await.map_err(PipelineError::from)?);
    }
    Ok(RunSummary {
        ingest: ingest_report,
        symbols: symbol_reports,
        portfolio: portfolio_report,
        gates: gate_stats,
        sink: sink_label,
        verifying_key_hex,
        config_sha256: provenance.config_sha256,
        rules_sha256: provenance.rules_sha256,
        spooled_bytes_left: drained.spooled_bytes_left,
        tick_to_ack_us: drained.tick_to_ack_us,
        acked_records_resent: drained.acked_records_resent,
        acked_records_unrecoverable: drained.acked_records_unrecoverable,
    })
}
