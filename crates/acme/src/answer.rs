//! Challenge answers, as a cluster shares them: a CA validates through whichever node its connection reaches,
//! not necessarily the one that ordered, so every node must answer for every other.

use std::future::Future;
use std::pin::Pin;

use palisade_tls::Challenges;
use serde::{Deserialize, Serialize};

use crate::AcmeError;

/// One challenge's answer: enough for any node to publish it in its own [`Challenges`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Answer {
    /// HTTP-01: `/.well-known/acme-challenge/TOKEN` answers the key authorization.
    Http01 {
        /// The challenge's token.
        token: String,
        /// What the path answers.
        key_authorization: String,
    },
    /// TLS-ALPN-01: a handshake for `name` offering only `acme-tls/1` gets a certificate carrying `digest`
    /// (each node makes its own; only the digest is shared).
    TlsAlpn01 {
        /// The name being validated.
        name: String,
        /// SHA-256 of the key authorization.
        digest: Vec<u8>,
    },
}

impl Answer {
    /// Publishes it in `challenges`, for this node's listeners to answer.
    pub fn publish(&self, challenges: &Challenges) -> Result<(), AcmeError> {
        match self {
            Answer::Http01 { token, key_authorization } => challenges.set_http01(token, key_authorization),
            Answer::TlsAlpn01 { name, digest } => {
                challenges.set_tls_alpn01(name, crate::order::alpn_certificate(name, digest)?);
            }
        }
        Ok(())
    }

    /// Takes it out of `challenges`.
    pub fn withdraw(&self, challenges: &Challenges) {
        match self {
            Answer::Http01 { token, .. } => challenges.clear(token, ""),
            Answer::TlsAlpn01 { name, .. } => challenges.clear("", name),
        }
    }
}

/// Where an order's answers also go: the other nodes of a cluster. `post` returns once they were sent (it
/// cannot know when every node has them: the order waits a moment before the CA is told to validate).
pub trait AnswerBoard: Send + Sync {
    /// Sends `answer` to the other nodes, to publish (`true`) or to withdraw (`false`).
    fn post<'a>(&'a self, answer: &'a Answer, publish: bool) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}
