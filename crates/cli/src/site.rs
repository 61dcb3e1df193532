//! The live site: the configuration's routes plus the apps deployed through the admin API, as the router
//! the server dispatches with.
//!
//! Every change (a deploy, a removal, a reload, a cluster sync) builds the complete new state beside the
//! old one, with every guest compiled and linked, and then swaps the router in one atomic store. Requests in
//! flight keep the handler they were routed to (and with it the old version's compiled code); the next
//! request sees the new router. A change that fails anywhere before the swap changes nothing.
//!
//! Changes are serialised by one lock. Deployed apps are kept in the node's [`FileRegistry`] (so they
//! survive a restart); in a cluster, Redis is the truth and `cluster.rs` copies it here. Tenants created
//! through the API (`tenants.rs`) are kept in [`FileTenants`] and served beside the file's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use palisade_admin::{ControlError, Refusal};
use palisade_cache::{Cached, Caches};
use palisade_config::Config;
use palisade_http::Handler;
use palisade_kv::KvStore;
use palisade_registry::{AppRecord, FileRegistry, FileTenants, RedisRegistry, TenantRecord, valid_name};
use palisade_sandbox::{AppInfo, GuestBytes, LazyGuest, Runtime, TenantSandbox};
use palisade_server::{LiveRoutes, Router, Routes};
use serde_json::json;

use palisade_redis::LinkStatus;

use crate::apps::{self, KvBackendStore, LoadedTenant};
use crate::https::Https;
use crate::tenants::{TokenIndex, host_taken, load_api_tenant};

/// Everything a change needs, and the state it changes.
pub(crate) struct Site {
    config_path: PathBuf,
    pub(crate) runtime: Runtime,
    pub(crate) kv: Option<Arc<dyn KvStore>>,
    /// The same store as its backend (for hand-overs and link reports).
    pub(crate) kv_backend: Option<KvBackendStore>,
    /// Every tenant's HTTP cache, kept across reloads.
    pub(crate) caches: Arc<Caches>,
    routes: Arc<LiveRoutes>,
    pub(crate) local: FileRegistry,
    /// Tenants created through the API, and every tenant's tokens.
    pub(crate) tenant_store: FileTenants,
    /// The tokens in `tenant_store`, by hash.
    pub(crate) tokens: TokenIndex,
    pub(crate) shared: Option<RedisRegistry>,
    /// HTTPS sites and ACME renewals, which API tenants with `acme` join and leave.
    pub(crate) https: Option<Arc<Https>>,
    pub(crate) state: tokio::sync::Mutex<State>,
    /// In a cluster: whether this node has compared its apps with Redis since it started.
    pub(crate) synced: AtomicBool,
    /// Set while this process hands over to a new binary: changes are refused, since the new process has
    /// already read what is deployed and would not see them.
    handing_over: AtomicBool,
}

/// What is served now.
pub(crate) struct State {
    pub(crate) config: Config,
    pub(crate) tenants: BTreeMap<String, TenantState>,
}

/// One tenant: its configured routes and its deployed apps.
pub(crate) struct TenantState {
    pub(crate) loaded: LoadedTenant,
    pub(crate) apps: BTreeMap<String, DeployedApp>,
    pub(crate) source: Source,
}

/// Where a tenant is defined.
pub(crate) enum Source {
    /// In the configuration file, which a reload reads again.
    File,
    /// Through the admin API, as stored.
    Api(TenantRecord),
}

/// A deployed app bound to its tenant's sandbox: loaded on its first request, unloaded when many others were
/// used more recently (see `palisade_sandbox::LazyGuest`).
#[derive(Clone)]
pub(crate) struct DeployedApp {
    pub(crate) record: AppRecord,
    pub(crate) app: Arc<LazyGuest>,
    /// Its route's handler: the app, behind the tenant's cache if it was deployed with `cache`.
    pub(crate) handler: Arc<dyn Handler>,
}

