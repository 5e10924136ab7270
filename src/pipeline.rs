//! Wires the actors for one run: ingest, which calls each trade's symbol step and its
//! chain's gate (`SymbolHandle`), -> publisher, with bar returns also flowing to the
//! portfolio actor and its gate; the symbol actors take the operator's gate messages.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use crate::actors::control::{AttachGates, Control, ControlActor, GateRoute, SealControl};
use crate::actors::gate::{GateControl, GateHost, GetGateStats, SealCheckpoint};
use crate::actors::ingest::{connection_shards, run_shards, shard_index, IngestReport, TickRoute};
use crate::actors::portfolio::{GetPortfolioReport, PortfolioActor};
use crate::actors::publisher::{Drain, Publish, PublisherActor};
use crate::actors::symbol::{GetSymbolReport, SymbolActor, SymbolCore};
use crate::actors::threads::RunThreads;
use crate::actors::{PipelineError, SaveSnapshot};
pub use crate::assemble::{chain_id, load_rules, StartError};
use crate::config::Config;
use crate::control::ControlInput;
use crate::elf::KillSwitch;
use crate::engine::{GateStats, PortfolioReport, SymbolReport};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::sink::spool::{Spool, TopicKind};
use crate::sink::{
    FileSink, KafkaEndpoint, KafkaSink, KafkaSource, NewestRecords, Readback, Sink, SinkError,
    Topics,
};

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
    /// Market event arrival to its decision signed (the live pipeline only).
    pub tick_to_signed_us: Option<crate::sink::LatencySummary>,
    /// Acknowledged records the broker lost, found by reading back and sent again.
    pub acked_records_resent: u64,
    /// Acknowledged records the broker lost that could no longer be sent again.
    pub acked_records_unrecoverable: Vec<String>,
}

/// The file sink when no brokers are configured.
fn open_file_sink(config: &Config) -> Result<Sink, SinkError> {
    Ok(Sink::File(FileSink::open(&config.sink.dir)?))
}

/// Kafka: create missing topics, open the spool (what it still holds is sent first), and
/// return the sink with the newest event and checkpoint of every chain in the spool.
async fn open_kafka_sink(
    config: &Config,
    endpoint: &KafkaEndpoint,
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
            endpoint,
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
    let sink = KafkaSink::new(endpoint, topics, spool, readback, transactional_id, metrics)?;
    Ok((Sink::Kafka(Box::new(sink)), records))
}

/// On SIGHUP, reload the rule files: a control request like any other (signed on the
/// control chain; a file that does not parse keeps the rules in force).
fn spawn_hangup_reloader(control: Addr<ControlActor>) {
    #[cfg(unix)]
    actix::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!(
                "SIGHUP handler unavailable; reload rules with POST /control/rules/reload"
            );
            return;
        };
        while hangups.recv().await.is_some() {
            if control.send(Control(ControlInput::Hangup)).await.is_err() {
                return;
            }
        }
    });
    #[cfg(not(unix))]
    let _ = control;
}

/// The control step: the control chain's signer, the tokens, and the start-up rule that a
/// non-loopback control plane must have tokens.
/// How the control step watches a performance change (`[optimizer]`).
fn watch_settings(config: &Config) -> crate::control::WatchSettings {
    let o = &config.optimizer;
    crate::control::WatchSettings {
        kpi: o.kpi(),
        window_ms: i64::try_from(o.watch_window_s.saturating_mul(1000)).unwrap_or(i64::MAX),
        degradation_pct: o.rollback_degradation_pct,
        min_decisions: o.watch_min_decisions,
    }
}

fn control_step(
    config: &Config,
    gates: &mut crate::assemble::Gates,
) -> Result<
    (
        crate::control::ControlStep,
        Vec<crate::control::ControlRecord>,
    ),
    StartError,
