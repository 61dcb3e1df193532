//! `Cache-Status` (RFC 9211): what the cache did with a request, as `palisade; hit; ttl=30` or
//! `palisade; fwd=uri-miss; stored`, added after any the origin's own caches wrote.
//!
//! Built by appending to one string (no formatting machinery): it is on every hit's path.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// The cache's name in `Cache-Status`.
const NAME: &str = "palisade";
/// The field, named once.
const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// One `Cache-Status` entry being built.
#[derive(Debug, Clone)]
pub(crate) struct CacheStatus(String);

impl CacheStatus {
    fn start(what: &str) -> CacheStatus {
        let mut s = String::with_capacity(64);
        s.push_str(NAME);
        s.push_str("; ");
        s.push_str(what);
        CacheStatus(s)
    }

    fn param(mut self, name: &str, value: &str) -> CacheStatus {
        self.0.push_str("; ");
        self.0.push_str(name);
        if !value.is_empty() {
            self.0.push('=');
            self.0.push_str(value);
        }
        self
    }

    /// Answered from the cache, with `ttl` seconds of freshness left (negative: stale).
    pub(crate) fn hit(ttl: i64) -> CacheStatus {
        CacheStatus::start("hit").ttl(ttl)
    }

    /// Sent to the origin because of `why`: `uri-miss`, `vary-miss`, `stale`, `request` or `method`.
    pub(crate) fn forward(why: &str) -> CacheStatus {
        let mut status = CacheStatus::start("fwd=");
        status.0.push_str(why);
        status
    }

    /// The origin's status.
    pub(crate) fn fwd_status(self, status: StatusCode) -> CacheStatus {
        self.param("fwd-status", status.as_str())
    }

    /// The origin's status, when `when`.
    pub(crate) fn fwd_status_if(self, status: StatusCode, when: bool) -> CacheStatus {
        if when { self.fwd_status(status) } else { self }
    }

    /// The response was stored.
    pub(crate) fn stored(self, stored: bool) -> CacheStatus {
        if stored { self.param("stored", "") } else { self }
    }

    /// Seconds of freshness left.
    pub(crate) fn ttl(self, ttl: i64) -> CacheStatus {
        self.param("ttl", itoa::Buffer::new().format(ttl))
    }

    /// The request waited for another's fetch of the same URL.
    pub(crate) fn collapsed(self) -> CacheStatus {
        self.param("collapsed", "")
    }

    /// Why a stale response was served.
    pub(crate) fn detail(self, detail: &str) -> CacheStatus {
        self.param("detail", detail)
    }

    /// Appends the entry to `headers`' `Cache-Status` list.
    pub(crate) fn add_to(self, headers: &mut HeaderMap) {
        if let Ok(value) = HeaderValue::from_str(&self.0) {
            headers.append(CACHE_STATUS, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_as_rfc_9211_writes_them() {
        let mut h = HeaderMap::new();
        CacheStatus::hit(-3).detail("stale-while-revalidate").add_to(&mut h);
        CacheStatus::forward("stale")
            .fwd_status(StatusCode::NOT_MODIFIED)
            .stored(true)
            .ttl(60)
            .collapsed()
            .add_to(&mut h);
        let all: Vec<_> = h.get_all("cache-status").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(
            all,
            [
                "palisade; hit; ttl=-3; detail=stale-while-revalidate",
                "palisade; fwd=stale; fwd-status=304; stored; ttl=60; collapsed"
            ]
        );
    }
}
