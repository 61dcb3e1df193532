//! `proxy = ...` on a route: the upstream servers a reverse-proxy route forwards to, and how.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::model::HostPattern;
use crate::units::parse_duration;
use crate::validate::{Checker, backend_url};

/// Default `timeout`: how long an upstream may take to start its response, or pause while sending it.
pub const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `health_interval`.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// A reverse-proxy route's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The upstream servers, in the order written (at least one).
    pub upstreams: Vec<Upstream>,
    /// How requests are spread over healthy upstreams.
    pub balance: Balance,
    /// The protocol spoken to upstreams.
    pub protocol: UpstreamProtocol,
    /// `health = "/healthz"`: the path actively checked on every upstream, and how often.
    pub health: Option<HealthCheck>,
    /// How long an upstream may take to send its response head, and to pause between two body chunks.
    pub timeout: Duration,
    /// How long connecting to an upstream may take.
    pub connect_timeout: Duration,
    /// Whether the client's `Host` is sent upstream (the default) rather than the upstream's address.
    pub preserve_host: bool,
}

/// One upstream server: `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// A DNS name or IP address (lower-case, IPv6 without brackets).
    pub host: String,
    /// The port (80 when not written).
    pub port: u16,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

/// `balance`: how the next upstream is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balance {
    /// `"round-robin"` (the default): each healthy upstream in turn.
    #[default]
    RoundRobin,
    /// `"least-requests"`: the healthy upstream with the fewest requests in flight (ties in turn).
    LeastRequests,
}

/// `protocol`: what the upstreams speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// `"http1"` (the default): HTTP/1.1 with keep-alive.
    #[default]
    Http1,
    /// `"h2c"`: HTTP/2 over cleartext TCP (prior knowledge), many requests per connection.
    H2c,
}

/// `health` and `health_interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The path requested with GET; a 2xx or 3xx answer is healthy.
    pub path: String,
    /// Time between two checks of one upstream.
    pub interval: Duration,
}

/// `proxy = { ... }` as written (`upstreams` is required there; `Default` only serves the URL form).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxyTable {
    upstreams: Vec<String>,
    balance: Option<String>,
    protocol: Option<String>,
    health: Option<String>,
    health_interval: Option<String>,
    timeout: Option<String>,
    connect_timeout: Option<String>,
    preserve_host: Option<bool>,
}

