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
/// Deployed apps kept loaded at once unless `[server] max_loaded_apps` says otherwise.
pub const DEFAULT_MAX_LOADED_APPS: usize = 1000;
/// Default maximum linear memory of one guest instance.
pub const DEFAULT_MEMORY: u64 = 64 << 20;
/// Default wall-clock deadline of one guest request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of guest instances one tenant may have in flight.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 64;
/// Default bound on the linear memory of all of one tenant's instances together.
pub const DEFAULT_MAX_TOTAL_MEMORY: u64 = 1 << 30;
/// Default CPU time one guest request may use (time spent running guest code, not waiting).
pub const DEFAULT_CPU_TIME: Duration = Duration::from_secs(10);
/// Default largest request body a guest is given.
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 16 << 20;
/// Default largest response body a guest may send.
pub const DEFAULT_MAX_RESPONSE_BODY: u64 = 64 << 20;
/// Default amount of a guest's stderr (and a component's stdout) logged per request.
pub const DEFAULT_MAX_STDERR: u64 = 64 << 10;
/// Default `weight`: a tenant's share of the CPU when tenants compete, relative to the others'.
pub const DEFAULT_WEIGHT: u32 = 1;
/// The largest `weight`.
pub const MAX_WEIGHT: u32 = 1000;
/// Default `max_queue` per instance slot: a tenant's line for slots is this many times `max_concurrency`.
pub const DEFAULT_QUEUE_PER_SLOT: u32 = 16;
/// Default `queue_timeout`: how long a request waits in line for an instance slot before its 503.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_millis(50);

