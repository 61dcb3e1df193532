//! Raw file → validated [`Config`]: every check that needs more than serde, each failure located.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::diagnostic::LineStarts;
use crate::model::*;
use crate::path::decode_unreserved;
use crate::raw::{
    BoolOrString, DurationText, RawAcme, RawConfig, RawKv, RawKvLimits, RawRoute, RawServer, RawTenant, RawTls,
    SizeValue,
};
use crate::units::{format_size, parse_duration, parse_size};
use crate::{ConfigError, Diagnostic, Location};

/// Guests are 32-bit: no linear memory can exceed 4 GiB.
const MAX_MEMORY: u64 = 4 << 30;
/// The smallest `cache.max_size`: below this, a quarter (the largest response stored) would hold nothing useful.
const MIN_CACHE_SIZE: u64 = 1 << 20;

/// Collects diagnostics while walking the raw file.
pub(crate) struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    base_dir: PathBuf,
    lines: LineStarts,
    pub(crate) problems: Vec<Diagnostic>,
}

impl Checker<'_> {
    pub(crate) fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.problems.push(Diagnostic { location: self.location(span), message: message.into() });
    }

    pub(crate) fn location(&self, span: &Range<usize>) -> Location {
        self.lines.location(self.file, self.text, span.start)
    }

    /// Resolves a path written in the file against the file's directory.
    fn resolve(&self, written: &str) -> PathBuf {
        let p = Path::new(written);
        if p.is_absolute() { p.to_path_buf() } else { self.base_dir.join(p) }
    }

    /// Resolves a path that must exist and be a file (`want_dir == false`) or a directory.
    pub(crate) fn existing(&mut self, key: &str, value: &Spanned<String>, want_dir: bool) -> Option<PathBuf> {
        let path = self.resolve(value.get_ref());
        let what = if want_dir { "directory" } else { "file" };
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() == want_dir => Some(path),
            Ok(_) => {
                self.error(&value.span(), format!("`{key}`: {} is not a {what}", path.display()));
                None
            }
            Err(e) => {
                self.error(&value.span(), format!("`{key}`: {what} {} not found ({e})", path.display()));
                None
            }
        }
    }
}

pub(crate) fn validate(file: &Path, text: &str, raw: RawConfig) -> Result<Config, ConfigError> {
    let base_dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
    let mut c = Checker { file, text, base_dir, lines: LineStarts::of(text), problems: Vec::new() };

    let server_span = raw.server.as_ref().map(Spanned::span);
    let guest_memory_span = raw.server.as_ref().and_then(|s| s.get_ref().max_guest_memory.as_ref().map(Spanned::span));
    let server = server(&mut c, raw.server);
    let kv_span = raw.kv.as_ref().map(Spanned::span);
    let kv = kv_backend(&mut c, &server, raw.kv);
    let admin = raw.admin.and_then(|a| crate::operate::admin(&mut c, a));
    let cluster = raw.cluster.and_then(|a| crate::operate::cluster(&mut c, a));
    let kv = crate::operate::cluster_kv(&mut c, kv, kv_span.as_ref(), cluster.as_ref());
    let mut tenants = Vec::new();
    let mut claimed: HashMap<HostPattern, (String, Location)> = HashMap::new();
    for (name, raw_tenant) in raw.tenants {
        if let Some(t) = tenant(&mut c, &server, &name, raw_tenant, &mut claimed) {
            tenants.push(t);
        }
    }
    if let (Some(limit), Some(span)) = (server.max_guest_memory, &guest_memory_span)
        && let Some(t) = tenants.iter().find(|t| t.limits.memory > limit)
    {
        c.error(
            span,
            format!(
                "`max_guest_memory` ({}) is less than tenant {}'s `memory` ({}): its instances could never reach it",
                format_size(limit),
                t.name,
                format_size(t.limits.memory)
            ),
        );
    }
    // With `[admin]`, tenants created through the API may bring certificates later.
    if !server.tls_listen.is_empty()
        && admin.is_none()
        && c.problems.is_empty()
        && tenants.iter().all(|t| t.tls.is_none())
    {
        let span = server_span.clone().unwrap_or(0..0);
        c.error(&span, "`tls_listen` is set but no tenant has `tls` or `acme`, so no certificate could be served");
    }

    if c.problems.is_empty() {
        Ok(Config { file: file.to_path_buf(), server, kv, admin, cluster, tenants })
    } else {
        c.problems.sort_by_key(|d| (d.location.line, d.location.column));
        Err(ConfigError::Invalid(c.problems))
    }
}

/// The one tenant in `raw`, validated as the file's tenants are, for a server running `server`: what the admin
/// API's tenant documents go through (see [`crate::api`]). Its hosts are checked against each other only; the
/// caller knows the other tenants.
pub(crate) fn lone_tenant(
    file: &Path,
    text: &str,
    raw: RawConfig,
    server: &ServerConfig,
) -> Result<Tenant, Vec<Diagnostic>> {
    let mut c = Checker { file, text, base_dir: PathBuf::from("."), lines: LineStarts::of(text), problems: Vec::new() };
    let mut claimed = HashMap::new();
    let tenant = raw.tenants.into_iter().next().and_then(|(name, t)| tenant(&mut c, server, &name, t, &mut claimed));
    match tenant {
        Some(t) if c.problems.is_empty() => Ok(t),
        _ => Err(c.problems),
    }
}

