//! The embedded store: one redb file for every tenant. Each write updates the tenant's usage and checks its
//! quota in the transaction that makes it, and is acknowledged only once that transaction is durable.
//!
//! Writes go through one writer thread that commits them in groups: whatever writes are waiting when a
//! transaction starts are applied in it one after another (each sees the ones before it, so counters and
//! quotas stay exact) and made durable by one commit. A write that fails its own check (quota, not a counter)
//! changes nothing and does not stop the others.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::scope::{prefix_end, tenant_prefix};
use crate::{KeyPage, KvError, KvFuture, KvStore, LIST_PAGE, Quota, Scope, Usage, parse_counter};

/// Entries: [`Scope::entry`] → value.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
/// Per tenant: (keys, bytes of keys and values).
const USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("usage");

/// Most writes committed together.
const MAX_GROUP: usize = 512;

/// One write, applied inside the group's transaction (or not at all if none could begin); what it returns is
/// told the commit's outcome.
type Job = Box<dyn FnOnce(Option<&WriteTransaction>) -> Reply + Send>;
/// Answers a write's caller once its group's commit is known.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Tenants' key-value data in one redb database file.
#[derive(Clone)]
pub struct RedbStore {
    state: Arc<tokio::sync::watch::Sender<State>>,
    /// How long an operation waits for a file still held by the process this one replaces.
    wait: Duration,
}

/// Where a store's database stands.
#[derive(Clone)]
enum State {
    /// Another process holds the file (the one this process replaces, finishing its guests); a thread opens it
    /// as soon as it lets go.
    Waiting,
    Open(Opened),
    /// Handed over: this process no longer uses the file.
    Closed,
}

/// An open database and its writer thread.
#[derive(Clone)]
struct Opened {
    db: Arc<Database>,
    writer: Sender<Job>,
}

impl RedbStore {
    /// Opens (or creates) the database at `path`. One process at a time can hold it open.
    pub fn open(path: &Path) -> Result<RedbStore, KvError> {
        let db = Database::create(path).map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        RedbStore::with_tables(db)
    }

