//! `[roles]`: the Kafka roles that split the engine over machines (`role ingest`, `role
//! risk`, `role portfolio`): their topics, consumer groups and commit cadence.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RolesConfig {
    /// Normalised market events from `ingest`, keyed by symbol (one symbol, one partition).
    pub market_topic: String,
    /// Partitions of `market_topic` when it is created: the most `risk` workers that share
    /// the load.
    pub market_partitions: i32,
    /// Closed bars of every symbol from the `risk` workers, for `portfolio` (one partition:
    /// the portfolio aligns every symbol's bars, so one worker owns it).
    pub bars_topic: String,
    /// The consumer group of the `risk` workers.
    pub risk_group: String,
    /// The consumer group of the `portfolio` workers (one active, the others standing by).
    pub portfolio_group: String,
    /// How often a worker waits for its outputs' acknowledgements and commits its input
    /// offsets (and refreshes its lag metrics).
    pub commit_interval_ms: u64,
    /// Session timeout of the groups: how long a silent (killed) worker keeps its
    /// partitions before the group hands them over.
    pub session_timeout_ms: u64,
    /// The longest a worker may go between polls before the group takes its partitions;
    /// also how long a rebalance waits for a member that went silent.
    pub max_poll_interval_ms: u64,
    /// Static group membership (Kafka's `group.instance.id`): a worker that restarts under
    /// the same ID (a StatefulSet pod's name) takes its partitions back at once, without a
    /// rebalance of the others. Empty: dynamic membership.
    pub group_instance_id: String,
}

impl Config {
    /// Problems of `[roles]`.
    pub(super) fn roles_problems(&self, check: &mut impl FnMut(bool, String)) {
        let r = &self.roles;
        let k = &self.kafka;
        for (name, topic) in [
            ("market_topic", &r.market_topic),
            ("bars_topic", &r.bars_topic),
        ] {
            check(
                !topic.is_empty()
                    && topic.len() <= 249
                    && topic
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
                format!("roles.{name} must be a Kafka topic name (1-249 of [A-Za-z0-9._-]), got {topic:?}"),
            );
            check(
                ![
                    &k.topic_decisions,
                    &k.topic_checkpoints,
                    &k.topic_var_snapshots,
                ]
                .contains(&topic),
                format!("roles.{name} {topic:?} must differ from the kafka.topic_* output topics"),
            );
        }
        check(
            r.market_topic != r.bars_topic,
            "roles.market_topic and roles.bars_topic must differ".into(),
        );
        check(
            (1..=10_000).contains(&r.market_partitions),
            format!(
                "roles.market_partitions must be in 1..=10000, got {}",
                r.market_partitions
            ),
        );
        for (name, group) in [
            ("risk_group", &r.risk_group),
            ("portfolio_group", &r.portfolio_group),
        ] {
            check(!group.is_empty(), format!("roles.{name} must not be empty"));
        }
        check(
            r.risk_group != r.portfolio_group,
            "roles.risk_group and roles.portfolio_group must differ".into(),
        );
        check(
            (100..=600_000).contains(&r.commit_interval_ms),
            format!(
                "roles.commit_interval_ms must be in 100..=600000, got {}",
                r.commit_interval_ms
            ),
        );
        check(
            (6_000..=1_800_000).contains(&r.session_timeout_ms),
            format!(
                "roles.session_timeout_ms must be in 6000..=1800000 (the brokers' default group.min/max.session.timeout.ms), got {}",
                r.session_timeout_ms
            ),
        );
        check(
            r.max_poll_interval_ms >= r.session_timeout_ms && r.max_poll_interval_ms <= 3_600_000,
            format!(
                "roles.max_poll_interval_ms must be in roles.session_timeout_ms..=3600000, got {}",
                r.max_poll_interval_ms
            ),
        );
    }
}