fn server(c: &mut Checker<'_>, raw: Option<Spanned<RawServer>>) -> ServerConfig {
    let mut out = ServerConfig {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
        tls_listen: Vec::new(),
        http3: false,
        quic_retry: false,
        traffic: TrafficLimits::default(),
        data_dir: c.resolve(DEFAULT_DATA_DIR),
        shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        workers: None,
        max_loaded_apps: DEFAULT_MAX_LOADED_APPS,
        max_guest_memory: None,
    };
    let Some(raw) = raw else { return out };
    let raw = raw.into_inner();
    if let Some(listen) = raw.listen {
        if listen.get_ref().is_empty() {
            c.error(&listen.span(), "`listen` needs at least one address, like \"127.0.0.1:8080\"");
        }
        out.listen = addresses(c, "listen", listen.into_inner(), &[]);
    }
    if let Some(tls_listen) = raw.tls_listen {
        out.tls_listen = addresses(c, "tls_listen", tls_listen.into_inner(), &out.listen);
    }
    if let Some(http3) = raw.http3 {
        out.http3 = *http3.get_ref();
        if out.http3 && out.tls_listen.is_empty() {
            c.error(&http3.span(), "`http3` needs a `tls_listen` address: HTTP/3 is served on its UDP port");
        }
    }
    if let Some(retry) = raw.quic_retry {
        out.quic_retry = *retry.get_ref();
        if out.quic_retry && !out.http3 {
            c.error(&retry.span(), "`quic_retry` applies to HTTP/3: set `http3 = true` as well");
        }
    }
    if let Some(dir) = raw.data_dir {
        out.data_dir = c.resolve(dir.get_ref());
    }
    if let Some(t) = raw.shutdown_timeout
        && let Some(d) = duration(c, "shutdown_timeout", &t)
    {
        out.shutdown_timeout = d;
    }
    if let Some(w) = raw.workers {
        match usize::try_from(*w.get_ref()) {
            Ok(n) if (1..=1024).contains(&n) => out.workers = Some(n),
            _ => c.error(&w.span(), "`workers` must be between 1 and 1024"),
        }
    }
    if let Some(n) = raw.max_loaded_apps {
        match usize::try_from(*n.get_ref()) {
            Ok(v) if (1..=10_000_000).contains(&v) => out.max_loaded_apps = v,
            _ => c.error(&n.span(), "`max_loaded_apps` must be between 1 and 10000000"),
        }
    }
    if let Some(m) = &raw.max_guest_memory {
        out.max_guest_memory = Some(size(c, "max_guest_memory", Some(m), 0));
    }
    let t = &mut out.traffic;
    for (key, value, slot) in [
        ("header_timeout", &raw.header_timeout, &mut t.header_timeout),
        ("body_timeout", &raw.body_timeout, &mut t.body_timeout),
        ("send_timeout", &raw.send_timeout, &mut t.send_timeout),
        ("keepalive_timeout", &raw.keepalive_timeout, &mut t.keepalive_timeout),
        ("tls_handshake_timeout", &raw.tls_handshake_timeout, &mut t.tls_handshake_timeout),
    ] {
        if let Some(d) = value.as_ref().and_then(|v| duration(c, key, v)) {
            *slot = d;
        }
    }
    for (key, value, slot, max) in [
        ("max_connections", &raw.max_connections, &mut t.max_connections, 1_000_000),
        ("max_connections_per_ip", &raw.max_connections_per_ip, &mut t.max_connections_per_ip, 1_000_000),
        ("max_header_count", &raw.max_header_count, &mut t.max_header_count, 10_000),
        ("h2_max_concurrent_streams", &raw.h2_max_concurrent_streams, &mut t.h2_max_concurrent_streams, 10_000),
    ] {
        if let Some(v) = value {
            match u32::try_from(*v.get_ref()) {
                Ok(n) if n >= 1 && n <= max => *slot = n,
                _ => c.error(&v.span(), format!("`{key}` must be between 1 and {max}")),
            }
        }
    }
    t.max_uri_length = bounded_size(c, "max_uri_length", raw.max_uri_length.as_ref(), t.max_uri_length, 256..=1 << 20);
    t.max_header_size =
        bounded_size(c, "max_header_size", raw.max_header_size.as_ref(), t.max_header_size, 8 << 10..=16 << 20);
    out
}

/// A list of `IP:port` addresses, none repeated, none in `taken` (another listener's).
fn addresses(c: &mut Checker<'_>, key: &str, raw: Vec<Spanned<String>>, taken: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for addr in raw {
        match addr.get_ref().parse::<SocketAddr>() {
            Ok(a) if out.contains(&a) => c.error(&addr.span(), format!("`{key}`: {a} is listed twice")),
            Ok(a) if a.port() != 0 && taken.contains(&a) => {
                c.error(&addr.span(), format!("`{key}`: {a} is already a plain-HTTP `listen` address"))
            }
            Ok(a) => out.push(a),
            Err(_) => c.error(
                &addr.span(),
                format!(
                    "`{key}`: {:?} is not an IP:port address, like \"127.0.0.1:8443\" or \"[::1]:8443\"",
                    addr.get_ref()
                ),
            ),
        }
    }
    out
}

fn duration(c: &mut Checker<'_>, key: &str, value: &Spanned<DurationText>) -> Option<Duration> {
    match parse_duration(&value.get_ref().0) {
        Ok(d) if d.is_zero() => {
            c.error(&value.span(), format!("`{key}` must be longer than zero"));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            c.error(&value.span(), format!("`{key}`: {e}"));
            None
        }
    }
}

