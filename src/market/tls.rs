//! Which certificate authorities the market-data client trusts. By default the built-in
//! Mozilla roots; with `feed.ca_file`, exactly the CAs of that PEM bundle (a private CA, or
//! the system's bundle such as `/etc/ssl/certs/ca-certificates.crt`). Certificates are
//! always verified: there is no switch to turn verification off.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The largest CA bundle read.
const MAX_CA_FILE_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
#[error("feed.ca_file {path}: {reason}")]
pub struct TlsError {
    pub path: String,
    pub reason: String,
}

/// The trusted roots of a configured CA bundle, for the WebSocket and the REST client.
pub struct TrustedRoots {
    ws: Arc<rustls::ClientConfig>,
    rest: Vec<ureq::tls::Certificate<'static>>,
}

impl std::fmt::Debug for TrustedRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedRoots({} CAs)", self.rest.len())
    }
}

/// The roots of `ca_file`, or `None` (the built-in roots) when it is empty.
pub fn load(ca_file: &Path) -> Result<Option<Arc<TrustedRoots>>, TlsError> {
    if ca_file.as_os_str().is_empty() {
        return Ok(None);
    }
    let err = |reason: String| TlsError {
        path: ca_file.display().to_string(),
        reason,
    };
    let len = std::fs::metadata(ca_file)
        .map_err(|e| err(e.to_string()))?
        .len();
    if len > MAX_CA_FILE_BYTES {
        return Err(err(format!(
            "{len} bytes is over the limit of {MAX_CA_FILE_BYTES}"
        )));
    }
    let pem = std::fs::read(ca_file).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(err("holds no certificate".into()));
    }
    let mut store = rustls::RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(certs.iter().cloned());
    if added == 0 {
        return Err(err(format!(
            "none of its {ignored} certificates is a usable CA"
        )));
    }
    let ws = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| err(e.to_string()))?
    .with_root_certificates(store)
    .with_no_client_auth();
    let rest = certs
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    Ok(Some(Arc::new(TrustedRoots {
        ws: Arc::new(ws),
        rest,
    })))
}

impl TrustedRoots {
    /// The WebSocket connector that trusts these roots only.
    pub fn ws_connector(&self) -> tokio_tungstenite::Connector {
        tokio_tungstenite::Connector::Rustls(self.ws.clone())
    }

    /// The REST client's TLS settings that trust these roots only.
    pub fn rest_tls(&self) -> ureq::tls::TlsConfig {
        ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&self.rest))
            .build()
    }
}
