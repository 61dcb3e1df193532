//! Host name → value, with the one matching rule every part of palisade uses: routing picks a tenant by the
//! request's host, and TLS picks a certificate by the SNI name, through the same [`HostMap`].

use std::borrow::Cow;
use std::collections::HashMap;

/// A host name as every [`HostMap`] lookup expects it: lower-case, no brackets around an IPv6 literal, no
/// trailing dot. The Host header, the TLS server name and a guest's outbound authority all go through this, so
/// they compare equal when they name the same host. Borrowed when already lower-case, as most hosts are.
pub fn normalise_host(host: &str) -> Cow<'_, str> {
    let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Values found by host name: exact names first, then `*.suffix` wildcards (one label, as in certificates,
/// RFC 6125 §6.4.3), then the catch-all `*`.
#[derive(Debug, Clone)]
pub struct HostMap<T> {
    exact: HashMap<String, T>,
    wildcard: HashMap<String, T>,
    any: Option<T>,
}

impl<T> Default for HostMap<T> {
    fn default() -> Self {
        HostMap { exact: HashMap::new(), wildcard: HashMap::new(), any: None }
    }
}

impl<T> HostMap<T> {
    /// Adds `value` for `pattern`: a lower-case host name, `*.suffix` for any one label below `suffix`, or `*`
    /// for any host nobody else claims. A later insert of the same pattern replaces the earlier one (patterns
    /// are checked for uniqueness by the configuration).
    pub fn insert(&mut self, pattern: &str, value: T) {
        if pattern == "*" {
            self.any = Some(value);
        } else if let Some(suffix) = pattern.strip_prefix("*.") {
            self.wildcard.insert(suffix.to_string(), value);
        } else {
            self.exact.insert(pattern.to_string(), value);
        }
    }

    /// The value for `host` (lower-case, no port, no trailing dot), or the catch-all; `None` host only
    /// matches the catch-all.
    pub fn get(&self, host: Option<&str>) -> Option<&T> {
        let Some(host) = host else { return self.any.as_ref() };
        self.exact
            .get(host)
            .or_else(|| host.split_once('.').and_then(|(_, parent)| self.wildcard.get(parent)))
            .or(self.any.as_ref())
    }

    /// Removes the value for `pattern` (as given to [`HostMap::insert`]) if `owned` says it is the caller's,
    /// leaving a value another owner put there since.
    pub fn remove_if(&mut self, pattern: &str, owned: impl FnOnce(&T) -> bool) {
        if pattern == "*" {
            if self.any.as_ref().is_some_and(owned) {
                self.any = None;
            }
            return;
        }
        let (map, key) = match pattern.strip_prefix("*.") {
            Some(suffix) => (&mut self.wildcard, suffix),
            None => (&mut self.exact, pattern),
        };
        if map.get(key).is_some_and(owned) {
            map.remove(key);
        }
    }

    /// The value for `host` without falling back to the catch-all.
    pub fn get_named(&self, host: &str) -> Option<&T> {
        self.exact.get(host).or_else(|| host.split_once('.').and_then(|(_, parent)| self.wildcard.get(parent)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_wildcard_then_any() {
        let mut m = HostMap::default();
        m.insert("alice.test", 1);
        m.insert("*.alice.test", 2);
        m.insert("www.alice.test", 3);
        assert_eq!(m.get(Some("alice.test")), Some(&1));
        assert_eq!(m.get(Some("api.alice.test")), Some(&2));
        assert_eq!(m.get(Some("www.alice.test")), Some(&3));
        // One label only, as for certificates.
        assert_eq!(m.get(Some("a.b.alice.test")), None);
        assert_eq!(m.get(None), None);
        m.insert("*", 9);
        assert_eq!(m.get(Some("a.b.alice.test")), Some(&9));
        assert_eq!(m.get(None), Some(&9));
        assert_eq!(m.get_named("a.b.alice.test"), None);
        assert_eq!(m.get_named("x.alice.test"), Some(&2));
        m.remove_if("*.alice.test", |v| *v == 7);
        assert_eq!(m.get_named("x.alice.test"), Some(&2), "not the caller's: kept");
        m.remove_if("*.alice.test", |v| *v == 2);
        m.remove_if("*", |v| *v == 9);
        assert_eq!(m.get(Some("x.alice.test")), None);
    }
}