impl DeployedApp {
    /// `record` bound to `tenant`'s sandbox, its bytes read from `local` when it loads; loaded already with
    /// `preloaded`; behind the tenant's cache (from `caches`) if it was deployed with `cache`.
    fn bind(
        runtime: &Runtime,
        local: &FileRegistry,
        caches: &Caches,
        tenant: &LoadedTenant,
        record: AppRecord,
        preloaded: Option<(Arc<dyn Handler>, AppInfo)>,
    ) -> DeployedApp {
        let (local, stored) = (local.clone(), record.clone());
        let bytes: GuestBytes = Box::new(move || local.read(&stored).map_err(|e| e.to_string()));
        let label = Path::new(&record.tenant).join(&record.name);
        let app = Arc::new(LazyGuest::new(runtime, tenant.sandbox.clone(), label, bytes, preloaded));
        let handler: Arc<dyn Handler> = match record.cache {
            true => {
                let config = &tenant.tenant;
                Arc::new(Cached::new(
                    app.clone(),
                    caches.tenant(&config.name, config.cache.max_size, config.cache.disk),
                ))
            }
            false => app.clone(),
        };
        DeployedApp { app, record, handler }
    }
}

pub(crate) fn refuse(refusal: Refusal, message: impl Into<String>) -> ControlError {
    ControlError::new(refusal, message)
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ControlError {
    refuse(Refusal::Internal, e.to_string())
}

impl Site {
    /// The site for `config`, with the apps this node last served (from `data_dir/apps`).
    pub(crate) fn load(
        config: Config,
        runtime: Runtime,
        kv: Option<(Arc<dyn KvStore>, KvBackendStore)>,
        caches: Arc<Caches>,
        tenants: Vec<LoadedTenant>,
        https: Option<Arc<Https>>,
    ) -> anyhow::Result<Site> {
        let (kv, kv_backend) = kv.unzip();
        let local = FileRegistry::open(&config.server.data_dir.join("apps"))?;
        let shared = match &config.cluster {
            Some(cluster) => Some(RedisRegistry::connect(&cluster.redis)?),
            None => None,
        };
        // Before any ACME order starts: the CA may validate through another node than the one that asked.
        if let (Some(https), Some(shared)) = (&https, &shared) {
            https.share_answers(Arc::new(crate::https::ClusterBoard(shared.clone())));
        }
        let tenant_store = FileTenants::open(&config.server.data_dir.join("tenants"))?;
        let tokens = TokenIndex::of(&tenant_store.all_tokens()?);
        let tenants = tenants
            .into_iter()
            .map(|loaded| {
                (loaded.tenant.name.clone(), TenantState { loaded, apps: BTreeMap::new(), source: Source::File })
            })
            .collect();
        let mut state = State { config: config.clone(), tenants };
        for record in tenant_store.list()? {
            match load_api_tenant(&runtime, kv.as_ref(), &caches, &state, &record.name, &record.spec) {
                Ok(loaded) => {
                    tracing::info!(tenant = %record.name, version = record.version, "tenant created through the API loaded");
                    if let Some(https) = &https {
                        https.set_tenant(&loaded.tenant);
                    }
                    let t = TenantState { loaded, apps: BTreeMap::new(), source: Source::Api(record) };
                    state.tenants.insert(t.loaded.tenant.name.clone(), t);
                }
                Err(e) => {
                    tracing::warn!(tenant = %record.name, "tenant created through the API not served: {}", e.message)
                }
            }
        }
        let tenants = &mut state.tenants;
        for record in local.list()? {
            let Some(tenant) = tenants.get_mut(&record.tenant) else {
                tracing::warn!(app = %record.key(), "deployed app of a tenant this server does not have; not served");
                continue;
            };
            // Loaded at its first request: start-up reads no app's bytes and compiles nothing.
            let app = DeployedApp::bind(&runtime, &local, &caches, &tenant.loaded, record, None);
            tenant.apps.insert(app.record.name.clone(), app);
        }
        let deployed: usize = state.tenants.values().map(|t| t.apps.len()).sum();
        if deployed > 0 {
            // Their first requests should not wait for the engine as well as for their own code.
            runtime.start()?;
            tracing::info!(apps = deployed, "deployed apps bound (each loads at its first request)");
        }
        let routes = Arc::new(LiveRoutes::from_pointee(router(&state)));
        Ok(Site {
            config_path: config.file.clone(),
            runtime,
            kv,
            kv_backend,
            caches,
            routes,
            local,
            tenant_store,
            tokens,
            shared,
            https,
            state: tokio::sync::Mutex::new(state),
            synced: AtomicBool::new(false),
            handing_over: AtomicBool::new(false),
        })
    }

    /// The routes the server dispatches with.
    pub(crate) fn routes(&self) -> Arc<LiveRoutes> {
        self.routes.clone()
    }

    /// Swaps in the router for `state`.
    pub(crate) fn publish(&self, state: &State) {
        self.routes.store(Arc::new(router(state)));
    }

    /// The state, to change it; refused while this process hands over to a new binary.
    pub(crate) async fn change(&self) -> Result<tokio::sync::MutexGuard<'_, State>, ControlError> {
        let state = self.state.lock().await;
        if self.handing_over.load(Ordering::Acquire) {
            return Err(refuse(
                Refusal::Unavailable,
                "an upgrade is under way (this process is handing over to a new binary): nothing changed; try again in a moment",
            ));
        }
        Ok(state)
    }

    /// Refuses changes from now on (`true`: a hand-over begins), or accepts them again (`false`: it failed).
    /// Taken under the state's lock, so that a change under way finishes before the new process starts.
    pub(crate) async fn hand_over(&self, handing_over: bool) {
        let _state = self.state.lock().await;
        self.handing_over.store(handing_over, Ordering::Release);
    }

    /// Whether the server serves what it should: outside a cluster always; in one, once it has compared its
    /// apps with Redis. Ready, it says how its Redis links are: a node whose Redis is away (or failing over)
    /// still serves what it has, so it stays ready, and the answer says why deploys may fail meanwhile.
    pub(crate) fn readiness(&self) -> Result<Vec<String>, String> {
        if self.handing_over.load(Ordering::Acquire) {
            return Err("handing over to a new binary".into());
        }
        if self.shared.is_some() && !self.synced.load(Ordering::Acquire) {
            return Err("not yet in step with the cluster's apps in Redis".into());
        }
        Ok(self.redis_links().iter().map(|(role, status)| describe_link(role, status)).collect())
    }

    /// The Redis links this node uses: the cluster's registry and the key-value store, by role.
    pub(crate) fn redis_links(&self) -> Vec<(&'static str, LinkStatus)> {
        let mut links = Vec::new();
        if let Some(shared) = &self.shared {
            links.push(("cluster", shared.link_status()));
        }
        if let Some(KvBackendStore::Redis(store)) = &self.kv_backend {
            links.push(("kv", store.link_status()));
        }
        links
    }

    /// Validates and deploys `wasm` as `tenant/name` at `route` (default `/name`), behind the tenant's HTTP
    /// cache with `cache`.
    pub(crate) async fn deploy(
        &self,
        tenant: &str,
        name: &str,
        route: Option<&str>,
        cache: bool,
        wasm: Bytes,
    ) -> Result<AppRecord, ControlError> {
        if !valid_name(name) {
            return Err(refuse(
                Refusal::BadRequest,
                format!("app name {name:?} may only use letters, digits, '-' and '_' (at most 64)"),
            ));
        }
        let route = palisade_config::normalise_route_path(route.unwrap_or(&format!("/{name}")))
            .map_err(|e| refuse(Refusal::BadRequest, e))?;
        let mut state = self.change().await?;
        let t = state.tenants.get(tenant).ok_or_else(|| no_tenant(tenant))?;
        if t.loaded.has_route(&route) {
            return Err(refuse(
                Refusal::Conflict,
                format!("route {route} of tenant {tenant} is in the configuration file; deploy at another route"),
            ));
        }
        if let Some(other) = t.apps.values().find(|a| a.record.route == route && a.record.name != name) {
            return Err(refuse(
                Refusal::Conflict,
                format!("route {route} of tenant {tenant} is served by app {:?}; remove it first", other.record.name),
            ));
        }
        let prepared = self.prepare(&t.loaded, name, wasm.clone()).await?;
        let record = match &self.shared {
            Some(shared) => shared
                .put(tenant, name, &route, cache, &wasm)
                .await
                .map_err(|e| refuse(Refusal::Unavailable, e.to_string()))?,
            None => self.local.new_record(tenant, name, &route, cache, &wasm).map_err(internal)?,
        };
        self.local.put(&record, &wasm).map_err(internal)?;
        tracing::info!(app = %record.key(), route = %record.route, version = record.version, sha256 = %record.sha256, "app deployed");
        let t = state.tenants.get_mut(tenant).ok_or_else(|| no_tenant(tenant))?;
        let app = self.bind(&t.loaded, record.clone(), Some(prepared));
        t.apps.insert(name.to_string(), app);
        self.publish(&state);
        Ok(record)
    }

    /// Stops serving `tenant/name` and forgets it.
    pub(crate) async fn remove(&self, tenant: &str, name: &str) -> Result<AppRecord, ControlError> {
        let mut state = self.change().await?;
        let t = state.tenants.get_mut(tenant).ok_or_else(|| no_tenant(tenant))?;
        let Some(app) = t.apps.get(name) else {
            return Err(refuse(Refusal::NotFound, format!("tenant {tenant} has no deployed app {name:?}")));
        };
        let record = app.record.clone();
        if let Some(shared) = &self.shared {
            shared.remove(tenant, name).await.map_err(|e| refuse(Refusal::Unavailable, e.to_string()))?;
        }
        self.local.remove(tenant, name).map_err(internal)?;
        t.apps.remove(name);
        self.publish(&state);
        tracing::info!(app = %record.key(), "app removed");
        Ok(record)
    }

    /// Re-reads the configuration file and applies its tenants and routes, keeping deployed apps.
    pub(crate) async fn reload(&self) -> Result<serde_json::Value, ControlError> {
        let config = Config::load(&self.config_path).map_err(|e| refuse(Refusal::Invalid, e.to_string()))?;
        if let Some(t) = config.tenants.iter().find(|t| t.limits.memory > self.runtime.max_memory()) {
            return Err(refuse(
                Refusal::Invalid,
                format!(
                    "{}: tenant {}: `memory` above {} bytes (the most any tenant had at start-up) needs a restart",
                    t.location,
                    t.name,
                    self.runtime.max_memory()
                ),
            ));
        }
        let mut state = self.change().await?;
        api_conflicts(&state, &config)?;
        let restart_needed = needs_restart(&state.config, &config);
        let (runtime, kv, new_config) = (self.runtime.clone(), self.kv.clone(), config.clone());
        let caches = self.caches.clone();
        let loaded =
            tokio::task::spawn_blocking(move || apps::load_tenants(&new_config, &runtime, kv.as_ref(), &caches))
                .await
                .map_err(internal)?
                .map_err(|errors| refuse(Refusal::Invalid, apps::describe(&errors)))?;
        // Apps come from the store, as at start-up: a tenant a reload removed and a later one brings back
        // serves its apps again, as it would after a restart.
        let mut stored: BTreeMap<String, Vec<AppRecord>> = BTreeMap::new();
        for record in self.local.list().map_err(internal)? {
            stored.entry(record.tenant.clone()).or_default().push(record);
        }
        let mut tenants = BTreeMap::new();
        let mut shadowed = Vec::new();
        for loaded in loaded.0 {
            let mut apps = BTreeMap::new();
            for record in stored.remove(&loaded.tenant.name).unwrap_or_default() {
                if loaded.has_route(&record.route) {
                    shadowed.push(record.key());
                }
                // Bound to the new sandbox, to load at its next request (from code still held, or the cache).
                let app = self.bind(&loaded, record, None);
                apps.insert(app.record.name.clone(), app);
            }
            tenants.insert(loaded.tenant.name.clone(), TenantState { loaded, apps, source: Source::File });
        }
        // The API's tenants go on as they are.
        let api: Vec<String> =
            state.tenants.iter().filter(|(_, t)| matches!(t.source, Source::Api(_))).map(|(n, _)| n.clone()).collect();
        for name in api {
            if let Some(t) = state.tenants.remove(&name) {
                stored.remove(&name);
                tenants.insert(name, t);
            }
        }
        for record in stored.values().flatten() {
            tracing::warn!(app = %record.key(), "deployed app of a tenant this server does not have; not served");
        }
        let dropped: Vec<String> = state.tenants.keys().filter(|t| !tenants.contains_key(*t)).cloned().collect();
        *state = State { config, tenants };
        self.publish(&state);
        self.caches.retain(|name| state.tenants.contains_key(name));
        for what in &restart_needed {
            tracing::warn!("configuration reloaded, but {what} changes only at a restart");
        }
        tracing::info!(tenants = state.tenants.len(), "configuration reloaded");
        Ok(json!({
            "reloaded": true,
            "tenants": state.tenants.keys().collect::<Vec<_>>(),
            "removed_tenants": dropped,
            "shadowed_apps": shadowed,
            "restart_needed": restart_needed,
        }))
    }
}