    /// Like [`RedbStore::open`], for a process taking over from another that still holds the file: if it is
    /// held, the store opens it as soon as it is let go (polling its lock), and operations meanwhile wait for
    /// that, at most `wait` each.
    pub fn open_when_free(path: &Path, wait: Duration) -> Result<RedbStore, KvError> {
        match Database::create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {}
            opened => {
                let db = opened.map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
                return Ok(RedbStore { wait, ..RedbStore::with_tables(db)? });
            }
        }
        tracing::info!(file = %path.display(), "key-value store held by the previous process; opening it when it lets go");
        let store = RedbStore { state: Arc::new(tokio::sync::watch::Sender::new(State::Waiting)), wait };
        let state = Arc::downgrade(&store.state);
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("palisade-kv-open".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(20));
                    // Every handle gone: nobody wants it any more.
                    let Some(state) = state.upgrade() else { return };
                    let opened = match Database::create(&path) {
                        Err(redb::DatabaseError::DatabaseAlreadyOpen) => continue,
                        opened => opened.map_err(unavailable).and_then(RedbStore::opened),
                    };
                    match opened {
                        Ok(opened) => {
                            tracing::info!(file = %path.display(), "key-value store opened");
                            state.send_replace(State::Open(opened));
                        }
                        Err(e) => {
                            tracing::error!(file = %path.display(), "key-value store cannot be opened: {e}");
                            state.send_replace(State::Closed);
                        }
                    }
                    return;
                }
            })
            .map_err(unavailable)?;
        Ok(store)
    }

    /// A store in memory, gone with the process (for `palisade run`).
    pub fn in_memory() -> Result<RedbStore, KvError> {
        let db =
            Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).map_err(unavailable)?;
        RedbStore::with_tables(db)
    }

    fn with_tables(db: Database) -> Result<RedbStore, KvError> {
        let state = Arc::new(tokio::sync::watch::Sender::new(State::Open(RedbStore::opened(db)?)));
        Ok(RedbStore { state, wait: Duration::ZERO })
    }

    fn opened(db: Database) -> Result<Opened, KvError> {
        // Create the tables, so readers never meet a database without them.
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(ENTRIES).map_err(unavailable)?;
        txn.open_table(USAGE).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        let db = Arc::new(db);
        let (writer, jobs) = channel();
        // A weak handle: the database closes (and its file lock goes) as soon as the last store handle does.
        let for_writer = Arc::downgrade(&db);
        std::thread::Builder::new()
            .name("palisade-kv-writer".into())
            .spawn(move || write_groups(&for_writer, &jobs))
            .map_err(unavailable)?;
        Ok(Opened { db, writer })
    }

    /// Lets go of the file for the process that replaces this one: operations from now on fail as
    /// unavailable, and the file's lock goes once those under way end (writes already sent are committed).
    /// Blocks until the writes already sent are committed (at most 5 s).
    pub fn close(&self) {
        if let State::Open(opened) = self.state.send_replace(State::Closed) {
            // The writer answers this empty write after its group's commit, so after every write sent before.
            let (done, committed) = channel();
            let last: Job = Box::new(move |_| {
                Box::new(move |_| {
                    let _ = done.send(());
                })
            });
            if opened.writer.send(last).is_ok() {
                let _ = committed.recv_timeout(Duration::from_secs(5));
            }
        }
    }

    /// The open database, waiting for it (at most the store's `wait`) while another process holds it.
    async fn opened_now(&self) -> Result<Opened, KvError> {
        if let State::Open(opened) = &*self.state.borrow() {
            return Ok(opened.clone());
        }
        let mut state = self.state.subscribe();
        let ready = |s: &State| !matches!(s, State::Waiting);
        let seen = match tokio::time::timeout(self.wait, state.wait_for(ready)).await {
            Ok(Ok(seen)) => seen.clone(),
            _ => State::Waiting,
        };
        match seen {
            State::Open(opened) => Ok(opened),
            State::Waiting => Err(unavailable("the key-value file is still held by the previous process")),
            State::Closed => Err(unavailable("the key-value store was handed to the process replacing this one")),
        }
    }

    /// Runs `f` on a blocking thread (redb's calls block on disk).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        let db = self.opened_now().await?.db;
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(|e| unavailable(format!("storage task: {e}")))?
    }

    /// One write: `change` gets the entry's current value and returns the new one (`None`: delete) and what to
    /// return. Usage is updated and the quota checked in the same transaction; the answer comes once it is
    /// durable.
    async fn write<T: Send + 'static>(
        &self,
        scope: &Scope,
        key: &str,
        quota: Quota,
        change: impl FnOnce(Option<&[u8]>) -> Result<(Option<Vec<u8>>, T), KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        let entry = scope.entry(key)?;
        let tenant = scope.tenant().to_string();
        let key_len = key.len() as u64;
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |txn| {
            let result = match txn {
                Some(txn) => apply(txn, &entry, &tenant, key_len, quota, change),
                None => Err(unavailable("no write transaction")),
            };
            Box::new(move |committed| {
                let _ = answer.send(committed.map_err(KvError::Unavailable).and(result));
            })
        });
        self.opened_now().await?.writer.send(job).map_err(|_| unavailable("the writer thread has stopped"))?;
        answered.await.map_err(|_| unavailable("the writer thread has stopped"))?
    }
}

/// The writer thread: waits for a write, takes every other one waiting (up to [`MAX_GROUP`]), applies them in
/// one transaction, commits, and answers each. Ends when every [`RedbStore`] handle is gone.
fn write_groups(db: &std::sync::Weak<Database>, jobs: &Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        group.extend(jobs.try_iter().take(MAX_GROUP - 1));
        let Some(db) = db.upgrade() else { return };
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                // Each write is still answered: with the reason nothing was written.
                tracing::warn!("key-value store: cannot begin a write: {e}");
                for job in group {
                    job(None)(Err(e.to_string()));
                }
                continue;
            }
        };
        let replies: Vec<Reply> = group.into_iter().map(|job| job(Some(&txn))).collect();
        let committed = txn.commit().map_err(|e| e.to_string());
        if let Err(e) = &committed {
            tracing::warn!("key-value store: a commit failed: {e}");
        }
        // Let go of the database before answering: a caller may drop its last handle and reopen the file.
        drop(db);
        for reply in replies {
            reply(committed.clone());
        }
    }
}

