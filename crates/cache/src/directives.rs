//! `Cache-Control` and the fields written like it (`CDN-Cache-Control`, `Surrogate-Control`): a list of
//! directives, each a name with an optional value (a token or a quoted string), RFC 9111 §5.2.

use http::HeaderMap;
use http::header::{AsHeaderName, CACHE_CONTROL};

/// The directives of one field, names lower-cased, in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Directives(Vec<(String, Option<String>)>);

/// `CDN-Cache-Control` (RFC 9213): directives for CDNs, in place of `Cache-Control`.
pub(crate) const CDN_CACHE_CONTROL: &str = "cdn-cache-control";
/// `Surrogate-Control`: directives for the edge (Edge Architecture 1.0, as Fastly and Varnish read it).
pub(crate) const SURROGATE_CONTROL: &str = "surrogate-control";

impl Directives {
    /// The directives of every line of field `name` in `headers`.
    pub(crate) fn of(headers: &HeaderMap, name: impl AsHeaderName) -> Directives {
        let mut out = Vec::new();
        for value in headers.get_all(name) {
            let Ok(text) = value.to_str() else { continue };
            parse_into(text, &mut out);
        }
        Directives(out)
    }

    /// The directives a shared edge cache obeys for a response: `CDN-Cache-Control` when present, else
    /// `Surrogate-Control`, else `Cache-Control`; and whether one of the first two was used (then `Expires`
    /// is ignored as well, RFC 9213 §2.1).
    /// A targeted field that is not a valid Structured Field Dictionary, or gives a directive a value of
    /// the wrong type, is ignored as if absent (RFC 9213 §2.1).
    pub(crate) fn for_edge(headers: &HeaderMap) -> (Directives, bool) {
        if let Some(d) = Directives::structured(headers, CDN_CACHE_CONTROL) {
            return (d, true);
        }
        // A Surrogate-Control without a caching directive (`content="ESI/1.0"` alone) says nothing about
        // caching, and must not set aside what Cache-Control says (`private`, `no-store`).
        let surrogate = Directives::of(headers, SURROGATE_CONTROL);
        if surrogate.0.iter().any(|(name, _)| CACHING.contains(&name.as_str())) {
            return (surrogate, true);
        }
        (Directives::of(headers, CACHE_CONTROL), false)
    }

    /// Field `name` read strictly as a Structured Field Dictionary (RFC 8941 §3.2, as RFC 9213 defines
    /// `CDN-Cache-Control`): `None` when it is absent, does not parse, or gives a delta-seconds directive
    /// anything but a non-negative integer.
    fn structured(headers: &HeaderMap, name: &str) -> Option<Directives> {
        let mut lines = Vec::new();
        for value in headers.get_all(name) {
            lines.push(value.to_str().ok()?);
        }
        if lines.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for member in lines.join(",").split(',') {
            let member = member.trim_matches([' ', '\t']);
            // Parameters (`;a=1`) are allowed and mean nothing here.
            let item = member.split(';').next().unwrap_or("");
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (item, None),
            };
            let key_ok = key.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
                && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b));
            if !key_ok {
                return None;
            }
            let integer =
                value.is_some_and(|v| !v.is_empty() && v.len() <= 15 && v.bytes().all(|b| b.is_ascii_digit()));
            if DELTA_SECONDS.contains(&key) && !integer {
                return None;
            }
            out.push((key.to_string(), value.map(str::to_string)));
        }
        Some(Directives(out))
    }

    /// Whether directive `name` is present.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// `name=delta-seconds` (the first occurrence). A value too large saturates (RFC 9111 §1.2.2); one that
    /// is not a number is `Some(None)`: present, but invalid.
    pub(crate) fn seconds(&self, name: &str) -> Option<Option<u64>> {
        let (_, value) = self.0.iter().find(|(n, _)| n == name)?;
        let Some(v) = value else { return Some(None) };
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Some(None);
        }
        Some(Some(v.parse().unwrap_or(MAX_DELTA_SECONDS).min(MAX_DELTA_SECONDS)))
    }

    /// Whether `name` is present without a field-name list (`no-cache="Set-Cookie"` only qualifies the
    /// named fields, which a cache may store and serve without them).
    pub(crate) fn has_unqualified(&self, name: &str) -> bool {
        self.0.iter().any(|(n, v)| n == name && v.is_none())
    }

    /// The fields named by every `name="field, ..."` (the qualified forms of `no-cache` and `private`).
    pub(crate) fn qualified_fields(&self, name: &str) -> Vec<String> {
        let lists = self.0.iter().filter(|(n, _)| n == name).filter_map(|(_, v)| v.as_deref());
        lists
            .flat_map(|list| list.split(','))
            .map(|f| f.trim().to_ascii_lowercase())
            .filter(|f| !f.is_empty())
            .collect()
    }
}

