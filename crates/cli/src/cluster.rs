//! A cluster node keeps its apps, the API's tenants and every tenant's tokens in step with the registry in
//! Redis: on every change announced on the registry's channel, and every `reconcile_interval` in case a message
//! was missed. While Redis is away the node keeps serving what it has (it is in its local registry too, so a
//! restart keeps it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use palisade_registry::{AppRecord, RedisRegistry, RegistryError};

use crate::site::{DeployedApp, Site, Source, State};
use crate::tenants::apply_snapshot;

/// Runs forever: watches Redis for changes and reconciles.
/// `purge_mark` keeps the last cache purge applied, across restarts.
pub(crate) async fn keep_in_step(site: Arc<Site>, shared: RedisRegistry, interval: Duration, purge_mark: PathBuf) {
    let wake = Arc::new(tokio::sync::Notify::new());
    {
        let (shared, wake, purging) = (shared.clone(), wake.clone(), site.clone());
        tokio::spawn(async move {
            let purge = |message: &str| {
                let (site, message) = (purging.clone(), message.to_string());
                tokio::spawn(async move { site.apply_announced_purge(&message).await });
            };
            let answers = purging.https.clone();
            let acme = |message: &str| {
                if let Some(https) = &answers {
                    https.announced_answer(message);
                }
            };
            shared.watch(&purge_mark, || wake.notify_one(), purge, acme).await;
        });
    }
    let mut warned = false;
    loop {
        match sync(&site, &shared).await {
            Ok(changes) => {
                if warned {
                    tracing::info!("app registry: in step with Redis again");
                }
                warned = false;
                if changes > 0 {
                    tracing::info!(changes, "app registry: applied changes from the cluster");
                }
                site.synced.store(true, Ordering::Release);
            }
            Err(e) => {
                if !warned {
                    tracing::warn!("app registry: {e}; serving the apps known so far");
                }
                warned = true;
            }
        }
        let _ = tokio::time::timeout(interval, wake.notified()).await;
    }
}

/// Makes this node serve exactly the tenants and apps in Redis; how many changed.
async fn sync(site: &Site, shared: &RedisRegistry) -> Result<usize, RegistryError> {
    let snapshot = shared.list().await?;
    let mut state = site.state.lock().await;
    // A registry older than what this node has served lost its data (a Redis restarted without persistence,
    // or another Redis): applying it would remove every app and API tenant on every node.
    let apps = state.tenants.values().flat_map(|t| t.apps.values()).map(|a| a.record.version);
    let tenants = state.tenants.values().filter_map(|t| match &t.source {
        Source::Api(record) => Some(record.version),
        Source::File => None,
    });
    let known = apps.chain(tenants).max().unwrap_or(0);
    let version = snapshot.version;
    if version < known {
        return Err(RegistryError::Corrupt(format!(
            "the registry in Redis is at version {version}, behind this node's apps and tenants (version {known}): \
             it may have lost its data; not applying it (deploy again, or restore Redis)"
        )));
    }
    let mut changes = 0;
    let applied = match apply_snapshot(site, &mut state, &snapshot, &mut changes).await {
        Ok(()) => apply(site, shared, &mut state, snapshot.apps, &mut changes).await,
        Err(e) => Err(RegistryError::Corrupt(format!("tenants from the cluster: {}", e.message))),
    };
    // What was applied before a failure is served too: the router never disagrees with the state.
    if changes > 0 {
        site.publish(&state);
    }
    applied.map(|()| changes)
}

/// Brings `state` to `records`, counting each app changed in `changes`; stops at the first storage failure.
async fn apply(
    site: &Site,
    shared: &RedisRegistry,
    state: &mut State,
    records: Vec<AppRecord>,
    changes: &mut usize,
) -> Result<(), RegistryError> {
    let wanted: BTreeMap<String, AppRecord> = records.into_iter().map(|r| (r.key(), r)).collect();
    // Gone from Redis: stop serving.
    for t in state.tenants.values_mut() {
        let gone: Vec<String> =
            t.apps.values().filter(|a| !wanted.contains_key(&a.record.key())).map(|a| a.record.name.clone()).collect();
        for name in gone {
            t.apps.remove(&name);
            site.local.remove(&t.loaded.tenant.name, &name)?;
            tracing::info!(app = %format!("{}/{name}", t.loaded.tenant.name), "app removed by the cluster");
            *changes += 1;
        }
    }
    // New or changed in Redis: fetch, compile, keep, serve.
    for (key, record) in wanted {
        let Some(t) = state.tenants.get_mut(&record.tenant) else { continue };
        let current = t.apps.get(&record.name);
        if current.is_some_and(|a| a.record.version >= record.version) {
            continue;
        }
        if let Some(app) = current.filter(|a| a.record.same_app(&record)) {
            let app = DeployedApp { record: record.clone(), ..app.clone() };
            t.apps.insert(record.name.clone(), app);
            continue;
        }
        // Read record and bytes together: a newer deploy may have replaced the listed one meanwhile.
        let Some((record, bytes)) = shared.fetch(&key).await? else { continue };
        let bytes = Bytes::from(bytes);
        if t.loaded.has_route(&record.route) {
            tracing::warn!(app = %key, route = %record.route, "app's route is a configured route on this node; the configured one is served");
        }
        match site.prepare(&t.loaded, &record.name, bytes.clone()).await {
            Ok(prepared) => {
                site.local.put(&record, &bytes)?;
                tracing::info!(app = %key, route = %record.route, version = record.version, "app deployed by the cluster");
                let app = site.bind(&t.loaded, record, Some(prepared));
                t.apps.insert(app.record.name.clone(), app);
                *changes += 1;
            }
            Err(e) => tracing::warn!(app = %key, "app from the cluster not served: {}", e.message),
        }
    }
    Ok(())
}
