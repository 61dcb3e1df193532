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
    db: Arc<Database>,
    writer: Sender<Job>,
}

impl RedbStore {
    /// Opens (or creates) the database at `path`. One process at a time can hold it open.
    pub fn open(path: &Path) -> Result<RedbStore, KvError> {
        let db = Database::create(path).map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        RedbStore::with_tables(db)
    }

    /// A store in memory, gone with the process (for `palisade run`).
    pub fn in_memory() -> Result<RedbStore, KvError> {
        let db =
            Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).map_err(unavailable)?;
        RedbStore::with_tables(db)
    }

    fn with_tables(db: Database) -> Result<RedbStore, KvError> {
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
        Ok(RedbStore { db, writer })
    }

    /// Runs `f` on a blocking thread (redb's calls block on disk).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        let db = self.db.clone();
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
        self.writer.send(job).map_err(|_| unavailable("the writer thread has stopped"))?;
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
}
