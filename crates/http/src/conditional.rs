//! Validators (ETag, Last-Modified), conditional requests (RFC 9110 §13) and byte ranges (§14), for every
//! handler that answers them itself: static files, and the HTTP cache from what it stored.

use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, header};
use http_range_header::RangeUnsatisfiableError;

/// The validators of one representation.
#[derive(Debug, Clone)]
pub struct Validators {
    /// Its entity tag as sent (`"x"`, or `W/"x"` when weak), if it has one.
    pub etag: Option<String>,
    /// Its modification time, in whole seconds (HTTP dates have no fractions).
    pub modified: Option<SystemTime>,
}

impl Validators {
    /// A file's: a strong tag, `"<mtime-hex>-<size-hex>"` as nginx forms it, and its modification time.
    pub fn of_file(size: u64, modified: Option<SystemTime>) -> Validators {
        let modified = modified.map(|m| {
            let secs = m.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            UNIX_EPOCH + Duration::from_secs(secs)
        });
        let secs = modified.and_then(|m| m.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
        Validators { etag: Some(format!("\"{secs:x}-{size:x}\"")), modified }
    }

    /// A stored response's: its `ETag` and `Last-Modified` fields.
    pub fn of_fields(headers: &HeaderMap) -> Validators {
        let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::trim);
        Validators {
            etag: text(header::ETAG).map(str::to_string),
            modified: text(header::LAST_MODIFIED).and_then(|v| httpdate::parse_http_date(v).ok()),
        }
    }

    /// `If-None-Match` (preferred) or `If-Modified-Since`: true when the client's copy is current (→ 304).
    /// Entity tags compare weakly (RFC 9110 §13.1.2); every `If-None-Match` line counts.
    pub fn not_modified(&self, headers: &HeaderMap) -> bool {
        if headers.contains_key(header::IF_NONE_MATCH) {
            return tags(headers, header::IF_NONE_MATCH)
                .any(|tag| tag == "*" || self.etag.as_deref().is_some_and(|etag| weak_eq(tag, etag)));
        }
        match (headers.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()), self.modified) {
            (Some(since), Some(modified)) => {
                httpdate::parse_http_date(since.trim()).is_ok_and(|since| modified <= since)
            }
            _ => false,
        }
    }

    /// `If-Match`, or else `If-Unmodified-Since` (RFC 9110 §13.2.2): true when the request's precondition
    /// fails (→ 412), because the client's copy is not this version.
    pub fn precondition_failed(&self, headers: &HeaderMap) -> bool {
        if headers.contains_key(header::IF_MATCH) {
            return !tags(headers, header::IF_MATCH).any(|tag| tag == "*" || self.strong_eq(tag));
        }
        match (headers.get(header::IF_UNMODIFIED_SINCE).and_then(|v| v.to_str().ok()), self.modified) {
            (Some(since), Some(modified)) => httpdate::parse_http_date(since).is_ok_and(|since| modified > since),
            _ => false,
        }
    }

    /// `If-Range`: whether a Range request may be honoured (the client's validator still matches).
    fn if_range_holds(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).map(str::trim) else {
            return true;
        };
        if value.starts_with('"') || value.starts_with("W/") {
            return self.strong_eq(value);
        }
        match (httpdate::parse_http_date(value), self.modified) {
            (Ok(date), Some(modified)) => modified == date,
            _ => false,
        }
    }

    /// Strong comparison (RFC 9110 §8.8.3.2): both tags strong and the same.
    fn strong_eq(&self, tag: &str) -> bool {
        self.etag.as_deref().is_some_and(|etag| !etag.starts_with("W/") && !tag.starts_with("W/") && tag == etag)
    }
}