/// A size key (`"64 MiB"` or a byte count) that must be above zero, or `default` when absent or invalid.
fn size(c: &mut Checker<'_>, key: &str, value: Option<&Spanned<SizeValue>>, default: u64) -> u64 {
    let Some(value) = value else { return default };
    let parsed = match value.get_ref() {
        SizeValue::Bytes(n) => u64::try_from(*n).map_err(|_| format!("`{key}` cannot be negative")),
        SizeValue::Text(t) => parse_size(t).map_err(|e| format!("`{key}`: {e}")),
    };
    match parsed {
        Ok(0) => c.error(&value.span(), format!("`{key}` must be larger than zero")),
        Ok(b) => return b,
        Err(e) => c.error(&value.span(), e),
    }
    default
}

/// [`size`], and within `range`.
fn bounded_size(
    c: &mut Checker<'_>,
    key: &str,
    value: Option<&Spanned<SizeValue>>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> u64 {
    let bytes = size(c, key, value, default);
    match value {
        Some(v) if !range.contains(&bytes) => {
            c.error(&v.span(), format!("`{key}` must be between {} and {} bytes", range.start(), range.end()));
            default
        }
        _ => bytes,
    }
}

/// Whether `name` can name a tenant (or an app, or a bucket's owner in paths and keys): 1 to 64 letters,
/// digits, `-` and `_`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn tenant(
    c: &mut Checker<'_>,
    server: &ServerConfig,
    name: &Spanned<String>,
    raw: Spanned<RawTenant>,
    claimed: &mut HashMap<HostPattern, (String, Location)>,
) -> Option<Tenant> {
    let before = c.problems.len();
    let tenant_span = raw.span();
    let raw = raw.into_inner();
    let name_str = name.get_ref().clone();
    if !valid_name(&name_str) {
        c.error(
            &name.span(),
            format!("tenant name {name_str:?} may only use letters, digits, '-' and '_' (at most 64)"),
        );
    }

    let hosts = hosts(c, &name_str, &tenant_span, raw.hosts, claimed);

    let defaults = Limits::default();
    let memory = size(c, "memory", raw.memory.as_ref(), defaults.memory);
    if let Some(m) = &raw.memory
        && memory > MAX_MEMORY
    {
        c.error(&m.span(), "`memory` cannot exceed 4 GiB (guests are 32-bit)");
    }
    let max_total_memory = size(c, "max_total_memory", raw.max_total_memory.as_ref(), defaults.max_total_memory);
    if let Some(total) = &raw.max_total_memory
        && max_total_memory < memory
    {
        c.error(&total.span(), "`max_total_memory` must be at least `memory` (one instance must fit)");
    }
    let timeout = raw.timeout.as_ref().map_or(defaults.timeout, |t| duration(c, "timeout", t).unwrap_or_default());
    let cpu_time = raw.cpu_time.as_ref().map_or(defaults.cpu_time, |t| duration(c, "cpu_time", t).unwrap_or_default());

    let max_concurrency = match &raw.max_concurrency {
        None => defaults.max_concurrency,
        Some(n) => match u32::try_from(*n.get_ref()) {
            Ok(v) if v > 0 && v <= 100_000 => v,
            _ => {
                c.error(&n.span(), "`max_concurrency` must be between 1 and 100000");
                0
            }
        },
    };
    let max_queue = match &raw.max_queue {
        None => max_concurrency.saturating_mul(DEFAULT_QUEUE_PER_SLOT).min(100_000),
        Some(n) => u32::try_from(*n.get_ref()).ok().filter(|v| *v <= 100_000).unwrap_or_else(|| {
            c.error(&n.span(), "`max_queue` must be between 0 and 100000");
            0
        }),
    };
    let weight = match &raw.weight {
        None => defaults.weight,
        Some(n) => u32::try_from(*n.get_ref()).ok().filter(|v| (1..=MAX_WEIGHT).contains(v)).unwrap_or_else(|| {
            c.error(&n.span(), format!("`weight` must be between 1 and {MAX_WEIGHT}"));
            1
        }),
    };
    let queue_timeout = raw
        .queue_timeout
        .as_ref()
        .map_or(defaults.queue_timeout, |t| duration(c, "queue_timeout", t).unwrap_or_default());
    let limits = Limits {
        memory,
        max_total_memory,
        timeout,
        cpu_time,
        max_concurrency,
        max_queue,
        queue_timeout,
        weight,
        max_request_body: size(c, "max_request_body", raw.max_request_body.as_ref(), defaults.max_request_body),
        max_response_body: size(c, "max_response_body", raw.max_response_body.as_ref(), defaults.max_response_body),
        max_stderr: size(c, "max_stderr", raw.max_stderr.as_ref(), defaults.max_stderr),
        outbound: raw.outbound.map(|list| outbound(c, list.into_inner())).unwrap_or_default(),
        kv: raw.kv.map(|k| kv_limits(c, k.into_inner())).unwrap_or_default(),
    };

    let data = raw.data.as_ref().and_then(|d| c.existing("data", d, true));
    let component_data = match &raw.component_data {
        None => DataAccess::None,
        Some(v) => {
            let access = match v.get_ref().as_str() {
                "none" => DataAccess::None,
                "read-only" => DataAccess::ReadOnly,
                "read-write" => DataAccess::ReadWrite,
                other => {
                    c.error(
                        &v.span(),
                        format!("`component_data`: {other:?} is not one of \"none\", \"read-only\", \"read-write\""),
                    );
                    DataAccess::None
                }
            };
            if access != DataAccess::None && raw.data.is_none() {
                c.error(&v.span(), "`component_data` shares the tenant's `data` directory, but `data` is not set");
            }
            access
        }
    };

    let mut env = BTreeMap::new();
    for (k, v) in raw.env {
        let key = k.get_ref();
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            c.error(&k.span(), format!("`env`: {key:?} is not a valid variable name"));
        } else if v.get_ref().contains('\0') {
            c.error(&v.span(), format!("`env`: the value of {key} contains a NUL byte"));
        } else {
            env.insert(key.clone(), v.into_inner());
        }
    }

    let tls = tls(c, server, &name_str, &hosts, raw.tls, raw.acme);
    let https_only = |c: &mut Checker<'_>, key: &str, span: &Range<usize>| {
        if tls.is_none() {
            c.error(span, format!("`{key}` needs HTTPS: give the tenant `tls` or `acme`"));
        }
    };
    let hsts = raw.hsts.and_then(|h| {
        let span = h.span();
        https_only(c, "hsts", &span);
        match h.into_inner() {
            BoolOrString::Bool(false) => None,
            BoolOrString::Bool(true) => Some(DEFAULT_HSTS.to_string()),
            BoolOrString::Text(t) if valid_hsts(&t) => Some(t),
            BoolOrString::Text(t) => {
                c.error(
                    &span,
                    format!("`hsts`: {t:?} is not a Strict-Transport-Security value, like \"max-age=31536000\""),
                );
                None
            }
        }
    });
    let https_redirect = raw.https_redirect.is_some_and(|r| {
        if *r.get_ref() {
            https_only(c, "https_redirect", &r.span());
        }
        *r.get_ref()
    });

    let mut routes: Vec<Route> = Vec::new();
    for raw_route in raw.routes {
        if let Some(r) = route(c, raw_route) {
            if let Some(dup) = routes.iter().find(|x| x.path == r.path) {
                let msg = format!("route path {:?} is already used at {}", r.path, dup.location);
                c.problems.push(Diagnostic { location: r.location.clone(), message: msg });
            } else {
                routes.push(r);
            }
        }
    }
    let cache = match raw.cache {
        None => CacheConfig::default(),
        Some(raw) => {
            let max_size = size(c, "cache.max_size", raw.get_ref().max_size.as_ref(), DEFAULT_CACHE_MAX_SIZE);
            if max_size < MIN_CACHE_SIZE {
                c.error(&raw.span(), format!("`cache.max_size` must be at least {}", format_size(MIN_CACHE_SIZE)));
            }
            let disk = raw.get_ref().disk.as_ref().map(|d| size(c, "cache.disk", Some(d), MIN_CACHE_SIZE));
            if disk.is_some_and(|d| d < MIN_CACHE_SIZE) {
                c.error(&raw.span(), format!("`cache.disk` must be at least {}", format_size(MIN_CACHE_SIZE)));
            }
            CacheConfig { max_size, disk }
        }
    };
    let location = c.location(&name.span());
    (c.problems.len() == before).then_some(Tenant {
        location,
        cache,
        name: name_str,
        hosts,
        limits,
        data,
        component_data,
        env,
        tls,
        hsts,
        https_redirect,
        routes,
    })
}

