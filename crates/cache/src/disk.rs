//! The disk tier: one tenant's stored responses in a redb file (`data_dir/http-cache/TENANT.redb`), so that a restart
//! or a deploy does not empty the cache and send every request to the origin at once.
//!
//! The memory tier stays in front: a response is stored in both, a memory miss looks here (on a blocking
//! thread) and brings what it finds back into memory. Writes leave the request's path: they go to one writer
//! thread that commits whatever is waiting in one durable transaction. The index of what is on disk (URL, size,
//! age, tags) is in memory, read back from the file at start, so a miss that is not on disk costs no disk read,
//! and purges by path or tag find entries stored before the restart.
//!
//! Eviction is first in, first out by the time of the last store: what is read often lives in the memory tier
//! anyway, and FIFO needs no write on a read (foyer and CacheLib's large-object caches evict regions the same
//! way).

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::freshness::Freshness;
use crate::store::{HitFields, Stored, Variants};

/// URL key → its [`Record`] (postcard).
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// URL key → the bodies of its variants, one after another.
const BODIES: TableDefinition<&str, &[u8]> = TableDefinition::new("bodies");

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 256;
/// Bytes of bodies waiting for the writer beyond which a store skips the disk (the disk is slower than the
/// traffic); what was on disk for that URL is removed, so the disk never serves an older answer.
const MAX_QUEUED: u64 = 64 << 20;
/// Bytes of redb's own page cache per file: the memory tier is the cache of what is hot.
const PAGE_CACHE: usize = 4 << 20;

/// Why the disk tier could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cache file {}: {reason}", path.display())]
pub(crate) struct DiskError {
    path: PathBuf,
    reason: String,
}

/// What is stored for one URL, beside its bodies.
#[derive(Serialize, Deserialize)]
struct Record {
    /// When it was stored, in store order: eviction goes oldest first.
    seq: u64,
    variants: Vec<RecordedVariant>,
}

#[derive(Serialize, Deserialize)]
struct RecordedVariant {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body_len: u64,
    freshness: Freshness,
    varied: Vec<(String, Option<Vec<u8>>)>,
    tags: Vec<String>,
}

impl RecordedVariant {
    fn of(stored: &Stored) -> RecordedVariant {
        let pair = |(n, v): (&HeaderName, &HeaderValue)| (n.as_str().to_string(), v.as_bytes().to_vec());
        RecordedVariant {
            status: stored.status.as_u16(),
            headers: stored.headers.iter().map(pair).collect(),
            body_len: stored.body.len() as u64,
            freshness: stored.freshness.clone(),
            varied: stored
                .varied
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.as_ref().map(|v| v.as_bytes().to_vec())))
                .collect(),
            tags: stored.tags.clone(),
        }
    }

    /// The stored response, with `body`; `None` if the file holds something this version cannot read.
    fn into_stored(self, body: Bytes) -> Option<Stored> {
        let name = |n: &str| HeaderName::from_bytes(n.as_bytes()).ok();
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (n, v) in self.headers {
            headers.append(name(&n)?, HeaderValue::from_bytes(&v).ok()?);
        }
        let mut varied = Vec::with_capacity(self.varied.len());
        for (n, v) in self.varied {
            let value = match v {
                Some(v) => Some(HeaderValue::from_bytes(&v).ok()?),
                None => None,
            };
            varied.push((name(&n)?, value));
        }
        Some(Stored {
            status: StatusCode::from_u16(self.status).ok()?,
            headers,
            body,
            freshness: self.freshness,
            varied,
            tags: self.tags,
            hit_fields: HitFields::default(),
        })
    }
}

/// What the writer thread does.
enum Write {
    Put {
        key: String,
        seq: u64,
        record: Vec<u8>,
        bodies: Vec<Bytes>,
    },
    Remove(String),
    /// Answers once every write before it is committed.
    Flush(Sender<()>),
    /// Stops the writer (after the writes before it), closing its handle on the file, then answers.
    Close(Sender<()>),
}

/// What the tier knows of one stored URL without reading the file.
struct Entry {
    /// Its place in the store order.
    seq: u64,
    bytes: u64,
    /// The `Surrogate-Key` tags of its variants.
    tags: Box<[String]>,
}

/// Every stored URL, and the store order.
#[derive(Default)]
struct Index {
    entries: HashMap<String, Entry>,
    order: BTreeMap<u64, String>,
    next: u64,
    bytes: u64,
}

