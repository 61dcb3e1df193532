//! `wasi:http/proxy` components: a fresh `Store` and instance per request, bodies streamed both ways.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::BodyExt;
use palisade_http::{Body, Fault, Handler, HandlerError, RequestBody, RequestContext};
use tokio::time::Instant;
use tracing::Instrument;
use wasmtime::Store;
use wasmtime::component::{Component, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::engine::RuntimeInner;
use crate::error::LoadError;
use crate::introspect::{AppInfo, component_import_provided, component_info};
use crate::keyvalue::{KvCtx, KvView};
use crate::limits::{GuestLimiter, LimitKind};
use crate::pipe::CappedPipe;
use crate::tenant::TenantSandbox;
use crate::warm::WarmSet;
use palisade_http::{BodyTooLarge, InstanceTime, LimitedBody, declared_length};
use palisade_sched::AppHistory;

/// Per-request host state of a component instance.
pub(crate) struct ComponentState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: GuestHooks,
    limiter: GuestLimiter,
    kv: Option<KvCtx>,
}

impl ComponentState {
    /// What `wasi:keyvalue` calls use.
    pub(crate) fn kv_view(&mut self) -> KvView<'_> {
        KvView { table: &mut self.table, ctx: self.kv.as_ref() }
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// How long an outbound request may take to connect, to its first response byte, and between bytes, at most
/// (a guest may ask for less); the guest's own deadline bounds the whole exchange too.
const OUTBOUND_TIMEOUT: Duration = Duration::from_secs(10);

/// palisade's `wasi:http` policy for one tenant's guests: outbound HTTP only to the tenant's declared
/// `outbound` backends. Anything else fails with `HTTP-request-denied` and counts as the tenant's
/// `outbound_denied` limit.
struct GuestHooks {
    tenant: Arc<TenantSandbox>,
}

impl WasiHttpHooks for GuestHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        if !self.tenant.allows_outbound(request.uri()) {
            let message = format!("outbound request to {} denied (not in `outbound`)", request.uri());
            self.tenant.limit_fired(LimitKind::OutboundDenied, &message);
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let clamp = |asked: Option<Duration>| Some(asked.map_or(OUTBOUND_TIMEOUT, |d| d.min(OUTBOUND_TIMEOUT)));
        let options = wasmtime_wasi_http::RequestOptions {
            connect_timeout: clamp(options.and_then(|o| o.connect_timeout)),
            first_byte_timeout: clamp(options.and_then(|o| o.first_byte_timeout)),
            between_bytes_timeout: clamp(options.and_then(|o| o.between_bytes_timeout)),
        };
        let limit = self.tenant.limits.max_response_body;
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            let response = response.map(|body| {
                LimitedBody::failing_with(body, limit, || wasmtime_wasi_http::Error::HttpResponseBodySize(None))
                    .boxed_unsync()
            });
            Ok((response, Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

/// A compiled, pre-instantiated `wasi:http/proxy` component bound to one tenant.
#[derive(Clone)]
pub struct ComponentApp {
    inner: Arc<AppInner>,
}

struct AppInner {
    /// Tells this app's warm instances from other apps'.
    id: u64,
    /// Compiled and pre-linked; shared with every app of the same bytes, and freed with the last of them.
    prepared: Arc<PreparedComponent>,
    tenant: Arc<TenantSandbox>,
    /// The engine its instances run on, the epoch ticker their deadlines need, and the scheduler.
    runtime: Arc<RuntimeInner>,
    /// How its recent requests ran: long ones start in the background lane.
    history: Arc<AppHistory>,
}

impl std::fmt::Debug for ComponentApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentApp").field("tenant", &self.inner.tenant.name).finish_non_exhaustive()
    }
}

impl ComponentApp {
    pub(crate) fn load(
        runtime: Arc<RuntimeInner>,
        path: &Path,
        bytes: &[u8],
        tenant: Arc<TenantSandbox>,
    ) -> Result<ComponentApp, LoadError> {
        let prepared = runtime.components.get_or_prepare(bytes, || PreparedComponent::new(&runtime, path, bytes))?;
        let id = NEXT_APP_ID.fetch_add(1, Ordering::Relaxed);
        let history = Arc::default();
        Ok(ComponentApp { inner: Arc::new(AppInner { id, prepared, tenant, runtime, history }) })
    }
}

/// A component compiled, checked and pre-linked: everything about an app that does not depend on its tenant.
pub(crate) struct PreparedComponent {
    pre: ProxyPre<ComponentState>,
    info: AppInfo,
}

impl PreparedComponent {
    fn new(runtime: &RuntimeInner, path: &Path, bytes: &[u8]) -> Result<PreparedComponent, LoadError> {
        let component = Component::new(&runtime.engine, bytes).map_err(|e| LoadError::Compile {
            path: path.to_path_buf(),
            kind: "component",
            message: format!("{e:#}"),
        })?;
        let info = component_info(&runtime.engine, &component);
        let missing: Vec<&str> =
            info.imports.iter().map(String::as_str).filter(|i| !component_import_provided(i)).collect();
        if !missing.is_empty() {
            return Err(LoadError::Link {
                path: path.to_path_buf(),
                message: format!(
                    "imports what palisade does not provide: {} (palisade links WASI 0.2: wasi:cli, clocks, \
                     filesystem, io, random, sockets, http and keyvalue)",
                    missing.join(", ")
                ),
            });
        }
        let instance_pre = runtime
            .component_linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link { path: path.to_path_buf(), message: format!("cannot be linked: {e:#}") })?;
        let pre = ProxyPre::new(instance_pre).map_err(|e| LoadError::Link {
            path: path.to_path_buf(),
            message: format!("does not export wasi:http/incoming-handler ({e:#})"),
        })?;
        Ok(PreparedComponent { pre, info })
    }
}

impl ComponentApp {
    /// What the component imports and exports.
    pub fn info(&self) -> &AppInfo {
        &self.inner.prepared.info
    }
}

thread_local! {
    /// This worker thread's warm instances (see [`crate::warm`]).
    static WARM: RefCell<WarmSet<Instance>> = RefCell::new(WarmSet::default());
}

/// Ids for apps, so a worker's warm instances are only ever used by the app that made them.
static NEXT_APP_ID: AtomicU64 = AtomicU64::new(1);

/// One instance's store (the tenant's WASI context and limits) with its output pipes, and the component
/// instantiated in it if it was made warm, ahead of its request.
struct Instance {
    store: Store<ComponentState>,
    proxy: Option<Proxy>,
    stdout: CappedPipe,
    stderr: CappedPipe,
}

/// Drops this worker's warm instances as they pass their idle limit, until none is left: their pool slots,
/// memory and hold on the epoch ticker go with them even if no request comes.
async fn sweep_warm() {
    loop {
        let (expired, next) = WARM.with(|w| w.borrow_mut().sweep(std::time::Instant::now()));
        drop(expired);
        let Some(next) = next else { return };
        tokio::time::sleep_until(next.into()).await;
    }
}

impl AppInner {
    /// A new store for one request, with nothing instantiated in it yet.
    fn new_instance(&self) -> Result<Instance, HandlerError> {
        let (stdout, stderr) = (self.tenant.log_pipe(), self.tenant.log_pipe());
        let mut wasi = WasiCtxBuilder::new();
        self.tenant.configure_wasi(&mut wasi, true)?;
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        let state = ComponentState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: GuestHooks { tenant: self.tenant.clone() },
            limiter: self.tenant.limiter(),
            kv: self.tenant.kv.clone(),
        };
        let mut store = Store::new(self.prepared.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        Ok(Instance { store, proxy: None, stdout, stderr })
    }

