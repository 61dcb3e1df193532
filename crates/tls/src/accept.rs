//! The server side of one TLS handshake: read the ClientHello, pick what answers it, complete the handshake.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::StartHandshake;
use tokio_rustls::server::TlsStream;

use crate::cert::provider;
use crate::challenges::{ACME_TLS_ALPN, Challenges};
use crate::sites::{SiteResolver, Sites};

/// TLS 1.2 sessions remembered for resumption by session ID (TLS 1.3 and TLS 1.2 clients that support them
/// resume with tickets, which need no server state).
const SESSION_CACHE_ENTRIES: usize = 16 * 1024;

/// A fatal `unrecognized_name` alert record (RFC 6066 §3), sent before any handshake message.
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [21, 3, 3, 0, 2, 2, 112];

/// Why a handshake did not produce a connection to serve.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The socket failed or closed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The client's TLS was unacceptable (no shared version or cipher suite, a malformed message, ...).
    #[error("{0}")]
    Tls(#[from] rustls::Error),
    /// No site has a certificate for the SNI name the client asked for.
    #[error("no certificate for server name {}", .0.as_deref().unwrap_or("(none sent)"))]
    UnknownName(Option<String>),
}

/// A completed handshake, ready for HTTP.
pub struct TlsConnection<IO> {
    /// The encrypted stream.
    pub stream: TlsStream<IO>,
    /// The SNI name the client asked for, lower-case without a trailing dot.
    pub server_name: Option<Arc<str>>,
}

/// Terminates TLS for every site: TLS 1.2 and 1.3 with rustls' safe defaults, ALPN `h2` and `http/1.1`,
/// session resumption by ticket and by session ID, and TLS-ALPN-01 validation handshakes for ACME.
#[derive(Debug)]
pub struct TlsTerminator {
    config: Arc<ServerConfig>,
    sites: Arc<Sites>,
    challenges: Arc<Challenges>,
}

impl TlsTerminator {
    /// A terminator serving `sites`' certificates and `challenges`' TLS-ALPN-01 answers.
    pub fn new(sites: Arc<Sites>, challenges: Arc<Challenges>) -> Result<TlsTerminator, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SiteResolver(sites.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // The server's order (rustls': AES-GCM, then ChaCha20; ECDHE only) rather than whatever a client prefers.
        config.ignore_client_order = true;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        Ok(TlsTerminator { config: Arc::new(config), sites, challenges })
    }

    /// The rustls configuration for QUIC (HTTP/3): the same certificates by SNI, TLS 1.3 only (QUIC has no
    /// other), ALPN `h3`, tickets for resumption, and no early data: 0-RTT requests could be replayed.
    pub fn quic_config(&self) -> Result<Arc<ServerConfig>, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SiteResolver(self.sites.clone())));
        config.alpn_protocols = vec![b"h3".to_vec()];
        config.ignore_client_order = true;
        config.max_early_data_size = 0;
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        Ok(Arc::new(config))
    }

    /// Runs the server side of a handshake on `tcp`. `Ok(None)` when the handshake was an ACME TLS-ALPN-01
    /// validation, which carries no HTTP.
    /// Counted in `palisade_tls_handshakes_total` by result: `ok`, `acme`, `unknown_name` or `failed`.
    pub async fn accept<IO>(&self, tcp: IO) -> Result<Option<TlsConnection<IO>>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let outcome = self.handshake(tcp).await;
        let result = match &outcome {
            Ok(Some(_)) => "ok",
            Ok(None) => "acme",
            Err(HandshakeError::UnknownName(_)) => "unknown_name",
            Err(_) => "failed",
        };
        metrics::counter!("palisade_tls_handshakes_total", "result" => result).increment(1);
        outcome
    }

    async fn handshake<IO>(&self, mut tcp: IO) -> Result<Option<TlsConnection<IO>>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let accepted = read_client_hello(&mut tcp).await?;
        let (server_name, validation) = {
            let hello = accepted.client_hello();
            (hello.server_name().map(|n| palisade_http::normalise_host(n).into_owned()), offers_only_acme(&hello))
        };
        if validation {
            let Some(key) = server_name.as_deref().and_then(|n| self.challenges.tls_alpn01(n)) else {
                return Err(HandshakeError::UnknownName(server_name));
            };
            let mut stream = StartHandshake::from_parts(accepted, tcp).into_stream(challenge_config(key)?).await?;
            tracing::info!(
                server_name = server_name.as_deref().unwrap_or(""),
                "answered an ACME TLS-ALPN-01 validation"
            );
            let _ = stream.shutdown().await;
            return Ok(None);
        }
        if self.sites.resolve(server_name.as_deref()).is_none() {
            let _ = tcp.write_all(&UNRECOGNIZED_NAME_ALERT).await;
            return Err(HandshakeError::UnknownName(server_name));
        }
        let start = StartHandshake::from_parts(accepted, tcp);
        let stream = start.into_stream(self.config.clone()).await?;
        Ok(Some(TlsConnection { stream, server_name: server_name.map(Arc::from) }))
    }
}

/// Feeds socket bytes to rustls until it has a whole ClientHello; a malformed one is answered with the alert
/// rustls chose.
async fn read_client_hello<IO: AsyncRead + AsyncWrite + Unpin>(
    tcp: &mut IO,
) -> Result<rustls::server::Accepted, HandshakeError> {
    let mut acceptor = Acceptor::default();
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        match acceptor.accept() {
            Ok(Some(accepted)) => return Ok(accepted),
            Ok(None) => {}
            Err((e, mut alert)) => {
                let mut bytes = Vec::new();
                let _ = alert.write_all(&mut bytes);
                let _ = tcp.write_all(&bytes).await;
                return Err(e.into());
            }
        }
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        let mut unread = buf.get(..n).unwrap_or_default();
        while !unread.is_empty() {
            if acceptor.read_tls(&mut unread)? == 0 {
                return Err(rustls::Error::General("ClientHello too large".into()).into());
            }
        }
    }
}

/// RFC 8737 §3: a validation handshake offers `acme-tls/1` as its only protocol.
fn offers_only_acme(hello: &ClientHello<'_>) -> bool {
    hello.alpn().is_some_and(|mut protocols| protocols.next() == Some(ACME_TLS_ALPN) && protocols.next().is_none())
}

/// A one-off configuration presenting a TLS-ALPN-01 certificate.
fn challenge_config(key: Arc<CertifiedKey>) -> Result<Arc<ServerConfig>, rustls::Error> {
    #[derive(Debug)]
    struct One(Arc<CertifiedKey>);
    impl ResolvesServerCert for One {
        fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(One(key)));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(config))
}
