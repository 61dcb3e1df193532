//! Request counts, latencies and bytes per tenant and route: a few relaxed atomic additions per request.
//!
//! Each route finds its [`RouteStats`] once, on its first counted request, and keeps it; later requests
//! touch only that route's atomics. A general metrics recorder would look the series up by its labels on
//! every request (hashing and allocating them), which cost 3-10 % of a small static file's rate. The
//! registry outlives route swaps (deploys, reloads), so counters only grow, as Prometheus expects; a route
//! that is no longer served is forgotten when the registry is pruned against the live routes
//! ([`RequestStats::prune`], at each scrape), and a removed tenant's at once ([`RequestStats::forget`]). A
//! request holds its route's counters by reference count: that count sits beside the counters it increments,
//! on the cache line those increments touch anyway.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// Request latency histogram buckets, in seconds: from a fast static file to a guest at its deadline.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The same bounds in microseconds, which is what a request's duration is compared with.
const BOUNDS_MICROS: [u64; 17] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];

/// Status codes counted apart per route; a route answering more distinct codes counts the rest by class.
const STATUS_SLOTS: usize = 8;

/// Every route's counters, by tenant and route (both empty for requests no tenant or route took).
#[derive(Debug, Default)]
pub struct RequestStats {
    routes: Mutex<BTreeMap<SeriesKey, Arc<RouteStats>>>,
    /// The unrouted series, found once: requests that reach no route are counted there.
    unrouted: OnceLock<Arc<RouteStats>>,
}

/// A route's series: its tenant's name and its path prefix.
type SeriesKey = (Arc<str>, Arc<str>);

/// One route's counters.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Status code (0: free) and count; a slot is claimed once, by compare-and-swap, and never given back.
    statuses: [(AtomicU16, AtomicU64); STATUS_SLOTS],
    /// Requests whose code found no free slot, by class (1xx to 5xx).
    other: [AtomicU64; 5],
    bytes: AtomicU64,
    /// Durations by bucket, not cumulative; the last one is above the largest bound.
    latency: [AtomicU64; BOUNDS_MICROS.len() + 1],
    latency_micros: AtomicU64,
}

/// A tenant's counters, summed over its routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantTotals {
    /// Requests answered.
    pub requests: u64,
    /// Of which with a status of 500 or more.
    pub errors: u64,
    /// Response body bytes sent.
    pub bytes: u64,
    /// Durations per [`LATENCY_BUCKETS`] bucket (not cumulative), and one more above the last bound.
    pub latency: Vec<u64>,
}

impl Default for TenantTotals {
    /// No requests, with every latency bucket at zero.
    fn default() -> Self {
        TenantTotals { requests: 0, errors: 0, bytes: 0, latency: vec![0; BOUNDS_MICROS.len() + 1] }
    }
}

impl RequestStats {
    /// The counters of `tenant`'s route `route`, made on first use.
    pub fn route(&self, tenant: &Arc<str>, route: &Arc<str>) -> Arc<RouteStats> {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes.entry((tenant.clone(), route.clone())).or_default().clone()
    }

    /// The counters of requests no tenant or route took (a 404 for an unknown host, a 400).
    pub fn unrouted(&self) -> &Arc<RouteStats> {
        self.unrouted.get_or_init(|| self.route(&Arc::from(""), &Arc::from("")))
    }

    /// Forgets the series of routes `routes` no longer serves (and of tenants it no longer has): their
    /// counters leave `/metrics`, and a route or tenant of that name later starts again from zero.
    pub fn prune<H>(&self, routes: &crate::Router<H>) {
        let served: HashSet<(&str, &str)> = routes.routes().collect();
        let mut series = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        series.retain(|(tenant, route), _| tenant.is_empty() || served.contains(&(&**tenant, &**route)));
    }

    /// Forgets every series of `tenant` (a tenant removed: one created later under its name starts afresh).
    pub fn forget(&self, tenant: &str) {
        let mut series = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        series.retain(|(name, _), _| &**name != tenant);
    }

