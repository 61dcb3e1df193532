//! Tenants' key-value storage: one interface ([`KvStore`]) with two stores behind it, an embedded one on
//! [redb](redb_store) for one node and a shared one on [Redis](redis_store) for many.
//!
//! Every operation names a [`Scope`]: a tenant (from the configuration, never from a guest) and a bucket (a
//! name the guest chose). Scopes are encoded so that no two different (tenant, bucket, key) triples can
//! ever name the same stored entry, whatever bytes the bucket or key contain: that is the whole of tenant
//! isolation here, and `tests/conformance.rs` attacks it on both stores.
//!
//! Writes are checked against the tenant's [`Quota`] inside the same transaction (redb) or script (Redis)
//! that makes them, so concurrent writers cannot overshoot it, and `increment` is atomic across every
//! process sharing the store.

mod redb_store;
mod redis_store;
mod scope;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use redb_store::RedbStore;
pub use redis_store::RedisStore;
pub use scope::{MAX_BUCKET_NAME, MAX_KEY, Scope};

use futures::future::BoxFuture;

/// At most this many keys per [`KvStore::list_keys`] page.
pub const LIST_PAGE: usize = 1000;

/// A tenant's limits, checked on every write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Keys stored in all the tenant's buckets together.
    pub max_keys: u64,
    /// Bytes in one value.
    pub max_value: u64,
    /// Bytes of keys and values in all the tenant's buckets together.
    pub max_total: u64,
}

impl Quota {
    /// No limits (for operators' tools).
    pub const UNLIMITED: Quota = Quota { max_keys: u64::MAX, max_value: u64::MAX, max_total: u64::MAX };

    /// Refuses a value larger than `max_value` before any store is asked.
    pub fn check_value(&self, value: &[u8]) -> Result<(), KvError> {
        if value.len() as u64 > self.max_value {
            return Err(KvError::Quota(format!("value of {} bytes; max_value is {}", value.len(), self.max_value)));
        }
        Ok(())
    }
}

/// How much a tenant stores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Keys, in all buckets.
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The bucket name or key is not acceptable (too long, say).
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// The write would pass one of the tenant's limits; nothing was written.
    #[error("quota exceeded: {0}")]
    Quota(String),
    /// The stored value is not a decimal counter (for `increment`), or the counter would overflow.
    #[error("not a counter: {0}")]
    NotACounter(String),
    /// The store could not be reached or failed; the operation may be retried.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// One page of a bucket's keys, in byte order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// The keys.
    pub keys: Vec<String>,
    /// Where the next page starts, if there is one.
    pub cursor: Option<u64>,
}

/// Future returned by every [`KvStore`] operation.
pub type KvFuture<'a, T> = BoxFuture<'a, Result<T, KvError>>;

/// A key-value store shared by every tenant, each confined to its own [`Scope`]s.
pub trait KvStore: Send + Sync + 'static {
    /// The value under `key`, if any.
    fn get<'a>(&'a self, scope: &'a Scope, key: &'a str) -> KvFuture<'a, Option<Vec<u8>>>;

    /// Stores `value` under `key`, within `quota`.
    fn set<'a>(&'a self, scope: &'a Scope, key: &'a str, value: &'a [u8], quota: &'a Quota) -> KvFuture<'a, ()>;

    /// Removes `key` (nothing happens if it is absent).
    fn delete<'a>(&'a self, scope: &'a Scope, key: &'a str) -> KvFuture<'a, ()>;

    /// Whether `key` is present.
    fn exists<'a>(&'a self, scope: &'a Scope, key: &'a str) -> KvFuture<'a, bool> {
        Box::pin(async move { Ok(self.get(scope, key).await?.is_some()) })
    }

    /// Up to [`LIST_PAGE`] keys of the bucket, in byte order, skipping the first `cursor`.
    fn list_keys<'a>(&'a self, scope: &'a Scope, cursor: u64) -> KvFuture<'a, KeyPage>;

    /// Adds `delta` to the decimal counter under `key` (absent counts as 0), atomically, and returns the new
    /// value.
    fn increment<'a>(&'a self, scope: &'a Scope, key: &'a str, delta: u64, quota: &'a Quota) -> KvFuture<'a, u64>;

    /// Stores `new` under `key` only if the current value is `expected` (`None`: absent), atomically; whether
    /// it did.
    fn compare_and_swap<'a>(
        &'a self,
        scope: &'a Scope,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: &'a [u8],
        quota: &'a Quota,
    ) -> KvFuture<'a, bool>;

    /// What `tenant` stores.
    fn usage<'a>(&'a self, tenant: &'a str) -> KvFuture<'a, Usage>;

    /// Removes everything `tenant` stores, in every bucket, and its usage counts; how many keys were removed.
    fn remove_tenant<'a>(&'a self, tenant: &'a str) -> KvFuture<'a, u64>;
}

