//! One client connection of the replay server: plain TCP or TLS, its request head read
//! ahead to tell a WebSocket upgrade from a REST call, then handed on with the head put
//! back in front.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Largest HTTP request head accepted.
pub const MAX_HEAD_BYTES: usize = 8192;

/// A stream whose first bytes were already read: they are read again first.
pub struct Rewind<S> {
    head: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn head(&self) -> &[u8] {
        &self.head
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.head.len() {
            let n = buf.remaining().min(self.head.len() - self.pos);
            let from = self.pos;
            buf.put_slice(&self.head[from..from + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Read the request head (up to its blank line, or `MAX_HEAD_BYTES`) within `timeout`.
pub async fn read_head<S: AsyncRead + Unpin>(
    mut stream: S,
    timeout: Duration,
) -> std::io::Result<Rewind<S>> {
    let mut head = vec![0u8; MAX_HEAD_BYTES];
    let mut len = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    while !head[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < head.len() {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut head[len..]))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request head"))??;
        if n == 0 {
            if len == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            break;
        }
        len += n;
    }
    head.truncate(len);
    Ok(Rewind {
        head,
        pos: 0,
        inner: stream,
    })
}

/// Whether a request head asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(head: &[u8]) -> bool {
    String::from_utf8_lossy(head)
        .to_ascii_lowercase()
        .lines()
        .any(|l| l.starts_with("upgrade:") && l.contains("websocket"))
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS certificate and key do not form a server configuration: {0}")]
    Config(String),
}

/// A TLS server configuration from a PEM certificate chain and a PEM private key.
pub fn tls_server_config(
    cert_pem: &std::path::Path,
    key_pem: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let file_err = |path: &std::path::Path, reason: String| TlsSetupError::File {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert_pem)
        .map_err(|e| file_err(cert_pem, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(cert_pem, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err(cert_pem, "no certificate".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(key_pem).map_err(|e| file_err(key_pem, e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsSetupError::Config(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| TlsSetupError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}