    /// Each tenant's totals (requests no tenant took are left out).
    pub fn tenants(&self) -> BTreeMap<Arc<str>, TenantTotals> {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut tenants: BTreeMap<Arc<str>, TenantTotals> = BTreeMap::new();
        for ((tenant, _), stats) in routes.iter().filter(|((tenant, _), _)| !tenant.is_empty()) {
            let totals = tenants.entry(tenant.clone()).or_default();
            for (code, count) in stats.statuses() {
                totals.requests += count;
                if code.is_error() {
                    totals.errors += count;
                }
            }
            totals.bytes += stats.bytes.load(Ordering::Relaxed);
            for (sum, count) in totals.latency.iter_mut().zip(&stats.latency) {
                *sum += count.load(Ordering::Relaxed);
            }
        }
        tenants
    }

    /// Appends `palisade_requests_total`, `palisade_request_duration_seconds` and
    /// `palisade_response_bytes_total` to `out`, in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let routes: Vec<_> = {
            let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            routes.iter().map(|((t, r), s)| (label(t), label(r), s.clone())).collect()
        };
        out.push_str("# HELP palisade_requests_total Requests answered.\n# TYPE palisade_requests_total counter\n");
        for (tenant, route, stats) in &routes {
            for (code, count) in stats.statuses() {
                let _ = writeln!(
                    out,
                    "palisade_requests_total{{tenant=\"{tenant}\",route=\"{route}\",status=\"{code}\"}} {count}"
                );
            }
        }
        out.push_str("# HELP palisade_request_duration_seconds Whole exchanges, until the last body byte.\n");
        out.push_str("# TYPE palisade_request_duration_seconds histogram\n");
        for (tenant, route, stats) in &routes {
            let labels = format!("tenant=\"{tenant}\",route=\"{route}\"");
            let mut cumulative = 0;
            for (i, count) in stats.latency.iter().enumerate() {
                cumulative += count.load(Ordering::Relaxed);
                let le = LATENCY_BUCKETS.get(i).map_or_else(|| "+Inf".to_string(), f64::to_string);
                let _ = writeln!(out, "palisade_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            }
            let seconds = stats.latency_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "palisade_request_duration_seconds_sum{{{labels}}} {seconds}");
            let _ = writeln!(out, "palisade_request_duration_seconds_count{{{labels}}} {cumulative}");
        }
        out.push_str("# HELP palisade_response_bytes_total Response body bytes sent.\n");
        out.push_str("# TYPE palisade_response_bytes_total counter\n");
        for (tenant, route, stats) in &routes {
            let bytes = stats.bytes.load(Ordering::Relaxed);
            let _ = writeln!(out, "palisade_response_bytes_total{{tenant=\"{tenant}\",route=\"{route}\"}} {bytes}");
        }
    }
}

