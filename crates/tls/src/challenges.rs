//! Answers to ACME challenges in progress, shared between the ACME client (which sets them) and the listeners
//! (which serve them): HTTP-01 tokens on plain HTTP, TLS-ALPN-01 certificates in handshakes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::sign::CertifiedKey;

/// The ALPN protocol a TLS-ALPN-01 validation handshake offers (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix HTTP-01 validation requests use (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// Challenge answers currently published.
#[derive(Debug, Default)]
pub struct Challenges {
    http01: Mutex<HashMap<String, String>>,
    tls_alpn01: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    /// Publishes the key authorization for HTTP-01 `token`.
    pub fn set_http01(&self, token: &str, key_authorization: &str) {
        self.http01.lock().unwrap_or_else(PoisonError::into_inner).insert(token.into(), key_authorization.into());
    }

    /// The key authorization for HTTP-01 `token`, if one is published.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.http01.lock().unwrap_or_else(PoisonError::into_inner).get(token).cloned()
    }

    /// Publishes the TLS-ALPN-01 certificate for `name`.
    pub fn set_tls_alpn01(&self, name: &str, key: Arc<CertifiedKey>) {
        self.tls_alpn01.lock().unwrap_or_else(PoisonError::into_inner).insert(name.into(), key);
    }

    /// The TLS-ALPN-01 certificate for `name`, if one is published.
    pub fn tls_alpn01(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.tls_alpn01.lock().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// Withdraws whatever was published for HTTP-01 `token` and TLS-ALPN-01 `name`.
    pub fn clear(&self, token: &str, name: &str) {
        self.http01.lock().unwrap_or_else(PoisonError::into_inner).remove(token);
        self.tls_alpn01.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
    }
}