/// Validates `proxy = "http://..."` or `proxy = { upstreams = [...], ... }`.
pub(crate) fn proxy(c: &mut Checker<'_>, raw: &Spanned<toml::Value>) -> Option<ProxyConfig> {
    let span = raw.span();
    let table = match raw.get_ref() {
        toml::Value::String(url) => RawProxyTable { upstreams: vec![url.clone()], ..RawProxyTable::default() },
        value @ toml::Value::Table(_) => match value.clone().try_into::<RawProxyTable>() {
            Ok(t) => t,
            Err(e) => {
                c.error(&span, format!("`proxy`: {}", e.message().trim()));
                return None;
            }
        },
        _ => {
            c.error(&span, "`proxy` is an upstream URL (\"http://host:port\") or a table { upstreams = [...] }");
            return None;
        }
    };
    let before = c.problems.len();
    let fail = |c: &mut Checker<'_>, message: String| c.error(&span, format!("`proxy`: {message}"));

    let mut upstreams = Vec::new();
    for written in &table.upstreams {
        match backend_url(written) {
            Ok((false, HostPattern::Exact(host), port)) => {
                let upstream = Upstream { host, port };
                if upstreams.contains(&upstream) {
                    fail(c, format!("upstream {written:?} is listed twice"));
                }
                upstreams.push(upstream);
            }
            Ok((true, ..)) => {
                fail(c, format!("{written:?}: https upstreams are not supported; use http:// (or protocol = \"h2c\")"))
            }
            Ok(_) => fail(c, format!("{written:?}: an upstream is one host, not a wildcard")),
            Err(e) => fail(c, e),
        }
    }
    if table.upstreams.is_empty() {
        fail(c, "`upstreams` needs at least one \"http://host:port\"".into());
    }
    let balance = match table.balance.as_deref() {
        None | Some("round-robin") => Balance::RoundRobin,
        Some("least-requests") => Balance::LeastRequests,
        Some(other) => {
            fail(c, format!("`balance` is \"round-robin\" or \"least-requests\", not {other:?}"));
            Balance::RoundRobin
        }
    };
    let protocol = match table.protocol.as_deref() {
        None | Some("http1") => UpstreamProtocol::Http1,
        Some("h2c") => UpstreamProtocol::H2c,
        Some(other) => {
            fail(c, format!("`protocol` is \"http1\" or \"h2c\", not {other:?}"));
            UpstreamProtocol::Http1
        }
    };
    let duration = |c: &mut Checker<'_>, key: &str, written: Option<&String>, default: Duration| match written
        .map(|w| parse_duration(w))
    {
        None => default,
        Some(Ok(d)) if !d.is_zero() => d,
        Some(Ok(_)) => {
            fail(c, format!("`{key}` must be longer than zero"));
            default
        }
        Some(Err(e)) => {
            fail(c, format!("`{key}`: {e}"));
            default
        }
    };
    let timeout = duration(c, "timeout", table.timeout.as_ref(), DEFAULT_PROXY_TIMEOUT);
    let connect_timeout = duration(c, "connect_timeout", table.connect_timeout.as_ref(), DEFAULT_CONNECT_TIMEOUT);
    let interval = duration(c, "health_interval", table.health_interval.as_ref(), DEFAULT_HEALTH_INTERVAL);
    let health = match table.health {
        Some(path) if path.starts_with('/') && !path.bytes().any(|b| b.is_ascii_control() || b == b' ') => {
            Some(HealthCheck { path, interval })
        }
        Some(path) => {
            c.error(&span, format!("`proxy`: `health` is a path such as \"/healthz\", not {path:?}"));
            None
        }
        None if table.health_interval.is_some() => {
            c.error(&span, "`proxy`: `health_interval` needs `health`, the path to check");
            None
        }
        None => None,
    };
    (c.problems.len() == before).then(|| ProxyConfig {
        upstreams,
        balance,
        protocol,
        health,
        timeout,
        connect_timeout,
        preserve_host: table.preserve_host.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::model::RouteTarget;

    fn parse(proxy: &str) -> Result<ProxyConfig, String> {
        let text = format!("[tenants.t]\nhosts = [\"t\"]\n[[tenants.t.routes]]\npath = \"/api\"\nproxy = {proxy}\n");
        let config = Config::parse(std::path::Path::new("p.toml"), &text).map_err(|e| e.to_string())?;
        match &config.tenants[0].routes[0].target {
            RouteTarget::Proxy(p) => Ok((**p).clone()),
            other => Err(format!("not a proxy: {other:?}")),
        }
    }

    #[test]
    fn a_url_is_one_upstream_with_defaults() {
        let p = parse(r#""http://127.0.0.1:9000""#).unwrap();
        assert_eq!(p.upstreams, [Upstream { host: "127.0.0.1".into(), port: 9000 }]);
        assert_eq!(p.balance, Balance::RoundRobin);
        assert_eq!(p.protocol, UpstreamProtocol::Http1);
        assert_eq!(
            (p.timeout, p.connect_timeout, p.health, p.preserve_host),
            (DEFAULT_PROXY_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, None, true)
        );
        assert_eq!(p.upstreams[0].to_string(), "http://127.0.0.1:9000");
    }

    #[test]
    fn a_table_sets_everything() {
        let p = parse(
            r#"{ upstreams = ["http://a.test", "http://[::1]:81/"], balance = "least-requests", protocol = "h2c", health = "/healthz", health_interval = "1s", timeout = "10s", connect_timeout = "2s", preserve_host = false }"#,
        )
        .unwrap();
        assert_eq!(p.upstreams[0], Upstream { host: "a.test".into(), port: 80 });
        assert_eq!(p.upstreams[1].to_string(), "http://[::1]:81");
        assert_eq!(p.balance, Balance::LeastRequests);
        assert_eq!(p.protocol, UpstreamProtocol::H2c);
        assert_eq!(p.health, Some(HealthCheck { path: "/healthz".into(), interval: Duration::from_secs(1) }));
        assert_eq!(
            (p.timeout, p.connect_timeout, p.preserve_host),
            (Duration::from_secs(10), Duration::from_secs(2), false)
        );
    }

    #[test]
    fn mistakes_are_located_and_explained() {
        for (proxy, says) in [
            (r#""https://a.test""#, "https upstreams are not supported"),
            (r#""http://*.a.test""#, "not a wildcard"),
            (r#""http://a.test/path""#, "not a path"),
            (r#"{ upstreams = [] }"#, "at least one"),
            (r#"{ upstreams = ["http://a.test", "http://a.test:80"] }"#, "listed twice"),
            (r#"{ upstreams = ["http://a.test"], balance = "random" }"#, "`balance`"),
            (r#"{ upstreams = ["http://a.test"], protocol = "h3" }"#, "`protocol`"),
            (r#"{ upstreams = ["http://a.test"], timeout = "0s" }"#, "longer than zero"),
            (r#"{ upstreams = ["http://a.test"], health = "healthz" }"#, "`health` is a path"),
            (r#"{ upstreams = ["http://a.test"], health_interval = "1s" }"#, "needs `health`"),
            (r#"{ upstreams = ["http://a.test"], retries = 3 }"#, "unknown field `retries`"),
            (r#"{ upstream = ["http://a.test"] }"#, "unknown field `upstream`"),
            ("3", "an upstream URL"),
        ] {
            let err = parse(proxy).unwrap_err();
            assert!(err.contains("p.toml:5:") && err.contains(says), "{proxy}: {err}");
        }
        let text = "[tenants.t]\nhosts = [\"t\"]\n[[tenants.t.routes]]\npath = \"/\"\nstatic = \".\"\nproxy = \"http://a.test\"\n";
        let err = Config::parse(std::path::Path::new("p.toml"), text).unwrap_err().to_string();
        assert!(err.contains("p.toml:6:") && err.contains("`proxy` is extra"), "{err}");
    }
}
