//! The host a request is for, normalised for matching: lower-case, no port, no trailing dot, no brackets.

use std::borrow::Cow;

use http::{Request, Version, header};

/// Why a request's host cannot be determined.
#[derive(Debug, PartialEq, Eq)]
pub enum HostError {
    /// HTTP/1.1 requires a Host header (RFC 9112 §3.2).
    Missing,
    /// The Host header is not a valid authority, or several disagree.
    Invalid,
    /// An HTTP/2 request's `host` field names another host than its `:authority` (RFC 9113 §8.3.1: malformed).
    Conflict,
}

/// Makes the request's `Host` field say the authority its target names, when the target names one (HTTP/2's
/// `:authority`, HTTP/1.1's absolute form): that is the host it is routed on (RFC 9112 §3.2.2: a server takes
/// the authority from an absolute-form target and ignores `Host`), and upstreams, guests and CGI programs read
/// `Host`, so none of them ever sees another host than the one palisade chose the tenant by. An HTTP/2 or HTTP/3 request
/// whose `host` names a different host is refused.
pub fn settle_host<B>(req: &mut Request<B>) -> Result<(), HostError> {
    let Some(authority) = req.uri().authority() else {
        return Ok(());
    };
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(h), None) if h.as_bytes() == authority.as_str().as_bytes() => return Ok(()),
        (Some(h), None) if req.version() >= Version::HTTP_2 => {
            let named = |a: &[u8]| host_of(a).map(|h| h.strip_suffix(b".").unwrap_or(h).to_ascii_lowercase());
            if named(h.as_bytes()) != named(authority.as_str().as_bytes()) {
                return Err(HostError::Conflict);
            }
        }
        (Some(_), Some(_)) => return Err(HostError::Invalid),
        _ => {}
    }
    let value = http::HeaderValue::from_str(authority.as_str()).map_err(|_| HostError::Invalid)?;
    req.headers_mut().insert(header::HOST, value);
    Ok(())
}

/// The request's host: from the URI authority (HTTP/2 `:authority`, absolute-form) or the Host header.
///
/// `Ok(None)` for an HTTP/1.0 request without Host, which only a `"*"` tenant can answer.
pub fn request_host<B>(req: &Request<B>) -> Result<Option<Cow<'_, str>>, HostError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header_host = match (hosts.next(), hosts.next()) {
        (Some(h), None) => Some(host_of(h.as_bytes()).ok_or(HostError::Invalid)?),
        (None, _) => None,
        (Some(_), Some(_)) => return Err(HostError::Invalid),
    };
    let uri_host = match req.uri().authority() {
        Some(a) => Some(host_of(a.as_str().as_bytes()).ok_or(HostError::Invalid)?),
        None => None,
    };
    let host = match (uri_host, header_host) {
        (Some(h), _) | (None, Some(h)) => h,
        (None, None) if req.version() == Version::HTTP_11 => return Err(HostError::Missing),
        (None, None) => return Ok(None),
    };
    // `host_of` let through ASCII only.
    Ok(Some(palisade_http::normalise_host(std::str::from_utf8(host).map_err(|_| HostError::Invalid)?)))
}

