//! One tenant's stored responses: a size-bounded map from URL to the variants stored for it.
//!
//! The map is moka's (W-TinyLFU admission and eviction, weighed in bytes), one per tenant: a tenant's traffic
//! can only ever evict its own entries, and no key of one tenant can reach another's map.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::AGE;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use moka::notification::RemovalCause;

use crate::disk::DiskTier;
use crate::freshness::Freshness;
use crate::status::CacheStatus;

/// The most variants (`Vary`) kept for one URL; the oldest goes first.
const MAX_VARIANTS: usize = 8;

/// Bytes counted for an entry beyond its body and fields (the map's own bookkeeping).
const ENTRY_OVERHEAD: usize = 256;

/// A stored response.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) status: StatusCode,
    /// Its fields as clients get them (hop-by-hop and edge-only fields removed).
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) freshness: Freshness,
    /// The request's values of the fields its `Vary` names, to match later requests against.
    pub(crate) varied: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Its `Surrogate-Key` tags, for purges.
    pub(crate) tags: Vec<String>,
    /// The fields of a plain hit on it, made once for each second of its age.
    pub(crate) hit_fields: HitFields,
}

/// A plain hit's fields (the stored ones, `Age` and `Cache-Status`), kept for the second of age they were
/// made for: most hits then copy one map, instead of formatting two fields and inserting them into a copy.
#[derive(Debug, Default)]
pub(crate) struct HitFields(RwLock<Option<(u64, HeaderMap)>>);

impl Stored {
    /// Whether a request with `request` headers selects this variant (RFC 9111 §4.1).
    pub(crate) fn matches(&self, request: &HeaderMap) -> bool {
        self.varied.iter().all(|(name, value)| normalised(request, name) == *value)
    }

    /// A copy that is stale from `now` on (a soft purge): its stale windows count from now.
    fn expired(&self, now: SystemTime) -> Stored {
        Stored {
            status: self.status,
            headers: self.headers.clone(),
            body: self.body.clone(),
            freshness: self.freshness.expired(now),
            varied: self.varied.clone(),
            tags: self.tags.clone(),
            hit_fields: HitFields::default(),
        }
    }

    /// The fields a fresh hit on it gets at `now`: its own, `Age`, and `Cache-Status` with the time to live.
    pub(crate) fn hit_fields(&self, now: SystemTime) -> HeaderMap {
        let age = self.freshness.age(now).as_secs();
        if let Some((made_at, fields)) = &*self.hit_fields.0.read().unwrap_or_else(PoisonError::into_inner)
            && *made_at == age
        {
            return fields.clone();
        }
        let fields = self.fields_at(age, CacheStatus::hit(self.freshness.ttl_after(age)));
        *self.hit_fields.0.write().unwrap_or_else(PoisonError::into_inner) = Some((age, fields.clone()));
        fields
    }

    /// Its fields as an answer at `now`: its own, `Age`, and `status` added to `Cache-Status`.
    pub(crate) fn fields(&self, now: SystemTime, status: CacheStatus) -> HeaderMap {
        self.fields_at(self.freshness.age(now).as_secs(), status)
    }

    fn fields_at(&self, age: u64, status: CacheStatus) -> HeaderMap {
        let mut headers = self.headers.clone();
        headers.insert(AGE, HeaderValue::from(age));
        status.add_to(&mut headers);
        headers
    }

    fn weight(&self) -> usize {
        let fields: usize = self.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
        let varied: usize = self.varied.iter().map(|(n, v)| n.as_str().len() + v.as_ref().map_or(0, |v| v.len())).sum();
        self.body.len() + fields + varied + ENTRY_OVERHEAD
    }
}

/// The values of `name` in `headers`, combined into one (RFC 9110 §5.3) with spaces after commas normalised, so
/// that `gzip,br` and `gzip, br` select the same variant. Bytes are compared as they are: values that are not
/// visible ASCII stay apart from each other, and an empty value from an absent one.
pub(crate) fn normalised(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let mut combined = Vec::new();
    for (i, part) in values.flat_map(|v| v.as_bytes().split(|b| *b == b',')).enumerate() {
        if i > 0 {
            combined.extend_from_slice(b", ");
        }
        combined.extend_from_slice(part.trim_ascii());
    }
    // Made of valid values' bytes, trimmed and joined, so itself valid.
    HeaderValue::from_bytes(&combined).ok()
}