impl Site {
    /// `record` bound to `loaded`'s sandbox (see [`DeployedApp::bind`]).
    pub(crate) fn bind(
        &self,
        loaded: &LoadedTenant,
        record: AppRecord,
        preloaded: Option<(Arc<dyn Handler>, AppInfo)>,
    ) -> DeployedApp {
        DeployedApp::bind(&self.runtime, &self.local, &self.caches, loaded, record, preloaded)
    }

    /// Compiles `bytes` as `loaded`'s deployed app `name` on a blocking thread (a large guest takes a while),
    /// bound to the tenant's sandbox.
    pub(crate) async fn prepare(
        &self,
        loaded: &LoadedTenant,
        name: &str,
        bytes: Bytes,
    ) -> Result<(Arc<dyn Handler>, AppInfo), ControlError> {
        let (runtime, sandbox) = (self.runtime.clone(), loaded.sandbox.clone());
        let (tenant, name) = (loaded.tenant.name.clone(), name.to_string());
        tokio::task::spawn_blocking(move || compile(&runtime, sandbox, &tenant, &name, &bytes))
            .await
            .map_err(internal)?
    }
}

pub(crate) fn no_tenant(tenant: &str) -> ControlError {
    refuse(Refusal::NotFound, format!("no tenant {tenant:?}"))
}

