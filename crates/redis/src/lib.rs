//! Links to Redis for the crates that share state through it (key-value data, the app registry).
//!
//! A [`Link`] is opened from a URL:
//! - `redis://HOST:PORT/DB`: one server, through a lazily connected, self-reconnecting
//!   [`ConnectionManager`](redis::aio::ConnectionManager);
//! - `redis+sentinel://HOST:PORT,HOST:PORT,.../MASTER[/DB]`: the master that a set of Redis Sentinels
//!   monitors under the name `MASTER`. The link asks the Sentinels which server that is, and asks again when a
//!   command fails in a way that means the master moved (the server is gone, or answers that it is a
//!   read-only replica, or loading), or when a Sentinel announces a failover. So after Sentinel promotes a
//!   replica, commands work again without a restart.
//!
//! Callers keep writing `query_async(&mut link.connection())`: [`LinkConnection`] is a
//! [`ConnectionLike`](redis::aio::ConnectionLike) that sends each command to the current master.

#![forbid(unsafe_code)]

mod classify;
mod link;
mod sentinel;
mod switch_watch;
mod url;

pub use link::{Link, LinkConnection, MasterMoves};
pub use url::{SentinelUrl, parse_sentinel_url};

/// Why a link could not be opened. Only the URL is checked then; the servers are reached lazily.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The URL's scheme is neither `redis://` nor `redis+sentinel://` (nor anything else Redis accepts).
    #[error("{0:?} is not a redis://HOST:PORT/DB or redis+sentinel://HOST:PORT,.../MASTER URL")]
    Scheme(String),
    /// A Sentinel URL without any `HOST:PORT` before the master's name.
    #[error("{0:?} names no Sentinel: write redis+sentinel://HOST:PORT,HOST:PORT/MASTER")]
    NoSentinel(String),
    /// A Sentinel URL without the name the Sentinels monitor the master under.
    #[error("{0:?} names no master: write redis+sentinel://HOST:PORT,.../MASTER (the name in `sentinel monitor`)")]
    NoMasterName(String),
    /// One of the Sentinels' addresses is not `HOST:PORT` with a port from 1 to 65535.
    #[error("{url:?}: {address:?} is not HOST:PORT with a port from 1 to 65535")]
    BadAddress {
        /// The whole URL.
        url: String,
        /// The address as written.
        address: String,
    },
    /// What follows the master's name is not a database number (or there is more after it).
    #[error("{url:?}: {rest:?} is not a database number after the master's name")]
    BadDatabase {
        /// The whole URL.
        url: String,
        /// What follows the master's name.
        rest: String,
    },
    /// Credentials, queries and fragments are not supported in Sentinel URLs.
    #[error("{0:?}: passwords, `?` options and `#` fragments are not supported in a redis+sentinel:// URL")]
    Unsupported(String),
    /// The redis client refused the URL or the connection's settings.
    #[error("{url:?}: {source}")]
    Redis {
        /// The whole URL.
        url: String,
        /// What the client said.
        source: redis::RedisError,
    },
}

/// Which kind of link it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// One server, named in a `redis://` URL.
    Plain,
    /// The master a set of Sentinels names.
    Sentinel,
}

impl LinkKind {
    /// `"plain"` or `"sentinel"`, for health reports and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            LinkKind::Plain => "plain",
            LinkKind::Sentinel => "sentinel",
        }
    }
}

/// What a link is doing now, for readiness reports and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    /// Plain or Sentinel.
    pub kind: LinkKind,
    /// For a Sentinel link, the name the Sentinels monitor the master under.
    pub master_name: Option<String>,
    /// `HOST:PORT` of the server commands go to; for a Sentinel link, `None` until the Sentinels were first
    /// asked (links connect lazily).
    pub master: Option<String>,
    /// How many times the Sentinels named a different master than the one in use (failovers seen).
    pub failovers: u64,
    /// Why the last command or lookup failed, if it did; cleared by the next success.
    pub last_error: Option<String>,
}