/// Default `kv.max_keys`: keys one tenant may store in all its buckets.
pub const DEFAULT_KV_MAX_KEYS: u64 = 100_000;
/// Default `kv.max_value`: bytes in one stored value.
pub const DEFAULT_KV_MAX_VALUE: u64 = 1 << 20;
/// Default `kv.max_total`: bytes of keys and values one tenant may store.
pub const DEFAULT_KV_MAX_TOTAL: u64 = 256 << 20;

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub file: PathBuf,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[kv]`: where tenants' key-value data lives.
    pub kv: KvBackend,
    /// `[admin]`: the operators' listener, if any.
    pub admin: Option<crate::AdminConfig>,
    /// `[cluster]`: the Redis server nodes share apps through, if any.
    pub cluster: Option<crate::ClusterConfig>,
    /// `[tenants.NAME]`, in name order.
    pub tenants: Vec<Tenant>,
}

/// `[server]`: process-wide settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses to accept plain HTTP/1.1 and h2c on. Port 0 asks the OS for a free port.
    pub listen: Vec<SocketAddr>,
    /// Addresses to accept HTTPS on (TLS 1.2/1.3, ALPN `h2` and `http/1.1`); may be empty.
    pub tls_listen: Vec<SocketAddr>,
    /// `http3`: also answer HTTP/3 (QUIC) on the UDP port of every `tls_listen` address, and advertise it
    /// in `Alt-Svc` on HTTPS responses.
    pub http3: bool,
    /// `quic_retry`: make every new QUIC connection prove its address with a Retry first (a round trip more
    /// per connection); without it, only while many handshakes are under way.
    pub quic_retry: bool,
    /// Caches and state (compiled guests), absolute.
    pub data_dir: PathBuf,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_timeout: Duration,
    /// Worker threads serving connections; `None` means one per available core.
    pub workers: Option<usize>,
    /// `max_loaded_apps`: deployed apps kept loaded at once (default [`DEFAULT_MAX_LOADED_APPS`]); loading
    /// one more unloads the one used least recently.
    pub max_loaded_apps: usize,
    /// `max_guest_memory`: linear memory all guest instances together may hold, in bytes; `None` means half
    /// of the memory the process may use (decided at start-up).
    pub max_guest_memory: Option<u64>,
    /// What any client's connections and requests may do, before any tenant is involved.
    pub traffic: TrafficLimits,
}

/// Limits on client traffic (`[server]` keys of the same names), the defences against slow and oversized
/// requests and connection floods. Defaults are safe for the open internet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficLimits {
    /// `header_timeout`: time to send a whole request head (slowloris).
    pub header_timeout: Duration,
    /// `body_timeout`: longest pause while sending a request body (slow POST); the request gets 408.
    pub body_timeout: Duration,
    /// `send_timeout`: longest time a response write may wait for the client to read (slow read).
    pub send_timeout: Duration,
    /// `keepalive_timeout`: how long a connection may sit idle between requests.
    pub keepalive_timeout: Duration,
    /// `tls_handshake_timeout`: time to complete a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// `max_connections`: open client connections, all listeners together; more are closed at once.
    pub max_connections: u32,
    /// `max_connections_per_ip`: open connections from one client address.
    pub max_connections_per_ip: u32,
    /// `max_uri_length`: longest request target, in bytes (414).
    pub max_uri_length: u64,
    /// `max_header_count`: most header fields in a request (431).
    pub max_header_count: u32,
    /// `max_header_size`: largest request header section (HTTP/1.1, the request line aside: that is
    /// `max_uri_length`'s) or decoded header list (HTTP/2), in bytes (431).
    pub max_header_size: u64,
    /// `h2_max_concurrent_streams`: streams one HTTP/2 connection may have open.
    pub h2_max_concurrent_streams: u32,
}

impl Default for TrafficLimits {
    fn default() -> Self {
        TrafficLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 20_000,
            max_connections_per_ip: 1024,
            max_uri_length: 8 << 10,
            max_header_count: 100,
            max_header_size: 64 << 10,
            h2_max_concurrent_streams: 128,
        }
    }
}

/// Which hosts a tenant answers for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// One host name, lower-case, no port.
    Exact(String),
    /// `*.suffix`: any one label below `suffix` (stored without the `*.`), as in certificates.
    Wildcard(String),
    /// `"*"`: any host no other tenant claims.
    Any,
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
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
    /// Hard limits on each of this tenant's guest requests.
    pub limits: Limits,
    /// Private directory mounted at `/data` in CGI guests, absolute.
    pub data: Option<PathBuf>,
    /// Whether (and how) `data` is mounted at `/data` in this tenant's components too.
    pub component_data: DataAccess,
    /// Environment variables given to every guest of this tenant.
    pub env: BTreeMap<String, String>,
    /// Where this tenant's certificate comes from, if it is served over HTTPS.
    pub tls: Option<TlsSource>,
    /// `hsts`: the `Strict-Transport-Security` value added to this tenant's HTTPS responses.
    pub hsts: Option<String>,
    /// `https_redirect`: plain-HTTP requests are redirected (308) to HTTPS.
    pub https_redirect: bool,
    /// `cache = { max_size, disk }`: the tenant's HTTP cache, for its routes with `cache = true`.
    pub cache: CacheConfig,
    /// Routes, in the order written (matching is by longest prefix, not order).
    pub routes: Vec<Route>,
    /// Where the tenant's table is written, for errors found later (a reload that cannot apply it).
    pub location: Location,
}

impl Tenant {
    /// The tenant's hosts as written for matching (`name`, `*.suffix` or `*`).
    pub fn host_names(&self) -> Vec<String> {
        self.hosts.iter().map(HostPattern::to_string).collect()
    }
}

/// `[kv] backend`: the store behind every tenant's `wasi:keyvalue` buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvBackend {
    /// `"redb"` (the default): one embedded database file, `path` (default `data_dir/kv.redb`). One palisade
    /// process at a time opens it.
    Redb(PathBuf),
    /// `"redis://host:port/db"`: a Redis server shared by several palisade nodes; or
    /// `"redis+sentinel://host:port,.../master[/db]"`: the master a set of Sentinels monitors.
    Redis(String),
}

/// A tenant's `cache = { max_size, disk }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Bytes of responses (bodies and fields) the tenant's cache holds at most in memory.
    pub max_size: u64,
    /// Bytes its disk tier (`data_dir/http-cache/TENANT.redb`, kept across restarts) holds at most; `None`: memory
    /// only.
    pub disk: Option<u64>,
}