/// The entity tags listed in every `name` field of `headers` (a tag is a quoted string without commas).
fn tags(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers.get_all(name).into_iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// Weak comparison of entity tags: `W/"x"` matches `"x"`.
fn weak_eq(a: &str, b: &str) -> bool {
    a.trim_start_matches("W/") == b.trim_start_matches("W/")
}

/// What a request's `Range` header asks of a representation of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable Range: send the whole file (200).
    Full,
    /// One satisfiable range (206).
    Partial(RangeInclusive<u64>),
    /// A well-formed Range that no byte of the file satisfies (416).
    Unsatisfiable,
}

/// The one byte range a request asks for (RFC 9110 §14), if it may be honoured: several ranges, an `If-Range`
/// that no longer holds, or a Range that does not parse are answered with the whole representation.
pub fn range_request(headers: &HeaderMap, size: u64, validators: &Validators) -> RangeRequest {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeRequest::Full;
    };
    if !validators.if_range_holds(headers) {
        return RangeRequest::Full;
    }
    // A Range header that does not parse is ignored, as RFC 9110 §14.2 allows; so is any Range on an empty
    // file, which has no byte to send (a 206 would have to claim `bytes 0-0/0`).
    let Ok(parsed) = http_range_header::parse_range_header(value) else {
        return RangeRequest::Full;
    };
    if size == 0 {
        return RangeRequest::Full;
    }
    let several = value.contains(',');
    match parsed.validate(size) {
        // Several ranges would need multipart/byteranges; serving the whole file is also correct.
        Ok(ranges) if ranges.len() == 1 => ranges.into_iter().next().map_or(RangeRequest::Full, RangeRequest::Partial),
        Ok(_) => RangeRequest::Full,
        // Overlapping ranges are still satisfiable: the whole file answers them.
        Err(RangeUnsatisfiableError::OverlappingRanges) => RangeRequest::Full,
        // A suffix longer than the file asks for all of it (RFC 9110 §14.1.3).
        Err(RangeUnsatisfiableError::FileSuffixOutOfBounds) if !several => RangeRequest::Partial(0..=size - 1),
        // Of several ranges, some may be satisfiable: the whole file is a correct answer then too.
        Err(_) if several => RangeRequest::Full,
        Err(_) => RangeRequest::Unsatisfiable,
    }
}

