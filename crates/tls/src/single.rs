//! TLS with one certificate, whatever name the client asks for: the admin listener's server side, and the
//! client side that trusts one CA file (the `palisade` client commands).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::cert::{CertError, LoadedCert, provider};

/// Answers every handshake with the same certificate.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// An acceptor that serves `cert` to every client (TLS 1.2/1.3, ALPN `h2` and `http/1.1`).
pub fn single_cert_acceptor(cert: &LoadedCert) -> Result<tokio_rustls::TlsAcceptor, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(cert.key.clone())));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A client that trusts the certificates in the PEM file `ca` alone, speaking HTTP/1.1.
pub fn client_trusting(ca: &Path) -> Result<tokio_rustls::TlsConnector, CertError> {
    let pem = std::fs::read(ca).map_err(|source| CertError::Read { path: ca.into(), source })?;
    let bad = |reason: String| CertError::BadCertificate { path: ca.into(), reason };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not a PEM certificate ({e})")))?;
        roots.add(cert).map_err(|e| bad(format!("not a usable CA certificate ({e})")))?;
    }
    if roots.is_empty() {
        return Err(bad("no CERTIFICATE block found".into()));
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