impl Index {
    fn add(&mut self, key: String, entry: Entry) {
        self.next = self.next.max(entry.seq + 1);
        self.bytes += entry.bytes;
        self.order.insert(entry.seq, key.clone());
        self.entries.insert(key, entry);
    }

    fn forget(&mut self, key: &str) -> bool {
        let Some(entry) = self.entries.remove(key) else { return false };
        self.order.remove(&entry.seq);
        self.bytes -= entry.bytes;
        true
    }
}

/// One tenant's disk tier.
pub(crate) struct DiskTier {
    path: PathBuf,
    /// `None` while the file is handed to another process (see [`DiskTier::release`]).
    db: RwLock<Option<Arc<Database>>>,
    max_size: AtomicU64,
    index: Mutex<Index>,
    writer: Mutex<Sender<Write>>,
    /// Bytes of bodies sent to the writer and not yet committed.
    queued: Arc<AtomicU64>,
    /// Stores sent to the writer and not yet committed, by key (with their place in the store order), so that
    /// a read meanwhile finds them.
    pending: Arc<Pending>,
    /// Set when a write failed or the file proved damaged: the file no longer says what was purged, so it is
    /// deleted and the tier set aside (the memory tier goes on alone).
    broken: Arc<AtomicBool>,
    /// Set while the file is let go for a process taking over from this one: the tier is left alone (the
    /// memory tier goes on), and the file is not this process's to delete.
    released: AtomicBool,
    /// Retries opening a file another process holds for this long (a process taking over from another).
    patience: Duration,
}

/// Stores on their way to the file.
type Pending = Mutex<HashMap<String, (u64, Arc<Variants>)>>;

impl std::fmt::Debug for DiskTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskTier").field("path", &self.path).field("bytes", &self.bytes()).finish()
    }
}

