//! palisade's TLS: which certificate each handshake gets, where certificates come from, and the handshake.
//!
//! - [`Sites`]: SNI name → [`Site`] → the site's current certificate, swapped atomically on reload or renewal;
//!   sites come and go with tenants at run time. Names match like tenants' hosts do (exact, `*.suffix`, then the catch-all `*`), through the same
//!   [`palisade_http::HostMap`].
//! - [`LoadedCert`]: a PEM chain and key, parsed and checked (key matches, names cover the hosts).
//! - [`CertFiles`]: certificates from files, reloaded on demand and when the files change.
//! - [`Challenges`]: ACME challenge answers the listeners publish (HTTP-01 tokens, TLS-ALPN-01 certificates).
//! - [`TlsTerminator`]: the rustls server side: TLS 1.2/1.3, ALPN `h2`/`http/1.1`, resumption, an
//!   `unrecognized_name` alert for names no site has, and TLS-ALPN-01 validation handshakes.
//! - [`single_cert_acceptor`] and [`client_trusting`]: one certificate for every name (the admin listener),
//!   and a client that trusts one CA file (the `palisade` client commands).
//!
//! Nothing here speaks HTTP; the server crate serves the streams this crate hands it.

mod accept;
mod cert;
mod challenges;
mod reload;
mod single;
mod sites;

pub use accept::{HandshakeError, TlsConnection, TlsTerminator};
pub use cert::{CertError, LoadedCert, name_covers};
pub use challenges::{ACME_TLS_ALPN, Challenges, HTTP01_PREFIX};
pub use reload::{CertFiles, EXPIRY_WARNING, warn_if_expiring};
pub use rustls::pki_types::ServerName;
pub use rustls::sign::CertifiedKey;
pub use single::{client_trusting, single_cert_acceptor};
pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Makes aws-lc-rs the process's rustls provider. Call once at start-up: more than one provider is linked
/// (guests' outbound HTTP client brings ring), and rustls refuses to guess between them.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
pub use sites::{Site, Sites};
