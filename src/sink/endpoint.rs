//! Where the Kafka brokers are and how the engine's clients reach them: plaintext, TLS
//! (`ssl`), or SASL (PLAIN over TLS, SCRAM-SHA-256/512) with the password read from a
//! 0600 file or the environment. Every client (producer, admin, readers) is configured
//! here, so none can connect with weaker settings than the rest.

use std::path::PathBuf;

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;
use crate::secret::{read_secret_file, Secret, SecretError};

/// The environment variable that may hold the SASL password instead of a file.
pub const SASL_PASSWORD_ENV: &str = "BIZRA_KAFKA_SASL_PASSWORD";

#[derive(Clone, Debug, Default)]
pub struct KafkaEndpoint {
    pub brokers: String,
    /// `security.protocol` (plaintext, ssl, sasl_plaintext, sasl_ssl).
    protocol: String,
    /// `sasl.mechanism`, `sasl.username` and the password, when SASL is on.
    sasl: Option<(String, String, Secret)>,
    ca_file: Option<PathBuf>,
}

impl KafkaEndpoint {
    /// Plaintext brokers (tests, tools reading local topics).
    pub fn plaintext(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_string(),
            protocol: "plaintext".into(),
            ..Self::default()
        }
    }

    /// The configured brokers and security; reads the SASL password.
    pub fn from_config(k: &KafkaConfig) -> Result<Self, SecretError> {
        let sasl = if k.sasl_mechanism.is_empty() {
            None
        } else {
            let password = if k.sasl_password_file.as_os_str().is_empty() {
                crate::secret::from_env(SASL_PASSWORD_ENV).ok_or_else(|| SecretError::File {
                    path: SASL_PASSWORD_ENV.into(),
                    reason: "kafka.sasl_password_file is empty and the variable is not set".into(),
                })?
            } else {
                read_secret_file(&k.sasl_password_file)?
            };
            Some((k.sasl_mechanism.clone(), k.sasl_username.clone(), password))
        };
        Ok(Self {
            brokers: k.brokers.clone(),
            protocol: k.security_protocol.clone(),
            sasl,
            ca_file: (!k.ssl_ca_file.as_os_str().is_empty()).then(|| k.ssl_ca_file.clone()),
        })
    }

    /// A client configuration with the brokers and every security setting.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        if !self.protocol.is_empty() {
            c.set("security.protocol", &self.protocol);
        }
        if let Some((mechanism, username, password)) = &self.sasl {
            c.set("sasl.mechanism", mechanism)
                .set("sasl.username", username)
                .set("sasl.password", password.expose());
        }
        if let Some(ca) = &self.ca_file {
            c.set("ssl.ca.location", ca.display().to_string());
        }
        c
    }
}

impl From<&str> for KafkaEndpoint {
    fn from(brokers: &str) -> Self {
        Self::plaintext(brokers)
    }
}

impl From<&String> for KafkaEndpoint {
    fn from(brokers: &String) -> Self {
        Self::plaintext(brokers)
    }
}

impl From<&KafkaEndpoint> for KafkaEndpoint {
    fn from(e: &KafkaEndpoint) -> Self {
        e.clone()
    }
}