impl DiskTier {
    /// Opens (or creates) the tier at `path`, holding at most `max_size` bytes. A file that cannot be read as a
    /// cache (damaged, or from an incompatible version) is started afresh: it is only a cache.
    /// A file another process holds is tried again for `patience` (the process this one takes over from
    /// lets go of it at the start of the hand-over).
    pub(crate) fn open(path: &Path, max_size: u64, patience: Duration) -> Result<DiskTier, DiskError> {
        let error = |reason: String| DiskError { path: path.to_path_buf(), reason };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| error(format!("creating its directory: {e}")))?;
        }
        let (db, index) = match open_patiently(path, max_size, patience) {
            Ok(opened) => opened,
            Err(OpenError::Held(e) | OpenError::Refused(e)) => return Err(error(e)),
            Err(OpenError::Unreadable(e)) => {
                tracing::warn!(file = %path.display(), "cache file unreadable ({e}); starting it afresh");
                std::fs::remove_file(path).map_err(|e| error(format!("removing the unreadable file: {e}")))?;
                open_and_index(path, max_size).map_err(|e| error(e.to_string()))?
            }
        };
        let broken = Arc::new(AtomicBool::new(false));
        let db = Arc::new(db);
        let queued = Arc::new(AtomicU64::new(0));
        let pending = Arc::new(Pending::default());
        let writer = Writer {
            db: db.clone(),
            queued: queued.clone(),
            pending: pending.clone(),
            broken: broken.clone(),
            path: path.to_path_buf(),
        };
        let writer = writer.start().map_err(|e| error(format!("starting its writer: {e}")))?;
        let tier = DiskTier {
            path: path.to_path_buf(),
            db: RwLock::new(Some(db)),
            max_size: AtomicU64::new(max_size),
            index: Mutex::new(index),
            writer: Mutex::new(writer),
            queued,
            pending,
            broken,
            released: AtomicBool::new(false),
            patience,
        };
        tier.evict();
        Ok(tier)
    }

    /// Lets go of the file for a process taking over from this one: what was sent is committed first, then
    /// the writer stops and the file closes (once reads under way end). Until [`DiskTier::reacquire`], the
    /// tier stores and finds nothing; the memory tier goes on.
    pub(crate) fn release(&self, timeout: Duration) {
        self.flush(timeout);
        {
            // Under the index lock: a store under way finishes sending first, and no other starts.
            let _index = self.index();
            self.released.store(true, Ordering::Release);
        }
        let (done, closed) = channel();
        if lock(&self.writer).send(Write::Close(done)).is_ok() {
            let _ = closed.recv_timeout(timeout);
        }
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = None;
        lock(&self.pending).clear();
    }

    /// Opens the file again after a [`DiskTier::release`] (the process that was to take over did not): the
    /// index is read back from it, since the other process may have changed it.
    pub(crate) fn reacquire(&self) {
        if !self.released.load(Ordering::Acquire) || self.is_broken() {
            return;
        }
        let max_size = self.max_size.load(Ordering::Relaxed);
        let reopened =
            open_patiently(&self.path, max_size, self.patience).map_err(|e| e.to_string()).and_then(|(db, index)| {
                let db = Arc::new(db);
                let writer = Writer {
                    db: db.clone(),
                    queued: self.queued.clone(),
                    pending: self.pending.clone(),
                    broken: self.broken.clone(),
                    path: self.path.clone(),
                };
                Ok((db, index, writer.start().map_err(|e| e.to_string())?))
            });
        match reopened {
            Ok((db, index, writer)) => {
                let mut current = self.index();
                *current = index;
                *lock(&self.writer) = writer;
                *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(db);
                self.released.store(false, Ordering::Release);
                drop(current);
                self.evict();
            }
            Err(e) => {
                tracing::error!(file = %self.path.display(), "cache disk tier not opened again, memory only: {e}")
            }
        }
    }

    /// A new bound (a reload changed `cache.disk`); takes effect now.
    pub(crate) fn set_max_size(&self, max_size: u64) {
        self.max_size.store(max_size, Ordering::Relaxed);
        self.evict();
    }

    /// The keys stored with `tag`.
    pub(crate) fn tagged(&self, tag: &str) -> Vec<String> {
        if self.is_released() {
            return Vec::new();
        }
        let index = self.index();
        index.entries.iter().filter(|(_, e)| e.tags.iter().any(|t| t == tag)).map(|(k, _)| k.clone()).collect()
    }

    /// Whether something is stored for `key`.
    pub(crate) fn contains(&self, key: &str) -> bool {
        !self.is_broken() && !self.is_released() && self.index().entries.contains_key(key)
    }

    fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    /// Every key stored.
    pub(crate) fn keys(&self) -> Vec<String> {
        if self.is_released() {
            return Vec::new();
        }
        self.index().entries.keys().cloned().collect()
    }

    /// Bytes stored.
    pub(crate) fn bytes(&self) -> u64 {
        self.index().bytes
    }

    /// Reads what is stored for `key` (blocks on the disk, unless it is still on its way there).
    pub(crate) fn read(&self, key: &str) -> Option<Arc<Variants>> {
        if self.is_broken() || self.is_released() {
            return None;
        }
        if let Some((_, variants)) = lock(&self.pending).get(key) {
            return Some(variants.clone());
        }
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner).clone()?;
        let read = || -> Result<Option<Arc<Variants>>, redb::Error> {
            let txn = db.begin_read()?;
            let Some(record) = txn.open_table(RECORDS)?.get(key)? else { return Ok(None) };
            let Some(bodies) = txn.open_table(BODIES)?.get(key)? else { return Ok(None) };
            let Ok(record) = postcard::from_bytes::<Record>(record.value()) else { return Ok(None) };
            let bodies = Bytes::copy_from_slice(bodies.value());
            let mut at = 0usize;
            let mut variants = Vec::with_capacity(record.variants.len());
            for variant in record.variants {
                let end = usize::try_from(variant.body_len).ok().and_then(|n| at.checked_add(n));
                let Some(end) = end.filter(|end| *end <= bodies.len()) else { return Ok(None) };
                let Some(stored) = variant.into_stored(bodies.slice(at..end)) else { return Ok(None) };
                variants.push(Arc::new(stored));
                at = end;
            }
            Ok(Some(Arc::new(Variants(variants))))
        };
        // redb panics on some kinds of damage: that costs this tier, never the process.
        match catch_unwind(AssertUnwindSafe(read)) {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!(file = %self.path.display(), "cache file: cannot read an entry: {e}");
                None
            }
            Err(_) => {
                set_aside(&self.broken, &self.path, "reading it panicked (the file is damaged)");
                None
            }
        }
    }

    /// Stores `variants` for `key` (on the writer thread, soon). One that does not fit (larger than a quarter of
    /// the tier, or the writer is behind) is not stored, and what was stored for `key` goes.
    pub(crate) fn put(&self, key: &str, variants: &Arc<Variants>) {
        if self.is_broken() || self.is_released() {
            return;
        }
        let bodies: Vec<Bytes> = variants.0.iter().map(|s| s.body.clone()).collect();
        let body_bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
        let mut index = self.index();
        let seq = index.next;
        let recorded = variants.0.iter().map(|s| RecordedVariant::of(s)).collect();
        let Ok(record) = postcard::to_allocvec(&Record { seq, variants: recorded }) else { return };
        let weight = record.len() as u64 + body_bytes + key.len() as u64;
        let too_big = weight > self.max_size.load(Ordering::Relaxed) / 4;
        if too_big || self.queued.load(Ordering::Relaxed) + body_bytes > MAX_QUEUED {
            drop(index);
            return self.remove(key);
        }
        index.forget(key);
        self.queued.fetch_add(body_bytes, Ordering::Relaxed);
        lock(&self.pending).insert(key.to_string(), (seq, variants.clone()));
        self.send(Write::Put { key: key.to_string(), seq, record, bodies });
        let tags = variants.0.iter().flat_map(|s| s.tags.iter().cloned()).collect();
        index.add(key.to_string(), Entry { seq, bytes: weight, tags });
        drop(index);
        self.evict();
    }

    /// Removes what is stored for `key`.
    pub(crate) fn remove(&self, key: &str) {
        if self.is_released() {
            return;
        }
        let mut index = self.index();
        lock(&self.pending).remove(key);
        if index.forget(key) {
            // Sent under the index lock, so that writes reach the file in the order the index saw them.
            self.send(Write::Remove(key.to_string()));
        }
    }

    /// Waits (at most `timeout`) until every write sent so far is committed.
    pub(crate) fn flush(&self, timeout: Duration) {
        let (done, flushed) = channel();
        self.send(Write::Flush(done));
        let _ = flushed.recv_timeout(timeout);
    }

    /// Deletes the file (the tenant, or its disk tier, is gone). Requests still in flight through this tier
    /// write to the unlinked file until they end; a tier opened for the tenant again starts a new file.
    pub(crate) fn retire(&self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(file = %self.path.display(), "cache file not deleted: {e}");
        }
    }

    /// Drops the oldest entries until the tier is within its bound.
    fn evict(&self) {
        let max_size = self.max_size.load(Ordering::Relaxed);
        let mut index = self.index();
        while index.bytes > max_size {
            let Some((_, key)) = index.order.pop_first() else { break };
            if let Some(entry) = index.entries.remove(&key) {
                index.bytes -= entry.bytes;
            }
            lock(&self.pending).remove(&key);
            self.send(Write::Remove(key));
            metrics::counter!("palisade_cache_disk_evictions_total").increment(1);
        }
    }

    fn send(&self, write: Write) {
        // The writer ends only when this tier is dropped, when it has set the tier aside, or when the file was
        // let go (then it is another process's, and not to be deleted).
        if lock(&self.writer).send(write).is_err() && !self.is_released() {
            set_aside(&self.broken, &self.path, "its writer stopped");
        }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        lock(&self.index)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

enum OpenError {
    /// Another process (or a tier not yet closed) holds the file.
    Held(String),
    /// The file cannot be opened: the system refuses.
    Refused(String),
    /// The file is not a cache this version can read.
    Unreadable(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Held(e) | OpenError::Refused(e) | OpenError::Unreadable(e) => f.write_str(e),
        }
    }
}

