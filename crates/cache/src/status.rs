//! `Cache-Status` (RFC 9211): what the cache did with a request, as `palisade; hit; ttl=30` or
//! `palisade; fwd=uri-miss; stored`, added after any the origin's own caches wrote.

use http::{HeaderMap, HeaderValue, StatusCode};

/// The cache's name in `Cache-Status`.
const NAME: &str = "palisade";

/// One `Cache-Status` entry being built.
#[derive(Debug, Clone)]
pub(crate) struct CacheStatus(String);

impl CacheStatus {
    /// Answered from the cache, with `ttl` seconds of freshness left (negative: stale).
    pub(crate) fn hit(ttl: i64) -> CacheStatus {
        CacheStatus(format!("{NAME}; hit; ttl={ttl}"))
    }

    /// Sent to the origin because of `why`: `uri-miss`, `vary-miss`, `stale`, `request` or `method`.
    pub(crate) fn forward(why: &str) -> CacheStatus {
        CacheStatus(format!("{NAME}; fwd={why}"))
    }

    /// The origin's status.
    pub(crate) fn fwd_status(self, status: StatusCode) -> CacheStatus {
        CacheStatus(format!("{}; fwd-status={}", self.0, status.as_u16()))
    }

    /// The origin's status, when `when`.
    pub(crate) fn fwd_status_if(self, status: StatusCode, when: bool) -> CacheStatus {
        if when { self.fwd_status(status) } else { self }
    }

    /// The response was stored.
    pub(crate) fn stored(self, stored: bool) -> CacheStatus {
        if stored { CacheStatus(format!("{}; stored", self.0)) } else { self }
    }

    /// Seconds of freshness left.
    pub(crate) fn ttl(self, ttl: i64) -> CacheStatus {
        CacheStatus(format!("{}; ttl={ttl}", self.0))
    }

    /// The request waited for another's fetch of the same URL.
    pub(crate) fn collapsed(self) -> CacheStatus {
        CacheStatus(format!("{}; collapsed", self.0))
    }

    /// Why a stale response was served.
    pub(crate) fn detail(self, detail: &str) -> CacheStatus {
        CacheStatus(format!("{}; detail={detail}", self.0))
    }

    /// Appends the entry to `headers`' `Cache-Status` list.
    pub(crate) fn add_to(self, headers: &mut HeaderMap) {
        if let Ok(value) = HeaderValue::from_str(&self.0) {
            headers.append("cache-status", value);
        }
    }
}