/// The bytes of a registered name or IPv4 address: unreserved characters, percent-encodings and
/// sub-delimiters (RFC 3986 §3.2.2), which excludes `@` (user information), `:` and anything outside ASCII.
/// A table, as every request's host is checked against it byte by byte.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~%!$&'()*+,;=";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// The host in an authority without user information, `host [":" port]` (RFC 9110 §7.2), with a port that is
/// empty or a number that fits 16 bits; `None` if `authority` is anything else. Checked byte by byte: this
/// runs for every request.
fn host_of(authority: &[u8]) -> Option<&[u8]> {
    let (host, port) = if authority.first() == Some(&b'[') {
        // An IP literal: hex digits, colons and dots (an embedded IPv4 address) between brackets.
        let end = authority.iter().position(|&b| b == b']')?;
        let literal = &authority[1..end];
        if literal.is_empty() || !literal.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return None;
        }
        authority.split_at(end + 1)
    } else {
        let (host, port) = match authority.iter().rposition(|&b| b == b':') {
            Some(colon) => authority.split_at(colon),
            None => (authority, &[][..]),
        };
        if host.is_empty() || !host.iter().all(|&b| REG_NAME[usize::from(b)]) {
            return None;
        }
        (host, port)
    };
    match port {
        [] | [b':'] => Some(host),
        [b':', digits @ ..] => {
            let fits = digits.len() <= 5
                && digits.iter().all(u8::is_ascii_digit)
                && digits.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= u32::from(u16::MAX);
            fits.then_some(host)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, version: Version, host: &[&str]) -> Request<()> {
        let mut b = Request::builder().uri(uri).version(version);
        for h in host {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn host_header_without_port() {
        let r = req("/", Version::HTTP_11, &["Alice.Localhost:8080"]);
        assert_eq!(request_host(&r), Ok(Some("alice.localhost".into())));
        let r = req("/", Version::HTTP_11, &["example.com."]);
        assert_eq!(request_host(&r), Ok(Some("example.com".into())));
        let r = req("/", Version::HTTP_11, &["[::1]:80"]);
        assert_eq!(request_host(&r), Ok(Some("::1".into())));
    }

    #[test]
    fn authority_wins() {
        let r = req("http://bob.localhost/x", Version::HTTP_2, &[]);
        assert_eq!(request_host(&r), Ok(Some("bob.localhost".into())));
    }

    #[test]
    fn host_is_settled_to_the_authority() {
        let mut r = req("http://bob.localhost:8080/x", Version::HTTP_11, &["evil.example"]);
        assert_eq!(settle_host(&mut r), Ok(()));
        assert_eq!(r.headers()[header::HOST], "bob.localhost:8080", "absolute form: Host is ignored");
        let mut r = req("http://bob.localhost/x", Version::HTTP_2, &[]);
        assert_eq!(settle_host(&mut r), Ok(()));
        assert_eq!(r.headers()[header::HOST], "bob.localhost", "HTTP/2: from :authority");
        let mut r = req("http://bob.localhost/x", Version::HTTP_2, &["evil.example"]);
        assert_eq!(settle_host(&mut r), Err(HostError::Conflict));
        let mut r = req("http://bob.localhost:443/x", Version::HTTP_2, &["BOB.localhost."]);
        assert_eq!(settle_host(&mut r), Ok(()), "the same host, written otherwise");
        assert_eq!(r.headers()[header::HOST], "bob.localhost:443");
        let mut r = req("/x", Version::HTTP_11, &["bob.localhost"]);
        assert_eq!(settle_host(&mut r), Ok(()));
        assert_eq!(r.headers()[header::HOST], "bob.localhost", "origin form: Host as sent");
        let mut r = req("http://bob.localhost/x", Version::HTTP_11, &["a", "b"]);
        assert_eq!(settle_host(&mut r), Err(HostError::Invalid));
    }

    #[test]
    fn missing_and_invalid() {
        assert_eq!(request_host(&req("/", Version::HTTP_11, &[])), Err(HostError::Missing));
        assert_eq!(request_host(&req("/", Version::HTTP_10, &[])), Ok(None));
        assert_eq!(request_host(&req("/", Version::HTTP_11, &["a b"])), Err(HostError::Invalid));
        assert_eq!(request_host(&req("/", Version::HTTP_11, &["a", "b"])), Err(HostError::Invalid));
        assert_eq!(request_host(&req("/", Version::HTTP_11, &["u@a"])), Err(HostError::Invalid));
        assert_eq!(request_host(&req("/", Version::HTTP_11, &["a:xyz"])), Err(HostError::Invalid));
        assert_eq!(request_host(&req("/", Version::HTTP_11, &["a:99999"])), Err(HostError::Invalid));
        assert_eq!(request_host(&req("/", Version::HTTP_11, &["a:"])), Ok(Some("a".into())));
        for bad in
            ["", ":80", "a:b:80", "[::1", "[]", "[::1]x", "[::1]:x", "[g::1]", "a/b", "a b", "é", "a:-1", "a:080000"]
        {
            assert_eq!(request_host(&req("/", Version::HTTP_11, &[bad])), Err(HostError::Invalid), "{bad:?}");
        }
        assert_eq!(request_host(&req("/", Version::HTTP_11, &["a:65535"])), Ok(Some("a".into())));
        assert_eq!(request_host(&req("/", Version::HTTP_11, &["a:65536"])), Err(HostError::Invalid));
        assert_eq!(
            request_host(&req("/", Version::HTTP_11, &["[::ffff:1.2.3.4]:8"])),
            Ok(Some("::ffff:1.2.3.4".into()))
        );
        assert_eq!(request_host(&req("/", Version::HTTP_11, &["127.0.0.1:80"])), Ok(Some("127.0.0.1".into())));
    }
}