/// The variants stored for one URL, most recent first.
#[derive(Debug, Default)]
pub(crate) struct Variants(pub(crate) Vec<Arc<Stored>>);

/// One tenant's cache.
pub struct TenantCache {
    tenant: Arc<str>,
    max_size: u64,
    map: moka::sync::Cache<String, Arc<Variants>, foldhash::quality::RandomState>,
    /// The disk tier behind the memory one, if the tenant has `cache.disk`.
    disk: Option<Arc<DiskTier>>,
    max_object: usize,
    /// Its metrics, registered once: a label lookup per request would cost more than the hit itself.
    pub(crate) metrics: CacheMetrics,
    /// `Surrogate-Key` tag → the keys stored with it. A superset: keys evicted or replaced since stay until
    /// the index is rebuilt (when it outgrows the map), and a purge checks each key's current entry.
    tags: Mutex<HashMap<String, HashSet<String>>>,
}

impl std::fmt::Debug for TenantCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantCache").field("tenant", &self.tenant).field("bytes", &self.bytes()).finish()
    }
}

impl TenantCache {
    /// A cache for `tenant` holding at most `max_size` bytes in memory (and what `disk` holds behind it); a
    /// response larger than a quarter of `max_size` is passed through without being stored.
    fn new(tenant: &str, max_size: u64, disk: Option<Arc<DiskTier>>) -> TenantCache {
        let label = tenant.to_string();
        let map = moka::sync::Cache::builder()
            .max_capacity(max_size)
            .weigher(|_key: &String, variants: &Arc<Variants>| {
                let bytes: usize = variants.0.iter().map(|s| s.weight()).sum();
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |_key, _value, cause| {
                if matches!(cause, RemovalCause::Size) {
                    metrics::counter!("palisade_cache_evictions_total", "tenant" => label.clone()).increment(1);
                }
            })
            // Keys are the clients' URLs: a seeded hash, and a fast one (SipHash costs a few hundred
            // instructions a hit).
            .build_with_hasher(foldhash::quality::RandomState::default());
        let max_object = usize::try_from(max_size / 4).unwrap_or(usize::MAX);
        let metrics = CacheMetrics::new(tenant);
        TenantCache { tenant: Arc::from(tenant), max_size, map, disk, max_object, metrics, tags: Mutex::default() }
    }

    /// The tenant this cache belongs to.
    pub fn tenant(&self) -> &Arc<str> {
        &self.tenant
    }

    /// The largest body it stores.
    pub(crate) fn max_object(&self) -> usize {
        self.max_object
    }

    /// The variants stored for `key`: from memory, or else from the disk tier (read on a blocking thread, and
    /// kept in memory from then on).
    pub(crate) async fn get(&self, key: &str) -> Option<Arc<Variants>> {
        if let Some(variants) = self.map.get(key) {
            return Some(variants);
        }
        let disk = self.disk.as_ref().filter(|d| d.contains(key))?.clone();
        let read_key = key.to_string();
        let variants = tokio::task::spawn_blocking(move || disk.read(&read_key)).await.ok().flatten()?;
        // Tags indexed before a restart are on the disk's index; in memory now, they are this one's too (the
        // disk may drop the entry first).
        let tags: Vec<String> = variants.0.iter().flat_map(|s| s.tags.iter().cloned()).collect();
        self.index_tags(key, &tags);
        self.map.insert(key.to_string(), variants.clone());
        self.metrics.disk_reads.increment(1);
        Some(variants)
    }

    /// [`TenantCache::get`] for callers that may block (purges): a disk read happens on this thread.
    fn get_blocking(&self, key: &str) -> Option<Arc<Variants>> {
        self.map.get(key).or_else(|| self.disk.as_ref()?.read(key))
    }

    /// Stores `variants` for `key` in both tiers.
    fn store(&self, key: String, variants: Arc<Variants>) {
        if let Some(disk) = &self.disk {
            disk.put(&key, &variants);
        }
        self.map.insert(key, variants);
    }

    /// Stores `stored` for `key`, replacing the variant a request with `request` headers selected before.
    pub(crate) fn put(&self, key: &str, request: &HeaderMap, stored: Arc<Stored>) {
        self.index_tags(key, &stored.tags);
        let mut variants = vec![stored];
        // Other variants are in memory if they are anywhere: the request that stores this one looked them up.
        if let Some(previous) = self.map.get(key) {
            variants.extend(previous.0.iter().filter(|s| !s.matches(request)).take(MAX_VARIANTS - 1).cloned());
        }
        self.store(key.to_string(), Arc::new(Variants(variants)));
        // moka evicts in batches when left alone; the tenant's size bound is meant to hold after each store.
        self.map.run_pending_tasks();
        self.metrics.bytes.set(self.bytes() as f64);
        if let Some(disk) = &self.disk {
            self.metrics.disk_bytes.set(disk.bytes() as f64);
        }
    }

    /// Forgets the variant `stored` of `key` (the origin's answer for it can no longer be stored).
    pub(crate) fn forget(&self, key: &str, stored: &Arc<Stored>) {
        let Some(variants) = self.map.get(key) else { return self.invalidate(key) };
        self.keep(key.to_string(), variants.0.iter().filter(|s| !Arc::ptr_eq(s, stored)).cloned().collect());
    }

    /// Keeps only `kept` of `key`'s variants: forgets the key when none is left.
    fn keep(&self, key: String, kept: Vec<Arc<Stored>>) {
        if kept.is_empty() {
            self.invalidate(&key);
        } else {
            self.store(key, Arc::new(Variants(kept)));
        }
    }

    /// Forgets everything stored for `key`.
    pub(crate) fn invalidate(&self, key: &str) {
        self.map.invalidate(key);
        if let Some(disk) = &self.disk {
            disk.remove(key);
        }
    }

    /// Purges what `target` names: removed, or with `soft` marked stale (so `stale-while-revalidate` and
    /// `stale-if-error` still apply, and a revalidation can keep the body). Returns how many URLs it touched.
    /// With a disk tier it reads and writes the disk: call it where blocking is allowed.
    pub fn purge(&self, target: Purge<'_>, soft: bool) -> usize {
        let mut keys: HashSet<String> = match target {
            Purge::All => self.keys().collect(),
            Purge::Urls(urls) => {
                let wanted: HashSet<String> = urls.iter().filter_map(|u| resource_of_url(u)).collect();
                self.keys().filter(|k| wanted.contains(&resource_of_key(k))).collect()
            }
            Purge::Paths(paths) => self.keys().filter(|k| paths.contains(path_of(k))).collect(),
            Purge::Tag(tag) => {
                // A soft purge keeps what it purges, so its tags stay indexed for a later hard one.
                let mut tags = self.tags.lock().unwrap_or_else(PoisonError::into_inner);
                let keys = if soft { tags.get(tag).cloned() } else { tags.remove(tag) };
                keys.into_iter().flatten().collect()
            }
        };
        if let (Purge::Tag(tag), Some(disk)) = (target, &self.disk) {
            keys.extend(disk.tagged(tag));
        }
        let mut touched = 0;
        for key in keys {
            let Some(variants) = self.get_blocking(&key) else { continue };
            let named = |s: &Arc<Stored>| match target {
                Purge::Tag(tag) => s.tags.iter().any(|t| t == tag),
                Purge::All | Purge::Urls(_) | Purge::Paths(_) => true,
            };
            if !variants.0.iter().any(named) {
                continue;
            }
            touched += 1;
            if soft {
                let now = now();
                let kept =
                    variants.0.iter().map(|s| if named(s) { Arc::new(s.expired(now)) } else { s.clone() }).collect();
                self.store(key, Arc::new(Variants(kept)));
            } else {
                let kept = variants.0.iter().filter(|s| !named(s)).cloned().collect();
                self.keep(key, kept);
            }
        }
        self.map.run_pending_tasks();
        touched
    }

    /// Every key stored, in memory or on disk (some twice).
    fn keys(&self) -> impl Iterator<Item = String> + '_ {
        let on_disk = self.disk.as_ref().map(|d| d.keys()).unwrap_or_default();
        self.map.iter().map(|(k, _)| k.as_ref().clone()).chain(on_disk)
    }

