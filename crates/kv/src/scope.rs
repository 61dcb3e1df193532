//! Where a tenant's bucket lives in a store: names checked once, and encoded so that different (tenant,
//! bucket, key) triples can never meet, whatever bytes a guest puts in a bucket name or key.

use crate::KvError;

/// Longest bucket name, in bytes.
pub const MAX_BUCKET_NAME: usize = 256;
/// Longest key, in bytes.
pub const MAX_KEY: usize = 4096;

/// One tenant's bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    tenant: String,
    bucket: String,
    /// `[tenant length: u8][tenant][bucket length: u16 BE][bucket]`: every entry of the bucket starts with it,
    /// and no other bucket's entries do (the lengths say where each part ends).
    prefix: Vec<u8>,
}

impl Scope {
    /// The bucket `bucket` of tenant `tenant`. Tenant names come from the configuration (letters, digits,
    /// `-`, `_`); bucket names from guests (any text up to [`MAX_BUCKET_NAME`] bytes).
    pub fn new(tenant: &str, bucket: &str) -> Result<Scope, KvError> {
        check_tenant(tenant)?;
        if bucket.len() > MAX_BUCKET_NAME {
            return Err(KvError::InvalidName(format!(
                "bucket name of {} bytes; at most {MAX_BUCKET_NAME}",
                bucket.len()
            )));
        }
        let mut prefix = tenant_prefix(tenant)?;
        prefix.reserve(2 + bucket.len());
        prefix.extend_from_slice(&(bucket.len() as u16).to_be_bytes());
        prefix.extend_from_slice(bucket.as_bytes());
        Ok(Scope { tenant: tenant.to_string(), bucket: bucket.to_string(), prefix })
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The stored form of `key` in this bucket (embedded store).
    pub(crate) fn entry(&self, key: &str) -> Result<Vec<u8>, KvError> {
        check_key(key)?;
        let mut entry = Vec::with_capacity(self.prefix.len() + key.len());
        entry.extend_from_slice(&self.prefix);
        entry.extend_from_slice(key.as_bytes());
        Ok(entry)
    }

    /// What every entry of this bucket starts with.
    pub(crate) fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The Redis key holding `key`'s value: `palisade:kv:TENANT:LEN:BUCKET:KEY` (LEN says where the bucket
    /// name ends, so a `:` in it cannot shift the parts).
    pub(crate) fn redis_key(&self, key: &str) -> Result<String, KvError> {
        check_key(key)?;
        Ok(format!("palisade:kv:{}:{}:{}:{key}", self.tenant, self.bucket.len(), self.bucket))
    }

    /// The Redis sorted set listing this bucket's keys.
    pub(crate) fn redis_index(&self) -> String {
        format!("palisade:kv-index:{}:{}:{}", self.tenant, self.bucket.len(), self.bucket)
    }
}

/// The Redis hash holding a tenant's usage (`keys`, `bytes`).
pub(crate) fn redis_usage(tenant: &str) -> String {
    format!("palisade:kv-usage:{tenant}")
}

/// Tenant names come from the configuration: letters, digits, `-`, `_`, 1 to 64 bytes. Everything that finds
/// a tenant's data by prefix or pattern relies on this (no `:` to shift the Redis parts, no glob characters, a
/// length that fits the embedded prefix's one byte).
fn check_tenant(tenant: &str) -> Result<(), KvError> {
    let valid = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(KvError::InvalidName(format!("tenant name {tenant:?}")));
    }
    Ok(())
}

/// What every entry of every bucket of `tenant` starts with (embedded store): `[tenant length: u8][tenant]`.
/// The length byte is what keeps tenant `a` from matching `ab`'s entries (`[1]a` vs `[2]ab`).
pub(crate) fn tenant_prefix(tenant: &str) -> Result<Vec<u8>, KvError> {
    check_tenant(tenant)?;
    let mut prefix = Vec::with_capacity(1 + tenant.len());
    prefix.push(tenant.len() as u8);
    prefix.extend_from_slice(tenant.as_bytes());
    Ok(prefix)
}

/// `SCAN MATCH` patterns for every Redis key of `tenant`'s buckets: their values and their key indexes (the
/// usage hash is one known key, [`redis_usage`]). The `:` after the tenant is what keeps tenant `a` from
/// matching `ab`'s or `a-b`'s keys; no bucket can smuggle it in, since the tenant comes first.
pub(crate) fn redis_tenant_patterns(tenant: &str) -> Result<[String; 2], KvError> {
    check_tenant(tenant)?;
    // Checked tenant names hold no glob characters; escaping anyway keeps the pattern exact should that rule
    // ever widen.
    let tenant = glob_escape(tenant);
    Ok([format!("palisade:kv:{tenant}:*"), format!("palisade:kv-index:{tenant}:*")])
}

/// `text` matched literally by a Redis glob pattern.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.len() > MAX_KEY {
        return Err(KvError::InvalidName(format!("key of {} bytes; at most {MAX_KEY}", key.len())));
    }
    Ok(())
}

/// The smallest byte string greater than every string starting with `prefix` (`None`: there is none).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_triples_never_share_an_entry() {
        let mut seen = std::collections::HashSet::new();
        for (bucket, key) in [("x", "b:c"), ("x:b", "c"), ("x", "b"), ("", "xb"), ("x\0", "b")] {
            let scope = Scope::new("t", bucket).unwrap();
            assert!(seen.insert(scope.entry(key).unwrap()), "{bucket:?}/{key:?}");
            assert!(seen.insert(scope.redis_key(key).unwrap().into_bytes()), "{bucket:?}/{key:?}");
        }
        let (a, b) = (Scope::new("a", "b-c").unwrap(), Scope::new("a-b", "c").unwrap());
        assert!(!a.entry("").unwrap().starts_with(b.prefix()) && !b.entry("").unwrap().starts_with(a.prefix()));
    }

    #[test]
    fn names_are_checked() {
        assert!(Scope::new("", "b").is_err());
        assert!(Scope::new("a/b", "b").is_err());
        assert!(Scope::new("a", &"b".repeat(MAX_BUCKET_NAME + 1)).is_err());
        assert!(Scope::new("a", "ünïcødé/../\0").is_ok());
        let scope = Scope::new("a", "b").unwrap();
        assert!(scope.entry(&"k".repeat(MAX_KEY + 1)).is_err());
        assert_eq!(prefix_end(&[1, 2, 255]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[255]), None);
        assert!(matches!(tenant_prefix(""), Err(KvError::InvalidName(_))));
        assert!(matches!(tenant_prefix(&"t".repeat(65)), Err(KvError::InvalidName(_))));
        assert!(matches!(redis_tenant_patterns("a*"), Err(KvError::InvalidName(_))));
    }

    #[test]
    fn a_tenant_never_matches_another_by_prefix() {
        let prefix = tenant_prefix("a").unwrap();
        assert!(Scope::new("a", "ab").unwrap().prefix().starts_with(&prefix));
        for other in ["ab", "a-b", "a_"] {
            assert!(!Scope::new(other, "").unwrap().prefix().starts_with(&prefix), "{other}");
            assert!(!Scope::new(other, "").unwrap().redis_key("k").unwrap().starts_with("palisade:kv:a:"), "{other}");
        }
        let [values, index] = redis_tenant_patterns("a-b").unwrap();
        assert_eq!((values.as_str(), index.as_str()), ("palisade:kv:a-b:*", "palisade:kv-index:a-b:*"));
        assert_eq!(glob_escape(r"x*?[y]\z"), r"x\*\?\[y\]\\z");
    }
}