/// Applies one write inside `txn`: the change, the tenant's usage, the quota.
fn apply<T>(
    txn: &WriteTransaction,
    entry: &[u8],
    tenant: &str,
    key_len: u64,
    quota: Quota,
    change: impl FnOnce(Option<&[u8]>) -> Result<(Option<Vec<u8>>, T), KvError>,
) -> Result<T, KvError> {
    let mut entries = txn.open_table(ENTRIES).map_err(unavailable)?;
    let mut usage = txn.open_table(USAGE).map_err(unavailable)?;
    let old = entries.get(entry).map_err(unavailable)?.map(|v| v.value().to_vec());
    let (new, result) = change(old.as_deref())?;
    let (keys_before, bytes_before) = usage.get(tenant).map_err(unavailable)?.map_or((0, 0), |u| u.value());
    let size = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, |v| key_len + v.len() as u64);
    let keys = keys_before - u64::from(old.is_some()) + u64::from(new.is_some());
    let bytes = (bytes_before + size(&new)).saturating_sub(size(&old));
    // Only growth is refused: a tenant over a lowered limit can still shrink.
    if keys > keys_before && keys > quota.max_keys {
        return Err(KvError::Quota(format!("max_keys is {}", quota.max_keys)));
    }
    if bytes > bytes_before && bytes > quota.max_total {
        return Err(KvError::Quota(format!("max_total is {} bytes", quota.max_total)));
    }
    match &new {
        Some(new) => entries.insert(entry, new.as_slice()).map(drop).map_err(unavailable)?,
        None if old.is_some() => entries.remove(entry).map(drop).map_err(unavailable)?,
        None => {}
    }
    usage.insert(tenant, (keys, bytes)).map_err(unavailable)?;
    Ok(result)
}

fn unavailable(e: impl std::fmt::Display) -> KvError {
    KvError::Unavailable(e.to_string())
}