> {
    let tokens = crate::control::Tokens::load(&config.http.control_tokens_file)?;
    let http = &config.http;
    if !http.bind.is_empty() && http.control_enabled && !http.loopback() && tokens.is_empty() {
        return Err(StartError::ControlWithoutTokens {
            bind: http.bind.clone(),
        });
    }
    if http.control_enabled && !http.bind.is_empty() {
        tracing::info!(tokens = tokens.len(), "control plane on /control/");
    }
    let signer = gates
        .control
        .take()
        .ok_or_else(|| StartError::Metrics("the control chain's signer was not built".into()))?;
    let mut step = crate::control::ControlStep::new(
        signer,
        tokens,
        crate::control::RateLimit::new(http.control_requests_per_minute, http.control_burst),
        config.symbols(),
        gates.provenance.rules_sha256.clone(),
    )
    .with_tuning(config.elf.gate_settings().tuning(), watch_settings(config));
    // An unreadable operator state could hide an engaged kill switch: refuse to start.
    let earlier = crate::actors::control::load_state(config)
        .map_err(|e| StartError::ControlState(e.to_string()))?;
    let restored = match earlier {
        Some(earlier) => step.restore(earlier, crate::clock::system_now_ms()),
        None => Vec::new(),
    };
    if !restored.is_empty() {
        let state = step.state();
        tracing::warn!(
            kill_switch_engaged = state.kill_switch_engaged,
            global_trading_state = ?state.global_trading_state,
            symbol_trading_states = ?state.symbol_trading_states,
            file = %crate::actors::control::state_file(config).display(),
            "operator state of the previous run restored"
        );
        if http.bind.is_empty() || !http.control_enabled {
            tracing::error!(
                "the restored operator state cannot be changed: /control/ is off; stop the \
                 engine and remove the file to start without it"
            );
        }
    }
    Ok((step, restored))
}

