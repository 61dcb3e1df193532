//! Parsing a CGI/1.1 response (RFC 3875 §6) from a guest's stdout.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

/// The most header bytes a CGI response may start with.
const MAX_HEADER_SECTION: usize = 64 << 10;

/// A CGI response, ready to become an HTTP response.
#[derive(Debug)]
pub(crate) struct CgiResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Headers a CGI program may not set: they describe the connection, which belongs to the server.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "proxy-connection"
            | "content-length"
    )
}

/// Splits `output` into header lines and body; accepts both CRLF and bare LF line ends, as servers do.
fn split_head(output: &Bytes) -> Result<(&[u8], Bytes), String> {
    let window = &output[..output.len().min(MAX_HEADER_SECTION + 4)];
    let mut i = 0;
    while i < window.len() {
        if window[i] == b'\n' {
            let line_start_next = i + 1;
            if window.get(line_start_next) == Some(&b'\n') {
                return Ok((&output[..i], output.slice(line_start_next + 1..)));
            }
            if window.get(line_start_next..line_start_next + 2) == Some(b"\r\n") {
                return Ok((&output[..i], output.slice(line_start_next + 2..)));
            }
        }
        i += 1;
    }
    if output.is_empty() {
        Err("the program wrote nothing to stdout".into())
    } else if output.len() > MAX_HEADER_SECTION {
        Err(format!("no end of headers within the first {MAX_HEADER_SECTION} bytes"))
    } else {
        Err("no blank line after the headers".into())
    }
}

/// Parses stdout of a CGI program. Errors are for the log; the client sees a plain 502.
pub(crate) fn parse(output: Bytes) -> Result<CgiResponse, String> {
    let (head, body) = split_head(&output)?;
    let mut status = None;
    let mut headers = HeaderMap::new();
    for raw_line in head.split(|&b| b == b'\n') {
        let line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        if line.is_empty() {
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| format!("header line without ':': {:?}", String::from_utf8_lossy(line)))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let name = HeaderName::from_bytes(name)
            .map_err(|_| format!("invalid header name {:?}", String::from_utf8_lossy(name)))?;
        let value = value.trim_ascii();
        if name.as_str() == "status" {
            status = Some(parse_status(value)?);
            continue;
        }
        if is_hop_by_hop(&name) {
            continue;
        }
        let value = HeaderValue::from_bytes(value)
            .map_err(|_| format!("invalid value for header {name}: {:?}", String::from_utf8_lossy(value)))?;
        headers.append(name, value);
    }

    let has_location = headers.contains_key(header::LOCATION);
    if status.is_none() && !has_location && !headers.contains_key(header::CONTENT_TYPE) {
        return Err("response has none of Content-Type, Location or Status".into());
    }
    // RFC 3875 §6.2.3: a Location without Status is a redirect.
    let status = status.unwrap_or(if has_location { StatusCode::FOUND } else { StatusCode::OK });
    Ok(CgiResponse { status, headers, body })
}

/// `Status: 404 Not Found` → 404 (the reason phrase is ignored: HTTP/2 has none).
fn parse_status(value: &[u8]) -> Result<StatusCode, String> {
    let code = value.split(|&b| b == b' ').next().unwrap_or_default();
    let parsed = std::str::from_utf8(code)
        .ok()
        .filter(|c| c.len() == 3)
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|c| c.as_u16() >= 200);
    parsed.ok_or_else(|| format!("invalid Status header {:?}", String::from_utf8_lossy(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &'static str) -> CgiResponse {
        parse(Bytes::from_static(s.as_bytes())).unwrap()
    }

    #[test]
    fn content_type_and_body() {
        let r = ok("Content-Type: text/plain\r\n\r\nhello\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.headers[header::CONTENT_TYPE], "text/plain");
        assert_eq!(&r.body[..], b"hello\n");
    }

    #[test]
    fn bare_lf_line_ends() {
        let r = ok("Content-Type: text/html\nX-A: 1\n\n<p>");
        assert_eq!(r.headers["x-a"], "1");
        assert_eq!(&r.body[..], b"<p>");
    }

    #[test]
    fn status_and_location() {
        let r = ok("Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\n");
        assert_eq!(r.status, 404);
        assert!(r.body.is_empty());
        let r = ok("Location: /elsewhere\r\n\r\n");
        assert_eq!(r.status, 302);
        assert_eq!(r.headers[header::LOCATION], "/elsewhere");
        let r = ok("Status: 301 Moved\r\nLocation: http://x/\r\n\r\n");
        assert_eq!(r.status, 301);
    }

    #[test]
    fn hop_by_hop_and_length_are_dropped() {
        let r =
            ok("Content-Type: a/b\r\nConnection: close\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\nx");
        assert!(!r.headers.contains_key(header::CONNECTION));
        assert!(!r.headers.contains_key(header::CONTENT_LENGTH));
        assert!(!r.headers.contains_key(header::TRANSFER_ENCODING));
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "hello world",
            "Content-Type text/plain\r\n\r\n",
            "X-Only: 1\r\n\r\nbody",
            "Status: abc\r\n\r\n",
            "Status: 99\r\n\r\n",
            "Status: 100 Continue\r\nContent-Type: a/b\r\n\r\n",
            "Bad Name: x\r\nContent-Type: a/b\r\n\r\n",
            "Content-Type: text/plain\r\n",
        ] {
            assert!(parse(Bytes::from_static(bad.as_bytes())).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn header_section_is_bounded() {
        let mut s = String::from("Content-Type: a/b\r\n");
        s.push_str(&"X: y\r\n".repeat(20_000));
        s.push_str("\r\n");
        assert!(parse(Bytes::from(s)).is_err());
    }
}