/// Problems of the `kafka.security_protocol`, `kafka.sasl_*` and `kafka.ssl_ca_file` keys.
pub fn security_problems(k: &KafkaConfig) -> Vec<String> {
    let mut out = Vec::new();
    let protocols = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
    let mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
    let protocol = k.security_protocol.as_str();
    if !protocols.contains(&protocol) {
        out.push(format!(
            "kafka.security_protocol must be one of {protocols:?}, got {protocol:?}"
        ));
    }
    let sasl = protocol.starts_with("sasl_");
    let tls = protocol == "ssl" || protocol == "sasl_ssl";
    if sasl && k.sasl_mechanism.is_empty() {
        out.push(format!(
            "kafka.security_protocol {protocol} needs kafka.sasl_mechanism"
        ));
    }
    if !k.sasl_mechanism.is_empty() {
        if !mechanisms.contains(&k.sasl_mechanism.as_str()) {
            out.push(format!(
                "kafka.sasl_mechanism must be one of {mechanisms:?}, got {:?}",
                k.sasl_mechanism
            ));
        }
        if !sasl {
            out.push(
                "kafka.sasl_mechanism needs kafka.security_protocol sasl_ssl or sasl_plaintext"
                    .into(),
            );
        }
        if k.sasl_mechanism == "PLAIN" && protocol != "sasl_ssl" {
            out.push("kafka.sasl_mechanism PLAIN sends the password as it is: it needs kafka.security_protocol = \"sasl_ssl\"".into());
        }
        if k.sasl_username.is_empty() {
            out.push("kafka.sasl_username must be set with kafka.sasl_mechanism".into());
        }
        if k.sasl_password_file.as_os_str().is_empty()
            && crate::secret::from_env(SASL_PASSWORD_ENV).is_none()
        {
            out.push(format!(
                "kafka.sasl_mechanism needs kafka.sasl_password_file or {SASL_PASSWORD_ENV}"
            ));
        }
    } else if !k.sasl_password_file.as_os_str().is_empty() || !k.sasl_username.is_empty() {
        out.push(
            "kafka.sasl_username and kafka.sasl_password_file need kafka.sasl_mechanism".into(),
        );
    }
    if !k.ssl_ca_file.as_os_str().is_empty() {
        if !tls {
            out.push("kafka.ssl_ca_file needs kafka.security_protocol ssl or sasl_ssl".into());
        }
        if !k.ssl_ca_file.is_file() {
            out.push(format!(
                "kafka.ssl_ca_file {} is not a readable file",
                k.ssl_ca_file.display()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka() -> KafkaConfig {
        crate::config::Config::embedded().unwrap().kafka
    }

    #[test]
    fn every_security_problem_is_listed() {
        let mut k = kafka();
        k.security_protocol = "sasl_plaintext".into();
        k.sasl_mechanism = "PLAIN".into();
        k.ssl_ca_file = "/nonexistent/ca.pem".into();
        let problems = security_problems(&k).join("\n");
        for expected in [
            "PLAIN sends the password",
            "sasl_username must be set",
            "ssl_ca_file needs",
            "not a readable file",
        ] {
            assert!(problems.contains(expected), "{expected}: {problems}");
        }
        k.security_protocol = "tls".into();
        k.sasl_mechanism = "GSSAPI".into();
        let problems = security_problems(&k).join("\n");
        assert!(
            problems.contains("security_protocol must be one of")
                && problems.contains("sasl_mechanism must be one of"),
            "{problems}"
        );
        assert!(security_problems(&kafka()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn scram_over_tls_is_passed_to_every_client_and_the_password_stays_secret() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("sasl");
        std::fs::write(&password, "s3cr3t-sasl-password\n").unwrap();
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut k = kafka();
        k.brokers = "127.0.0.1:1".into();
        k.security_protocol = "sasl_ssl".into();
        k.sasl_mechanism = "SCRAM-SHA-512".into();
        k.sasl_username = "risk".into();
        k.sasl_password_file = password.clone();
        assert!(
            security_problems(&k).is_empty(),
            "{:?}",
            security_problems(&k)
        );
        let endpoint = KafkaEndpoint::from_config(&k).unwrap();
        assert!(!format!("{endpoint:?}").contains("s3cr3t"));
        let c = endpoint.client_config();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.password"), Some("s3cr3t-sasl-password"));
        // librdkafka is built with TLS and SCRAM: the client accepts the settings.
        let producer: Result<rdkafka::producer::BaseProducer, _> = c.create();
        assert!(producer.is_ok(), "{:?}", producer.err());
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o604)).unwrap();
        assert!(KafkaEndpoint::from_config(&k).is_err());
    }
}