/// Run the whole pipeline inside the current actix system until ingest ends.
pub async fn run(
    config: Config,
    kill_switch: KillSwitch,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> Result<RunSummary, anyhow::Error> {
    // With Kafka: create topics and open the spool first, then read the decisions and
    // checkpoints topics once; a chain continues after the later of its newest record on
    // the topics and in the spool.
    let (sink, kafka_heads) = if config.kafka_enabled() {
        let endpoint = KafkaEndpoint::from_config(&config.kafka).map_err(StartError::from)?;
        let (mut sink, mut newest) = open_kafka_sink(&config, &endpoint, metrics.clone())
            .await
            .map_err(StartError::from)?;
        let brokers = endpoint.clone();
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
    let mut gates = crate::assemble::gates(&config, &kill_switch, &kafka_heads)?;
    let (control_step, restored) = control_step(&config, &mut gates)?;
    metrics.health.signer_ready.set(1);
    tracing::info!(
        verifying_key = %gates.verifying_key_hex,
        key_id = %gates.key_id,
        "PoI signer ready"
    );
    let sink_label = sink.describe();
    if !config.kafka_enabled() {
        crate::assemble::publish_verifying_key(
            &config.sink.dir,
            &gates.key_id,
            &gates.verifying_key_hex,
        )?;
    }
    let cap = config.feed.mailbox_capacity;
    let mut publisher = PublisherActor::new(
        sink,
        config.signing.heads_file.clone(),
        gates.continued.clone(),
        cap,
        metrics.clone(),
    );
    // The dashboard keeps snapshots only while something can serve them.
    let hub = (!config.http.bind.is_empty()).then(|| {
        let budget_bytes = config.http.dashboard_history_mb.saturating_mul(1 << 20);
        Arc::new(crate::http::DashboardHub::new(
            usize::try_from(budget_bytes).unwrap_or(usize::MAX),
        ))
    });
    if let Some(hub) = &hub {
        publisher = publisher.with_dashboard(hub.clone());
    }
    let publisher = publisher.start();
    let control = ControlActor::new(
        control_step,
        restored,
        publisher.clone(),
        kill_switch.clone(),
        config.clone(),
        metrics.clone(),
    )
    .start();
    let http = match hub {
        None => None,
        Some(hub) => {
            let state = crate::http::HttpState {
                metrics: metrics.clone(),
                hub,
                symbols: config.symbols(),
                stale_after_s: config.feed.stale_after_ms as f64 / 1000.0,
                live: true,
                control: config
                    .http
                    .control_enabled
                    .then(|| crate::http::control::ControlPlane {
                        actor: control.clone(),
                        max_body_bytes: config.http.max_body_bytes,
                        body_timeout: std::time::Duration::from_millis(
                            config.http.request_timeout_ms,
                        ),
                    }),
            };
            let limits = crate::http::Limits::from_config(&config.http);
            Some(crate::http::start(&config.http.bind, limits, state)?)
        }
    };

    let roots = crate::market::tls::load(&config.feed.ca_file)?;
    let start_config = config.clone();
    let now_ms = crate::clock::system_now_ms();
    let start_roots = roots.clone();
    let (start, loaded, warm_start_gets) = tokio::task::spawn_blocking(move || {
        crate::warm_start::load(&start_config, now_ms, start_roots)
    })
    .await
    .map_err(|e| anyhow::anyhow!("warm start: {e}"))?;
    let shards = connection_shards(&config);
    let next_seq = gates.start_run(&shards, &loaded, &warm_start_gets);
    let recording = if config.sink.record_inputs {
        let run = crate::recording::run_dir(&config.sink.dir, now_ms);
        let record = crate::recording::StartRecord {
            format: crate::recording::FORMAT.into(),
            build: crate::audit::wire::BUILD.into(),
            config_sha256: gates.provenance.config_sha256.clone(),
            rules_sha256: gates.provenance.rules_sha256.clone(),
            config: serde_json::to_value(&config).unwrap_or_default(),
            started_ms: now_ms,
            warm_start_now_ms: now_ms,
            warm_start: warm_start_gets,
            snapshots: loaded,
            connections: shards.clone(),
            next_seq,
        };
        crate::recording::write_start(&run, &record, &config)?;
        tracing::info!(dir = %run.display(), "recording every input");
        Some(run)
    } else {
        None
    };
    let (symbol_steps, portfolio_step) = crate::assemble::model_steps(&config, start);
    let snapshot_dir = config.snapshot_dir();
    let threads = RunThreads::start(config.engine.worker_threads, shards.len());
    let shard_of = shard_index(&shards);
    let gate_host = |step| GateHost::new(step, metrics.clone());

    // The portfolio's gate first, then the symbols' in configuration order.
    let mut gate_routes = Vec::new();
    let portfolio = match (portfolio_step, gates.portfolio) {
        (Some(step), Some(gate)) => {
            let gate = gate_host(gate);
            let (publisher, snapshot_dir, metrics) =
                (publisher.clone(), snapshot_dir.clone(), metrics.clone());
            let addr = PortfolioActor::start_in_arbiter(&threads.portfolio(), move |_| {
                PortfolioActor::new(step, gate, publisher, cap, snapshot_dir, metrics)
            });
            gate_routes.push(GateRoute {
                symbol: None,
                gate: GateControl::of(&addr),
            });
            Some(addr)
        }
        _ => None,
    };
    let mut routes = HashMap::new();
    let mut symbol_actors = Vec::new();
    for (step, gate) in symbol_steps.into_iter().zip(gates.symbols) {
        let symbol = step.symbol().to_string();
        let on = threads.shard(shard_of.get(symbol.as_str()).copied().unwrap_or(0));
        let core = SymbolCore::new(step, gate_host(gate), snapshot_dir.clone(), metrics.clone());
        let (addr, handle) =
            SymbolActor::start(core, publisher.clone(), portfolio.clone(), cap, &on);
        gate_routes.push(GateRoute {
            symbol: Some(symbol.clone()),
            gate: GateControl::of(&addr),
        });
        routes.insert(symbol, TickRoute::Symbol(handle));
        symbol_actors.push(addr);
    }
    let gates_list: Vec<GateControl> = gate_routes.iter().map(|r| r.gate.clone()).collect();

    for r in gates.rotations {
        publisher
            .send(Publish::from(r))
            .await
            .map_err(PipelineError::from)??;
    }
    control
        .send(AttachGates(gate_routes))
        .await
        .map_err(PipelineError::from)?;
    spawn_hangup_reloader(control.clone());

    // One ingest actor per connection shard, each recording its inputs when asked.
    let ingest_report = run_shards(
        &config,
        |symbol| routes.get(symbol).cloned(),
        |k| {
            recording.as_ref().map(|run| {
                crate::recording::writer::ConnectionWriter::new(
                    run,
                    k,
                    config.sink.recording_segment_mb.saturating_mul(1 << 20),
                    config.sink.recording_compress_closed,
                )
            })
        },
        &threads,
        &metrics,
        &shutdown,
        &roots,
    )
    .await?;
    for g in &gates_list {
        g.seal
            .send(SealCheckpoint)
            .await
            .map_err(PipelineError::from)??;
    }
    control
        .send(SealControl)
        .await
        .map_err(PipelineError::from)??;
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
    for g in &gates_list {
        gate_stats.push(
            g.stats
                .send(GetGateStats)
                .await
                .map_err(PipelineError::from)?,
        );
    }
    threads.stop().await;
    if let Some(http) = http {
        http.stop().await;
    }
    Ok(RunSummary {
        ingest: ingest_report,
        symbols: symbol_reports,
        portfolio: portfolio_report,
        gates: gate_stats,
        sink: sink_label,
        verifying_key_hex: gates.verifying_key_hex,
        config_sha256: gates.provenance.config_sha256,
        rules_sha256: gates.provenance.rules_sha256,
        spooled_bytes_left: drained.spooled_bytes_left,
        tick_to_ack_us: drained.tick_to_ack_us,
        tick_to_signed_us: drained.tick_to_signed_us,
        acked_records_resent: drained.acked_records_resent,
        acked_records_unrecoverable: drained.acked_records_unrecoverable,
    })
}
