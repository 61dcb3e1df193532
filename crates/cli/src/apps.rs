//! Configuration → running handlers: one sandbox per tenant, one handler per route.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use palisade_cache::{Cached, Caches};
use palisade_config::{Config, DataAccess, KvBackend, Route, RouteTarget, Tenant};
use palisade_http::Handler;
use palisade_kv::{KvStore, RedbStore, RedisStore};
use palisade_proxy::Proxy;
use palisade_sandbox::{AppInfo, DATA_MOUNT, GuestDirs, Preopen, Present, Runtime, RuntimeOptions, TenantSandbox};
use palisade_server::{Router, Routes, TenantRoutes};
use palisade_static::StaticDir;

/// The most guest instances the pool holds, whatever the tenants' concurrency adds up to.
const MAX_POOLED_INSTANCES: u32 = 1000;

/// One failure to load a route's target, with where the route is written.
pub(crate) struct RouteError {
    pub(crate) route: Route,
    pub(crate) message: String,
}

/// A route that loaded, and what its guest imports and exports (none for static routes).
pub(crate) struct LoadedRoute {
    pub(crate) tenant: String,
    pub(crate) path: String,
    pub(crate) info: Option<AppInfo>,
}

/// The runtime sized for this configuration; compiled guests are cached under `data_dir`. Its engine starts
/// with the first guest loaded.
pub(crate) fn runtime(config: &Config) -> Runtime {
    let max_memory = config.tenants.iter().map(|t| t.limits.memory).max().unwrap_or(palisade_config::DEFAULT_MEMORY);
    // With the admin API, tenants can come later: the pool is sized for them too.
    let wanted: u32 = match config.admin {
        Some(_) => MAX_POOLED_INSTANCES,
        None => config.tenants.iter().map(|t| t.limits.max_concurrency).fold(0, u32::saturating_add),
    };
    let guest_memory = config.server.max_guest_memory.unwrap_or_else(crate::machine::default_guest_memory);
    let mut options =
        runtime_options(&config.server.data_dir.join("cache"), max_memory, wanted, config.server.workers, guest_memory);
    options.max_loaded_apps = config.server.max_loaded_apps;
    Runtime::new(&options)
}

/// A runtime caching compiled guests in `cache_dir`, sized for `instances` at once of up to `max_memory` each
/// on `workers` worker threads (one per core if `None`), all of them together holding at most `guest_memory`.
pub(crate) fn new_runtime(
    cache_dir: &Path,
    max_memory: u64,
    instances: u32,
    workers: Option<usize>,
    guest_memory: u64,
) -> Runtime {
    Runtime::new(&runtime_options(cache_dir, max_memory, instances, workers, guest_memory))
}

fn runtime_options(
    cache_dir: &Path,
    max_memory: u64,
    instances: u32,
    workers: Option<usize>,
    guest_memory: u64,
) -> RuntimeOptions {
    RuntimeOptions {
        cache_dir: Some(cache_dir.to_path_buf()),
        max_memory,
        max_instances: instances.clamp(1, MAX_POOLED_INSTANCES),
        workers: workers.unwrap_or_else(palisade_server::default_workers),
        max_guest_memory: guest_memory,
        max_loaded_apps: palisade_config::DEFAULT_MAX_LOADED_APPS,
    }
}

fn sandbox(runtime: &Runtime, tenant: &Tenant, kv: Option<&Arc<dyn KvStore>>) -> Arc<TenantSandbox> {
    let mount = |writable| -> Vec<Preopen> {
        tenant.data.iter().map(|d| Preopen { host: d.clone(), guest: DATA_MOUNT.into(), writable }).collect()
    };
    let components = match tenant.component_data {
        DataAccess::None => Vec::new(),
        DataAccess::ReadOnly => mount(false),
        DataAccess::ReadWrite => mount(true),
    };
    runtime.sandbox(
        &tenant.name,
        tenant.limits.clone(),
        tenant.env.clone(),
        GuestDirs { cgi: mount(true), components },
        kv.cloned(),
    )
}