/// Refuses a configuration that defines a tenant created through the API, or gives one of its hosts to a
/// tenant of the file: the API's tenants would silently change.
fn api_conflicts(state: &State, config: &Config) -> Result<(), ControlError> {
    for t in state.tenants.values().filter(|t| matches!(t.source, Source::Api(_))) {
        let api = &t.loaded.tenant;
        if let Some(file) = config.tenants.iter().find(|f| f.name == api.name) {
            return Err(refuse(
                Refusal::Invalid,
                format!(
                    "{}: tenant {} was created through the API; delete it there before defining it in the file",
                    file.location, api.name
                ),
            ));
        }
        if let Some((owner, host)) = host_taken(config.tenants.iter(), &api.hosts, &api.name) {
            return Err(refuse(
                Refusal::Invalid,
                format!("tenant {owner} of the file takes host {host} of tenant {}, created through the API", api.name),
            ));
        }
    }
    Ok(())
}

/// Compiles (or finds prepared) `bytes` as the deployed app `tenant/name`, bound to `sandbox`, on this thread.
fn compile(
    runtime: &Runtime,
    sandbox: Arc<TenantSandbox>,
    tenant: &str,
    name: &str,
    bytes: &[u8],
) -> Result<(Arc<dyn Handler>, AppInfo), ControlError> {
    let label = Path::new(tenant).join(name);
    runtime.load_guest(&label, bytes, sandbox).map_err(|e| refuse(Refusal::Invalid, e.to_string()))
}

