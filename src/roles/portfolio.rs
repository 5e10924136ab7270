//! The `portfolio` role: a member of `roles.portfolio_group` over `roles.bars_topic` (one
//! partition, so one worker owns the portfolio chain and the others stand by). It aligns
//! every symbol's closed bars (published by the `risk` workers) with the same portfolio and
//! gate steps as the single process and publishes the portfolio's decisions. It consumes
//! bars, not the per-symbol VaR: portfolio VaR needs the joint returns, which the symbols'
//! marginal figures do not carry. Hand-over re-derives from the first record like `risk`.

use std::time::Instant;

use sha2::{Digest, Sha256};

use super::handover::{check_history, CatchUp};
use super::member::Input;
use super::records::BarRecord;
use super::worker::{Host, Owner};
use super::RoleError;
use crate::assemble::{chain_id, GateFactory};
use crate::config::Config;
use crate::engine::{GateStep, PortfolioOutput, PortfolioStart, PortfolioStep};

struct Lane {
    step: PortfolioStep,
    gate: GateStep,
    /// The newest bar end taken of each symbol (a bar published twice is taken once).
    last_end: Vec<i64>,
}

struct Owned {
    lane: Option<Lane>,
    catch_up: CatchUp,
    catch_up_to: Option<i64>,
    assigned_at: Instant,
}

pub(super) struct PortfolioOwner {
    config: Config,
    factory: GateFactory,
    symbols: Vec<String>,
    owned: Option<Owned>,
    out: PortfolioOutput,
}

impl PortfolioOwner {
    pub(super) fn new(config: &Config) -> Result<Self, RoleError> {
        Ok(Self {
            factory: GateFactory::new(config)?,
            config: config.clone(),
            symbols: config.symbols(),
            owned: None,
            out: PortfolioOutput::default(),
        })
    }

    fn lane(&self, start: PortfolioStart, start_record: Option<&[u8]>) -> Lane {
        let chain = chain_id(&self.config.engine.engine_id, crate::PORTFOLIO_CHAIN);
        let mut settings = self.config.portfolio_settings(chain);
        settings.snapshot_every_bars = None;
        let mut gate = self.factory.genesis(crate::PORTFOLIO_CHAIN);
        gate.set_timer(Some(crate::clock::monotonic_ns));
        if let Some(bytes) = start_record {
            gate.note_run_start(hex::encode(Sha256::digest(bytes)));
        }
        Lane {
            step: PortfolioStep::new(settings, start),
            gate,
            last_end: vec![i64::MIN; self.symbols.len()],
        }
    }

    fn take(&mut self, host: &Host, input: &Input) -> Result<&'static str, RoleError> {
        let record = match BarRecord::parse(&input.payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(offset = input.offset, code = e.code(), error = %e, "bar record refused");
                return Ok(e.code());
            }
        };
        let has_lane = self.owned.as_ref().is_some_and(|o| o.lane.is_some());
        match record {
            BarRecord::PortfolioStart { klines, .. } => {
                if has_lane {
                    return Ok("DUPLICATE");
                }
                if klines.len() != self.symbols.len() {
                    tracing::warn!(
                        symbols = klines.len(),
                        "portfolio history for another set of symbols"
                    );
                    return Ok("RECORD_MALFORMED");
                }
                let start = PortfolioStart {
                    snapshot: None,
                    klines: klines
                        .into_iter()
                        .map(|k| k.into_iter().map(Into::into).collect())
                        .collect(),
                };
                let lane = self.lane(start, Some(&input.payload));
                if let Some(o) = &mut self.owned {
                    o.lane = Some(lane);
                }
                Ok("TAKEN")
            }
            BarRecord::Bar { symbol, bar, .. } => {
                if self.symbols.get(bar.index) != Some(&symbol) {
                    tracing::warn!(%symbol, index = bar.index, "bar of an unconfigured symbol");
                    return Ok("UNKNOWN_SYMBOL");
                }
                if !has_lane {
                    let start = PortfolioStart {
                        snapshot: None,
                        klines: vec![Vec::new(); self.symbols.len()],
                    };
                    let lane = self.lane(start, None);
                    if let Some(o) = &mut self.owned {
                        o.lane = Some(lane);
                    }
                }
                let Some(owned) = &mut self.owned else {
                    return Ok("NOT_OWNED");
                };
                let Some(lane) = &mut owned.lane else {
                    return Ok("NOT_OWNED");
                };
                if lane.last_end[bar.index] >= bar.bar_end_ms {
                    return Ok("DUPLICATE");
                }
                lane.last_end[bar.index] = bar.bar_end_ms;
                lane.step.on_bar(bar, &mut self.out);
                host.gate_and_publish(
                    &mut lane.gate,
                    &mut owned.catch_up,
                    &mut self.out.requests,
                    input,
                )?;
                Ok("TAKEN")
            }
        }
    }
}

impl Owner for PortfolioOwner {
    fn assign(&mut self, host: &Host, partitions: &[i32]) -> Result<(), RoleError> {
        if partitions.iter().any(|p| *p != 0) {
            return Err(RoleError::BarsPartitions(host.member.topic().to_string()));
        }
        if partitions.is_empty() {
            return Ok(());
        }
        let assigned_at = Instant::now();
        let published = host.published_heads()?;
        let committed = host.member.committed(partitions);
        host.member
            .start_at(0, committed.get(&0).copied().unwrap_or(0));
        let (first, high) = host.member.watermarks(0)?;
        check_history(host.member.topic(), 0, first)?;
        self.owned = Some(Owned {
            lane: None,
            catch_up: CatchUp::new(published),
            catch_up_to: (high > 0).then_some(high),
            assigned_at,
        });
        Ok(())
    }

    fn revoke(&mut self, partitions: &[i32]) {
        if partitions.contains(&0) {
            self.owned = None;
        }
    }

    fn owned(&self) -> Vec<i32> {
        self.owned.iter().map(|_| 0).collect()
    }

    fn on_input(&mut self, host: &Host, input: Input) -> Result<(), RoleError> {
        if self.owned.is_none() || input.partition != 0 {
            host.count("NOT_OWNED");
            return Ok(());
        }
        host.member.consumed(input.partition, input.offset);
        let outcome = self.take(host, &input)?;
        host.count(outcome);
        if let Some(o) = &mut self.owned {
            if o.catch_up_to.is_some_and(|end| input.offset + 1 >= end) {
                o.catch_up_to = None;
                host.caught_up(
                    input.partition,
                    input.offset + 1,
                    &o.catch_up,
                    o.assigned_at.elapsed(),
                );
            }
        }
        Ok(())
    }
}
