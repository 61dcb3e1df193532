//! The validated configuration: what the server runs from. Every value here has been checked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::Location;

/// Default `[server] data_dir`, relative to the config file.
pub const DEFAULT_DATA_DIR: &str = "palisade-data";
/// Default time in-flight requests get to finish after SIGINT/SIGTERM.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default maximum linear memory of one guest instance.
pub const DEFAULT_MEMORY: u64 = 64 << 20;
/// Default wall-clock deadline of one guest request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of guest instances one tenant may have in flight.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 64;

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub file: PathBuf,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[tenants.NAME]`, in name order.
    pub tenants: Vec<Tenant>,
}

/// `[server]`: process-wide settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses to accept plain HTTP/1.1 and h2c on. Port 0 asks the OS for a free port.
    pub listen: Vec<SocketAddr>,
    /// Caches and state (compiled guests), absolute.
    pub data_dir: PathBuf,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_timeout: Duration,
}

/// Which hosts a tenant answers for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// One host name, lower-case, no port.
    Exact(String),
    /// `"*"`: any host no other tenant claims.
    Any,
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

/// `[tenants.NAME]`: one customer, with its limits and routes.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The table key, `[a-zA-Z0-9_-]+`.
    pub name: String,
    /// Hosts this tenant answers for.
    pub hosts: Vec<HostPattern>,
    /// Maximum linear memory per guest instance, in bytes.
    pub memory: u64,
    /// Wall-clock deadline per guest request.
    pub timeout: Duration,
    /// Guest instances in flight at once; more get 503.
    pub max_concurrency: u32,
    /// Private directory mounted at `/data` in CGI guests, absolute.
    pub data: Option<PathBuf>,
    /// Environment variables given to every guest of this tenant.
    pub env: BTreeMap<String, String>,
    /// Routes, in the order written (matching is by longest prefix, not order).
    pub routes: Vec<Route>,
}

/// `[[tenants.NAME.routes]]`: a path prefix and what serves it.
#[derive(Debug, Clone)]
pub struct Route {
    /// Normalised prefix: starts with `/`, no trailing `/` except for the root route.
    pub path: String,
    /// What answers requests under `path`.
    pub target: RouteTarget,
    /// Where the route's target key is written, for errors found later (e.g. an invalid .wasm).
    pub location: Location,
}

/// What serves a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// `static = "dir"`: files under this absolute directory.
    Static(PathBuf),
    /// `component = "app.wasm"`: a `wasi:http/proxy` component.
    Component(PathBuf),
    /// `cgi = "app.wasm"`: a WASI preview1 command module speaking CGI/1.1.
    Cgi(PathBuf),
}

impl RouteTarget {
    /// The key this target is written with in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            RouteTarget::Static(_) => "static",
            RouteTarget::Component(_) => "component",
            RouteTarget::Cgi(_) => "cgi",
        }
    }

    /// The file or directory the target names.
    pub fn path(&self) -> &std::path::Path {
        match self {
            RouteTarget::Static(p) | RouteTarget::Component(p) | RouteTarget::Cgi(p) => p,
        }
    }
}