/// The router for `state`: each tenant's configured routes and deployed apps (a configured route wins over
/// an app at the same path).
fn router(state: &State) -> Routes {
    let mut router = Router::default();
    for t in state.tenants.values() {
        let apps = t.apps.values().map(|a| (a.record.route.clone(), a.handler.clone()));
        router.add(&t.loaded.tenant.host_names(), t.loaded.routes_with(apps));
    }
    router
}

/// What a reload cannot change in a running process.
fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if format!("{:?}", old.server) != format!("{:?}", new.server) {
        out.push("[server]".to_string());
    }
    if old.kv != new.kv {
        out.push("[kv]".to_string());
    }
    if old.admin.as_ref().map(|a| (a.listen, &a.token_file)) != new.admin.as_ref().map(|a| (a.listen, &a.token_file)) {
        out.push("[admin]".to_string());
    }
    if old.cluster != new.cluster {
        out.push("[cluster]".to_string());
    }
    // Certificates are bound to names when the TLS listeners start.
    let certificate = |t: &palisade_config::Tenant| format!("{:?} {:?}", t.tls, t.hosts);
    for t in new.tenants.iter().filter(|t| t.tls.is_some()) {
        if old.tenants.iter().find(|o| o.name == t.name).map(certificate) != Some(certificate(t)) {
            out.push(format!("tenant {}'s certificate and hosts for HTTPS", t.name));
        }
    }
    out
}