    fn index_tags(&self, key: &str, tags: &[String]) {
        if tags.is_empty() {
            return;
        }
        let mut index = self.tags.lock().unwrap_or_else(PoisonError::into_inner);
        for tag in tags {
            index.entry(tag.clone()).or_default().insert(key.to_string());
        }
        let indexed: usize = index.values().map(HashSet::len).sum();
        if indexed > 1024 && indexed as u64 > 4 * self.map.entry_count() {
            let mut rebuilt: HashMap<String, HashSet<String>> = HashMap::new();
            for (key, variants) in self.map.iter() {
                for tag in variants.0.iter().flat_map(|s| s.tags.iter()) {
                    rebuilt.entry(tag.clone()).or_default().insert(key.as_ref().clone());
                }
            }
            *index = rebuilt;
        }
    }

    /// Bytes held now (as weighed; eviction catches up shortly after an insert).
    pub fn bytes(&self) -> u64 {
        self.map.weighted_size()
    }

    /// The most bytes it keeps in memory.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// How it answered so far.
    pub fn counts(&self) -> CacheCounts {
        let m = &self.metrics;
        CacheCounts {
            hit: m.hit.get(),
            stale: m.stale.get(),
            revalidated: m.revalidated.get(),
            miss: m.miss.get(),
            pass: m.pass.get(),
        }
    }