fn hosts(
    c: &mut Checker<'_>,
    tenant: &str,
    tenant_span: &Range<usize>,
    raw: Option<Spanned<Vec<Spanned<String>>>>,
    claimed: &mut HashMap<HostPattern, (String, Location)>,
) -> Vec<HostPattern> {
    let Some(raw) = raw else {
        c.error(
            tenant_span,
            format!("tenant {tenant:?} needs `hosts`, like hosts = [\"{tenant}.localhost\"] or [\"*\"]"),
        );
        return Vec::new();
    };
    if raw.get_ref().is_empty() {
        c.error(&raw.span(), "`hosts` needs at least one host name (or \"*\" for any)");
    }
    let mut out = Vec::new();
    for h in raw.into_inner() {
        let pattern = match parse_host(h.get_ref()) {
            Ok(p) => p,
            Err(e) => {
                c.error(&h.span(), format!("`hosts`: {e}"));
                continue;
            }
        };
        let here = c.location(&h.span());
        if let Some((other, at)) = claimed.get(&pattern) {
            let msg = if other == tenant {
                format!("`hosts`: {pattern} is listed twice (first at {at})")
            } else {
                format!("`hosts`: {pattern} is already claimed by tenant {other:?} at {at}")
            };
            c.problems.push(Diagnostic { location: here, message: msg });
            continue;
        }
        claimed.insert(pattern.clone(), (tenant.to_string(), here));
        out.push(pattern);
    }
    out
}

/// `[kv] backend`: `"redb"` (the default; its file is `path`, by default `data_dir/kv.redb`), a `redis://`
/// URL or a `redis+sentinel://` one.
fn kv_backend(c: &mut Checker<'_>, server: &ServerConfig, raw: Option<Spanned<RawKv>>) -> KvBackend {
    let Some(raw) = raw.map(Spanned::into_inner) else { return KvBackend::Redb(server.data_dir.join("kv.redb")) };
    let path = raw.path.as_ref().map_or_else(|| server.data_dir.join("kv.redb"), |p| c.resolve(p.get_ref()));
    let Some(backend) = raw.backend else { return KvBackend::Redb(path) };
    match backend.get_ref().as_str() {
        "redb" => KvBackend::Redb(path),
        url if crate::redis_url::is_redis_url(url) => {
            if let Err(problem) = crate::redis_url::check(url) {
                c.error(&backend.span(), format!("`backend`: {problem}"));
                return KvBackend::Redb(path);
            }
            if let Some(p) = &raw.path {
                c.error(&p.span(), "`path` is the redb file; a redis backend has none");
            }
            KvBackend::Redis(url.to_string())
        }
        other => {
            c.error(&backend.span(), format!("`backend` is \"redb\", {}, not {other:?}", crate::redis_url::FORMS));
            KvBackend::Redb(path)
        }
    }
}

