//! One certificate order, from account to stored certificate.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use palisade_config::AcmeChallenge;
use palisade_tls::{Challenges, LoadedCert};

use crate::{AcmeSite, Answer, AnswerBoard, store};

/// How long the CA gets to validate challenges, and then to issue.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);

/// Why an order failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The protocol exchange failed (network, CA error, account problem).
    #[error("{0}")]
    Protocol(#[from] instant_acme::Error),
    /// The CA refused a challenge or the order.
    #[error("{0}")]
    Refused(String),
    /// The issued certificate does not load (should not happen with a working CA).
    #[error("the CA's certificate is unusable: {0}")]
    Certificate(#[from] palisade_tls::CertError),
    /// The tenant's ACME directory cannot be written.
    #[error("cannot store in {dir}: {source}")]
    Store {
        /// The directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
    /// A TLS-ALPN-01 certificate could not be made.
    #[error("cannot make the TLS-ALPN-01 certificate: {0}")]
    Challenge(String),
}

/// How long an answer posted to a cluster's other nodes gets to reach them before the CA is told to check it.
const BOARD_DELAY: Duration = Duration::from_millis(500);

/// Orders a certificate for the site's names, answers its challenges (here and, with a `board`, on the
/// cluster's other nodes), stores and returns it.
pub(crate) async fn obtain(
    site: &AcmeSite,
    challenges: &Challenges,
    board: Option<&dyn AnswerBoard>,
) -> Result<LoadedCert, AcmeError> {
    let account = account(site).await?;
    let identifiers: Vec<Identifier> = site.names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;

    let mut published: Vec<Answer> = Vec::new();
    let result = answer_challenges(site, &mut order, challenges, board, &mut published).await;
    let result = match result {
        Ok(()) => finish(&mut order).await,
        Err(e) => Err(e),
    };
    for answer in &published {
        answer.withdraw(challenges);
        if let Some(board) = board {
            board.post(answer, false).await;
        }
    }
    let (cert_pem, key_pem) = result?;

    let loaded = LoadedCert::from_pem(
        cert_pem.as_bytes(),
        key_pem.as_bytes(),
        &site.names,
        Path::new("ACME certificate"),
        Path::new("ACME key"),
    )?;
    store::save_certificate(&site.dir, &cert_pem, &key_pem).map_err(|source| store_error(&site.dir, source))?;
    Ok(loaded)
}

/// The stored account for this CA, or a new one (stored for next time).
async fn account(site: &AcmeSite) -> Result<Account, AcmeError> {
    let builder = || match &site.config.ca {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    };
    let directory = &site.config.directory;
    if let Some(credentials) = store::load_account(&site.dir, directory) {
        return Ok(builder()?.from_credentials(credentials).await?);
    }
    let contact = site.config.email.as_ref().map(|e| format!("mailto:{e}"));
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) = builder()?.create(&new, directory.clone(), None).await?;
    store::save_account(&site.dir, directory, credentials).map_err(|source| store_error(&site.dir, source))?;
    tracing::info!(tenant = %site.tenant, directory, "ACME account created");
    Ok(account)
}

/// Publishes an answer for every pending authorization and tells the CA to check it.
async fn answer_challenges(
    site: &AcmeSite,
    order: &mut instant_acme::Order,
    challenges: &Challenges,
    board: Option<&dyn AnswerBoard>,
    published: &mut Vec<Answer>,
) -> Result<(), AcmeError> {
    let kind = match site.config.challenge {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(AcmeError::Refused(format!("authorization is {other:?}"))),
        }
        let Some(mut challenge) = authz.challenge(kind.clone()) else {
            return Err(AcmeError::Refused(format!("the CA offers no {kind:?} challenge")));
        };
        let key_authorization = challenge.key_authorization();
        let answer = match kind {
            ChallengeType::TlsAlpn01 => Answer::TlsAlpn01 {
                name: challenge.identifier().to_string(),
                digest: key_authorization.digest().as_ref().to_vec(),
            },
            _ => Answer::Http01 {
                token: challenge.token.clone(),
                key_authorization: key_authorization.as_str().to_string(),
            },
        };
        answer.publish(challenges)?;
        published.push(answer.clone());
        if let Some(board) = board {
            board.post(&answer, true).await;
            tokio::time::sleep(BOARD_DELAY).await;
        }
        challenge.set_ready().await?;
    }
    Ok(())
}

/// Waits for the CA to validate, finalizes with a new key, and downloads the chain.
async fn finish(order: &mut instant_acme::Order) -> Result<(String, String), AcmeError> {
    let retries = RetryPolicy::new().timeout(VALIDATION_TIMEOUT);
    let status = order.poll_ready(&retries).await?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::Refused(refusal(order).await));
    }
    let key_pem = order.finalize().await?;
    let cert_pem = order.poll_certificate(&retries).await?;
    Ok((cert_pem, key_pem))
}

/// What the CA said about a failed order: the challenges' errors, or the order's.
async fn refusal(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if let Ok(state) = authz.refresh().await {
            for c in &state.challenges {
                if let Some(p) = &c.error {
                    reasons.push(p.detail.clone().unwrap_or_else(|| format!("{p:?}")));
                }
            }
        }
    }
    if reasons.is_empty() {
        let state = order.state();
        format!("order is {:?}: {:?}", state.status, state.error)
    } else {
        format!("validation failed: {}", reasons.join("; "))
    }
}

/// The self-signed certificate a TLS-ALPN-01 validation handshake must present (RFC 8737 §3).
pub(crate) fn alpn_certificate(name: &str, digest: &[u8]) -> Result<Arc<palisade_tls::CertifiedKey>, AcmeError> {
    let fail = |e: rcgen::Error| AcmeError::Challenge(e.to_string());
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(fail)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    let loaded = LoadedCert::from_pem(
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
        &[],
        Path::new("TLS-ALPN-01 certificate"),
        Path::new("TLS-ALPN-01 key"),
    )
    .map_err(|e| AcmeError::Challenge(e.to_string()))?;
    Ok(loaded.key)
}

fn store_error(dir: &Path, source: std::io::Error) -> AcmeError {
    AcmeError::Store { dir: dir.display().to_string(), source }
}