    /// Runs moka's pending maintenance now (tests and metrics want settled numbers).
    pub fn settle(&self) {
        self.map.run_pending_tasks();
    }
}

/// One tenant's cache metrics: `palisade_cache_requests_total{tenant, result}`, `palisade_cache_bytes{tenant}`,
/// and for a disk tier `palisade_cache_disk_bytes{tenant}` and `palisade_cache_disk_reads_total{tenant}`.
pub(crate) struct CacheMetrics {
    pub(crate) hit: Tally,
    pub(crate) stale: Tally,
    pub(crate) revalidated: Tally,
    pub(crate) miss: Tally,
    pub(crate) pass: Tally,
    /// Memory misses answered from the disk tier.
    disk_reads: metrics::Counter,
    bytes: metrics::Gauge,
    disk_bytes: metrics::Gauge,
}

impl CacheMetrics {
    fn new(tenant: &str) -> CacheMetrics {
        let requests = |result: &'static str| Tally {
            counter: metrics::counter!("palisade_cache_requests_total", "tenant" => tenant.to_string(), "result" => result),
            count: AtomicU64::new(0),
        };
        CacheMetrics {
            hit: requests("hit"),
            stale: requests("stale"),
            revalidated: requests("revalidated"),
            miss: requests("miss"),
            pass: requests("pass"),
            disk_reads: metrics::counter!("palisade_cache_disk_reads_total", "tenant" => tenant.to_string()),
            bytes: metrics::gauge!("palisade_cache_bytes", "tenant" => tenant.to_string()),
            disk_bytes: metrics::gauge!("palisade_cache_disk_bytes", "tenant" => tenant.to_string()),
        }
    }
}

/// A counter exported as a metric and also readable here (the console shows hit rates; a recorder's
/// counters cannot be read back).
pub(crate) struct Tally {
    counter: metrics::Counter,
    count: AtomicU64,
}

