//! palisade's ACME client (RFC 8555): obtains each ACME tenant's certificate, stores it, and renews it.
//!
//! One [`AcmeSite`] per tenant with `acme = { ... }`. At start-up a stored certificate that still covers the
//! tenant's hosts is installed at once ([`AcmeSite::install_stored`]); [`AcmeSite::run`] then keeps it fresh:
//! it orders a certificate when there is none or a third of its lifetime is left, answers the CA's challenge
//! (HTTP-01 tokens and TLS-ALPN-01 certificates are published through [`Challenges`], which the listeners
//! serve), stores the result under the tenant's ACME directory and installs it in its [`Site`]. Failures are
//! logged and retried with exponential back-off, while the previous certificate (if any) keeps serving.
//!
//! The protocol itself is instant-acme's; this crate decides when, for which names, and where things go.

mod answer;
mod order;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use palisade_config::AcmeConfig;
use palisade_tls::{Challenges, LoadedCert, Site};

pub use answer::{Answer, AnswerBoard};
pub use order::AcmeError;

/// First wait after a failed attempt; doubled after each failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// Longest wait between attempts, so a CA outage heals within hours, well inside a certificate's last third.
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);

/// One tenant's automatically managed certificate.
#[derive(Debug, Clone)]
pub struct AcmeSite {
    /// The tenant, for logs.
    pub tenant: String,
    /// Where the certificate is installed.
    pub site: Arc<Site>,
    /// The DNS names to certify (the tenant's hosts).
    pub names: Vec<String>,
    /// The CA and how to talk to it.
    pub config: AcmeConfig,
    /// Where the account, certificate and key are stored (created if missing).
    pub dir: PathBuf,
}

impl AcmeSite {
    /// Installs the stored certificate, if there is one that covers the names and has not expired. Returns it.
    pub fn install_stored(&self) -> Option<LoadedCert> {
        let loaded = store::load_certificate(&self.dir, &self.names)?;
        if loaded.remaining().is_zero() {
            return None;
        }
        self.site.install(loaded.key.clone());
        tracing::info!(tenant = %self.tenant, names = %loaded.names.join(","), "stored ACME certificate installed");
        Some(loaded)
    }

    /// Keeps the site's certificate fresh, forever: orders one when none is installed or a third of its
    /// lifetime is left, and retries failures with back-off. In a cluster, `board` takes the challenge
    /// answers to the other nodes, which the CA may reach instead of this one.
    pub async fn run(
        self,
        current: Option<LoadedCert>,
        challenges: Arc<Challenges>,
        board: Option<Arc<dyn AnswerBoard>>,
    ) {
        let mut current = current;
        let mut backoff = FIRST_BACKOFF;
        loop {
            if let Some(cert) = &current {
                let wait = cert.remaining().saturating_sub(cert.lifetime() / 3);
                tracing::debug!(tenant = %self.tenant, "next ACME renewal in {wait:?}");
                tokio::time::sleep(wait).await;
            }
            match order::obtain(&self, &challenges, board.as_deref()).await {
                Ok(cert) => {
                    self.site.install(cert.key.clone());
                    tracing::info!(
                        tenant = %self.tenant,
                        names = %cert.names.join(","),
                        days = cert.remaining().as_secs() / 86400,
                        "ACME certificate obtained"
                    );
                    current = Some(cert);
                    backoff = FIRST_BACKOFF;
                }
                Err(e) => {
                    let e = with_causes(&e);
                    tracing::error!(tenant = %self.tenant, "ACME certificate not obtained, retrying in {backoff:?}: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // Whatever is installed keeps serving; retry now rather than after its renewal wait.
                    current = None;
                }
            }
        }
    }
}

/// `error: cause: cause`, so a connection failure says why (refused, certificate unknown, ...).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text = format!("{text}: {line}");
        }
        source = cause.source();
    }
    text
}
