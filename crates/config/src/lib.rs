//! palisade's configuration: `palisade.toml` in, an immutable, validated [`Config`] out.
//!
//! The pipeline is `text → raw (serde, spans kept) → validate → Config`. Every problem is reported as a
//! [`Diagnostic`] that names the file, line and column of the offending key, so `palisade check` can print
//! `palisade.toml:12:10: unknown size unit "MiBs"` instead of a bare error. All problems found in one pass are
//! reported together. Relative paths are resolved against the directory holding the config file.
//!
//! ```no_run
//! let config = palisade_config::Config::load("palisade.toml".as_ref())?;
//! for tenant in &config.tenants {
//!     println!("{} serves {} routes", tenant.name, tenant.routes.len());
//! }
//! # Ok::<(), palisade_config::ConfigError>(())
//! ```
//!
//! This crate does no networking and starts no runtime, so it can be fuzzed and unit-tested on its own.

mod api;
mod diagnostic;
mod model;
mod operate;
mod path;
mod proxy;
mod raw;
mod redis_url;
mod units;
mod validate;

pub use api::{KeyProblem, tenant_from_json};
pub use diagnostic::{ConfigError, Diagnostic, Location};
pub use model::{
    AcmeChallenge, AcmeConfig, CacheConfig, Config, DEFAULT_CACHE_MAX_SIZE, DEFAULT_CPU_TIME, DEFAULT_DATA_DIR,
    DEFAULT_HSTS, DEFAULT_KV_MAX_KEYS, DEFAULT_KV_MAX_TOTAL, DEFAULT_KV_MAX_VALUE, DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_LOADED_APPS, DEFAULT_MAX_REQUEST_BODY, DEFAULT_MAX_RESPONSE_BODY, DEFAULT_MAX_STDERR,
    DEFAULT_MAX_TOTAL_MEMORY, DEFAULT_MEMORY, DEFAULT_QUEUE_PER_SLOT, DEFAULT_QUEUE_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_TIMEOUT, DEFAULT_WEIGHT, DataAccess, HostPattern, KvBackend, KvLimits, Limits, MAX_WEIGHT, OutboundRule,
    PrivateKeyPem, Route, RouteTarget, ServerConfig, Tenant, TlsSource, TrafficLimits,
};
pub use operate::{AdminConfig, AdminTls, ClusterConfig, DEFAULT_RECONCILE_INTERVAL};
pub use path::{EncodedSeparator, decode_unreserved};
pub use proxy::{
    Balance, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HEALTH_INTERVAL, DEFAULT_PROXY_TIMEOUT, HealthCheck, ProxyConfig,
    Upstream, UpstreamProtocol,
};
pub use units::{format_size, parse_duration, parse_size};
pub use validate::{normalise_route_path, valid_name};

use std::path::Path;

impl Config {
    /// Reads, parses and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|reason| ConfigError::Read { path: path.to_path_buf(), reason })?;
        Config::parse(path, &text)
    }

    /// Parses and validates configuration `text` as if it had been read from `path`.
    ///
    /// `path` names the file in diagnostics, and its directory anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw = raw::parse(path, text)?;
        validate::validate(path, text, raw)
    }
}