/// Default `cache.max_size`.
pub const DEFAULT_CACHE_MAX_SIZE: u64 = 64 << 20;

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { max_size: DEFAULT_CACHE_MAX_SIZE, disk: None }
    }
}

/// `kv = { max_keys, max_value, max_total }`: what one tenant may store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLimits {
    /// Keys in all the tenant's buckets together.
    pub max_keys: u64,
    /// Bytes in one value.
    pub max_value: u64,
    /// Bytes of keys and values in all the tenant's buckets together.
    pub max_total: u64,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits { max_keys: DEFAULT_KV_MAX_KEYS, max_value: DEFAULT_KV_MAX_VALUE, max_total: DEFAULT_KV_MAX_TOTAL }
    }
}

/// A tenant's hard limits. Every guest request is held to them by the sandbox, not by the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `memory`: maximum linear memory of one guest instance, in bytes.
    pub memory: u64,
    /// `max_total_memory`: maximum linear memory of all the tenant's instances in flight together, in bytes.
    pub max_total_memory: u64,
    /// `timeout`: wall-clock deadline of one request, from arrival to the guest's last byte.
    pub timeout: Duration,
    /// `cpu_time`: time one request may spend running guest code (waiting for I/O does not count).
    pub cpu_time: Duration,
    /// `max_concurrency`: guest instances in flight at once; more wait in line, then get 503.
    pub max_concurrency: u32,
    /// `max_queue`: requests that may wait in line for an instance slot; more get 503 at once.
    pub max_queue: u32,
    /// `queue_timeout`: how long a request waits in line for an instance slot before it gets 503.
    pub queue_timeout: Duration,
    /// `weight`: the tenant's share of the CPU when tenants' guests compete, relative to the others'.
    pub weight: u32,
    /// `max_request_body`: largest request body given to a guest, in bytes; larger gets 413.
    pub max_request_body: u64,
    /// `max_response_body`: largest response body a guest may send, in bytes; larger is cut off (502).
    pub max_response_body: u64,
    /// `max_stderr`: how much of a guest's stderr is logged per request, in bytes; the rest is dropped.
    pub max_stderr: u64,
    /// `outbound`: the backends a guest may send HTTP requests to; empty (the default) allows none.
    pub outbound: Vec<OutboundRule>,
    /// `kv`: what the tenant may keep in its key-value buckets.
    pub kv: KvLimits,
}

/// One entry of `outbound`: `scheme://host[:port]`, the host exact or `*.suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    /// `https` rather than `http`.
    pub https: bool,
    /// The host: `Exact` or `Wildcard` (never `Any`).
    pub host: HostPattern,
    /// The port (80 or 443 when not written).
    pub port: u16,
}

impl OutboundRule {
    /// Whether a request to `host` (lower-case) and `port` over http(s) matches this rule.
    pub fn allows(&self, https: bool, host: &str, port: u16) -> bool {
        self.https == https
            && self.port == port
            && match &self.host {
                HostPattern::Exact(h) => h == host,
                HostPattern::Wildcard(suffix) => host.split_once('.').is_some_and(|(_, parent)| parent == suffix),
                HostPattern::Any => false,
            }
    }
}

impl std::fmt::Display for OutboundRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", if self.https { "https" } else { "http" }, self.host, self.port)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: DEFAULT_MEMORY,
            max_total_memory: DEFAULT_MAX_TOTAL_MEMORY,
            timeout: DEFAULT_TIMEOUT,
            cpu_time: DEFAULT_CPU_TIME,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_queue: DEFAULT_MAX_CONCURRENCY * DEFAULT_QUEUE_PER_SLOT,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            weight: DEFAULT_WEIGHT,
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            max_response_body: DEFAULT_MAX_RESPONSE_BODY,
            max_stderr: DEFAULT_MAX_STDERR,
            outbound: Vec::new(),
            kv: KvLimits::default(),
        }
    }
}

