//! The app registry: guests deployed through the admin API, apart from the configuration file.
//!
//! An app is a tenant's `.wasm` served at a route path. [`AppRecord`] is its metadata; the bytes are kept
//! beside it. Two stores hold them:
//! - [`FileRegistry`], on local disk under `data_dir/apps`: what this node serves. Every write is a new file
//!   renamed into place, so a crash leaves either the old app or the new one, never half of either.
//! - [`RedisRegistry`], the shared truth of a cluster: nodes write deploys there and are told of changes on a
//!   pub/sub channel (and reconcile periodically, so a missed message heals). Each node copies what it
//!   serves into its own `FileRegistry`, so it restarts with the last apps it knew even while Redis is away.
//!
//! Tenants created through the admin API, and tenants' tokens, are kept the same way: [`FileTenants`] under
//! `data_dir/tenants` on each node, and beside the apps in Redis in a cluster.

mod file;
mod record;
mod redis_registry;
mod tenants;

pub use file::FileRegistry;
pub use record::{AppRecord, sha256_hex, valid_name};
pub use redis_registry::{ACME_CHANNEL, CHANNEL, PURGE_CHANNEL, RedisRegistry, Snapshot};
pub use tenants::{FileTenants, TenantRecord, TokenRecord};

/// Why the registry could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// Stored data does not match its metadata (a damaged file, or bytes replaced under the record).
    #[error("{0}")]
    Corrupt(String),
    /// The shared store cannot be reached now.
    #[error("the app registry in Redis is unavailable: {0}")]
    Unavailable(String),
}