/// [`open_and_index`], trying again for `patience` while another process holds the file.
fn open_patiently(path: &Path, max_size: u64, patience: Duration) -> Result<(Database, Index), OpenError> {
    let started = std::time::Instant::now();
    loop {
        match open_and_index(path, max_size) {
            Err(OpenError::Held(_)) if started.elapsed() < patience => std::thread::sleep(Duration::from_millis(20)),
            Err(OpenError::Held(e)) => return Err(OpenError::Refused(e)),
            opened => return opened,
        }
    }
}

/// Opens the file and reads its index back; a file damaged so that redb panics is unreadable too.
fn open_and_index(path: &Path, max_size: u64) -> Result<(Database, Index), OpenError> {
    catch_unwind(|| open_and_index_once(path, max_size))
        .unwrap_or_else(|_| Err(OpenError::Unreadable("damaged (reading it panicked)".to_string())))
}

fn open_and_index_once(path: &Path, max_size: u64) -> Result<(Database, Index), OpenError> {
    let mut db = match Database::builder().set_cache_size(PAGE_CACHE).create(path) {
        Ok(db) => db,
        Err(e @ (redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch)) => {
            return Err(OpenError::Held(format!("{e} (is another palisade using this data_dir?)")));
        }
        // A file that is not a redb database at all comes back as an I/O error of its own kind.
        Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
            if !matches!(e.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof) =>
        {
            return Err(OpenError::Refused(e.to_string()));
        }
        Err(e) => return Err(OpenError::Unreadable(e.to_string())),
    };
    // Copy-on-write pages and freed space make the file grow past what it holds; at start, nothing else uses
    // it, so it is compacted when it has grown past twice its bound.
    if std::fs::metadata(path).is_ok_and(|m| m.len() > max_size.saturating_mul(2))
        && let Err(e) = db.compact()
    {
        tracing::warn!(file = %path.display(), "cache file not compacted: {e}");
    }
    let index = read_index(&db).map_err(|e| OpenError::Unreadable(e.to_string()))?;
    Ok((db, index))
}