/// `component_data`: whether a tenant's components see its `data` directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DataAccess {
    /// `"none"` (the default): components see an empty filesystem.
    #[default]
    None,
    /// `"read-only"`: mounted at `/data`, read-only.
    ReadOnly,
    /// `"read-write"`: mounted at `/data`, read-write.
    ReadWrite,
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
    /// `cache = true`: answers go through the tenant's HTTP cache.
    pub cache: bool,
}

/// What serves a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// `static = "dir"`: files under this absolute directory.
    Static {
        /// The directory, absolute.
        root: PathBuf,
        /// `dotfiles = true`: names starting with `.` are served too (by default only `.well-known`).
        dotfiles: bool,
    },
    /// `component = "app.wasm"`: a `wasi:http/proxy` component.
    Component(PathBuf),
    /// `cgi = "app.wasm"`: a WASI preview1 command module speaking CGI/1.1.
    Cgi(PathBuf),
    /// `proxy = "http://host:port"` or `proxy = { upstreams = [...], ... }`: a reverse proxy.
    Proxy(Box<crate::ProxyConfig>),
}

impl RouteTarget {
    /// The key this target is written with in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            RouteTarget::Static { .. } => "static",
            RouteTarget::Component(_) => "component",
            RouteTarget::Cgi(_) => "cgi",
            RouteTarget::Proxy(_) => "proxy",
        }
    }
}

/// The file or directory a target names, or a proxy's upstreams.
impl std::fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteTarget::Static { root: p, .. } | RouteTarget::Component(p) | RouteTarget::Cgi(p) => p.display().fmt(f),
            RouteTarget::Proxy(proxy) => {
                let upstreams: Vec<String> = proxy.upstreams.iter().map(ToString::to_string).collect();
                f.write_str(&upstreams.join(", "))
            }
        }
    }
}

/// Default `hsts = true`: one year, the minimum browsers' preload lists accept.
pub const DEFAULT_HSTS: &str = "max-age=31536000";

/// Where a tenant's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// `tls = { cert = "...", key = "..." }`: PEM files, reloaded when they change.
    Files {
        /// The certificate chain, leaf first, absolute.
        cert: PathBuf,
        /// The private key (PKCS#8, PKCS#1 RSA or SEC1 EC), absolute.
        key: PathBuf,
        /// Where `tls` is written.
        location: Location,
    },
    /// `tls = { cert_pem = "...", key_pem = "..." }`: the PEM text itself (how tenants created through the API
    /// bring their own certificate, since they may not name files).
    Inline {
        /// The certificate chain, leaf first.
        cert: String,
        /// The private key.
        key: PrivateKeyPem,
    },
    /// `acme = { ... }`: obtained and renewed from an ACME (RFC 8555) certificate authority.
    Acme(AcmeConfig),
}

/// A private key's PEM text, kept out of `Debug` output (logs, panic messages).
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKeyPem(pub String);

impl std::fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKeyPem({} bytes)", self.0.len())
    }
}

/// `acme = { directory, email, challenge, ca }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The CA's directory URL (`https://acme-v02.api.letsencrypt.org/directory` for Let's Encrypt).
    pub directory: String,
    /// Contact address given to the CA (expiry notices); optional.
    pub email: Option<String>,
    /// How the CA checks that we control the names.
    pub challenge: AcmeChallenge,
    /// A PEM root certificate to trust for the directory's own HTTPS (private or test CAs), absolute.
    pub ca: Option<PathBuf>,
}

/// The ACME challenge type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// `"http-01"`: a token served at `/.well-known/acme-challenge/` on a plain-HTTP listener (port 80).
    Http01,
    /// `"tls-alpn-01"` (the default): a special certificate in a TLS handshake on an HTTPS listener (port 443).
    TlsAlpn01,
}
