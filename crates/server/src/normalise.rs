//! The request path as routes are matched on it, and as every handler then sees it.
//!
//! RFC 3986 §6.2.2 makes `/%73ub/./a/../b` and `/sub/b` the same resource, but a route table matched on the
//! raw text would not: a static root or a backend that decodes afterwards would serve what the route of `/sub`
//! was meant to answer. So, before routing, percent-encoded unreserved characters are decoded and dot-segments
//! removed (§5.2.4), and the request's URI is rewritten to that path: a static file, a guest and an upstream all
//! see the path the route was chosen by. An encoded `/` or `\` is refused (as Apache does by default): no
//! normal form keeps it apart from a real separator, and a handler that decodes it would cross a route's
//! boundary. So is a path whose `..` would climb above the root.

use std::borrow::Cow;

use palisade_config::{EncodedSeparator, decode_unreserved};

/// Why a path is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PathError {
    /// `%2F` or `%5C`.
    EncodedSeparator,
    /// `..` above the root.
    AboveRoot,
}

/// `path` (a URI path, starting with `/`) in normal form; borrowed when it already is, which is the common case
/// and costs one scan.
pub(crate) fn normal_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    let escaped = memchr::memchr(b'%', bytes).is_some();
    if !escaped && !has_dot_segment(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = if escaped {
        decode_unreserved(path).map_err(|EncodedSeparator| PathError::EncodedSeparator)?
    } else {
        Cow::Borrowed(path)
    };
    if !has_dot_segment(decoded.as_bytes()) {
        return Ok(decoded);
    }
    remove_dot_segments(&decoded).map(Cow::Owned)
}

/// Whether a segment of `path` is `.` or `..`.
fn has_dot_segment(path: &[u8]) -> bool {
    path.split(|&b| b == b'/').any(|segment| segment == b"." || segment == b"..")
}

/// RFC 3986 §5.2.4 for an absolute path, except that `..` above the root is refused rather than dropped.
fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => trailing_slash = i == last,
            ".." => {
                if kept.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = i == last;
            }
            s => {
                kept.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(path: &str) -> Result<String, PathError> {
        normal_path(path).map(Cow::into_owned)
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for path in ["/", "/a/b.html", "/a/.well-known/x", "/a..b/c.", "/%20space"] {
            assert!(matches!(normal_path(path), Ok(Cow::Borrowed(_))), "{path}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept() {
        assert_eq!(n("/%73ub/index.html"), Ok("/sub/index.html".into()));
        assert_eq!(n("/a%2Db%7e"), Ok("/a-b~".into()));
        assert_eq!(n("/a%20b%3f"), Ok("/a%20b%3F".into()), "reserved and other escapes stay, in upper case");
        assert_eq!(n("/100%"), Ok("/100%".into()), "a lone % is left alone (hyper lets it through)");
        assert_eq!(n("/é%41"), Ok("/éA".into()));
    }

    #[test]
    fn encoded_separators_are_refused() {
        assert_eq!(n("/sub%2findex.html"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/a%5C..%5Cb"), Err(PathError::EncodedSeparator));
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(n("/api/../cgi/x"), Ok("/cgi/x".into()));
        assert_eq!(n("/a/./b/."), Ok("/a/b/".into()));
        assert_eq!(n("/a/b/.."), Ok("/a/".into()));
        assert_eq!(n("/a/%2e%2e/b"), Ok("/b".into()), "encoded dots are dots");
        assert_eq!(n("/.."), Err(PathError::AboveRoot));
        assert_eq!(n("/a/../../etc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(n("/a//../b"), Ok("/a/b".into()), "an empty segment is a segment");
    }
}