/// Creates the tables if they are not there, and reads the index back; records this version cannot decode
/// are removed.
fn read_index(db: &Database) -> Result<Index, redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(RECORDS)?;
    txn.open_table(BODIES)?;
    txn.commit()?;
    let mut index = Index::default();
    let mut undecodable = Vec::new();
    let txn = db.begin_read()?;
    for entry in txn.open_table(RECORDS)?.iter()? {
        let (key, value) = entry?;
        let key = key.value().to_string();
        let Ok(record) = postcard::from_bytes::<Record>(value.value()) else {
            undecodable.push(key);
            continue;
        };
        let body_bytes: u64 = record.variants.iter().map(|v| v.body_len).sum();
        let bytes = value.value().len() as u64 + body_bytes + key.len() as u64;
        let tags = record.variants.into_iter().flat_map(|v| v.tags).collect();
        index.add(key, Entry { seq: record.seq, bytes, tags });
    }
    drop(txn);
    if !undecodable.is_empty() {
        let txn = db.begin_write()?;
        {
            let (mut records, mut bodies) = (txn.open_table(RECORDS)?, txn.open_table(BODIES)?);
            for key in &undecodable {
                records.remove(key.as_str())?;
                bodies.remove(key.as_str())?;
            }
        }
        txn.commit()?;
    }
    Ok(index)
}

/// Sets a tier aside for good: logged once, counted, and its file deleted (what it holds can no longer be
/// trusted to reflect the purges made since).
fn set_aside(broken: &AtomicBool, path: &Path, why: &str) {
    if broken.swap(true, Ordering::Relaxed) {
        return;
    }
    let removed = match std::fs::remove_file(path) {
        Ok(()) => "deleted".to_string(),
        Err(e) => format!("NOT deleted ({e}): delete it before the next start"),
    };
    tracing::error!(file = %path.display(), "cache disk tier set aside: {why}; the file is {removed}; the memory tier goes on");
    metrics::counter!("palisade_cache_disk_errors_total").increment(1);
}

/// The writer thread's side of a tier.
struct Writer {
    db: Arc<Database>,
    queued: Arc<AtomicU64>,
    pending: Arc<Pending>,
    broken: Arc<AtomicBool>,
    path: PathBuf,
}

impl Writer {
    /// Starts the writer's thread; the sender is how the tier reaches it.
    fn start(self) -> std::io::Result<Sender<Write>> {
        let (writer, writes) = channel();
        std::thread::Builder::new().name("palisade-cache-disk".into()).spawn(move || {
            let closed = self.run(&writes);
            // Its handle on the file goes before the tier hears that it has.
            drop(self);
            if let Some(done) = closed {
                let _ = done.send(());
            }
        })?;
        Ok(writer)
    }

