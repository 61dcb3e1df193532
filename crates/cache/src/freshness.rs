//! RFC 9111's arithmetic: whether a response may be stored (§3), how long it stays fresh (§4.2.1, with the
//! heuristic of §4.2.2 only for the status codes it allows), its age (§4.2.3), and how long it may be served
//! stale (RFC 5861's `stale-while-revalidate` and `stale-if-error`).

use std::time::{Duration, SystemTime};

use http::header::{AUTHORIZATION, DATE, EXPIRES, LAST_MODIFIED, SET_COOKIE, VARY};
use http::{HeaderMap, Method, StatusCode};

use crate::directives::Directives;

/// A heuristic lifetime is this fraction of the time since `Last-Modified`, as most caches do (RFC 9111
/// §4.2.2 suggests at most 10 %)...
const HEURISTIC_FRACTION: u32 = 10;
/// ...and at most a day.
const MAX_HEURISTIC: Duration = Duration::from_secs(24 * 3600);

/// Status codes whose responses are heuristically cacheable (RFC 9110 §15.1).
const HEURISTICALLY_CACHEABLE: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// How a stored response ages.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Freshness {
    /// The freshness lifetime (§4.2.1).
    pub(crate) lifetime: Duration,
    /// Its age when received (§4.2.3's `corrected_initial_age`).
    initial_age: Duration,
    /// When it was received.
    response_time: SystemTime,
    /// How long past its lifetime it may be served while a revalidation runs in the background.
    pub(crate) stale_while_revalidate: Duration,
    /// How long past its lifetime it may be served when the origin fails.
    pub(crate) stale_if_error: Duration,
    /// `must-revalidate`, `proxy-revalidate` or `s-maxage`: never served stale.
    pub(crate) must_revalidate: bool,
    /// `no-cache` (unqualified): validated before every use.
    pub(crate) no_cache: bool,
}

