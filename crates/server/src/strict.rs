//! Requests hyper parses but palisade refuses: ambiguous framing and request targets or hosts that RFC 9110
//! and RFC 9112 forbid. Checked before routing, so a static file, a guest and an upstream all see the
//! same, unambiguous requests.

use http::{Method, Request, header};
use palisade_http::Fault;

/// Why a request is refused before routing: the fault and the one-line reason the client gets.
pub(crate) type Refusal = (Fault, &'static str);

/// Content-Length beside Transfer-Encoding: seen here when both survive parsing, and otherwise by
/// [`crate::head_watch`] in the raw bytes.
pub(crate) const LENGTH_WITH_CODING: Refusal =
    (Fault::BadRequest, "Content-Length and Transfer-Encoding together are ambiguous");

/// The first reason to refuse `req`, if any.
pub(crate) fn refuse<B>(req: &Request<B>) -> Option<Refusal> {
    target(req).or_else(|| framing(req))
}

/// The request target: origin-form (`/path`), absolute-form with an http(s) URI and no userinfo,
/// authority-form only for CONNECT, asterisk-form only for OPTIONS.
fn target<B>(req: &Request<B>) -> Option<Refusal> {
    let uri = req.uri();
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), _) if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") => {
            Some((Fault::BadRequest, "only http and https URIs can be requested"))
        }
        (_, Some(authority)) if authority.as_str().contains('@') => {
            Some((Fault::BadRequest, "user information is not allowed in the request target"))
        }
        (None, Some(_)) if req.method() != Method::CONNECT => {
            Some((Fault::BadRequest, "the request target must start with '/'"))
        }
        _ => None,
    }
}

/// RFC 9112 §6: one framing only. Content-Length together with Transfer-Encoding is refused (it is how
/// requests are smuggled past front ends), chunked must be applied exactly once and last, and other transfer
/// codings are not implemented (a guest would receive the encoded bytes as if they were the body).
fn framing<B>(req: &Request<B>) -> Option<Refusal> {
    let mut codings = Vec::new();
    for value in req.headers().get_all(header::TRANSFER_ENCODING) {
        let Ok(text) = value.to_str() else {
            return Some((Fault::BadRequest, "invalid Transfer-Encoding"));
        };
        codings.extend(text.split(',').map(|c| c.trim().to_ascii_lowercase()));
    }
    if codings.is_empty() {
        return None;
    }
    if req.headers().contains_key(header::CONTENT_LENGTH) {
        return Some(LENGTH_WITH_CODING);
    }
    let chunked = codings.iter().filter(|c| *c == "chunked").count();
    if codings.iter().any(String::is_empty) || chunked != 1 || codings.last().is_none_or(|c| c != "chunked") {
        return Some((Fault::BadRequest, "Transfer-Encoding must end with chunked, applied once"));
    }
    if codings.len() > 1 {
        return Some((Fault::NotImplemented, "transfer codings other than chunked are not supported"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn targets() {
        assert_eq!(refuse(&req("GET", "/x", &[])), None);
        assert_eq!(refuse(&req("GET", "http://a.test/x", &[])), None);
        assert_eq!(refuse(&req("GET", "HTTPS://a.test/x", &[])), None);
        assert_eq!(refuse(&req("CONNECT", "a.test:443", &[])), None);
        assert!(refuse(&req("GET", "a.test:443", &[])).is_some());
        assert!(refuse(&req("GET", "ftp://a.test/", &[])).is_some());
        assert!(refuse(&req("GET", "http://u@a.test/", &[])).is_some());
    }

    #[test]
    fn framing_is_unambiguous() {
        let te = |v: &str| req("POST", "/", &[("transfer-encoding", v)]);
        assert_eq!(refuse(&te("chunked")), None);
        assert_eq!(refuse(&te("Chunked")), None);
        assert_eq!(refuse(&te("chunked, chunked")).map(|r| r.0), Some(Fault::BadRequest));
        assert_eq!(refuse(&te("chunked, gzip")).map(|r| r.0), Some(Fault::BadRequest));
        assert_eq!(refuse(&te("gzip, chunked")).map(|r| r.0), Some(Fault::NotImplemented));
        assert_eq!(refuse(&te(", chunked")).map(|r| r.0), Some(Fault::BadRequest));
        let both = req("POST", "/", &[("transfer-encoding", "chunked"), ("content-length", "5")]);
        assert_eq!(refuse(&both).map(|r| r.0), Some(Fault::BadRequest));
    }
}