/// Parses a stored counter; absent is 0.
fn parse_counter(value: Option<&[u8]>) -> Result<u64, KvError> {
    match value {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| KvError::NotACounter("the value is not a decimal number".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: Quota = Quota { max_keys: 1000, max_value: 1000, max_total: 1 << 20 };

    /// For each store's tests: two keys in each of two buckets for `a`, `ab` and `a-b` (names a prefix apart);
    /// removing `a` touches only `a`, and removing it again finds nothing.
    pub(crate) async fn remove_tenant_removes_only_that_tenant(store: &dyn KvStore) {
        let buckets = ["one", "b"];
        for tenant in ["a", "ab", "a-b"] {
            for bucket in buckets {
                let scope = Scope::new(tenant, bucket).unwrap();
                store.set(&scope, "k1", b"v", &ROOMY).await.unwrap();
                store.set(&scope, "k2", b"vv", &ROOMY).await.unwrap();
            }
        }
        let before = Usage { keys: 4, bytes: 2 * (3 + 4) };
        assert_eq!(store.usage("a").await.unwrap(), before);

        assert_eq!(store.remove_tenant("a").await.unwrap(), 4);
        for bucket in buckets {
            let scope = Scope::new("a", bucket).unwrap();
            for key in ["k1", "k2"] {
                assert_eq!(store.get(&scope, key).await.unwrap(), None, "a/{bucket}/{key}");
            }
            assert!(store.list_keys(&scope, 0).await.unwrap().keys.is_empty(), "a/{bucket}");
        }
        assert_eq!(store.usage("a").await.unwrap(), Usage::default());
        for tenant in ["ab", "a-b"] {
            assert_eq!(store.usage(tenant).await.unwrap(), before, "{tenant}");
            for bucket in buckets {
                let scope = Scope::new(tenant, bucket).unwrap();
                assert_eq!(store.list_keys(&scope, 0).await.unwrap().keys, ["k1", "k2"], "{tenant}/{bucket}");
                assert_eq!(store.get(&scope, "k1").await.unwrap().as_deref(), Some(&b"v"[..]), "{tenant}/{bucket}");
                assert_eq!(store.get(&scope, "k2").await.unwrap().as_deref(), Some(&b"vv"[..]), "{tenant}/{bucket}");
            }
        }

        assert_eq!(store.remove_tenant("a").await.unwrap(), 0);
        assert_eq!(store.usage("a").await.unwrap(), Usage::default());
        assert!(matches!(store.remove_tenant("a*").await, Err(KvError::InvalidName(_))));
        assert!(matches!(store.remove_tenant("").await, Err(KvError::InvalidName(_))));
        // The tenant can start again from nothing.
        store.set(&Scope::new("a", "one").unwrap(), "k", b"v", &ROOMY).await.unwrap();
        assert_eq!(store.usage("a").await.unwrap(), Usage { keys: 1, bytes: 2 });
    }
}