/// `at` as an HTTP date field value (`Date`, `Last-Modified`): `Thu, 03 Dec 2026 17:58:16 GMT`.
pub fn http_date(at: std::time::SystemTime) -> http::HeaderValue {
    // Always visible ASCII; the epoch stands in should that ever not hold.
    http::HeaderValue::from_str(&httpdate::fmt_http_date(at))
        .unwrap_or(http::HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().unwrap());
        }
        h
    }

    fn v() -> Validators {
        Validators::of_file(100, Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)))
    }

    #[test]
    fn etag_matching() {
        let v = v();
        let etag = v.etag.clone().unwrap();
        assert!(v.not_modified(&headers(&[(header::IF_NONE_MATCH, &etag)])));
        assert!(v.not_modified(&headers(&[(header::IF_NONE_MATCH, &format!("\"zz\", W/{etag}"))])));
        assert!(v.not_modified(&headers(&[(header::IF_NONE_MATCH, "*")])));
        assert!(!v.not_modified(&headers(&[(header::IF_NONE_MATCH, "\"other\"")])));
    }

    #[test]
    fn modified_since() {
        let v = v();
        let same = httpdate::fmt_http_date(v.modified.unwrap());
        let earlier = httpdate::fmt_http_date(v.modified.unwrap() - Duration::from_secs(10));
        assert!(v.not_modified(&headers(&[(header::IF_MODIFIED_SINCE, &same)])));
        assert!(!v.not_modified(&headers(&[(header::IF_MODIFIED_SINCE, &earlier)])));
        // If-None-Match wins over If-Modified-Since.
        assert!(!v.not_modified(&headers(&[(header::IF_NONE_MATCH, "\"x\""), (header::IF_MODIFIED_SINCE, &same)])));
    }

    #[test]
    fn ranges() {
        let v = v();
        let r = |s: &str| range_request(&headers(&[(header::RANGE, s)]), 100, &v);
        assert_eq!(r("bytes=0-9"), RangeRequest::Partial(0..=9));
        assert_eq!(r("bytes=90-"), RangeRequest::Partial(90..=99));
        assert_eq!(r("bytes=-5"), RangeRequest::Partial(95..=99));
        assert_eq!(r("bytes=200-300"), RangeRequest::Unsatisfiable);
        assert_eq!(r("bytes=0-1,5-6"), RangeRequest::Full);
        assert_eq!(r("bytes=0-50,20-30"), RangeRequest::Full, "overlapping: the whole file");
        assert_eq!(r("bytes=-500"), RangeRequest::Partial(0..=99), "a suffix longer than the file: all of it");
        assert_eq!(r("bytes=200-300,0-1"), RangeRequest::Full);
        let empty = Validators::of_file(0, v.modified);
        assert_eq!(range_request(&headers(&[(header::RANGE, "bytes=0-")]), 0, &empty), RangeRequest::Full);
        assert_eq!(r("pages=1-2"), RangeRequest::Full);
        assert_eq!(range_request(&HeaderMap::new(), 100, &v), RangeRequest::Full);
    }

    #[test]
    fn if_match_and_if_unmodified_since() {
        let v = v();
        let etag = v.etag.clone().unwrap();
        assert!(!v.precondition_failed(&HeaderMap::new()));
        assert!(!v.precondition_failed(&headers(&[(header::IF_MATCH, &etag)])));
        assert!(!v.precondition_failed(&headers(&[(header::IF_MATCH, "*")])));
        assert!(v.precondition_failed(&headers(&[(header::IF_MATCH, "\"other\"")])));
        assert!(v.precondition_failed(&headers(&[(header::IF_MATCH, &format!("W/{etag}"))])), "weak never matches");
        let earlier = httpdate::fmt_http_date(v.modified.unwrap() - Duration::from_secs(10));
        let same = httpdate::fmt_http_date(v.modified.unwrap());
        assert!(v.precondition_failed(&headers(&[(header::IF_UNMODIFIED_SINCE, &earlier)])));
        assert!(!v.precondition_failed(&headers(&[(header::IF_UNMODIFIED_SINCE, &same)])));
    }

    #[test]
    fn if_range() {
        let v = v();
        let h = headers(&[(header::RANGE, "bytes=0-0"), (header::IF_RANGE, "\"stale\"")]);
        assert_eq!(range_request(&h, 100, &v), RangeRequest::Full);
        let h = headers(&[(header::RANGE, "bytes=0-0"), (header::IF_RANGE, v.etag.as_deref().unwrap())]);
        assert_eq!(range_request(&h, 100, &v), RangeRequest::Partial(0..=0));
    }

    #[test]
    fn stored_fields() {
        let stored = headers(&[(header::ETAG, "W/\"a\""), (header::LAST_MODIFIED, "Tue, 14 Nov 2023 22:13:20 GMT")]);
        let v = Validators::of_fields(&stored);
        assert_eq!(v.modified, Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
        let mut inm = headers(&[(header::IF_NONE_MATCH, "\"b\"")]);
        assert!(!v.not_modified(&inm));
        inm.append(header::IF_NONE_MATCH, "\"c\", \"a\"".parse().unwrap());
        assert!(v.not_modified(&inm), "every line counts, and the comparison is weak");
        let h = headers(&[(header::RANGE, "bytes=0-0"), (header::IF_RANGE, "W/\"a\"")]);
        assert_eq!(range_request(&h, 10, &v), RangeRequest::Full, "a weak tag never satisfies If-Range");
        let none = Validators::of_fields(&HeaderMap::new());
        assert!(none.not_modified(&headers(&[(header::IF_NONE_MATCH, "*")])));
        assert!(!none.not_modified(&headers(&[(header::IF_MODIFIED_SINCE, "Tue, 14 Nov 2023 22:13:20 GMT")])));
    }
}
