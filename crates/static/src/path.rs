//! Request path → path relative to the static root, refusing anything that could leave it.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// Why a request path cannot name a file under the root.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PathError {
    /// `..` segments, NUL bytes, invalid UTF-8 after decoding: 400.
    Invalid,
}

/// Decodes the (already route-relative) request path and turns it into a relative filesystem path, its
/// segments joined by `/`.
///
/// Decoding happens once, before the `..` check, so `%2e%2e` is caught as well as `..`. Empty and `.` segments
/// are dropped. The result never starts with `/` and never contains `..`; the filesystem layer additionally
/// refuses symlinks that lead outside the root. Most request paths are already in that form below their
/// leading slash, and are returned as they are, without decoding or copying.
pub(crate) fn relative_path(request_path: &str) -> Result<Cow<'_, str>, PathError> {
    if let Some(plain) = already_relative(request_path) {
        return Ok(Cow::Borrowed(plain));
    }
    let decoded = percent_decode_str(request_path).decode_utf8().map_err(|_| PathError::Invalid)?;
    let mut out = String::with_capacity(decoded.len());
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(PathError::Invalid),
            s if s.contains('\0') || s.contains('\\') => return Err(PathError::Invalid),
            s => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(s);
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// Whether a segment of `relative` (as [`relative_path`] returns it) is hidden by name: starts with `.`,
/// other than `.well-known`.
pub(crate) fn names_a_dotfile(relative: &str) -> bool {
    relative.split('/').any(|segment| segment.starts_with('.') && segment != ".well-known")
}

/// `request_path` below its leading slash, if that needs no decoding and no segment dropped or refused: no
/// `%`, backslash or NUL, and no empty, `.` or `..` segment.
fn already_relative(request_path: &str) -> Option<&str> {
    let rest = request_path.strip_prefix('/')?;
    let clean = !rest.bytes().any(|b| matches!(b, b'%' | b'\\' | 0))
        && rest.split('/').all(|segment| !matches!(segment, "" | "." | ".."));
    clean.then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths() {
        // The relative path, and whether it was borrowed from the request path.
        let relative = |p| relative_path(p).map(|r| (r.to_string(), matches!(r, Cow::Borrowed(_))));
        assert_eq!(relative("/"), Ok((String::new(), false)));
        assert_eq!(relative("/a/b.txt"), Ok(("a/b.txt".into(), true)));
        assert_eq!(relative("//a/./b"), Ok(("a/b".into(), false)));
        assert_eq!(relative("/a/b/"), Ok(("a/b".into(), false)));
        assert_eq!(relative("/hello%20world.txt"), Ok(("hello world.txt".into(), false)));
        assert_eq!(relative("/.well-known/x..y"), Ok((".well-known/x..y".into(), true)));
    }

    #[test]
    fn dotfiles_are_told_by_name() {
        assert!(names_a_dotfile(".env"));
        assert!(names_a_dotfile("a/.git/config"));
        assert!(!names_a_dotfile(".well-known/security.txt"));
        assert!(!names_a_dotfile("a/b.c/d..e"));
        assert!(!names_a_dotfile(""));
    }

    #[test]
    fn traversal_is_refused() {
        for bad in [
            "/..",
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/x",
            "/%2E%2E%2Fx",
            "/a%00b",
            "/a%5c..%5cb",
            "/%ff",
            "/a/..",
            "/a\\b",
        ] {
            assert_eq!(relative_path(bad), Err(PathError::Invalid), "{bad}");
        }
    }
}