/// The directives that say something about caching: a targeted field with none of them is ignored.
const CACHING: [&str; 10] = [
    "max-age",
    "s-maxage",
    "no-store",
    "no-cache",
    "private",
    "public",
    "must-revalidate",
    "proxy-revalidate",
    "stale-while-revalidate",
    "stale-if-error",
];

/// Directives whose value is a number of seconds.
const DELTA_SECONDS: [&str; 4] = ["max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"];

/// RFC 9111 §1.2.2: delta-seconds past what a cache can represent count as 2^31.
pub(crate) const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// Appends the directives of one field line: `a, b=1, c="x, y"`.
fn parse_into(text: &str, out: &mut Vec<(String, Option<String>)>) {
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return;
        }
        let end = rest.find(['=', ',']).unwrap_or(rest.len());
        let name = rest[..end].trim().to_ascii_lowercase();
        rest = &rest[end..];
        let value = if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            if let Some(quoted) = after.strip_prefix('"') {
                let (value, tail) = unquote(quoted);
                rest = tail;
                Some(value)
            } else {
                let end = after.find(',').unwrap_or(after.len());
                rest = &after[end..];
                Some(after[..end].trim().to_string())
            }
        } else {
            None
        };
        if !name.is_empty() {
            out.push((name, value));
        }
    }
}

/// A quoted string's content (backslash escapes undone) and what follows its closing quote.
fn unquote(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &text[i + 1..]),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            c => value.push(c),
        }
    }
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn of(lines: &[&str]) -> Directives {
        let mut headers = HeaderMap::new();
        for l in lines {
            headers.append(CACHE_CONTROL, HeaderValue::from_str(l).unwrap());
        }
        Directives::of(&headers, CACHE_CONTROL)
    }

    #[test]
    fn names_values_and_quoted_strings() {
        let d = of(&["Max-Age=60, no-cache=\"Set-Cookie, X\"", "public,s-maxage = 5", "stale-if-error=\"30\""]);
        assert_eq!(d.seconds("max-age"), Some(Some(60)));
        assert!(d.has("no-cache") && !d.has_unqualified("no-cache"));
        assert!(d.has("public") && !d.has("set-cookie") && !d.has("x"), "a quoted list is one value");
        assert!(d.has("public"));
        assert_eq!(d.seconds("s-maxage"), Some(Some(5)));
        assert_eq!(d.seconds("stale-if-error"), Some(Some(30)));
        assert_eq!(d.seconds("min-fresh"), None);
    }

    #[test]
    fn invalid_and_huge_delta_seconds() {
        assert_eq!(of(&["max-age=abc"]).seconds("max-age"), Some(None));
        assert_eq!(of(&["max-age=-1"]).seconds("max-age"), Some(None));
        assert_eq!(of(&["max-age"]).seconds("max-age"), Some(None));
        assert_eq!(of(&["max-age=99999999999999999999999"]).seconds("max-age"), Some(Some(MAX_DELTA_SECONDS)));
        assert_eq!(of(&["max-age=1, max-age=2"]).seconds("max-age"), Some(Some(1)), "the first wins");
    }

    #[test]
    fn targeted_fields_take_precedence() {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(SURROGATE_CONTROL, HeaderValue::from_static("max-age=10"));
        let (d, targeted) = Directives::for_edge(&headers);
        assert!(targeted && d.seconds("max-age") == Some(Some(10)) && !d.has("no-store"));
        headers.insert(CDN_CACHE_CONTROL, HeaderValue::from_static("max-age=20"));
        assert_eq!(Directives::for_edge(&headers).0.seconds("max-age"), Some(Some(20)));
        // A CDN-Cache-Control that is not a valid dictionary, or has a quoted number, is ignored.
        for broken in ["max-age=10000, &&&&&", "max-age=\"10000\"", "Max-Age=5"] {
            headers.insert(CDN_CACHE_CONTROL, HeaderValue::from_static(broken));
            assert_eq!(Directives::for_edge(&headers).0.seconds("max-age"), Some(Some(10)), "{broken}");
        }
    }
}
