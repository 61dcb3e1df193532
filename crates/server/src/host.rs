//! The host a request is for, normalised for matching: lower-case, no port, no trailing dot, no brackets.

use http::{Request, Version, header};

/// Why a request's host cannot be determined.
#[derive(Debug, PartialEq, Eq)]
pub enum HostError {
    /// HTTP/1.1 requires a Host header (RFC 9112 §3.2).
    Missing,
    /// The Host header is not a valid authority, or several disagree.
    Invalid,
}

/// The request's host: from the URI authority (HTTP/2 `:authority`, absolute-form) or the Host header.
///
/// `Ok(None)` for an HTTP/1.0 request without Host, which only a `"*"` tenant can answer.
pub fn request_host<B>(req: &Request<B>) -> Result<Option<String>, HostError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header_host = match (hosts.next(), hosts.next()) {
        (Some(h), None) => {
            Some(h.to_str().ok().and_then(|s| s.parse::<http::uri::Authority>().ok()).ok_or(HostError::Invalid)?)
        }
        (None, _) => None,
        (Some(_), Some(_)) => return Err(HostError::Invalid),
    };
    // A port must be numeric (or empty); user information has no place in a host.
    let valid = |a: &http::uri::Authority| {
        let text = a.as_str();
        let after_host = text.rfind(']').map_or(text, |i| &text[i + 1..]);
        !text.contains('@')
            && after_host.rsplit_once(':').is_none_or(|(_, port)| port.is_empty() || port.parse::<u16>().is_ok())
    };
    if header_host.as_ref().is_some_and(|h| !valid(h)) || req.uri().authority().is_some_and(|a| !valid(a)) {
        return Err(HostError::Invalid);
    }
    let host = match (req.uri().authority(), &header_host) {
        (Some(a), _) => a.host(),
        (None, Some(h)) => h.host(),
        (None, None) if req.version() == Version::HTTP_11 => return Err(HostError::Missing),
        (None, None) => return Ok(None),
    };
    Ok(Some(palisade_http::normalise_host(host)))
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
    fn missing_and_invalid() {
        assert_eq!(request_host(&req("/", Version::HTTP_11, &[])), Err(HostError::Missing));
        assert_eq!(request_host(&req("/", Version::HTTP_10, &[])), Ok(None));
        assert_eq!(request_host(&req("/", Version::HTTP_11, &["a b"])), Err(HostError::Invalid));
        assert_eq!(request_host(&req("/", Version::HTTP_11, &["a", "b"])), Err(HostError::Invalid));
        assert_eq!(request_host(&req("/", Version::HTTP_11, &["u@a"])), Err(HostError::Invalid));
        assert_eq!(request_host(&req("/", Version::HTTP_11, &["a:xyz"])), Err(HostError::Invalid));
        assert_eq!(request_host(&req("/", Version::HTTP_11, &["a:99999"])), Err(HostError::Invalid));
        assert_eq!(request_host(&req("/", Version::HTTP_11, &["a:"])), Ok(Some("a".into())));
    }
}
