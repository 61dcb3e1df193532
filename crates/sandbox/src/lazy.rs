//! Deployed apps loaded on their first request, and unloaded when many others were used more recently.
//!
//! A server with thousands of distinct apps (a hosting provider's tenants each deploy their own) should not
//! compile or load every one at start-up, nor keep compiled code for apps nobody calls. A [`LazyGuest`] is the
//! route's handler from the start; the first request loads the guest (its bytes from the registry, compiled
//! code from the engine's cache on disk) on a blocking thread, and later requests go straight to it. The
//! runtime keeps at most `max_loaded_apps` of them loaded: loading one more unloads the one used least
//! recently, whose compiled code is freed once no request holds it. A request counts as a use with a clock
//! reading and one relaxed atomic store, so the hot path takes no lock; the least recently used is found by a scan, on the cold path
//! of a load only.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use futures::future::BoxFuture;
use palisade_http::{Body, Fault, Handler, HandlerError, RequestBody, RequestContext};

use crate::engine::Runtime;
use crate::introspect::AppInfo;
use crate::tenant::TenantSandbox;

/// Where a lazy guest's bytes come from (the registry's copy, checked against its digest).
pub type GuestBytes = Box<dyn Fn() -> Result<Vec<u8>, String> + Send + Sync>;

/// A deployed app as a route's handler, loaded on its first request (see the module documentation).
pub struct LazyGuest {
    inner: Arc<LazyInner>,
}

struct LazyInner {
    runtime: Runtime,
    sandbox: Arc<TenantSandbox>,
    label: PathBuf,
    bytes: GuestBytes,
    loaded: ArcSwapOption<Loaded>,
    /// One load at a time: requests that arrive during a load wait for it.
    loading: tokio::sync::Mutex<()>,
    /// When it was last used, in milliseconds since the resident set started.
    last_used: AtomicU64,
}

/// A loaded guest: its handler and what it imports and exports.
struct Loaded {
    handler: Arc<dyn Handler>,
    info: AppInfo,
}

impl LazyGuest {
    /// The app `label` (`tenant/name`) of `sandbox`'s tenant, whose bytes `bytes` reads; loaded already with
    /// `preloaded` (a deploy, which validated it by loading it), or at its first request.
    pub fn new(
        runtime: &Runtime,
        sandbox: Arc<TenantSandbox>,
        label: PathBuf,
        bytes: GuestBytes,
        preloaded: Option<(Arc<dyn Handler>, AppInfo)>,
    ) -> LazyGuest {
        let inner = Arc::new(LazyInner {
            runtime: runtime.clone(),
            sandbox,
            label,
            bytes,
            loaded: ArcSwapOption::empty(),
            loading: tokio::sync::Mutex::new(()),
            last_used: AtomicU64::new(runtime.resident().now()),
        });
        if let Some((handler, info)) = preloaded {
            inner.install(Loaded { handler, info });
        }
        LazyGuest { inner }
    }

    /// What the guest imports and exports, once it is loaded.
    pub fn info(&self) -> Option<AppInfo> {
        self.inner.loaded.load().as_ref().map(|l| l.info.clone())
    }

    /// Whether its compiled code is loaded now.
    pub fn is_loaded(&self) -> bool {
        self.inner.loaded.load().is_some()
    }
}

impl LazyInner {
    /// Makes `loaded` this app's guest and enters it in the resident set, which may unload others.
    fn install(self: &Arc<Self>, loaded: Loaded) {
        self.loaded.store(Some(Arc::new(loaded)));
        self.runtime.resident().admit(self);
    }

    /// The loaded guest, loading it now if it is not.
    async fn load(self: &Arc<Self>) -> Result<Arc<Loaded>, HandlerError> {
        let _one = self.loading.lock().await;
        if let Some(loaded) = self.loaded.load_full() {
            return Ok(loaded);
        }
        let started = Instant::now();
        let this = self.clone();
        let made = tokio::task::spawn_blocking(move || {
            let bytes = (this.bytes)()?;
            this.runtime.load_guest(&this.label, &bytes, this.sandbox.clone()).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|made| made);
        let (handler, info) = made.map_err(|e| {
            tracing::error!(app = %self.label.display(), "deployed app could not be loaded: {e}");
            HandlerError::new(Fault::Internal, "the app could not be loaded", e)
        })?;
        metrics::counter!("palisade_app_loads_total").increment(1);
        tracing::debug!(app = %self.label.display(), took = ?started.elapsed(), "deployed app loaded");
        self.install(Loaded { handler, info });
        self.loaded.load_full().ok_or_else(|| HandlerError::new(Fault::Internal, "the app was unloaded", ""))
    }
}

impl Handler for LazyGuest {
    fn handle(
        &self,
        request: http::Request<RequestBody>,
        context: RequestContext,
    ) -> BoxFuture<'static, Result<http::Response<Body>, HandlerError>> {
        let inner = &self.inner;
        inner.last_used.store(inner.runtime.resident().now(), Ordering::Relaxed);
        if let Some(loaded) = inner.loaded.load().as_ref() {
            return loaded.handler.handle(request, context);
        }
        let inner = inner.clone();
        Box::pin(async move { inner.load().await?.handler.handle(request, context).await })
    }
}

/// The lazy guests loaded now, at most `budget` of them.
pub(crate) struct Resident {
    budget: usize,
    start: Instant,
    loaded: Mutex<Vec<Weak<LazyInner>>>,
}

impl Resident {
    pub(crate) fn new(budget: usize) -> Resident {
        Resident { budget: budget.max(1), start: Instant::now(), loaded: Mutex::new(Vec::new()) }
    }

    /// Milliseconds since the set started: the clock of `last_used`.
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Enters `app`, just loaded; unloads the least recently used others while more than the budget are loaded.
    fn admit(&self, app: &Arc<LazyInner>) {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        // Apps dropped (removed, replaced) or unloaded meanwhile leave the set.
        loaded.retain(|w| w.upgrade().is_some_and(|a| a.loaded.load().is_some() && !Arc::ptr_eq(&a, app)));
        loaded.push(Arc::downgrade(app));
        while loaded.len() > self.budget {
            let oldest = loaded
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.upgrade().map(|a| (i, a)))
                .filter(|(_, a)| !Arc::ptr_eq(a, app))
                .min_by_key(|(_, a)| a.last_used.load(Ordering::Relaxed));
            let Some((i, victim)) = oldest else { break };
            victim.loaded.store(None);
            loaded.swap_remove(i);
            metrics::counter!("palisade_app_unloads_total").increment(1);
            tracing::debug!(app = %victim.label.display(), "deployed app unloaded: used least recently");
        }
        metrics::gauge!("palisade_apps_loaded").set(loaded.len() as f64);
    }
}
