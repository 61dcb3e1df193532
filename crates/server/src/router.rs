//! Host and path → tenant and route. Pure data, no I/O: built once at start-up, read by every request.

use std::sync::{Arc, OnceLock};

use http::HeaderValue;
use palisade_http::HostMap;

use crate::stats::{RequestStats, RouteStats};

/// One tenant's routes, longest prefix first, and how its HTTPS is enforced.
#[derive(Debug)]
pub struct TenantRoutes<H> {
    /// The tenant's name (shared: every request's context holds it).
    pub name: Arc<str>,
    /// `Strict-Transport-Security` added to the tenant's HTTPS responses.
    pub hsts: Option<HeaderValue>,
    /// Whether plain-HTTP requests are redirected to HTTPS.
    pub https_redirect: bool,
    routes: Vec<Route<H>>,
}

/// One route: its prefix, its handler, and its counters once a request was counted.
#[derive(Debug)]
pub struct Route<H> {
    /// The normalised path prefix.
    pub prefix: Arc<str>,
    /// What answers it.
    pub handler: H,
    stats: OnceLock<Arc<RouteStats>>,
}

impl<H> Route<H> {
    /// This route's counters in `registry` (looked up on the first call, kept after it).
    pub(crate) fn stats(&self, registry: &RequestStats, tenant: &Arc<str>) -> &Arc<RouteStats> {
        self.stats.get_or_init(|| registry.route(tenant, &self.prefix))
    }
}

impl<H> TenantRoutes<H> {
    /// A tenant with `routes` as (normalised prefix, handler) pairs, in any order; no HTTPS policy.
    pub fn new(name: impl Into<Arc<str>>, routes: Vec<(String, H)>) -> TenantRoutes<H> {
        let mut routes: Vec<Route<H>> = routes
            .into_iter()
            .map(|(prefix, handler)| Route { prefix: prefix.into(), handler, stats: OnceLock::new() })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        TenantRoutes { name: name.into(), hsts: None, https_redirect: false, routes }
    }

    /// The route with the longest prefix that contains `path` on a segment boundary:
    /// `/app` matches `/app` and `/app/x`, not `/apple`; `/` matches everything.
    pub fn route(&self, path: &str) -> Option<&Route<H>> {
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/" || path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// All tenants, found by host.
#[derive(Debug)]
pub struct Router<H> {
    tenants: Vec<TenantRoutes<H>>,
    by_host: HostMap<usize>,
}

impl<H> Default for Router<H> {
    fn default() -> Self {
        Router { tenants: Vec::new(), by_host: HostMap::default() }
    }
}

impl<H> Router<H> {
    /// Adds a tenant answering for `hosts` (lower-case names, `*.suffix` wildcards, or `"*"` for any host
    /// nobody else claims; see [`HostMap`]).
    ///
    /// Host uniqueness is the configuration's job; here a later claim simply replaces an earlier one.
    pub fn add(&mut self, hosts: &[String], tenant: TenantRoutes<H>) {
        let index = self.tenants.len();
        self.tenants.push(tenant);
        for h in hosts {
            self.by_host.insert(h, index);
        }
    }

    /// Every route, as (tenant name, path prefix).
    pub fn routes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.tenants.iter().flat_map(|t| t.routes.iter().map(move |r| (&*t.name, &*r.prefix)))
    }

    /// The tenant for a request's host (already normalised by [`crate::host::request_host`]).
    pub fn tenant(&self, host: Option<&str>) -> Option<&TenantRoutes<H>> {
        self.by_host.get(host).and_then(|&i| self.tenants.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantRoutes<u32> {
        TenantRoutes::new(
            "t",
            vec![("/".into(), 1), ("/app".into(), 2), ("/app/admin".into(), 3), ("/cgi-bin/mail".into(), 4)],
        )
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let t = tenant();
        assert_eq!(t.route("/").map(|r| r.handler), Some(1));
        assert_eq!(t.route("/index.html").map(|r| r.handler), Some(1));
        assert_eq!(t.route("/app").map(|r| r.handler), Some(2));
        assert_eq!(t.route("/app/").map(|r| r.handler), Some(2));
        assert_eq!(t.route("/app/x").map(|r| r.handler), Some(2));
        assert_eq!(t.route("/apple").map(|r| r.handler), Some(1));
        assert_eq!(t.route("/app/admin/users").map(|r| r.handler), Some(3));
        assert_eq!(t.route("/cgi-bin/mail/inbox").map(|r| (&*r.prefix, r.handler)), Some(("/cgi-bin/mail", 4)));
    }

    #[test]
    fn no_root_route_means_no_match() {
        let t = TenantRoutes::new("t", vec![("/app".to_string(), 1)]);
        assert!(t.route("/").is_none());
        assert!(t.route("/other").is_none());
    }

    #[test]
    fn hosts_and_wildcard() {
        let mut r = Router::default();
        r.add(&["alice.localhost".into()], TenantRoutes::new("alice", vec![("/".into(), 1)]));
        r.add(&["bob.localhost".into(), "www.bob.localhost".into()], TenantRoutes::new("bob", vec![("/".into(), 2)]));
        assert_eq!(r.tenant(Some("alice.localhost")).map(|t| &*t.name), Some("alice"));
        assert_eq!(r.tenant(Some("www.bob.localhost")).map(|t| &*t.name), Some("bob"));
        assert!(r.tenant(Some("carol.localhost")).is_none());
        assert!(r.tenant(None).is_none());
        r.add(&["*".into()], TenantRoutes::new("default", vec![("/".into(), 3)]));
        assert_eq!(r.tenant(Some("carol.localhost")).map(|t| &*t.name), Some("default"));
        assert_eq!(r.tenant(None).map(|t| &*t.name), Some("default"));
        assert_eq!(r.tenant(Some("alice.localhost")).map(|t| &*t.name), Some("alice"));
    }
}