impl Freshness {
    /// The freshness of a response with `headers`, whose directives for this cache are `directives`
    /// (`targeted`: from `CDN-Cache-Control` or `Surrogate-Control`, so `Expires` does not count), asked for at
    /// `request_time` and received at `response_time`.
    pub(crate) fn of(
        status: StatusCode,
        headers: &HeaderMap,
        directives: &Directives,
        targeted: bool,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Freshness {
        let date = http_date(headers, DATE).unwrap_or(response_time);
        // The first member of the first line counts (RFC 9111 §5.1: `Age: 7200, 0` is 7200).
        let age_value = headers
            .get(http::header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_secs);
        let apparent_age = response_time.duration_since(date).unwrap_or_default();
        let response_delay = response_time.duration_since(request_time).unwrap_or_default();
        let initial_age = apparent_age.max(age_value + response_delay);
        let seconds = |name: &str| directives.seconds(name).map(|v| Duration::from_secs(v.unwrap_or(0)));
        let lifetime = if let Some(s_maxage) = seconds("s-maxage") {
            s_maxage
        } else if let Some(max_age) = seconds("max-age") {
            max_age
        } else if let (false, Some(expires)) = (targeted, headers.get(EXPIRES)) {
            // An Expires that does not parse ("0", "-1") means already expired (§5.3).
            let expires = expires.to_str().ok().and_then(|v| httpdate::parse_http_date(v.trim()).ok());
            expires.and_then(|e| e.duration_since(date).ok()).unwrap_or_default()
        } else if HEURISTICALLY_CACHEABLE.contains(&status.as_u16()) || directives.has("public") {
            heuristic(headers, date)
        } else {
            Duration::ZERO
        };
        Freshness {
            lifetime,
            initial_age,
            response_time,
            stale_while_revalidate: seconds("stale-while-revalidate").unwrap_or_default(),
            stale_if_error: seconds("stale-if-error").unwrap_or_default(),
            must_revalidate: directives.has("must-revalidate")
                || directives.has("proxy-revalidate")
                || directives.has("s-maxage"),
            no_cache: directives.has_unqualified("no-cache"),
        }
    }

    /// The same, stale from `now` on: its lifetime ends at its current age.
    pub(crate) fn expired(&self, now: SystemTime) -> Freshness {
        Freshness { lifetime: self.age(now).min(self.lifetime), ..self.clone() }
    }

    /// The response's current age (§4.2.3).
    pub(crate) fn age(&self, now: SystemTime) -> Duration {
        self.initial_age + now.duration_since(self.response_time).unwrap_or_default()
    }

    /// Whether it is fresh at `age`: usable without asking the origin.
    pub(crate) fn fresh_at(&self, age: Duration) -> bool {
        !self.no_cache && self.lifetime > age
    }

    /// Seconds of freshness left (negative once stale), for `Cache-Status: ttl`.
    pub(crate) fn ttl(&self, now: SystemTime) -> i64 {
        self.ttl_after(self.age(now).as_secs())
    }

    /// Seconds of freshness left at an age of `age` seconds.
    pub(crate) fn ttl_after(&self, age: u64) -> i64 {
        self.lifetime.as_secs() as i64 - age as i64
    }

    /// How long it has been stale.
    pub(crate) fn staleness(&self, now: SystemTime) -> Duration {
        self.age(now).saturating_sub(self.lifetime)
    }

    /// Whether it may be served stale for up to `window` past its lifetime.
    pub(crate) fn stale_within(&self, window: Duration, now: SystemTime) -> bool {
        !self.must_revalidate && !self.no_cache && !window.is_zero() && self.staleness(now) <= window
    }

    /// Whether it is worth keeping once stale: it has validators to revalidate with, or a stale window.
    pub(crate) fn worth_keeping(&self, headers: &HeaderMap) -> bool {
        !self.lifetime.is_zero()
            || !self.stale_if_error.is_zero()
            || headers.contains_key(http::header::ETAG)
            || headers.contains_key(LAST_MODIFIED)
    }
}

/// §4.2.2: a fraction of the time between `Last-Modified` and `Date`.
fn heuristic(headers: &HeaderMap, date: SystemTime) -> Duration {
    let Some(modified) = http_date(headers, LAST_MODIFIED) else { return Duration::ZERO };
    (date.duration_since(modified).unwrap_or_default() / HEURISTIC_FRACTION).min(MAX_HEURISTIC)
}

/// Field `name` as an HTTP date (IMF-fixdate, RFC 850 or asctime, RFC 9110 §5.6.7).
pub(crate) fn http_date(headers: &HeaderMap, name: http::header::HeaderName) -> Option<SystemTime> {
    httpdate::parse_http_date(headers.get(name)?.to_str().ok()?.trim()).ok()
}

/// RFC 9111 §3: whether a shared cache may store the response to `method` with `request` headers and
/// `request_directives`: `status`, `headers` and `directives` (this cache's, see [`Directives::for_edge`]).
/// Responses that set cookies are not stored unless marked `public` or `s-maxage`: a shared cache handing
/// one client's session cookie to the next is the classic way an edge cache leaks accounts.
pub(crate) fn storable(
    method: &Method,
    request: &HeaderMap,
    request_directives: &Directives,
    status: StatusCode,
    headers: &HeaderMap,
    directives: &Directives,
    targeted: bool,
) -> bool {
    let explicitly_shared = directives.has("public") || directives.has("s-maxage");
    let understood = (200..600).contains(&status.as_u16())
        && status != StatusCode::PARTIAL_CONTENT
        && status != StatusCode::NOT_MODIFIED;
    let has_freshness = explicitly_shared
        || directives.has("max-age")
        || (!targeted && headers.contains_key(EXPIRES))
        || HEURISTICALLY_CACHEABLE.contains(&status.as_u16());
    let vary_star =
        headers.get_all(VARY).iter().filter_map(|v| v.to_str().ok()).any(|v| v.split(',').any(|f| f.trim() == "*"));
    method == Method::GET
        && understood
        && !request_directives.has("no-store")
        && !directives.has("no-store")
        && !directives.has("private")
        && (!request.contains_key(AUTHORIZATION) || explicitly_shared || directives.has("must-revalidate"))
        && (!headers.contains_key(SET_COOKIE) || explicitly_shared)
        && has_freshness
        && !vary_star
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header::CACHE_CONTROL;

    fn headers(fields: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in fields {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    fn freshness(fields: &[(&'static str, &str)], now: SystemTime) -> Freshness {
        let h = headers(fields);
        let (d, targeted) = Directives::for_edge(&h);
        Freshness::of(StatusCode::OK, &h, &d, targeted, now, now)
    }

    #[test]
    fn lifetime_by_precedence() {
        let now = SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        let in_an_hour = httpdate::fmt_http_date(now + Duration::from_secs(3600));
        let f = |fields: &[(&'static str, &str)]| freshness(fields, now).lifetime.as_secs();
        assert_eq!(f(&[("cache-control", "max-age=60, s-maxage=10")]), 10, "s-maxage first");
        assert_eq!(f(&[("cache-control", "max-age=60"), ("expires", &in_an_hour), ("date", &date)]), 60);
        assert_eq!(f(&[("expires", &in_an_hour), ("date", &date)]), 3600);
        assert_eq!(f(&[("expires", "0"), ("date", &date)]), 0, "an invalid Expires has expired");
        assert_eq!(f(&[("cache-control", "max-age=abc")]), 0);
        let a_week_ago = httpdate::fmt_http_date(now - Duration::from_secs(7 * 24 * 3600));
        assert_eq!(f(&[("last-modified", &a_week_ago), ("date", &date)]), 7 * 24 * 360, "a tenth");
        assert_eq!(f(&[("surrogate-control", "max-age=5"), ("expires", &in_an_hour)]), 5, "targeted: no Expires");
    }

    #[test]
    fn age_counts_the_age_field_the_delay_and_residence() {
        let now = SystemTime::now();
        let h = headers(&[("age", "30"), ("cache-control", "max-age=100")]);
        let d = Directives::of(&h, CACHE_CONTROL);
        let f = Freshness::of(StatusCode::OK, &h, &d, false, now - Duration::from_secs(2), now);
        assert_eq!(f.age(now).as_secs(), 32);
        assert_eq!(f.age(now + Duration::from_secs(10)).as_secs(), 42);
        assert!(f.fresh_at(f.age(now + Duration::from_secs(60))));
        assert!(!f.fresh_at(f.age(now + Duration::from_secs(70))));
        assert_eq!(f.ttl(now + Duration::from_secs(70)), -2);
        let h = headers(&[("age", "7200, 0"), ("cache-control", "max-age=3600")]);
        let f = Freshness::of(StatusCode::OK, &h, &Directives::of(&h, CACHE_CONTROL), false, now, now);
        assert!(!f.fresh_at(f.age(now)), "the first member of Age counts");
    }

    #[test]
    fn what_may_be_stored() {
        let get = Method::GET;
        let none = HeaderMap::new();
        let check = |status: u16, fields: &[(&'static str, &str)], request: &HeaderMap| {
            let h = headers(fields);
            let (d, targeted) = Directives::for_edge(&h);
            let rd = Directives::of(request, CACHE_CONTROL);
            storable(&get, request, &rd, StatusCode::from_u16(status).unwrap(), &h, &d, targeted)
        };
        assert!(check(200, &[], &none), "heuristically cacheable");
        assert!(!check(302, &[], &none));
        assert!(check(302, &[("cache-control", "max-age=5")], &none));
        assert!(!check(200, &[("cache-control", "no-store")], &none));
        assert!(!check(200, &[("cache-control", "private")], &none));
        assert!(!check(200, &[("vary", "*")], &none));
        assert!(!check(200, &[("set-cookie", "a=b")], &none));
        assert!(check(200, &[("set-cookie", "a=b"), ("cache-control", "public, max-age=5")], &none));
        let authorized = headers(&[("authorization", "Bearer x")]);
        assert!(!check(200, &[("cache-control", "max-age=5")], &authorized));
        assert!(check(200, &[("cache-control", "s-maxage=5")], &authorized));
        assert!(!check(200, &[], &headers(&[("cache-control", "no-store")])));
        assert!(!check(206, &[("cache-control", "max-age=5")], &none));
        assert!(check(200, &[("cache-control", "no-store"), ("cdn-cache-control", "max-age=5")], &none));
    }
}