/// One route target, loaded.
pub(crate) struct RouteHandler {
    pub(crate) handler: Arc<dyn Handler>,
    /// The guest's imports and exports, if it is a guest.
    pub(crate) info: Option<AppInfo>,
    /// The proxy, if it is one (its upstreams' health is shown by the console).
    pub(crate) proxy: Option<Arc<Proxy>>,
}

/// The handler for one route target.
pub(crate) fn handler(
    runtime: &Runtime,
    sandbox: &Arc<TenantSandbox>,
    target: &RouteTarget,
) -> Result<RouteHandler, String> {
    let (handler, info, proxy): (Arc<dyn Handler>, _, _) = match target {
        RouteTarget::Static { root, dotfiles } => {
            let dir =
                StaticDir::open(root).map_err(|e| format!("cannot open static directory {}: {e}", root.display()))?;
            (Arc::new(Present::new(Arc::new(dir.with_dotfiles(*dotfiles)), sandbox.share().clone())), None, None)
        }
        RouteTarget::Component(file) => {
            let app = runtime.load_component(file, sandbox.clone()).map_err(|e| e.to_string())?;
            let info = app.info().clone();
            (Arc::new(app), Some(info), None)
        }
        RouteTarget::Cgi(file) => {
            let app = runtime.load_cgi(file, sandbox.clone()).map_err(|e| e.to_string())?;
            let info = app.info().clone();
            (Arc::new(app), Some(info), None)
        }
        RouteTarget::Proxy(config) => {
            let proxy = Arc::new(Proxy::new(config, sandbox.limits().max_request_body).map_err(|e| e.to_string())?);
            (Arc::new(Present::new(proxy.clone(), sandbox.share().clone())), None, Some(proxy))
        }
    };
    Ok(RouteHandler { handler, info, proxy })
}

/// The key-value store `config` names: the embedded redb file, or a (lazily connected) Redis server.
/// The key-value store as the backend it is, beside the trait object guests use.
#[derive(Clone)]
pub(crate) enum KvBackendStore {
    /// The embedded file, which a hand-over closes for the new process.
    Redb(RedbStore),
    /// Redis, whose link `/readyz` and the metrics report on.
    Redis(RedisStore),
}

/// The key-value store `config` names, also as itself; `taking_over` (how long guests may wait) opens the
/// embedded file once the process this one replaces lets go of it.
pub(crate) fn kv_store(
    config: &Config,
    taking_over: Option<Duration>,
) -> anyhow::Result<(Arc<dyn KvStore>, KvBackendStore)> {
    Ok(match &config.kv {
        KvBackend::Redb(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let store = match taking_over {
                Some(wait) => RedbStore::open_when_free(path, wait),
                None => RedbStore::open(path),
            };
            let store = store.with_context(|| format!("opening the key-value store {}", path.display()))?;
            (Arc::new(store.clone()), KvBackendStore::Redb(store))
        }
        KvBackend::Redis(url) => {
            let store = RedisStore::connect(url).context("the [kv] backend")?;
            let (probe, url) = (store.clone(), url.clone());
            // Not fatal: guests get an error while Redis is away, and the store reconnects when it is back.
            tokio::spawn(async move {
                match probe.ping().await {
                    Ok(()) => tracing::info!("key-value store: Redis at {url}"),
                    Err(e) => tracing::warn!("key-value store: Redis at {url} does not answer yet: {e}"),
                }
            });
            (Arc::new(store.clone()), KvBackendStore::Redis(store))
        }
    })
}

/// One tenant's configured routes, loaded: its sandbox (shared with the apps deployed to it later) and a
/// handler per route.
pub(crate) struct LoadedTenant {
    pub(crate) tenant: Tenant,
    pub(crate) sandbox: Arc<TenantSandbox>,
    pub(crate) routes: Vec<(String, Arc<dyn Handler>)>,
    /// Its proxy routes, by path.
    pub(crate) proxies: Vec<(String, Arc<Proxy>)>,
}

