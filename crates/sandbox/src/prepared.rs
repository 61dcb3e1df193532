//! Guests prepared once per distinct content: tenants that deploy the same bytes (many run the same app)
//! share one compiled, pre-linked copy, so a thousand copies cost little more than one. The apps hold it; this
//! index only finds it, so compiled code nothing routes to any more (an old version, a removed tenant's app)
//! is freed with its last app.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use sha2::{Digest, Sha256};

/// Prepared guests (`T`: a pre-instantiated app and what it imports and exports) by the SHA-256 of their bytes,
/// while some app holds them.
pub(crate) struct Prepared<T> {
    by_content: Mutex<HashMap<[u8; 32], Weak<T>>>,
}

impl<T> Default for Prepared<T> {
    fn default() -> Self {
        Prepared { by_content: Mutex::default() }
    }
}

impl<T> Prepared<T> {
    /// The prepared guest for `bytes`, made by `prepare` unless an app still holds one made from the same bytes.
    /// Failures are not remembered, so each route that names a broken file reports it with its own path.
    pub(crate) fn get_or_prepare<E>(&self, bytes: &[u8], prepare: impl FnOnce() -> Result<T, E>) -> Result<Arc<T>, E> {
        let key: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(found) =
            self.by_content.lock().unwrap_or_else(PoisonError::into_inner).get(&key).and_then(Weak::upgrade)
        {
            metrics::counter!("palisade_compile_cache_total", "result" => "hit").increment(1);
            return Ok(found);
        }
        metrics::counter!("palisade_compile_cache_total", "result" => "miss").increment(1);
        let made = Arc::new(prepare()?);
        let mut by_content = self.by_content.lock().unwrap_or_else(PoisonError::into_inner);
        by_content.retain(|_, held| held.strong_count() > 0);
        by_content.insert(key, Arc::downgrade(&made));
        Ok(made)
    }

    /// Distinct guests some app still holds.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.by_content.lock().unwrap_or_else(PoisonError::into_inner).values().filter(|w| w.strong_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_are_prepared_once_and_failures_are_not_remembered() {
        let prepared = Prepared::<u32>::default();
        let mut calls = 0;
        let mut make = |v| {
            calls += 1;
            Ok::<_, ()>(v)
        };
        let app = prepared.get_or_prepare(b"app", || make(1));
        assert_eq!(app.as_deref(), Ok(&1));
        let again = prepared.get_or_prepare(b"app", || make(2));
        assert_eq!(again.as_deref(), Ok(&1), "the same bytes share the first result");
        let other = prepared.get_or_prepare(b"other", || make(3));
        assert_eq!(other.as_deref(), Ok(&3));
        assert_eq!(calls, 2);
        assert_eq!(prepared.get_or_prepare(b"bad", || Err::<u32, _>("broken")), Err("broken"));
        let fixed = prepared.get_or_prepare(b"bad", || Ok::<_, &str>(4));
        assert_eq!(fixed.as_deref(), Ok(&4));
        assert_eq!(prepared.held(), 3);
        drop((app, again));
        assert_eq!(prepared.held(), 2, "no app holds the first any more: it is gone");
        let back = prepared.get_or_prepare(b"app", || Ok::<_, ()>(5));
        assert_eq!(back.as_deref(), Ok(&5), "prepared anew");
    }
}
