//! An open-file cache, like nginx's `open_file_cache`, that also keeps small files' contents.
//!
//! A hit serves a file with no system call at all: no path resolution, no `open`, `fstat` or `read`, and its
//! headers already formatted. An entry is trusted for [`VALID_FOR`]; after that, the next request for it opens
//! the file again (through the confined root, as a miss does) and replaces the entry, so a changed file is
//! served within a second. Only regular files up to [`MAX_FILE`] and directories are cached, within
//! [`MAX_BYTES`] and [`MAX_ENTRIES`] per static route; what does not fit is served from disk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::FileEntry;

/// How long an entry is served without looking at the file again.
pub(crate) const VALID_FOR: Duration = Duration::from_secs(1);
/// Largest file whose contents are cached.
pub(crate) const MAX_FILE: u64 = 1 << 20;
/// Bytes of file contents cached per static route.
const MAX_BYTES: u64 = 32 << 20;
/// Entries cached per static route.
const MAX_ENTRIES: usize = 10_000;

/// What a path was found to be.
#[derive(Clone)]
pub(crate) enum Cached {
    /// A regular file, with its contents.
    File(Arc<FileEntry>),
    /// A directory.
    Dir,
}

struct Slot {
    what: Cached,
    at: Instant,
}

impl Slot {
    fn bytes(&self) -> u64 {
        match &self.what {
            Cached::File(f) => f.content.as_ref().map_or(0, |c| c.len() as u64),
            Cached::Dir => 0,
        }
    }
}

#[derive(Default)]
struct Inner {
    slots: HashMap<Box<str>, Slot>,
    bytes: u64,
}

/// The cache of one static route.
#[derive(Default)]
pub(crate) struct FileCache {
    inner: Mutex<Inner>,
}

impl FileCache {
    /// The entry for `path` (relative to the root, as [`crate::path::relative_path`] gives it), if there is
    /// one younger than [`VALID_FOR`].
    pub(crate) fn get(&self, path: &str) -> Option<Cached> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = inner.slots.get(path)?;
        (slot.at.elapsed() < VALID_FOR).then(|| slot.what.clone())
    }

    /// Remembers what `path` is now, replacing any older entry, if it fits.
    pub(crate) fn put(&self, path: &str, what: Cached) {
        let slot = Slot { what, at: Instant::now() };
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = inner.slots.remove(path) {
            inner.bytes -= old.bytes();
        }
        if inner.slots.len() >= MAX_ENTRIES || inner.bytes + slot.bytes() > MAX_BYTES {
            return;
        }
        inner.bytes += slot.bytes();
        inner.slots.insert(path.into(), slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_are_bounded() {
        let cache = FileCache::default();
        cache.put("a", Cached::Dir);
        assert!(matches!(cache.get("a"), Some(Cached::Dir)));
        assert!(cache.get("b").is_none());
        {
            let mut inner = cache.inner.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = inner.slots.get_mut("a") {
                slot.at -= VALID_FOR;
            }
        }
        assert!(cache.get("a").is_none(), "an entry older than VALID_FOR is a miss");
        for i in 0..MAX_ENTRIES + 10 {
            cache.put(&i.to_string(), Cached::Dir);
        }
        assert_eq!(cache.inner.lock().unwrap_or_else(PoisonError::into_inner).slots.len(), MAX_ENTRIES);
    }
}