/// A tenant's `kv = { max_keys, max_value, max_total }`.
fn kv_limits(c: &mut Checker<'_>, raw: RawKvLimits) -> KvLimits {
    let defaults = KvLimits::default();
    let max_keys = match raw.max_keys {
        None => defaults.max_keys,
        Some(n) => match u64::try_from(*n.get_ref()) {
            Ok(v) if v > 0 => v,
            _ => {
                c.error(&n.span(), "`kv.max_keys` must be at least 1");
                defaults.max_keys
            }
        },
    };
    KvLimits {
        max_keys,
        max_value: size(c, "kv.max_value", raw.max_value.as_ref(), defaults.max_value),
        max_total: size(c, "kv.max_total", raw.max_total.as_ref(), defaults.max_total),
    }
}

/// `outbound` entries: `http://host[:port]` or `https://host[:port]`, the host exact or `*.suffix`.
fn outbound(c: &mut Checker<'_>, list: Vec<Spanned<String>>) -> Vec<OutboundRule> {
    let mut rules = Vec::new();
    for entry in list {
        match backend_url(entry.get_ref()) {
            Ok((https, host, port)) => rules.push(OutboundRule { https, host, port }),
            Err(e) => c.error(&entry.span(), format!("`outbound`: {e}")),
        }
    }
    rules
}

/// `http://host[:port]` or `https://host[:port]` (a trailing `/` allowed, nothing else after the authority):
/// whether it is https, the host (exact, `*.suffix`, never `*`), and the port (80 or 443 when not written).
pub(crate) fn backend_url(written: &str) -> Result<(bool, HostPattern, u16), String> {
    let parsed =
        written.strip_prefix("https://").map(|r| (true, r)).or(written.strip_prefix("http://").map(|r| (false, r)));
    let Some((https, rest)) = parsed else {
        return Err(format!("{written:?} must start with http:// or https://"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) {
        return Err(format!("{written:?} names a backend, not a path: write scheme://host[:port]"));
    }
    // `[v6]:port`, `[v6]`, `host:port` or `host`.
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !authority.ends_with(']') => (h, Some(p)),
        _ => (authority, None),
    };
    let port = match port.map(str::parse::<u16>) {
        None if https => 443,
        None => 80,
        Some(Ok(p)) if p > 0 => p,
        Some(_) => return Err(format!("{written:?} has an invalid port")),
    };
    match parse_host(host.trim_start_matches('[').trim_end_matches(']')) {
        Ok(HostPattern::Any) | Err(_) => {
            Err(format!("{written:?}: the host must be a name, `*.name` or an IP address"))
        }
        Ok(host) => Ok((https, host, port)),
    }
}

/// `max-age=N` first, then only the directives RFC 6797 defines (and `preload`), as browsers parse it.
fn valid_hsts(value: &str) -> bool {
    let mut directives = value.split(';').map(str::trim);
    let max_age = directives.next().and_then(|d| d.strip_prefix("max-age="));
    max_age.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && directives.all(|d| d.eq_ignore_ascii_case("includeSubDomains") || d.eq_ignore_ascii_case("preload"))
}

/// A tenant's `tls` or `acme` table: files that exist, or an ACME account that can work with these hosts.
fn tls(
    c: &mut Checker<'_>,
    server: &ServerConfig,
    tenant: &str,
    hosts: &[HostPattern],
    raw_tls: Option<Spanned<RawTls>>,
    raw_acme: Option<Spanned<RawAcme>>,
) -> Option<TlsSource> {
    let span = match (&raw_tls, &raw_acme) {
        (None, None) => return None,
        (Some(_), Some(a)) => {
            c.error(&a.span(), "a tenant has either `tls` (certificate files) or `acme` (automatic), not both");
            return None;
        }
        (Some(t), None) => t.span(),
        (None, Some(a)) => a.span(),
    };
    if server.tls_listen.is_empty() {
        c.error(&span, format!("tenant {tenant:?} has a certificate but [server] has no `tls_listen` address"));
    }
    if let Some(raw) = raw_tls {
        let raw = raw.into_inner();
        return match (raw.cert, raw.key, raw.cert_pem, raw.key_pem) {
            (Some(cert), Some(key), None, None) => {
                let location = c.location(&span);
                let cert = c.existing("tls.cert", &cert, false);
                let key = c.existing("tls.key", &key, false);
                Some(TlsSource::Files { cert: cert?, key: key?, location })
            }
            (None, None, Some(cert), Some(key)) => {
                Some(TlsSource::Inline { cert: cert.into_inner(), key: PrivateKeyPem(key.into_inner()) })
            }
            _ => {
                c.error(
                    &span,
                    "`tls` needs `cert` and `key` (files), like tls = { cert = \"site.pem\", key = \"site.key\" }, \
                     or `cert_pem` and `key_pem` (the PEM text)",
                );
                None
            }
        };
    }
    let raw = raw_acme?.into_inner();
    let Some(directory) = raw.directory else {
        c.error(&span, "`acme` needs `directory`, the CA's directory URL");
        return None;
    };
    if !directory.get_ref().starts_with("https://") {
        c.error(&directory.span(), "`acme.directory` must be an https:// URL");
    }
    for h in hosts {
        if !matches!(h, HostPattern::Exact(name) if name.parse::<std::net::IpAddr>().is_err()) {
            c.error(&span, format!("`acme` cannot get a certificate for host {h} (only plain DNS names)"));
        }
    }
    let challenge = match raw.challenge.as_ref().map(|c| c.get_ref().as_str()) {
        None | Some("tls-alpn-01") => AcmeChallenge::TlsAlpn01,
        Some("http-01") => AcmeChallenge::Http01,
        Some(other) => {
            let at = raw.challenge.as_ref().map_or(span.clone(), Spanned::span);
            c.error(&at, format!("`acme.challenge`: {other:?} is not \"tls-alpn-01\" or \"http-01\""));
            AcmeChallenge::TlsAlpn01
        }
    };
    let ca = raw.ca.as_ref().and_then(|ca| c.existing("acme.ca", ca, false));
    let email = raw.email.map(Spanned::into_inner);
    if let Some(e) = &email
        && (!e.contains('@') || e.contains([' ', ',', '\n']))
    {
        c.error(&span, format!("`acme.email`: {e:?} is not an email address"));
    }
    Some(TlsSource::Acme(AcmeConfig { directory: directory.into_inner(), email, challenge, ca }))
}

/// A host pattern as written: `*`, `*.suffix`, or a DNS name / IP literal without port.
fn parse_host(written: &str) -> Result<HostPattern, String> {
    if written == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some(suffix) = written.strip_prefix("*.") {
        return match parse_host(suffix) {
            Ok(HostPattern::Exact(s)) if s.contains('.') && s.parse::<std::net::IpAddr>().is_err() => {
                Ok(HostPattern::Wildcard(s))
            }
            _ => Err(format!("{written:?}: a wildcard is `*.` followed by a name with at least two labels")),
        };
    }
    // One trailing dot names the same host (a fully qualified name); two do not name any.
    let lower = written.strip_suffix('.').unwrap_or(written).to_ascii_lowercase();
    let ok = !lower.is_empty()
        && lower.len() <= 253
        && (lower.parse::<std::net::IpAddr>().is_ok()
            || lower.split('.').all(|label| {
                !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }));
    if ok {
        Ok(HostPattern::Exact(lower))
    } else if written.contains(':') && !written.starts_with('[') {
        Err(format!("{written:?}: write the host without a port (the port is ignored when matching)"))
    } else {
        Err(format!("{written:?} is not a host name"))
    }
}

/// Normalises a route prefix: must start with `/`; a trailing `/` is dropped except for the root.
///
/// Requests are routed on their path in normal form (percent-encoded, unreserved characters decoded, escapes
/// in upper case), so a route is written down in that form too: `/é` becomes `/%C3%A9` and `/%7euser`
/// becomes `/~user`, and a route that no request could reach (an encoded `/`) is refused.
pub fn normalise_route_path(written: &str) -> Result<String, String> {
    if !written.starts_with('/') {
        return Err(format!("route path {written:?} must start with '/'"));
    }
    if written.contains(['?', '#']) || written.chars().any(|ch| ch.is_control() || ch == ' ') {
        return Err(format!("route path {written:?} may not contain spaces, control characters, '?' or '#'"));
    }
    let normal = percent_normal_form(written)?;
    // What a request's path may hold as it is (RFC 3986 `pchar` and `/`); anything else (`<`, `"`, `{`, `\`)
    // reaches the server only percent-encoded, so a route written with it could never match.
    let raw = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%/".contains(&b);
    if let Some(b) = normal.bytes().find(|&b| !raw(b)) {
        let ch = char::from(b);
        return Err(format!("route path {written:?} can never match as written: write {ch:?} as %{b:02X}"));
    }
    if normal.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!("route path {written:?} may not contain '.' or '..' segments"));
    }
    let trimmed = normal.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/".into() } else { trimmed.into() })
}