/// The JSON description of one tenant: hosts, configured routes, deployed apps, instances in flight, and
/// whether it has a certificate to serve (for a tenant with `tls` or `acme`).
pub(crate) fn describe_tenant(t: &TenantState, https: Option<&Https>) -> serde_json::Value {
    let tenant = &t.loaded.tenant;
    let (source, spec, version) = match &t.source {
        Source::File => ("file", None, None),
        Source::Api(record) => ("api", Some(without_private_key(&record.spec)), Some(record.version)),
    };
    json!({
        "name": tenant.name,
        "source": source,
        "spec": spec,
        "version": version,
        "hosts": tenant.host_names(),
        "certificate": tenant.tls.as_ref().map(|_| https.is_some_and(|h| h.has_certificate(&tenant.name))),
        "certificates": https.and_then(|h| h.certificate(&tenant.name)).map(|(names, not_after)| {
            let expires = not_after.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
            let left = not_after.duration_since(std::time::SystemTime::now()).unwrap_or_default().as_secs();
            vec![json!({ "names": names, "not_after": expires, "days_left": left / 86_400 })]
        }).unwrap_or_default(),
        "limits": describe_limits(&tenant.limits),
        "routes": tenant.routes.iter().map(|r| json!({
            "path": r.path,
            "kind": r.target.kind(),
            "target": r.target.to_string(),
            "cache": r.cache,
        })).collect::<Vec<_>>(),
        "apps": t.apps.values().map(|a| json!({
            "name": a.record.name,
            "route": a.record.route,
            "version": a.record.version,
            "sha256": a.record.sha256,
            "size": a.record.size,
            "deployed_at": a.record.deployed_at,
            "cache": a.record.cache,
            "kind": a.app.info().map(|i| i.kind),
            "loaded": a.app.is_loaded(),
        })).collect::<Vec<_>>(),
        "instances_in_flight": t.loaded.sandbox.instances_in_flight(),
    })
}

/// A tenant's limits as the API shows them: sizes and durations written as in the configuration.
fn describe_limits(limits: &palisade_config::Limits) -> serde_json::Value {
    let size = |bytes: u64| palisade_config::format_size(bytes);
    let duration = |d: std::time::Duration| humantime::format_duration(d).to_string();
    json!({
        "memory": size(limits.memory),
        "max_total_memory": size(limits.max_total_memory),
        "timeout": duration(limits.timeout),
        "cpu_time": duration(limits.cpu_time),
        "max_concurrency": limits.max_concurrency,
        "max_queue": limits.max_queue,
        "queue_timeout": duration(limits.queue_timeout),
        "weight": limits.weight,
        "max_request_body": size(limits.max_request_body),
        "max_response_body": size(limits.max_response_body),
        "outbound": match limits.outbound.is_empty() {
            true => "none".to_string(),
            false => limits.outbound.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        },
        "kv_max_total": size(limits.kv.max_total),
    })
}

/// A tenant document as shown by the API: a private key given as `tls.key_pem` is never sent back.
fn without_private_key(spec: &serde_json::Value) -> serde_json::Value {
    let mut shown = spec.clone();
    if let Some(key) = shown.get_mut("tls").and_then(|tls| tls.get_mut("key_pem")) {
        *key = json!("(hidden)");
    }
    shown
}

/// One line on a Redis link for `/readyz`: `redis (cluster): sentinel master mymaster at 10.0.0.2:6379, 1
/// failover seen; last error: ...`.
fn describe_link(role: &str, status: &LinkStatus) -> String {
    let at = status.master.as_deref().unwrap_or("not reached yet");
    let what = match &status.master_name {
        Some(name) => format!("sentinel master {name} at {at}, {} failover(s) seen", status.failovers),
        None => format!("server at {at}"),
    };
    match &status.last_error {
        Some(e) => format!("redis ({role}): {what}; failing: {e} (serving what this node has)"),
        None => format!("redis ({role}): {what}; answering"),
    }
}