impl RouteStats {
    /// Counts one exchange: its status, how long it took until its last byte, and the body bytes sent.
    pub fn record(&self, status: u16, elapsed: Duration, bytes: u64) {
        self.count_status(status);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_MICROS.iter().position(|&bound| micros <= bound).unwrap_or(BOUNDS_MICROS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_micros.fetch_add(micros, Ordering::Relaxed);
        if bytes > 0 {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn count_status(&self, status: u16) {
        for (code, count) in &self.statuses {
            let claimed = match code.load(Ordering::Acquire) {
                c if c == status => true,
                0 => match code.compare_exchange(0, status, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => true,
                    Err(other) => other == status,
                },
                _ => false,
            };
            if claimed {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.other[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts by status: exact codes, then the codes past the slots by class.
    fn statuses(&self) -> impl Iterator<Item = (Status, u64)> + '_ {
        let exact = self.statuses.iter().filter_map(|(code, count)| {
            let code = code.load(Ordering::Acquire);
            (code != 0).then(|| (Status::Code(code), count.load(Ordering::Relaxed)))
        });
        let by_class = self.other.iter().zip(1u16..).filter_map(|(count, class)| {
            let count = count.load(Ordering::Relaxed);
            (count > 0).then_some((Status::Class(class), count))
        });
        exact.chain(by_class)
    }
}

/// A `status` label: a code, or a class (`5xx`) for codes a route had no slot left for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Code(u16),
    Class(u16),
}

impl Status {
    fn is_error(self) -> bool {
        match self {
            Status::Code(code) => code >= 500,
            Status::Class(class) => class >= 5,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Code(code) => write!(f, "{code}"),
            Status::Class(class) => write!(f, "{class}xx"),
        }
    }
}

/// `value` escaped for a Prometheus label (backslash, double quote and line feed).
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_match_the_buckets() {
        for (seconds, micros) in LATENCY_BUCKETS.iter().zip(BOUNDS_MICROS) {
            assert_eq!((seconds * 1e6).round() as u64, micros);
        }
    }

    #[test]
    fn counts_render_as_prometheus_series() {
        let stats = RequestStats::default();
        let route = stats.route(&"alice".into(), &"/".into());
        stats.unrouted().record(404, Duration::ZERO, 0);
        route.record(200, Duration::from_micros(80), 10);
        route.record(200, Duration::from_millis(3), 10);
        route.record(503, Duration::from_secs(60), 0);
        // The same series again: counts go on where they were.
        stats.route(&"alice".into(), &"/".into()).record(404, Duration::from_micros(100), 1);
        let mut out = String::new();
        stats.render(&mut out);
        for line in [
            r#"palisade_requests_total{tenant="alice",route="/",status="200"} 2"#,
            r#"palisade_requests_total{tenant="alice",route="/",status="503"} 1"#,
            r#"palisade_requests_total{tenant="alice",route="/",status="404"} 1"#,
            r#"palisade_request_duration_seconds_bucket{tenant="alice",route="/",le="0.0001"} 2"#,
            r#"palisade_request_duration_seconds_bucket{tenant="alice",route="/",le="0.005"} 3"#,
            r#"palisade_request_duration_seconds_bucket{tenant="alice",route="/",le="30"} 3"#,
            r#"palisade_request_duration_seconds_bucket{tenant="alice",route="/",le="+Inf"} 4"#,
            r#"palisade_request_duration_seconds_count{tenant="alice",route="/"} 4"#,
            r#"palisade_response_bytes_total{tenant="alice",route="/"} 21"#,
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from:\n{out}");
        }
        let totals = &stats.tenants()["alice"];
        assert_eq!((totals.requests, totals.errors, totals.bytes), (4, 1, 21));
        assert_eq!(totals.latency.iter().sum::<u64>(), 4);
        assert!(!stats.tenants().contains_key(""), "unrouted requests are nobody's");
    }

    #[test]
    fn series_of_routes_no_longer_served_are_forgotten() {
        let stats = RequestStats::default();
        let (alice, bob) = (Arc::from("alice"), Arc::from("bob"));
        stats.route(&alice, &"/".into()).record(200, Duration::ZERO, 0);
        stats.route(&alice, &"/old".into()).record(200, Duration::ZERO, 0);
        stats.route(&bob, &"/".into()).record(200, Duration::ZERO, 0);
        stats.unrouted().record(404, Duration::ZERO, 0);
        let mut router = crate::Router::default();
        router.add(&["alice.test".into()], crate::TenantRoutes::new("alice", vec![("/".into(), ())]));
        router.add(&["bob.test".into()], crate::TenantRoutes::new("bob", vec![("/".into(), ())]));
        stats.prune(&router);
        let mut out = String::new();
        stats.render(&mut out);
        assert!(!out.contains("route=\"/old\""), "{out}");
        assert!(out.contains("tenant=\"\",route=\"\",status=\"404\""), "unrouted kept: {out}");
        stats.forget("bob");
        assert_eq!(stats.tenants().keys().map(|k| k.to_string()).collect::<Vec<_>>(), ["alice"]);
        assert_eq!(stats.route(&bob, &"/".into()).statuses().count(), 0, "bob starts afresh");
    }

    #[test]
    fn codes_past_the_slots_count_by_class() {
        let route = RouteStats::default();
        for code in 200..220 {
            route.record(code, Duration::ZERO, 0);
        }
        route.record(599, Duration::ZERO, 0);
        let counts: Vec<_> = route.statuses().collect();
        assert_eq!(counts.len(), STATUS_SLOTS + 2, "{counts:?}");
        assert!(counts.contains(&(Status::Class(2), 12)), "{counts:?}");
        assert!(counts.contains(&(Status::Class(5), 1)), "{counts:?}");
        assert_eq!(counts.iter().map(|c| c.1).sum::<u64>(), 21);
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