    /// Waits for a write, takes every other one waiting (up to [`MAX_GROUP`]), applies them in one durable
    /// transaction. Ends when its tier is dropped, after the last writes, or when a write fails (the tier is
    /// set aside then).
    fn run(&self, writes: &Receiver<Write>) -> Option<Sender<()>> {
        while let Ok(first) = writes.recv() {
            let mut group = vec![first];
            group.extend(writes.try_iter().take(MAX_GROUP - 1));
            // What the stores in this group added to `queued`, taken off whatever becomes of the commit.
            let dequeued: u64 = group
                .iter()
                .map(|w| match w {
                    Write::Put { bodies, .. } => bodies.iter().map(|b| b.len() as u64).sum(),
                    Write::Remove(_) | Write::Flush(_) | Write::Close(_) => 0,
                })
                .sum();
            let mut flushed = Vec::new();
            let mut committed = Vec::new();
            let mut closing = None;
            let result =
                catch_unwind(AssertUnwindSafe(|| self.commit(group, &mut flushed, &mut committed, &mut closing)));
            self.queued.fetch_sub(dequeued, Ordering::Relaxed);
            let failure = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("a write failed: {e}")),
                Err(_) => Some("a write panicked (the file is damaged)".to_string()),
            };
            // Readable from the file now (or never, the tier set aside): no longer held here, unless stored again.
            let mut on_way = lock(&self.pending);
            for (key, seq) in committed {
                if on_way.get(&key).is_some_and(|(s, _)| *s == seq) {
                    on_way.remove(&key);
                }
            }
            drop(on_way);
            for done in flushed {
                let _ = done.send(());
            }
            if let Some(why) = failure {
                set_aside(&self.broken, &self.path, &why);
                lock(&self.pending).clear();
                return closing;
            }
            if closing.is_some() {
                return closing;
            }
        }
        None
    }

    fn commit(
        &self,
        group: Vec<Write>,
        flushed: &mut Vec<Sender<()>>,
        committed: &mut Vec<(String, u64)>,
        closing: &mut Option<Sender<()>>,
    ) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            let mut records = txn.open_table(RECORDS)?;
            let mut bodies = txn.open_table(BODIES)?;
            for write in group {
                match write {
                    Write::Put { key, seq, record, bodies: parts } => {
                        let mut joined = Vec::with_capacity(parts.iter().map(Bytes::len).sum());
                        parts.iter().for_each(|b| joined.extend_from_slice(b));
                        records.insert(key.as_str(), record.as_slice())?;
                        bodies.insert(key.as_str(), joined.as_slice())?;
                        committed.push((key, seq));
                    }
                    Write::Remove(key) => {
                        records.remove(key.as_str())?;
                        bodies.remove(key.as_str())?;
                    }
                    Write::Flush(done) => flushed.push(done),
                    Write::Close(done) => *closing = Some(done),
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::directives::Directives;

    fn stored(body: &[u8], tag: &str) -> Arc<Stored> {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("max-age=600"));
        headers.insert(http::header::ETAG, HeaderValue::from_static("\"v1\""));
        let (directives, targeted) = Directives::for_edge(&headers);
        let now = SystemTime::now();
        let freshness = Freshness::of(StatusCode::OK, &headers, &directives, targeted, now, now);
        let varied = vec![(http::header::ACCEPT_ENCODING, Some(HeaderValue::from_static("gzip")))];
        Arc::new(Stored {
            status: StatusCode::OK,
            headers,
            body: Bytes::copy_from_slice(body),
            freshness,
            varied,
            tags: vec![tag.into()],
            hit_fields: HitFields::default(),
        })
    }

    #[test]
    fn stores_reads_evicts_oldest_first_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache/t.redb");
        let tier = DiskTier::open(&path, 2 << 20, Duration::ZERO).unwrap();
        let body = vec![b'x'; 200_000];
        for i in 0..20 {
            tier.put(
                &format!("h/{i}"),
                &Arc::new(Variants(vec![stored(&body, if i % 2 == 0 { "even" } else { "odd" })])),
            );
        }
        tier.flush(Duration::from_secs(10));
        let kept: Vec<usize> = (0..20).filter(|i| tier.contains(&format!("h/{i}"))).collect();
        assert_eq!(kept, (10..20).collect::<Vec<_>>(), "2 MiB holds the last ten of 200 KB");
        assert!(tier.bytes() <= 2 << 20);
        let read = tier.read("h/19").unwrap();
        let first = &read.0[0];
        assert_eq!((first.status, first.body.len(), first.tags.clone()), (StatusCode::OK, 200_000, vec!["odd".into()]));
        assert_eq!(first.headers.get(http::header::ETAG).unwrap(), "\"v1\"");
        assert_eq!(first.freshness.lifetime, Duration::from_secs(600));
        assert!(
            first.matches(&HeaderMap::from_iter([(http::header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"))]))
        );
        assert!(tier.read("h/3").is_none());
        tier.remove("h/19");
        drop(tier);

        // The writer lets go of the file once its last writes are in.
        let reopened = loop {
            match DiskTier::open(&path, 2 << 20, Duration::ZERO) {
                Ok(tier) => break tier,
                Err(e) if e.to_string().contains("already open") => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("{e}"),
            }
        };
        let mut tagged = reopened.tagged("even");
        tagged.sort();
        assert_eq!(tagged, ["h/10", "h/12", "h/14", "h/16", "h/18"]);
        assert!(!reopened.contains("h/19") && reopened.contains("h/18"));
        assert_eq!(reopened.read("h/18").unwrap().0[0].body.len(), 200_000);
        // A smaller bound drops the oldest at once; a new store goes after the ones read back.
        reopened.set_max_size(1 << 20);
        assert!(!reopened.contains("h/10") && reopened.contains("h/18"));
        reopened.put("h/new", &Arc::new(Variants(vec![stored(b"new", "even")])));
        reopened.set_max_size(100_000);
        let left: Vec<String> = reopened.keys();
        assert_eq!(left, ["h/new"], "the newest store is the last to go");
    }

    /// A hand-over: the tier lets go of its file, another process opens it (waiting while it is held), changes
    /// it and lets go; the first takes it back, as the other left it, and neither deletes it.
    #[test]
    fn a_released_file_is_opened_by_another_and_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache/t.redb");
        let tier = DiskTier::open(&path, 2 << 20, Duration::from_secs(10)).unwrap();
        tier.put("h/a", &Arc::new(Variants(vec![stored(b"a", "t")])));
        let waiting = std::thread::spawn({
            let path = path.clone();
            move || DiskTier::open(&path, 2 << 20, Duration::from_secs(10))
        });
        std::thread::sleep(Duration::from_millis(100));
        tier.release(Duration::from_secs(10));
        // Released: it finds and keeps nothing, and the file stays.
        assert!(tier.read("h/a").is_none() && !tier.contains("h/a") && tier.keys().is_empty());
        tier.put("h/lost", &Arc::new(Variants(vec![stored(b"x", "t")])));
        tier.remove("h/a");
        let other = waiting.join().unwrap().unwrap();
        assert_eq!(other.read("h/a").unwrap().0[0].body.as_ref(), b"a");
        assert!(!other.contains("h/lost"));
        other.put("h/b", &Arc::new(Variants(vec![stored(b"b", "t")])));
        other.remove("h/a");
        drop(other);
        tier.reacquire();
        assert!(!tier.contains("h/a"));
        assert_eq!(tier.read("h/b").unwrap().0[0].body.as_ref(), b"b");
        assert!(path.exists());
    }

    #[test]
    fn a_damaged_file_costs_the_tier_at_most_never_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let tier = DiskTier::open(&path, 8 << 20, Duration::ZERO).unwrap();
        for i in 0..40 {
            tier.put(&format!("h/{i}"), &Arc::new(Variants(vec![stored(&[b'a' + (i % 26) as u8; 20_000], "t")])));
        }
        tier.flush(Duration::from_secs(10));
        drop(tier);
        std::thread::sleep(Duration::from_millis(200));
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        for (i, b) in bytes[len / 3..len / 3 + 8192].iter_mut().enumerate() {
            *b = (i * 7919 % 251) as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
        // Opened afresh or as it is; what is read is what was stored, or nothing.
        let tier = DiskTier::open(&path, 8 << 20, Duration::ZERO).unwrap();
        for i in 0..40 {
            if let Some(v) = tier.read(&format!("h/{i}")) {
                assert!(v.0[0].body.iter().all(|b| *b == b'a' + (i % 26) as u8));
            }
        }
        tier.put("h/new", &Arc::new(Variants(vec![stored(b"new", "t")])));
        tier.flush(Duration::from_secs(10));
    }

    #[test]
    fn an_unreadable_file_is_started_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        std::fs::write(&path, b"not a database").unwrap();
        let tier = DiskTier::open(&path, 1 << 20, Duration::ZERO).unwrap();
        assert_eq!(tier.bytes(), 0);
        tier.put("h/a", &Arc::new(Variants(vec![stored(b"a", "t")])));
        assert_eq!(tier.read("h/a").map(|v| v.0[0].body.clone()), Some(Bytes::from_static(b"a")), "readable at once");
    }
}
