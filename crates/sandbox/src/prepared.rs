//! Guests prepared once per distinct content: tenants that deploy the same bytes (many run the same app)
//! share one compiled, pre-linked copy, so a thousand copies cost little more than one.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

/// Prepared guests (`T`: a pre-instantiated app and what it imports and exports) by the SHA-256 of their bytes.
pub(crate) struct Prepared<T> {
    by_content: Mutex<HashMap<[u8; 32], T>>,
}

impl<T> Default for Prepared<T> {
    fn default() -> Self {
        Prepared { by_content: Mutex::default() }
    }
}

impl<T: Clone> Prepared<T> {
    /// The prepared guest for `bytes`, made by `prepare` the first time these bytes are seen. Failures are not
    /// remembered, so each route that names a broken file reports it with its own path.
    pub(crate) fn get_or_prepare<E>(&self, bytes: &[u8], prepare: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let key: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(found) = self.by_content.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            metrics::counter!("palisade_compile_cache_total", "result" => "hit").increment(1);
            return Ok(found.clone());
        }
        metrics::counter!("palisade_compile_cache_total", "result" => "miss").increment(1);
        let made = prepare()?;
        self.by_content.lock().unwrap_or_else(PoisonError::into_inner).insert(key, made.clone());
        Ok(made)
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
        assert_eq!(prepared.get_or_prepare(b"app", || make(1)), Ok(1));
        assert_eq!(prepared.get_or_prepare(b"app", || make(2)), Ok(1), "the same bytes share the first result");
        assert_eq!(prepared.get_or_prepare(b"other", || make(3)), Ok(3));
        assert_eq!(calls, 2);
        assert_eq!(prepared.get_or_prepare(b"bad", || Err::<u32, _>("broken")), Err("broken"));
        assert_eq!(prepared.get_or_prepare(b"bad", || Ok::<_, &str>(4)), Ok(4));
    }
}