impl KvStore for RedbStore {
    fn get<'a>(&'a self, scope: &'a Scope, key: &'a str) -> KvFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let entry = scope.entry(key)?;
            self.blocking(move |db| {
                let txn = db.begin_read().map_err(unavailable)?;
                let entries = txn.open_table(ENTRIES).map_err(unavailable)?;
                Ok(entries.get(entry.as_slice()).map_err(unavailable)?.map(|v| v.value().to_vec()))
            })
            .await
        })
    }

    fn set<'a>(&'a self, scope: &'a Scope, key: &'a str, value: &'a [u8], quota: &'a Quota) -> KvFuture<'a, ()> {
        Box::pin(async move {
            quota.check_value(value)?;
            let value = value.to_vec();
            self.write(scope, key, *quota, move |_| Ok((Some(value), ()))).await
        })
    }

    fn delete<'a>(&'a self, scope: &'a Scope, key: &'a str) -> KvFuture<'a, ()> {
        Box::pin(async move { self.write(scope, key, Quota::UNLIMITED, |_| Ok((None, ()))).await })
    }

    fn list_keys<'a>(&'a self, scope: &'a Scope, cursor: u64) -> KvFuture<'a, KeyPage> {
        Box::pin(async move {
            let prefix = scope.prefix().to_vec();
            self.blocking(move |db| {
                let txn = db.begin_read().map_err(unavailable)?;
                let entries = txn.open_table(ENTRIES).map_err(unavailable)?;
                let skip = usize::try_from(cursor).unwrap_or(usize::MAX);
                let range = match prefix_end(&prefix) {
                    Some(end) => entries.range(prefix.as_slice()..end.as_slice()),
                    None => entries.range(prefix.as_slice()..),
                }
                .map_err(unavailable)?;
                let mut keys = Vec::new();
                let mut more = false;
                for item in range.skip(skip) {
                    let (k, _) = item.map_err(unavailable)?;
                    if keys.len() == LIST_PAGE {
                        more = true;
                        break;
                    }
                    keys.push(String::from_utf8_lossy(&k.value()[prefix.len()..]).into_owned());
                }
                let next = more.then(|| cursor + keys.len() as u64);
                Ok(KeyPage { keys, cursor: next })
            })
            .await
        })
    }

    fn increment<'a>(&'a self, scope: &'a Scope, key: &'a str, delta: u64, quota: &'a Quota) -> KvFuture<'a, u64> {
        Box::pin(async move {
            self.write(scope, key, *quota, move |old| {
                let value = parse_counter(old)?
                    .checked_add(delta)
                    .ok_or_else(|| KvError::NotACounter("the counter would overflow".into()))?;
                Ok((Some(value.to_string().into_bytes()), value))
            })
            .await
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        scope: &'a Scope,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: &'a [u8],
        quota: &'a Quota,
    ) -> KvFuture<'a, bool> {
        Box::pin(async move {
            quota.check_value(new)?;
            let (expected, new) = (expected.map(<[u8]>::to_vec), new.to_vec());
            self.write(scope, key, *quota, move |old| {
                if old == expected.as_deref() { Ok((Some(new), true)) } else { Ok((old.map(<[u8]>::to_vec), false)) }
            })
            .await
        })
    }

    fn usage<'a>(&'a self, tenant: &'a str) -> KvFuture<'a, Usage> {
        Box::pin(async move {
            let tenant = tenant.to_string();
            self.blocking(move |db| {
                let txn = db.begin_read().map_err(unavailable)?;
                let usage = txn.open_table(USAGE).map_err(unavailable)?;
                let (keys, bytes) = usage.get(tenant.as_str()).map_err(unavailable)?.map_or((0, 0), |u| u.value());
                Ok(Usage { keys, bytes })
            })
            .await
        })
    }

    fn remove_tenant<'a>(&'a self, tenant: &'a str) -> KvFuture<'a, u64> {
        Box::pin(async move {
            let prefix = tenant_prefix(tenant)?;
            let tenant = tenant.to_string();
            // A transaction of its own rather than a job in the writer's group: if any step fails, dropping it
            // undoes the whole removal, where a shared group transaction would commit the half done with the
            // others' writes. redb runs one write transaction at a time, so the writer thread just waits.
            self.blocking(move |db| {
                let txn = db.begin_write().map_err(unavailable)?;
                let mut removed = 0;
                {
                    let mut entries = txn.open_table(ENTRIES).map_err(unavailable)?;
                    let mut count = |_: &[u8], _: &[u8]| {
                        removed += 1;
                        false
                    };
                    match prefix_end(&prefix) {
                        Some(end) => entries.retain_in(prefix.as_slice()..end.as_slice(), &mut count),
                        None => entries.retain_in(prefix.as_slice().., &mut count),
                    }
                    .map_err(unavailable)?;
                    let mut usage = txn.open_table(USAGE).map_err(unavailable)?;
                    usage.remove(tenant.as_str()).map_err(unavailable)?;
                }
                txn.commit().map_err(unavailable)?;
                Ok(removed)
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn remove_tenant_removes_only_that_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("kv.redb")).unwrap();
        crate::tests::remove_tenant_removes_only_that_tenant(&store).await;
    }

    /// A process replacing another opens the file once the other lets go, and its operations wait until
    /// then: nothing the first one wrote is lost, and nothing fails meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_held_elsewhere_opens_when_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        let (scope, quota) = (Scope::new("t", "b").unwrap(), Quota::UNLIMITED);
        let first = RedbStore::open(&path).unwrap();
        first.set(&scope, "k", b"before", &quota).await.unwrap();
        let second = RedbStore::open_when_free(&path, Duration::from_secs(10)).unwrap();
        let reader = second.clone();
        let waiting = tokio::spawn(async move {
            let scope = Scope::new("t", "b").unwrap();
            reader.get(&scope, "k").await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "answered while the file was still held");
        first.set(&scope, "k", b"last", &quota).await.unwrap();
        tokio::task::spawn_blocking(move || first.close()).await.unwrap();
        assert_eq!(waiting.await.unwrap().unwrap().as_deref(), Some(&b"last"[..]));
        second.set(&scope, "k", b"after", &quota).await.unwrap();
        // A closed store refuses, and a store that waits no longer says why.
        let third = RedbStore::open_when_free(&path, Duration::from_millis(100)).unwrap();
        let err = third.get(&scope, "k").await.unwrap_err();
        assert!(err.to_string().contains("still held"), "{err}");
    }
}
