//! Configuration → running handlers: one sandbox per tenant, one handler per route.

use std::sync::Arc;

use anyhow::Context as _;
use palisade_config::{Config, HostPattern, Route, RouteTarget, Tenant};
use palisade_http::Handler;
use palisade_sandbox::{Runtime, RuntimeOptions, TenantLimits, TenantSandbox};
use palisade_server::{Router, TenantRoutes};
use palisade_static::StaticDir;

/// The most guest instances the pool holds, whatever the tenants' concurrency adds up to.
const MAX_POOLED_INSTANCES: u32 = 1000;

/// One failure to load a route's target, with where the route is written.
pub(crate) struct RouteError {
    pub(crate) route: Route,
    pub(crate) message: String,
}

/// The runtime sized for this configuration; compiled guests are cached under `data_dir`.
pub(crate) fn runtime(config: &Config) -> anyhow::Result<Runtime> {
    let max_memory = config.tenants.iter().map(|t| t.memory).max().unwrap_or(palisade_config::DEFAULT_MEMORY);
    let wanted: u32 = config.tenants.iter().map(|t| t.max_concurrency).fold(0, u32::saturating_add);
    let options = RuntimeOptions {
        cache_dir: Some(config.server.data_dir.join("cache")),
        max_memory,
        max_instances: wanted.clamp(1, MAX_POOLED_INSTANCES),
    };
    Runtime::new(&options).context("starting the WebAssembly runtime")
}

fn sandbox(tenant: &Tenant) -> Arc<TenantSandbox> {
    TenantSandbox::new(
        &tenant.name,
        TenantLimits { memory: tenant.memory, timeout: tenant.timeout, max_concurrency: tenant.max_concurrency },
        tenant.env.clone(),
        tenant.data.clone(),
    )
}

fn handler(runtime: &Runtime, sandbox: &Arc<TenantSandbox>, route: &Route) -> Result<Arc<dyn Handler>, String> {
    Ok(match &route.target {
        RouteTarget::Static(dir) => {
            Arc::new(StaticDir::open(dir).map_err(|e| format!("cannot open static directory {}: {e}", dir.display()))?)
        }
        RouteTarget::Component(file) => {
            Arc::new(runtime.load_component(file, sandbox.clone()).map_err(|e| e.to_string())?)
        }
        RouteTarget::Cgi(file) => Arc::new(runtime.load_cgi(file, sandbox.clone()).map_err(|e| e.to_string())?),
    })
}

/// Loads every route of every tenant; collects all failures rather than stopping at the first.
pub(crate) fn build_router(config: &Config, runtime: &Runtime) -> Result<Router<Arc<dyn Handler>>, Vec<RouteError>> {
    let mut router = Router::default();
    let mut errors = Vec::new();
    for tenant in &config.tenants {
        let sandbox = sandbox(tenant);
        let mut routes = Vec::new();
        for route in &tenant.routes {
            match handler(runtime, &sandbox, route) {
                Ok(h) => routes.push((route.path.clone(), h)),
                Err(message) => errors.push(RouteError { route: route.clone(), message }),
            }
        }
        let hosts: Vec<String> = tenant.hosts.iter().map(HostPattern::to_string).collect();
        router.add(&hosts, TenantRoutes::new(tenant.name.clone(), routes));
    }
    if errors.is_empty() { Ok(router) } else { Err(errors) }
}

/// `file:line:col: route "/app": message` lines for load failures.
pub(crate) fn describe(errors: &[RouteError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: route {:?}: {}", e.route.location, e.route.path, e.message))
        .collect::<Vec<_>>()
        .join("\n")
}