    /// This worker's warm instance of the app if it has one, or a new store to instantiate in.
    fn take_instance(&self) -> Result<Instance, HandlerError> {
        match WARM.with(|w| w.borrow_mut().take(self.id)) {
            Some(mut warm) => {
                warm.store.data_mut().limiter.warm = false;
                Ok(warm)
            }
            None => self.new_instance(),
        }
    }

    /// Instantiates the app's next instance on this worker, unless the worker has one or should not.
    /// Failures are left for the request that instantiates next to report.
    async fn make_warm(&self) {
        if !WARM.with(|w| w.borrow_mut().wants(self.id, std::time::Instant::now())) {
            return;
        }
        let Ok(mut instance) = self.new_instance() else { return };
        instance.store.data_mut().limiter.warm = true;
        // Guest code may run while instantiating (start functions): it is held to the same limits.
        let deadline = Instant::now() + self.tenant.limits.timeout;
        self.runtime.arm_deadline(&mut instance.store, deadline, self.tenant.limits.cpu_time);
        let made = tokio::time::timeout_at(deadline, self.prepared.pre.instantiate_async(&mut instance.store)).await;
        let now = std::time::Instant::now();
        match made {
            Ok(Ok(proxy)) => {
                instance.proxy = Some(proxy);
                let dropped = WARM.with(|w| w.borrow_mut().put(self.id, instance, now));
                drop(dropped);
                if WARM.with(|w| w.borrow_mut().start_sweep()) {
                    // On this worker (its runtime has one thread): the set is the thread's.
                    tokio::spawn(sweep_warm());
                }
            }
            _ => WARM.with(|w| w.borrow_mut().failed(self.id, now)),
        }
    }

