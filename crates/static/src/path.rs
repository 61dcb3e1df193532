//! Request path → path relative to the static root, refusing anything that could leave it.

use std::path::PathBuf;

use percent_encoding::percent_decode_str;

/// Why a request path cannot name a file under the root.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PathError {
    /// `..` segments, NUL bytes, invalid UTF-8 after decoding: 400.
    Invalid,
}

/// Decodes the (already route-relative) request path and turns it into a relative filesystem path.
///
/// Decoding happens once, before the `..` check, so `%2e%2e` is caught as well as `..`. Empty and `.` segments
/// are dropped. The result never starts with `/` and never contains `..`; the filesystem layer additionally
/// refuses symlinks that lead outside the root.
pub(crate) fn relative_path(request_path: &str) -> Result<PathBuf, PathError> {
    let decoded = percent_decode_str(request_path).decode_utf8().map_err(|_| PathError::Invalid)?;
    let mut out = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(PathError::Invalid),
            s if s.contains('\0') || s.contains('\\') => return Err(PathError::Invalid),
            s => out.push(s),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths() {
        assert_eq!(relative_path("/"), Ok(PathBuf::new()));
        assert_eq!(relative_path("/a/b.txt"), Ok(PathBuf::from("a/b.txt")));
        assert_eq!(relative_path("//a/./b"), Ok(PathBuf::from("a/b")));
        assert_eq!(relative_path("/hello%20world.txt"), Ok(PathBuf::from("hello world.txt")));
    }

    #[test]
    fn traversal_is_refused() {
        for bad in ["/..", "/../etc/passwd", "/a/../../b", "/%2e%2e/x", "/%2E%2E%2Fx", "/a%00b", "/a%5c..%5cb", "/%ff"]
        {
            assert_eq!(relative_path(bad), Err(PathError::Invalid), "{bad}");
        }
    }
}
