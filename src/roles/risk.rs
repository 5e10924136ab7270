//! The `risk` role: a member of `roles.risk_group` over `roles.market_topic`. For each owned
//! partition it keeps the symbol and gate steps of the symbols found in it (one chain per
//! symbol, as the single process signs; a symbol's records are all in one partition, so a
//! chain has one writer: the partition's owner), signs each decision with the input record
//! it came from, and publishes the decisions, checkpoints, VaR snapshots and closed bars.
//! A new owner re-derives the partition from its first record and publishes only what the
//! output topics do not hold yet (`roles::handover`).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::handover::{check_history, CatchUp};
use super::member::Input;
use super::output::OutKind;
use super::records::{BarRecord, MarketRecord, RECORD_VERSION};
use super::worker::{Host, Owner};
use super::RoleError;
use crate::assemble::{chain_id, GateFactory};
use crate::config::Config;
use crate::engine::{GateStep, ModelScratch, SymbolOutput, SymbolStart, SymbolStep};

/// One symbol of an owned partition.
struct Lane {
    symbol: SymbolStep,
    gate: GateStep,
    last_trade_id: Option<u64>,
}

/// An owned partition.
struct Partition {
    lanes: HashMap<String, Lane>,
    catch_up: CatchUp,
    /// The group's committed position at assignment: the bars of earlier records were
    /// published by an earlier owner.
    bars_from: i64,
    /// The high watermark at assignment, until the re-derivation reaches it.
    catch_up_to: Option<i64>,
    assigned_at: Instant,
}

pub(super) struct RiskOwner {
    config: Config,
    factory: GateFactory,
    symbols: HashMap<String, usize>,
    partitions: BTreeMap<i32, Partition>,
    out: SymbolOutput,
    scratch: ModelScratch,
}

impl RiskOwner {
    pub(super) fn new(config: &Config) -> Result<Self, RoleError> {
        let symbols = config
            .symbols()
            .into_iter()
            .enumerate()
            .map(|(i, s)| (s, i))
            .collect();
        Ok(Self {
            factory: GateFactory::new(config)?,
            config: config.clone(),
            symbols,
            partitions: BTreeMap::new(),
            out: SymbolOutput::default(),
            scratch: ModelScratch::default(),
        })
    }

    fn lane(&self, symbol: &str, start: SymbolStart, start_record: Option<&[u8]>) -> Option<Lane> {
        let index = *self.symbols.get(symbol)?;
        let chain = chain_id(&self.config.engine.engine_id, symbol);
        let mut settings = self.config.symbol_settings(index, chain)?;
        // Model snapshots are the single process's files; a role's state is its input.
        settings.snapshot_every_bars = None;
        let mut gate = self.factory.genesis(symbol);
        gate.set_timer(Some(crate::clock::monotonic_ns));
        if let Some(bytes) = start_record {
            // The chain's first checkpoint signs the history its models started from.
            gate.note_run_start(hex::encode(Sha256::digest(bytes)));
        }
        Some(Lane {
            symbol: SymbolStep::new(settings, start),
            gate,
            last_trade_id: None,
        })
    }
}

impl Owner for RiskOwner {
    fn assign(&mut self, host: &Host, partitions: &[i32]) -> Result<(), RoleError> {
        let assigned_at = Instant::now();
        let published = host.published_heads()?;
        let committed = host.member.committed(partitions);
        for &p in partitions {
            let bars_from = committed.get(&p).copied().unwrap_or(0);
            host.member.start_at(p, bars_from);
            let (first, high) = host.member.watermarks(p)?;
            check_history(host.member.topic(), p, first)?;
            self.partitions.insert(
                p,
                Partition {
                    lanes: HashMap::new(),
                    catch_up: CatchUp::new(published.clone()),
                    bars_from,
                    catch_up_to: (high > 0).then_some(high),
                    assigned_at,
                },
            );
        }
        Ok(())
    }

    fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.partitions.remove(p);
        }
    }

    fn owned(&self) -> Vec<i32> {
        self.partitions.keys().copied().collect()
    }

    fn on_input(&mut self, host: &Host, input: Input) -> Result<(), RoleError> {
        if !self.partitions.contains_key(&input.partition) {
            host.count("NOT_OWNED");
            return Ok(());
        }
        host.member.consumed(input.partition, input.offset);
        let outcome = self.take(host, &input)?;
        host.count(outcome);
        if let Some(part) = self.partitions.get_mut(&input.partition) {
            if part.catch_up_to.is_some_and(|end| input.offset + 1 >= end) {
                part.catch_up_to = None;
                host.caught_up(
                    input.partition,
                    input.offset + 1,
                    &part.catch_up,
                    part.assigned_at.elapsed(),
                );
            }
        }
        Ok(())
    }
}

impl RiskOwner {
    /// One record; returns its outcome label.
    fn take(&mut self, host: &Host, input: &Input) -> Result<&'static str, RoleError> {
        let record = match MarketRecord::parse(input.key.as_deref(), &input.payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(partition = input.partition, offset = input.offset, code = e.code(), error = %e, "market record refused");
                return Ok(e.code());
            }
        };
        if !self.symbols.contains_key(record.symbol()) {
            tracing::warn!(
                symbol = record.symbol(),
                "market record of an unconfigured symbol"
            );
            return Ok("UNKNOWN_SYMBOL");
        }
        let symbol = record.symbol().to_string();
        let known = self
            .partitions
            .get(&input.partition)
            .is_some_and(|p| p.lanes.contains_key(&symbol));
        match record {
            MarketRecord::Start { klines, .. } => {
                if known {
                    // A restarted ingest publishes its history again; the models keep theirs.
                    return Ok("DUPLICATE");
                }
                let start = SymbolStart {
                    snapshot: None,
                    klines: klines.into_iter().map(Into::into).collect(),
                };
                if let Some(lane) = self.lane(&symbol, start, Some(&input.payload)) {
                    tracing::info!(%symbol, partition = input.partition, "symbol taken");
                    if let Some(part) = self.partitions.get_mut(&input.partition) {
                        part.lanes.insert(symbol, lane);
                    }
                }
                Ok("TAKEN")
            }
            MarketRecord::Trade {
                received_at_ms,
                feed_healthy,
                input: mark,
                trade,
                ..
            } => {
                if !known {
                    // No history was published for it: its models warm up live.
                    if let Some(lane) = self.lane(&symbol, SymbolStart::default(), None) {
                        tracing::info!(%symbol, partition = input.partition, "symbol taken without history");
                        if let Some(part) = self.partitions.get_mut(&input.partition) {
                            part.lanes.insert(symbol.clone(), lane);
                        }
                    }
                }
                let Some(part) = self.partitions.get_mut(&input.partition) else {
                    return Ok("NOT_OWNED");
                };
                let Some(lane) = part.lanes.get_mut(&symbol) else {
                    return Ok("UNKNOWN_SYMBOL");
                };
                if lane.last_trade_id.is_some_and(|last| trade.id <= last) {
                    return Ok("DUPLICATE");
                }
                lane.last_trade_id = Some(trade.id);
                let trade = trade.to_trade(&symbol);
                let mark = mark.as_ref().and_then(|m| m.to_mark());
                lane.symbol.on_trade(
                    &trade,
                    received_at_ms,
                    feed_healthy,
                    mark,
                    &mut self.scratch,
                    &mut self.out,
                );
                host.gate_and_publish(
                    &mut lane.gate,
                    &mut part.catch_up,
                    &mut self.out.requests,
                    input,
                )?;
                if input.offset >= part.bars_from {
                    for bar in &self.out.bars {
                        let record = BarRecord::Bar {
                            v: RECORD_VERSION,
                            symbol: symbol.clone(),
                            bar: *bar,
                        };
                        host.output.bar(&symbol, &record.to_json())?;
                        host.published(OutKind::Bar);
                    }
                }
                Ok("TAKEN")
            }
        }
    }
}