/// `written` with non-ASCII characters percent-encoded, escapes of unreserved characters decoded and the
/// others in upper case: the form the server routes requests on ([`decode_unreserved`]).
fn percent_normal_form(written: &str) -> Result<String, String> {
    let mut encoded = String::with_capacity(written.len());
    for b in written.bytes() {
        if b.is_ascii() {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let bytes = encoded.as_bytes();
    let lone_percent = bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'%' && !bytes.get(i + 1..i + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)));
    if lone_percent {
        return Err(format!("route path {written:?}: '%' must begin an escape like %20"));
    }
    decode_unreserved(&encoded).map(Cow::into_owned).map_err(|_| {
        format!("route path {written:?} can never match: requests with an encoded '/' or '\\' are refused")
    })
}

fn route(c: &mut Checker<'_>, raw: Spanned<RawRoute>) -> Option<Route> {
    let span = raw.span();
    let raw = raw.into_inner();
    let Some(path) = raw.path else {
        c.error(&span, "route needs `path`, like path = \"/\"");
        return None;
    };
    let norm = match normalise_route_path(path.get_ref()) {
        Ok(p) => Some(p),
        Err(e) => {
            c.error(&path.span(), e);
            None
        }
    };
    let proxy_span = raw.proxy.as_ref().map(Spanned::span);
    let files: Vec<(&str, Spanned<String>)> =
        [("static", raw.static_dir), ("component", raw.component), ("cgi", raw.cgi)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
    let mut written: Vec<(&str, Range<usize>)> = files.iter().map(|(k, v)| (*k, v.span())).collect();
    written.extend(proxy_span.map(|s| ("proxy", s)));
    written.sort_by_key(|(_, s)| s.start);
    if let Some(dotfiles) = &raw.dotfiles
        && written.first().is_none_or(|(k, _)| *k != "static")
    {
        c.error(&dotfiles.span(), "`dotfiles` applies to `static` routes only");
    }
    let cache = raw.cache.as_ref().is_some_and(|c| *c.get_ref());
    if cache && written.first().is_some_and(|(k, _)| *k == "static") {
        let span = raw.cache.as_ref().map_or(span.clone(), Spanned::span);
        c.error(&span, "`cache` applies to `proxy`, `component` and `cgi` routes (static files have their own cache)");
    }
    match written.as_slice() {
        [_] => {}
        [] => {
            c.error(&span, "route needs one of `static`, `component`, `cgi` or `proxy`");
            return None;
        }
        [_, (k, extra), ..] => {
            c.error(
                extra,
                format!("route has more than one of `static`, `component`, `cgi`, `proxy` (`{k}` is extra)"),
            );
            return None;
        }
    }
    let (target, location) = match (files.first(), &raw.proxy) {
        (Some((kind, value)), _) => {
            let location = c.location(&value.span());
            let target = match *kind {
                "static" => RouteTarget::Static {
                    root: c.existing(kind, value, true)?,
                    dotfiles: raw.dotfiles.as_ref().is_some_and(|d| *d.get_ref()),
                },
                "component" => RouteTarget::Component(c.existing(kind, value, false)?),
                _ => RouteTarget::Cgi(c.existing(kind, value, false)?),
            };
            (target, location)
        }
        (None, Some(proxy)) => {
            (RouteTarget::Proxy(Box::new(crate::proxy::proxy(c, proxy)?)), c.location(&proxy.span()))
        }
        (None, None) => return None,
    };
    Some(Route { path: norm?, target, location, cache })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_paths_normalise() {
        assert_eq!(normalise_route_path("/"), Ok("/".into()));
        assert_eq!(normalise_route_path("/app/"), Ok("/app".into()));
        assert_eq!(normalise_route_path("/cgi-bin/mail"), Ok("/cgi-bin/mail".into()));
        assert!(normalise_route_path("app").is_err());
        assert!(normalise_route_path("/a/../b").is_err());
        assert!(normalise_route_path("/a?b").is_err());
        assert_eq!(normalise_route_path("/é/"), Ok("/%C3%A9".into()), "routed as clients send it");
        assert_eq!(normalise_route_path("/%7euser/%c3%a9"), Ok("/~user/%C3%A9".into()));
        assert!(normalise_route_path("/a/%2e%2E/b").is_err(), "a dot-segment once decoded");
        let never = normalise_route_path("/<svg>").expect_err("'<' only arrives encoded");
        assert!(never.contains("write '<' as %3C"), "{never}");
        assert!(normalise_route_path("/a\"b").is_err());
        assert_eq!(normalise_route_path("/%3Csvg%3E"), Ok("/%3Csvg%3E".into()));
        assert_eq!(normalise_route_path("/a:b@c!$&'()*+,;="), Ok("/a:b@c!$&'()*+,;=".into()));
        assert!(normalise_route_path("/a%2fb").unwrap_err().contains("can never match"));
        assert!(normalise_route_path("/100%").unwrap_err().contains("escape"));
    }

    #[test]
    fn hosts_parse() {
        assert_eq!(parse_host("*"), Ok(HostPattern::Any));
        assert_eq!(parse_host("Alice.Localhost."), Ok(HostPattern::Exact("alice.localhost".into())));
        assert_eq!(parse_host("127.0.0.1"), Ok(HostPattern::Exact("127.0.0.1".into())));
        assert!(parse_host("alice.localhost:8080").unwrap_err().contains("without a port"));
        assert!(parse_host("a b").is_err());
        assert!(parse_host("").is_err());
        for bad in [".alice.test", "alice.test..", "[bad.be]", "alice..test", "."] {
            assert!(parse_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn outbound_entries() {
        let text = |list: &str| {
            format!(
                "[tenants.t]\nhosts = [\"t\"]\noutbound = {list}\n[[tenants.t.routes]]\npath = \"/\"\nstatic = \".\"\n"
            )
        };
        let parse = |list: &str| Config::parse(std::path::Path::new("p.toml"), &text(list));
        let config =
            parse(r#"["http://127.0.0.1:9000", "https://*.example.test", "https://[::1]", "http://a.test/"]"#).unwrap();
        let rules: Vec<String> = config.tenants[0].limits.outbound.iter().map(ToString::to_string).collect();
        assert_eq!(
            rules,
            ["http://127.0.0.1:9000", "https://*.example.test:443", "https://::1:443", "http://a.test:80"]
        );
        assert!(config.tenants[0].limits.outbound[1].allows(true, "api.example.test", 443));
        assert!(!config.tenants[0].limits.outbound[1].allows(false, "api.example.test", 443));
        for bad in [
            r#"["ftp://a.test"]"#,
            r#"["http://a.test/path"]"#,
            r#"["http://*"]"#,
            r#"["http://a.test:0"]"#,
            r#"["a.test"]"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kv_backend_and_limits() {
        let parse = |head: &str, tenant: &str| {
            let text = format!(
                "{head}\n[tenants.t]\nhosts = [\"t\"]\n{tenant}\n[[tenants.t.routes]]\npath = \"/\"\nstatic = \".\"\n"
            );
            Config::parse(std::path::Path::new("/srv/p.toml"), &text)
        };
        let config = parse("", "").unwrap();
        assert_eq!(config.kv, KvBackend::Redb(std::path::PathBuf::from("/srv/palisade-data/kv.redb")));
        assert_eq!(config.tenants[0].limits.kv, KvLimits::default());
        let config = parse(
            "[kv]\nbackend = \"redis://127.0.0.1:6379/0\"",
            "kv = { max_keys = 10, max_value = \"1 KiB\", max_total = 4096 }",
        )
        .unwrap();
        assert_eq!(config.kv, KvBackend::Redis("redis://127.0.0.1:6379/0".into()));
        assert_eq!(config.tenants[0].limits.kv, KvLimits { max_keys: 10, max_value: 1024, max_total: 4096 });
        let sentinel = "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0";
        let config = parse(&format!("[kv]\nbackend = \"{sentinel}\""), "").unwrap();
        assert_eq!(config.kv, KvBackend::Redis(sentinel.into()));
        for (head, tenant, says) in [
            ("[kv]\nbackend = \"memcached://x\"", "", "or a Sentinel one (redis+sentinel://"),
            (
                "[kv]\nbackend = \"redis+sentinel://10.0.0.1:26379\"",
                "",
                "`backend`: \"redis+sentinel://10.0.0.1:26379\" names no master",
            ),
            ("[kv]\nbackend = \"redis+sentinel://h:x/m\"", "", "the Sentinel \"h:x\" is not HOST:PORT"),
            ("[kv]\nbackend = \"redis://\"", "", "names no server"),
            ("", "kv = { max_keys = 0 }", "`kv.max_keys`"),
            ("", "kv = { max_value = \"1 XB\" }", "kv.max_value"),
            ("", "kv = { max_items = 1 }", "unknown field"),
        ] {
            let err = parse(head, tenant).unwrap_err().to_string();
            assert!(err.contains(says), "{head} {tenant}: {err}");
        }
    }

    #[test]
    fn cache_sizes() {
        let parse = |cache: &str| {
            let text = format!("[tenants.t]\nhosts = [\"t\"]\ncache = {cache}\n");
            Config::parse(std::path::Path::new("/srv/p.toml"), &text)
        };
        let config = parse("{ max_size = \"8 MiB\", disk = \"1 GiB\" }").unwrap();
        assert_eq!(config.tenants[0].cache, CacheConfig { max_size: 8 << 20, disk: Some(1 << 30) });
        assert_eq!(parse("{}").unwrap().tenants[0].cache, CacheConfig::default());
        for (cache, says) in [
            ("{ disk = \"1 KiB\" }", "`cache.disk` must be at least 1 MiB"),
            ("{ disk = \"many\" }", "`cache.disk`"),
            ("{ max_size = 0 }", "`cache.max_size` must be larger than zero"),
            ("{ disk = true }", "expected a size"),
            ("{ path = \"/tmp\" }", "unknown field"),
        ] {
            let err = parse(cache).unwrap_err().to_string();
            assert!(err.contains(says), "{cache}: {err}");
        }
    }

    #[test]
    fn admin_and_cluster() {
        let parse = |head: &str| {
            let text = format!(
                "{head}
[tenants.t]
hosts = [\"t\"]
[[tenants.t.routes]]
path = \"/\"
static = \".\"
"
            );
            Config::parse(std::path::Path::new("/srv/p.toml"), &text)
        };
        let config = parse(
            "[admin]
listen = \"127.0.0.1:9901\"
[cluster]
redis = \"redis://10.0.0.5:6379/0\"",
        )
        .unwrap();
        assert_eq!(config.admin.as_ref().map(|a| a.listen.to_string()), Some("127.0.0.1:9901".into()));
        let cluster = config.cluster.as_ref().unwrap();
        assert_eq!(
            (cluster.redis.as_str(), cluster.reconcile_interval),
            ("redis://10.0.0.5:6379/0", crate::DEFAULT_RECONCILE_INTERVAL)
        );
        // A cluster shares its key-value data through the same Redis unless [kv] names another.
        assert_eq!(config.kv, KvBackend::Redis("redis://10.0.0.5:6379/0".into()));
        let sentinel = "redis+sentinel://10.0.0.5:26379,10.0.0.6:26379,10.0.0.7:26379/mymaster";
        let config = parse(&format!("[cluster]\nredis = \"{sentinel}\"")).unwrap();
        assert_eq!(config.cluster.map(|c| c.redis), Some(sentinel.to_string()));
        assert_eq!(config.kv, KvBackend::Redis(sentinel.into()), "the key-value data follows the same master");
        for (head, says) in [
            ("[admin]\nlisten = \"localhost:9901\"", "not an IP:port"),
            ("[admin]\ntoken_file = \"t\"", "needs `listen`"),
            ("[admin]\nlisten = \"127.0.0.1:1\"\ntoken_file = \"/nonexistent/token\"", "token_file"),
            ("[admin]\nlisten = \"127.0.0.1:1\"\nport = 1", "unknown field"),
            ("[admin]\nlisten = \"127.0.0.1:1\"\ntls = { cert = \"/nonexistent/a.pem\" }", "needs both"),
            ("[admin]\nlisten = \"127.0.0.1:1\"\ntls = { cert = \"/nonexistent/a.pem\", key = \"/x\" }", "not found"),
            ("[cluster]\nredis = \"10.0.0.5:6379\"", "redis:// URL"),
            (
                "[cluster]\nredis = \"redis+sentinel:///mymaster\"",
                "`redis`: \"redis+sentinel:///mymaster\" names no Sentinel",
            ),
            ("[cluster]\nredis = \"redis+sentinel://s1:26379,s2:99999/m\"", "\"s2:99999\" is not HOST:PORT"),
            ("[cluster]\nredis = \"redis://x\"\nreconcile_interval = \"0s\"", "reconcile_interval"),
            ("[kv]\nbackend = \"redb\"\n[cluster]\nredis = \"redis://x\"", "one node alone"),
        ] {
            let err = parse(head).unwrap_err().to_string();
            assert!(err.contains(says), "{head}: {err}");
        }
    }
}