impl LoadedTenant {
    /// Whether the configuration has a route at exactly `path` (a deployed app there would be shadowed).
    pub(crate) fn has_route(&self, path: &str) -> bool {
        self.routes.iter().any(|(p, _)| p == path)
    }

    /// The tenant's entry in a router: its configured routes plus `extra` ones (deployed apps), with its
    /// HTTPS policy.
    pub(crate) fn routes_with(
        &self,
        extra: impl Iterator<Item = (String, Arc<dyn Handler>)>,
    ) -> TenantRoutes<Arc<dyn Handler>> {
        let routes = self.routes.iter().map(|(p, h)| (p.clone(), h.clone())).chain(extra).collect();
        let mut routes = TenantRoutes::new(self.tenant.name.as_str(), routes);
        routes.hsts = self.tenant.hsts.as_deref().and_then(|v| http::HeaderValue::from_str(v).ok());
        routes.https_redirect = self.tenant.https_redirect;
        routes
    }
}

/// Loads every route of every tenant (their components' buckets in `kv`); collects all failures rather than
/// stopping at the first.
pub(crate) fn load_tenants(
    config: &Config,
    runtime: &Runtime,
    kv: Option<&Arc<dyn KvStore>>,
    caches: &Caches,
) -> Result<(Vec<LoadedTenant>, Vec<LoadedRoute>), Vec<RouteError>> {
    let mut tenants = Vec::new();
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for tenant in &config.tenants {
        let (t, routes) = load_tenant(tenant, runtime, kv, caches, &mut errors);
        tenants.push(t);
        loaded.extend(routes);
    }
    if errors.is_empty() { Ok((tenants, loaded)) } else { Err(errors) }
}

/// Loads one tenant's sandbox and routes; each route that fails goes to `errors` and is left out.
pub(crate) fn load_tenant(
    tenant: &Tenant,
    runtime: &Runtime,
    kv: Option<&Arc<dyn KvStore>>,
    caches: &Caches,
    errors: &mut Vec<RouteError>,
) -> (LoadedTenant, Vec<LoadedRoute>) {
    let sandbox = sandbox(runtime, tenant, kv);
    let mut routes = Vec::new();
    let mut proxies = Vec::new();
    let mut loaded = Vec::new();
    for route in &tenant.routes {
        match handler(runtime, &sandbox, &route.target) {
            Ok(RouteHandler { handler: h, info, proxy }) => {
                proxies.extend(proxy.map(|p| (route.path.clone(), p)));
                let h: Arc<dyn Handler> = match route.cache {
                    true => {
                        Arc::new(Cached::new(h, caches.tenant(&tenant.name, tenant.cache.max_size, tenant.cache.disk)))
                    }
                    false => h,
                };
                routes.push((route.path.clone(), h));
                loaded.push(LoadedRoute { tenant: tenant.name.clone(), path: route.path.clone(), info });
            }
            Err(message) => errors.push(RouteError { route: route.clone(), message }),
        }
    }
    (LoadedTenant { tenant: tenant.clone(), sandbox, routes, proxies }, loaded)
}

/// A router for `config`'s routes alone (`palisade check`).
pub(crate) fn build_router(
    config: &Config,
    runtime: &Runtime,
    kv: Option<&Arc<dyn KvStore>>,
) -> Result<(Routes, Vec<LoadedRoute>), Vec<RouteError>> {
    let (tenants, loaded) = load_tenants(config, runtime, kv, &Caches::default())?;
    let mut router = Router::default();
    for t in &tenants {
        router.add(&t.tenant.host_names(), t.routes_with(std::iter::empty()));
    }
    Ok((router, loaded))
}

/// `file:line:col: route "/app": message` lines for load failures.
pub(crate) fn describe(errors: &[RouteError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: route {:?}: {}", e.route.location, e.route.path, e.message))
        .collect::<Vec<_>>()
        .join("\n")
}