impl Tally {
    pub(crate) fn increment(&self, n: u64) {
        self.counter.increment(n);
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// How a tenant's cache answered, since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounts {
    /// Fresh responses served from the cache.
    pub hit: u64,
    /// Stale responses served (while revalidating, or because the origin failed).
    pub stale: u64,
    /// Stored responses the origin confirmed (304).
    pub revalidated: u64,
    /// Requests that went to the origin for want of a stored response.
    pub miss: u64,
    /// Requests the cache could not answer by its rules (passed to the origin).
    pub pass: u64,
}

/// What a purge removes (or marks stale).
#[derive(Debug, Clone, Copy)]
pub enum Purge<'a> {
    /// Everything stored with this `Surrogate-Key` tag.
    Tag(&'a str),
    /// Absolute URLs (`https://host/path?query`): what is stored for each over HTTP and HTTPS, whatever port
    /// or letter case clients wrote the host with (one pass over the keys for them all).
    Urls(&'a [String]),
    /// Paths with query, on every host (one pass over the keys for them all).
    Paths(&'a HashSet<String>),
    /// Everything.
    All,
}

/// The key of `scheme`, `authority` and `path` (with query): `https a.test/p?q`, authority lower-cased.
/// Built by appending (it is on every hit's path; `format!` costs a thousand instructions more).
pub(crate) fn key(scheme: &str, authority: &str, path: &str) -> String {
    let mut key = String::with_capacity(scheme.len() + 1 + authority.len() + path.len());
    key.push_str(scheme);
    key.push(' ');
    key.push_str(authority);
    // Lower-cased in place, bytes at a time (a char at a time cost a few hundred instructions a hit).
    key[scheme.len() + 1..].make_ascii_lowercase();
    key.push_str(path);
    key
}

/// The resource an absolute URL names, as [`resource_of_key`] gives it: its host in normal form, and its path
/// with query.
fn resource_of_url(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Some(format!("{}{path}", palisade_http::normalise_host(uri.host()?)))
}

/// The resource a key is for, whatever the scheme and the way the client wrote the host: `a.test/p?q`.
fn resource_of_key(key: &str) -> String {
    let (_, authority, path) = key_parts(key);
    format!("{}{path}", palisade_http::normalise_host(host_of(authority)))
}

/// A key's parts as [`key`] joined them: scheme, authority, path with query.
pub(crate) fn key_parts(key: &str) -> (&str, &str, &str) {
    let (head, path) = key.split_at(key.find('/').unwrap_or(key.len()));
    let (scheme, authority) = head.split_once(' ').unwrap_or(("", head));
    (scheme, authority, path)
}

/// The host of an authority (`a.test:8080`, `[::1]:8080`), without its port.
pub(crate) fn host_of(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// The path and query of a key.
fn path_of(key: &str) -> &str {
    key_parts(key).2
}

/// Every tenant's cache, kept across reloads and tenant changes so that they do not empty it (a new `max_size`
/// starts the memory tier afresh; the disk tier is kept while the tenant has one).
#[derive(Debug, Default)]
pub struct Caches {
    /// Where disk tiers go (`data_dir/http-cache`); `None`: memory only (`palisade check`, `palisade run`).
    dir: Option<PathBuf>,
    tenants: Mutex<HashMap<String, Arc<TenantCache>>>,
    /// How long opening a disk tier's file waits for another process to let go of it.
    patience: Duration,
}

impl Caches {
    /// Caches whose disk tiers, for tenants that ask for one, are files in `dir`.
    pub fn on_disk(dir: PathBuf) -> Caches {
        Caches { dir: Some(dir), tenants: Mutex::default(), patience: Duration::ZERO }
    }

    /// Tries a disk tier's file again for `patience` when another process holds it: in a process taking over
    /// from another, which lets go of its files as the hand-over starts.
    pub fn with_patience(mut self, patience: Duration) -> Caches {
        self.patience = patience;
        self
    }

    /// Lets go of every disk tier's file (committing what was sent first) for a process taking over from
    /// this one; the memory tiers go on. Blocks.
    pub fn release_disk(&self, timeout: Duration) {
        for tier in self.tiers() {
            tier.release(timeout);
        }
    }

    /// Opens the disk tiers' files again after [`Caches::release_disk`] (the hand-over failed). Blocks.
    pub fn reacquire_disk(&self) {
        for tier in self.tiers() {
            tier.reacquire();
        }
    }

    fn tiers(&self) -> Vec<Arc<DiskTier>> {
        self.lock().values().filter_map(|c| c.disk.clone()).collect()
    }

    /// Tenant `name`'s cache, holding at most `max_size` bytes in memory and `disk` bytes on disk. A disk tier
    /// that cannot be opened is logged and left out: the tenant is served from memory alone.
    pub fn tenant(&self, name: &str, max_size: u64, disk: Option<u64>) -> Arc<TenantCache> {
        let disk = disk.filter(|_| self.dir.is_some());
        let mut all = self.lock();
        let current = all.get(name);
        let current_disk = current.and_then(|c| c.disk.clone());
        let disk = match (disk, current_disk) {
            (Some(size), Some(tier)) => {
                tier.set_max_size(size);
                Some(tier)
            }
            (Some(size), None) => {
                let file = self.dir.as_ref().map_or_else(PathBuf::new, |d| d.join(format!("{name}.redb")));
                match DiskTier::open(&file, size, self.patience) {
                    Ok(tier) => Some(Arc::new(tier)),
                    Err(e) => {
                        tracing::error!(tenant = name, "cache disk tier not opened, memory only: {e}");
                        metrics::counter!("palisade_cache_disk_errors_total").increment(1);
                        None
                    }
                }
            }
            (None, Some(tier)) => {
                tier.retire();
                None
            }
            (None, None) => None,
        };
        match current {
            Some(cache) if cache.max_size == max_size && same_tier(&cache.disk, &disk) => cache.clone(),
            _ => {
                let cache = Arc::new(TenantCache::new(name, max_size, disk));
                all.insert(name.to_string(), cache.clone());
                cache
            }
        }
    }

    /// Tenant `name`'s cache, if it has one.
    pub fn get(&self, name: &str) -> Option<Arc<TenantCache>> {
        self.lock().get(name).cloned()
    }

    /// Keeps only the caches of tenants for which `keep` holds (after a reload removed some); the others' disk
    /// tiers are deleted.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.lock().retain(|name, cache| keep(name) || retire(cache));
    }

    /// Drops tenant `name`'s cache (the tenant is gone), deleting its disk tier.
    pub fn remove(&self, name: &str) {
        if let Some(cache) = self.lock().remove(name) {
            retire(&cache);
        }
    }

    /// Waits (at most `timeout` each) until what every disk tier was sent is on disk (before the process exits).
    pub fn flush(&self, timeout: Duration) {
        for tier in self.tiers() {
            tier.flush(timeout);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TenantCache>>> {
        self.tenants.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Marks `cache`'s disk tier for deletion; `false`, for `retain`.
fn retire(cache: &Arc<TenantCache>) -> bool {
    if let Some(disk) = &cache.disk {
        disk.retire();
    }
    false
}

fn same_tier(a: &Option<Arc<DiskTier>>, b: &Option<Arc<DiskTier>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Now, as the cache's clock.
pub(crate) fn now() -> SystemTime {
    SystemTime::now()
}

/// How long a response may wait for another request's fetch of the same URL before fetching itself.
pub const COLLAPSE_WAIT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directives::Directives;

    #[test]
    fn a_hits_fields_follow_its_age_second_by_second() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        let (directives, targeted) = Directives::for_edge(&headers);
        let t0 = SystemTime::now();
        let freshness = Freshness::of(StatusCode::OK, &headers, &directives, targeted, t0, t0);
        let stored = Stored {
            status: StatusCode::OK,
            headers,
            body: Bytes::new(),
            freshness,
            varied: Vec::new(),
            tags: Vec::new(),
            hit_fields: HitFields::default(),
        };
        let at = |secs: u64| {
            let fields = stored.hit_fields(t0 + Duration::from_millis(secs * 1000 + 300));
            let field = |name: &str| fields.get(name).unwrap().to_str().unwrap().to_string();
            (field("age"), field("cache-status"), field("cache-control"))
        };
        assert_eq!(at(0), ("0".into(), "palisade; hit; ttl=60".into(), "max-age=60".into()));
        assert_eq!(at(0), at(0), "made once, the same after");
        assert_eq!(at(2), ("2".into(), "palisade; hit; ttl=58".into(), "max-age=60".into()));
        assert_eq!(at(0).0, "0", "remade for another second, in either direction");
        assert_eq!(stored.headers.len(), 1, "the stored fields are left as they were");
    }
}