    async fn handle(
        self: Arc<Self>,
        request: http::Request<RequestBody>,
        secure: bool,
    ) -> Result<http::Response<Body>, HandlerError> {
        let tenant = &self.tenant;
        tenant.check_declared_body(request.headers())?;
        let permit = tenant.admit().await?;
        let deadline = Instant::now() + tenant.limits.timeout;
        let Instance { mut store, proxy, stdout, stderr } = self.take_instance()?;
        self.runtime.arm_deadline(&mut store, deadline, tenant.limits.cpu_time);

        // A body over `max_request_body` is cut off with an error the guest sees as a failed read; whatever
        // the guest does next, the client gets 413.
        let body_too_large = Arc::new(AtomicBool::new(false));
        let request = {
            let flag = body_too_large.clone();
            let limit = tenant.limits.max_request_body;
            request.map(|b| LimitedBody::new(b, limit, move || flag.store(true, Ordering::Release)).boxed_unsync())
        };

        // Whether the guest has handed over its response head. Failures before that are returned to the caller
        // (which logs them once); failures after it can only cut the body short, so the task logs them.
        let responded = Arc::new(AtomicBool::new(false));
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let on_response = {
            let responded = responded.clone();
            move |r| {
                responded.store(true, Ordering::Release);
                let _ = sender.send(r);
            }
        };
        let (guest_request, outparam) = {
            let mut http = store.data_mut().http();
            let req = http
                .new_incoming_request(
                    if secure { Scheme::Https } else { Scheme::Http },
                    request.map(|b| b.map_err(body_error)),
                )
                .map_err(|e| {
                    HandlerError::new(Fault::BadRequest, "request cannot be given to the guest", format!("{e:#}"))
                })?;
            let out = http
                .new_response_outparam_from_callback(on_response)
                .map_err(|e| HandlerError::new(Fault::Internal, "internal error", format!("{e:#}")))?;
            (req, out)
        };

        // The guest keeps running after it has sent the response head (it streams the body), so it runs on its
        // own task; the task ends it at the deadline either way. Its run (instantiation, the call, teardown)
        // is handed to the scheduler, which may move it to the background lane: the run owns the store and the
        // concurrency permit, so the slot is freed with the instance's pool slot wherever it ran, and the pool
        // never holds more instances than the slots (plus the warm ones).
        let app = self.clone();
        let clock = InstanceTime::start();
        let run_clock = clock.clone();
        let pre = self.prepared.pre.clone();
        let run = async move {
            let result = async {
                let proxy = match proxy {
                    Some(warm) => warm,
                    None => pre.instantiate_async(&mut store).await?,
                };
                proxy.wasi_http_incoming_handler().call_handle(&mut store, guest_request, outparam).await
            }
            .await;
            run_clock.stop();
            // Tearing the instance down (resetting its memory for the pool) and making the next one are most
            // of an instance's cost; the connection's task sends the response first, so neither adds to the
            // request's latency.
            tokio::task::yield_now().await;
            // The slot is free once the instance is gone: the store goes first. In the background lane both
            // go to a thread of normal priority (`dispose`).
            palisade_sched::dispose((store, permit));
            result
        };
        let mut guest = self.runtime.scheduler.run(&tenant.share, &self.history, run);
        let task = tokio::spawn(
            async move {
                let result = match tokio::time::timeout_at(deadline, &mut guest).await {
                    Ok(Ok(r)) => r.map_err(|e| app.tenant.guest_failure(&e)),
                    Ok(Err(lost)) => Err(HandlerError::new(Fault::Internal, "internal error", lost.to_string())),
                    Err(_) => {
                        // Waits until the guest is gone wherever it ran, so its slot is free again before the
                        // client hears about the timeout.
                        guest.stop().await;
                        Err(app.tenant.timed_out())
                    }
                };
                app.tenant.log_output("stderr", &stderr);
                app.tenant.log_output("stdout", &stdout);
                if let Err(e) = &result
                    && responded.load(Ordering::Acquire)
                {
                    tracing::warn!(fault = ?e.fault, "guest failed while streaming its response: {}", e.detail);
                }
                app.make_warm().await;
                result
            }
            .in_current_span(),
        );

        // The task answers by the deadline at the latest: with the guest's response head, or by ending.
        let outcome = match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(error_code_failure(&code)),
            // The guest returned, trapped or ran out of time without setting a response.
            Err(_) => match task.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err(HandlerError::new(
                    Fault::GuestFailed,
                    "guest sent no response",
                    "guest returned without calling response-outparam.set",
                )),
                Err(join) => Err(HandlerError::new(Fault::Internal, "internal error", join.to_string())),
            },
        };
        // The guest saw a failed read at the limit; what it answered after that is beside the point.
        if body_too_large.load(Ordering::Acquire) {
            return Err(self.tenant.body_too_large(None));
        }
        let mut response =
            outcome.and_then(|response| self.limit_response(response.map(|b| b.map_err(Into::into).boxed_unsync())))?;
        response.extensions_mut().insert(clock);
        Ok(response)
    }

    /// Holds the guest's response to `max_response_body`: a declared length over it is a 502 before anything
    /// is sent; a streamed body is cut off at the limit (the client sees an incomplete response).
    fn limit_response(self: &Arc<Self>, response: http::Response<Body>) -> Result<http::Response<Body>, HandlerError> {
        // A final answer is 200 to 599: an interim status (1xx, 101 included: the guest cannot take the
        // connection over) or one past 599 is no answer a client could act on.
        let status = response.status().as_u16();
        if !(200..=599).contains(&status) {
            let detail = format!("guest answered with status {status}, which is not a final status (200 to 599)");
            return Err(HandlerError::new(Fault::GuestBadResponse, "guest sent an invalid status", detail));
        }
        let limit = self.tenant.limits.max_response_body;
        if let Some(n) = declared_length(response.headers())
            && n > limit
        {
            let detail = format!("guest declared a {n}-byte body; the limit is {limit}");
            self.tenant.limit_fired(LimitKind::ResponseBody, &detail);
            return Err(HandlerError::new(Fault::GuestBadResponse, "guest response too large", detail));
        }
        let app = self.clone();
        let span = tracing::Span::current();
        Ok(response.map(|body| {
            LimitedBody::new(body, limit, move || {
                span.in_scope(|| {
                    app.tenant.limit_fired(LimitKind::ResponseBody, &format!("response cut off after {limit} bytes"));
                });
            })
            .boxed_unsync()
        }))
    }
}

/// Request body errors as wasi-http reports them to the guest.
fn body_error(e: palisade_http::BoxError) -> wasmtime_wasi_http::Error {
    if e.is::<BodyTooLarge>() {
        return wasmtime_wasi_http::Error::HttpRequestBodySize(None);
    }
    match e.downcast::<hyper::Error>() {
        Ok(h) => wasmtime_wasi_http::Error::Hyper(*h),
        Err(other) => wasmtime_wasi_http::Error::InternalError(Some(other.to_string())),
    }
}

fn error_code_failure(code: &ErrorCode) -> HandlerError {
    HandlerError::new(Fault::GuestFailed, "guest reported an error", format!("guest set error code {code:?}"))
}

impl Handler for ComponentApp {
    fn handle(
        &self,
        request: http::Request<RequestBody>,
        context: RequestContext,
    ) -> BoxFuture<'static, Result<http::Response<Body>, HandlerError>> {
        Box::pin(self.inner.clone().handle(request, context.secure))
    }
}
