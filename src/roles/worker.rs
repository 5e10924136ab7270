//! The loop every consuming role runs: poll the group, hand assignments, revocations and
//! records to the role's owner of partitions, and every `roles.commit_interval_ms` wait for
//! the outputs' acknowledgements, then commit the input positions and refresh the lag.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handover::{CatchUp, Published, Route};
use super::member::{Input, Member, Membership};
use super::output::{OutKind, Output};
use super::RoleError;
use crate::audit::wire::SourceOffset;
use crate::audit::SignedEvent;
use crate::engine::{GateRequest, GateStep};
use crate::metrics::Metrics;
use crate::sink::{KafkaEndpoint, KafkaSource, NewestRecords};

/// What the loop gives a role's owner to work with.
pub(super) struct Host {
    pub role: &'static str,
    pub member: Member,
    pub output: Arc<Output>,
    pub metrics: Arc<Metrics>,
    pub endpoint: KafkaEndpoint,
    pub topics: [String; 2],
    pub timeout: Duration,
}

impl Host {
    pub(super) fn count(&self, outcome: &str) {
        self.metrics
            .roles
            .records_total
            .with_label_values(&[self.role, outcome])
            .inc();
    }

    pub(super) fn published(&self, kind: OutKind) {
        self.metrics
            .roles
            .published_total
            .with_label_values(&[self.role, kind.as_str()])
            .inc();
    }

    pub(super) fn suppressed(&self) {
        self.metrics
            .roles
            .suppressed_total
            .with_label_values(&[self.role])
            .inc();
    }

    /// Each request through `gate`, signed with the input record it came from; what the
    /// output topics do not hold yet is published.
    pub(super) fn gate_and_publish(
        &self,
        gate: &mut GateStep,
        catch_up: &mut CatchUp,
        requests: &mut [GateRequest],
        input: &Input,
    ) -> Result<(), RoleError> {
        let source = SourceOffset {
            topic: self.member.topic().to_string(),
            partition: input.partition,
            offset: input.offset,
        };
        for request in requests {
            request.source = Some(source.clone());
            let (_, sealed) = gate.step(request)?;
            self.publish_signed(catch_up, &sealed.signed)?;
            if let Some(cp) = &sealed.checkpoint {
                self.publish_signed(catch_up, cp)?;
            }
            if let Some(v) = &sealed.snapshot {
                if catch_up.snapshot_route(&v.chain, v.seq) == Route::Publish {
                    self.output.var_snapshot(v)?;
                    self.published(OutKind::VarSnapshot);
                }
            }
        }
        Ok(())
    }

    fn publish_signed(&self, catch_up: &mut CatchUp, event: &SignedEvent) -> Result<(), RoleError> {
        match catch_up.route(event)? {
            Route::Publish => {
                let kind = self.output.signed(event)?;
                self.published(kind);
            }
            Route::Suppress => self.suppressed(),
        }
        Ok(())
    }

    /// The re-derivation of `partition` reached the high watermark seen at its assignment:
    /// from here on everything is published.
    pub(super) fn caught_up(
        &self,
        partition: i32,
        records: i64,
        catch_up: &CatchUp,
        took: Duration,
    ) {
        self.metrics
            .roles
            .catch_up_seconds
            .with_label_values(&[self.role])
            .observe(took.as_secs_f64());
        tracing::info!(
            role = self.role,
            partition,
            records,
            suppressed = catch_up.suppressed(),
            ms = took.as_millis() as u64,
            "partition re-derived; publishing from here"
        );
    }

    /// The newest event and checkpoint of every chain on the output topics.
    pub(super) fn published_heads(&self) -> Result<HashMap<String, Published>, RoleError> {
        let started = Instant::now();
        let mut newest = NewestRecords::default();
        for topic in &self.topics {
            KafkaSource::new(&self.endpoint, topic)?.scan_newest(self.timeout, &mut newest)?;
        }
        let heads = newest
            .events()
            .map(|(chain, seq, line)| {
                (
                    chain.to_string(),
                    Published {
                        event: Some((seq, line.to_vec())),
                        checkpoint: newest
                            .newest_checkpoint(chain)
                            .map(|(s, line)| (s, line.to_vec())),
                    },
                )
            })
            .collect();
        self.metrics
            .roles
            .restore_seconds
            .with_label_values(&[self.role])
            .observe(started.elapsed().as_secs_f64());
        Ok(heads)
    }
}

/// A role's state for the partitions it owns.
pub(super) trait Owner {
    /// `partitions` are now this worker's, read from their first record.
    fn assign(&mut self, host: &Host, partitions: &[i32]) -> Result<(), RoleError>;
    /// `partitions` are gone (outputs already flushed and positions committed).
    fn revoke(&mut self, partitions: &[i32]);
    /// One record of an owned partition.
    fn on_input(&mut self, host: &Host, input: Input) -> Result<(), RoleError>;
    fn owned(&self) -> Vec<i32>;
}

pub(super) fn run(
    host: &Host,
    owner: &mut impl Owner,
    commit_interval: Duration,
    stop: &AtomicBool,
) -> Result<(), RoleError> {
    let mut next_commit = Instant::now() + commit_interval;
    while !stop.load(Ordering::Relaxed) {
        let input = host.member.poll(Duration::from_millis(100))?;
        for change in host.member.take_membership() {
            let (kind, partitions) = match &change {
                Membership::Assigned(p) => ("ASSIGNED", p),
                Membership::Revoked(p) => ("REVOKED", p),
            };
            host.metrics
                .roles
                .rebalances_total
                .with_label_values(&[host.role, kind])
                .inc_by(partitions.len() as u64);
            tracing::info!(role = host.role, ?partitions, kind, "rebalance");
            match change {
                Membership::Assigned(p) => owner.assign(host, &p)?,
                Membership::Revoked(p) => {
                    for partition in &p {
                        let _ = host
                            .metrics
                            .roles
                            .consumer_lag
                            .remove_label_values(&[host.role, &partition.to_string()]);
                    }
                    host.member.forget(&p);
                    owner.revoke(&p);
                }
            }
            host.metrics
                .roles
                .owned_partitions
                .with_label_values(&[host.role])
                .set(owner.owned().len() as i64);
        }
        if let Some(input) = input {
            owner.on_input(host, input)?;
        }
        host.output.poll()?;
        if Instant::now() >= next_commit {
            commit(host, owner)?;
            next_commit = Instant::now() + commit_interval;
        }
    }
    commit(host, owner)
}

/// Outputs acknowledged first, then the positions that produced them committed.
fn commit(host: &Host, owner: &impl Owner) -> Result<(), RoleError> {
    match host.output.flush(host.timeout) {
        Ok(()) => {}
        // Slow brokers: nothing is committed this time; a failed delivery stops the worker.
        Err(RoleError::Kafka(e)) => {
            tracing::warn!(role = host.role, error = %e, "outputs not yet acknowledged; positions not committed");
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    let owned = owner.owned();
    if let Err(e) = host.member.commit(&owned) {
        // During a rebalance the group refuses commits of the old generation; the
        // positions are committed at the revocation or the next interval.
        tracing::warn!(role = host.role, error = %e, "input positions not committed");
    }
    let lag = host.member.lag();
    for p in owned {
        if let Some(records) = lag.get(&p) {
            host.metrics
                .roles
                .consumer_lag
                .with_label_values(&[host.role, &p.to_string()])
                .set(*records);
        }
    }
    Ok(())
}
