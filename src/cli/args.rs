//! Arguments several commands share: the keys a reader trusts, where to read signed
//! events from Kafka.

use super::prelude::*;
use bizra_risk::audit::keys;
use bizra_risk::config::{Config, KafkaConfig};
use bizra_risk::sink::{KafkaEndpoint, StartAt};
use std::path::Path;

/// The verifying keys an auditor or a desk trusts.
#[derive(clap::Args)]
pub struct TrustArgs {
    /// Trusted verifying key (hex); repeatable.
    #[arg(long = "pubkey")]
    pub pubkeys: Vec<String>,
    /// File holding a trusted verifying key (hex); repeatable.
    #[arg(long = "pubkey-file")]
    pub pubkey_files: Vec<PathBuf>,
}

/// Where to read signed events from Kafka.
#[derive(clap::Args)]
pub struct KafkaReadArgs {
    /// Bootstrap servers, comma-separated (with --topic: read from Kafka).
    #[arg(long)]
    pub kafka_brokers: Option<String>,
    /// Topic of signed events.
    #[arg(long)]
    pub topic: Option<String>,
    /// Start every partition at this offset; chains are then anchored at their first
    /// record read instead of at genesis.
    #[arg(long, conflicts_with = "from_time_ms")]
    pub from_offset: Option<i64>,
    /// Start at the first record at or after this time (ms since the Unix epoch).
    #[arg(long)]
    pub from_time_ms: Option<i64>,
    /// Timeout of each broker request.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// Reach the brokers with the security settings of this engine configuration file
    /// (`kafka.security_protocol`, `sasl_*`, `ssl_ca_file`); without it, plaintext.
    #[arg(long, value_name = "FILE", requires = "kafka_brokers")]
    pub kafka_config: Option<PathBuf>,
}

/// The brokers `brokers`, reached with the Kafka security settings of the engine
/// configuration `config` (plaintext without one).
pub fn kafka_endpoint(brokers: &str, config: Option<&Path>) -> anyhow::Result<KafkaEndpoint> {
    let Some(file) = config else {
        return Ok(KafkaEndpoint::plaintext(brokers));
    };
    // Loading validates the security settings (every problem listed).
    endpoint_with(brokers, Config::load(Some(file))?.kafka)
}

/// `brokers` reached with the security settings of `kafka`.
fn endpoint_with(brokers: &str, mut kafka: KafkaConfig) -> anyhow::Result<KafkaEndpoint> {
    kafka.brokers = brokers.to_string();
    KafkaEndpoint::from_config(&kafka).map_err(anyhow::Error::from)
}

impl KafkaReadArgs {
    pub fn start(&self) -> StartAt {
        match (self.from_offset, self.from_time_ms) {
            (Some(o), _) => StartAt::Offset(o),
            (None, Some(t)) => StartAt::TimeMs(t),
            (None, None) => StartAt::Beginning,
        }
    }

    /// Brokers and topic, when reading from Kafka at all.
    pub fn source(&self) -> anyhow::Result<Option<(KafkaEndpoint, &str)>> {
        match (&self.kafka_brokers, &self.topic) {
            (Some(b), Some(t)) => Ok(Some((kafka_endpoint(b, self.kafka_config.as_deref())?, t))),
            (None, None) => Ok(None),
            _ => bail!("--kafka-brokers and --topic go together"),
        }
    }
}

/// Trusted verifying keys from `--pubkey` and `--pubkey-file`; at least one.
pub fn trusted_keys(args: &TrustArgs) -> anyhow::Result<Vec<ed25519_dalek::VerifyingKey>> {
    let mut trusted = Vec::new();
    for k in &args.pubkeys {
        trusted
            .push(keys::parse_verifying_key(k).map_err(|e| anyhow::anyhow!("--pubkey {k}: {e}"))?);
    }
    for f in &args.pubkey_files {
        let text = std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
        trusted.push(
            keys::parse_verifying_key(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?,
        );
    }
    if trusted.is_empty() {
        bail!("give at least one trusted key with --pubkey or --pubkey-file");
    }
    Ok(trusted)
}

pub fn parse_verdict(text: &str) -> Result<bizra_risk::elf::Verdict, String> {
    serde_json::from_value(serde_json::Value::String(text.to_ascii_uppercase()))
        .map_err(|_| format!("{text}: one of PASS, PASS_FLAGGED, REQUIRE_REVIEW, BLOCK"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn readers_reach_the_brokers_with_the_configured_security() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("sasl");
        std::fs::write(&password, "reader-password").unwrap();
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut kafka = Config::embedded().unwrap().kafka;
        kafka.brokers = "ignored:9092".into();
        kafka.security_protocol = "sasl_ssl".into();
        kafka.sasl_mechanism = "SCRAM-SHA-256".into();
        kafka.sasl_username = "auditor".into();
        kafka.sasl_password_file = password;
        let c = endpoint_with("broker:9093", kafka).unwrap().client_config();
        assert_eq!(c.get("bootstrap.servers"), Some("broker:9093"));
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.username"), Some("auditor"));
        let plain = kafka_endpoint("broker:9092", None).unwrap().client_config();
        assert_eq!(plain.get("security.protocol"), Some("plaintext"));
    }
}
