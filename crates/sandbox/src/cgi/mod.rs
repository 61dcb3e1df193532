//! CGI/1.1 programs compiled to WASI preview1 command modules: a fresh instance per request, in-process.

mod meta;
mod response;

/// Whether `output` parses as a CGI response (for the fuzz targets).
#[cfg(fuzzing)]
pub(crate) fn parse_response(output: bytes::Bytes) -> bool {
    response::parse(output).is_ok()
}

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use palisade_http::{Body, Fault, Handler, HandlerError, InstanceTime, RequestBody, RequestContext, full_body};
use palisade_sched::AppHistory;
use tokio::time::Instant;
use wasmtime::{InstancePre, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use crate::engine::RuntimeInner;
use crate::error::LoadError;
use crate::introspect::{AppInfo, foreign_module_imports, module_info};
use crate::limits::{GuestLimiter, LimitKind};
use crate::pipe::CappedPipe;
use crate::tenant::TenantSandbox;

/// Room for the CGI header block on top of `max_response_body` (stdout holds both).
const CGI_HEADER_ALLOWANCE: u64 = 64 << 10;

/// Per-request host state of a CGI instance.
pub(crate) struct CgiState {
    pub(crate) wasi: WasiP1Ctx,
    limiter: GuestLimiter,
}

/// A compiled, pre-instantiated CGI command module bound to one tenant.
#[derive(Clone)]
pub struct CgiApp {
    inner: Arc<CgiInner>,
}

struct CgiInner {
    /// Compiled and pre-linked; shared with every app of the same bytes, and freed with the last of them.
    prepared: Arc<PreparedModule>,
    /// argv[0] for the program: its file name, as a CGI server would exec it.
    program: String,
    tenant: Arc<TenantSandbox>,
    /// The engine its instances run on, the epoch ticker their deadlines need, and the scheduler.
    runtime: Arc<RuntimeInner>,
    /// How its recent requests ran: long ones start in the background lane.
    history: Arc<AppHistory>,
}

impl std::fmt::Debug for CgiApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CgiApp").field("program", &self.inner.program).finish_non_exhaustive()
    }
}

impl CgiApp {
    pub(crate) fn load(
        runtime: Arc<RuntimeInner>,
        path: &Path,
        bytes: &[u8],
        tenant: Arc<TenantSandbox>,
    ) -> Result<CgiApp, LoadError> {
        let prepared = runtime.modules.get_or_prepare(bytes, || PreparedModule::new(&runtime, path, bytes))?;
        let program = path.file_name().map_or_else(|| "cgi".into(), |n| n.to_string_lossy().into_owned());
        let history = Arc::default();
        Ok(CgiApp { inner: Arc::new(CgiInner { prepared, program, tenant, runtime, history }) })
    }
}

/// A command module compiled, checked and pre-linked: everything about a CGI app that does not depend on its
/// tenant or its file name.
pub(crate) struct PreparedModule {
    pre: InstancePre<CgiState>,
    info: AppInfo,
}

impl PreparedModule {
    fn new(runtime: &RuntimeInner, path: &Path, bytes: &[u8]) -> Result<PreparedModule, LoadError> {
        let module = Module::new(&runtime.engine, bytes).map_err(|e| LoadError::Compile {
            path: path.to_path_buf(),
            kind: "module",
            message: format!("{e:#}"),
        })?;
        let foreign = foreign_module_imports(&module);
        if !foreign.is_empty() {
            return Err(LoadError::Link {
                path: path.to_path_buf(),
                message: format!(
                    "imports what palisade does not provide: {} (CGI modules may import only wasi_snapshot_preview1)",
                    foreign.join(", ")
                ),
            });
        }
        if module.get_export("_start").is_none() {
            return Err(LoadError::Link {
                path: path.to_path_buf(),
                message: "is not a WASI command module: it has no `_start` export (build it as a program with main())"
                    .into(),
            });
        }
        let pre = runtime
            .module_linker
            .instantiate_pre(&module)
            .map_err(|e| LoadError::Link { path: path.to_path_buf(), message: format!("cannot be linked: {e:#}") })?;
        let info = module_info(&module);
        Ok(PreparedModule { pre, info })
    }
}

impl CgiApp {
    /// What the module imports and exports.
    pub fn info(&self) -> &AppInfo {
        &self.inner.prepared.info
    }
}

impl CgiInner {
    async fn handle(
        self: Arc<Self>,
        request: http::Request<RequestBody>,
        cx: RequestContext,
    ) -> Result<http::Response<Body>, HandlerError> {
        let tenant = &self.tenant;
        tenant.check_declared_body(request.headers())?;
        let permit = tenant.admit().await?;
        let deadline = Instant::now() + tenant.limits.timeout;
        let (parts, body) = request.into_parts();

        // A CGI program reads its body from stdin, so the body is collected first (bounded, and within the
        // request's deadline: a client that trickles its body cannot hold an instance slot forever).
        let limit = usize::try_from(tenant.limits.max_request_body).unwrap_or(usize::MAX);
        let body = match tokio::time::timeout_at(deadline, collect_bounded(body, limit)).await {
            Ok(Ok(Some(bytes))) => bytes,
            Ok(Ok(None)) => return Err(tenant.body_too_large(None)),
            Ok(Err(e)) => {
                return Err(HandlerError::new(Fault::BadRequest, "could not read request body", e.to_string()));
            }
            Err(_) => return Err(HandlerError::new(Fault::BadRequest, "request body not received in time", "")),
        };

        let meta = meta::MetaRequest {
            method: &parts.method,
            uri: &parts.uri,
            version: parts.version,
            headers: &parts.headers,
            content_length: (!body.is_empty() || parts.headers.contains_key(http::header::CONTENT_LENGTH))
                .then_some(body.len()),
        };
        let vars = meta::meta_variables(&meta, &cx)
            .map_err(|e| HandlerError::new(Fault::BadRequest, "path cannot be given to a CGI program", e))?;

        let max_stdout = tenant.limits.max_response_body.saturating_add(CGI_HEADER_ALLOWANCE);
        let stdout = CappedPipe::new(usize::try_from(max_stdout).unwrap_or(usize::MAX));
        let stderr = tenant.log_pipe();
        let mut store = self.new_store(vars, body, &stdout, &stderr)?;
        self.runtime.arm_deadline(&mut store, deadline, tenant.limits.cpu_time);

        // The run owns the store and the concurrency permit: the scheduler may move it to the background lane,
        // and both go when it ends, wherever it ran.
        let clock = InstanceTime::start();
        let (pre, run_clock) = (self.prepared.pre.clone(), clock.clone());
        let run = async move {
            let result = async {
                let instance = pre.instantiate_async(&mut store).await?;
                let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                start.call_async(&mut store, ()).await
            }
            .await;
            run_clock.stop();
            // The store goes first (the slot is free once the instance is gone), in the background lane on a
            // thread of normal priority (`dispose`).
            palisade_sched::dispose((store, permit));
            result
        };
        let mut guest = self.runtime.scheduler.run(&tenant.share, &self.history, run);
        let outcome = match tokio::time::timeout_at(deadline, &mut guest).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(lost)) => return Err(HandlerError::new(Fault::Internal, "internal error", lost.to_string())),
            Err(elapsed) => {
                guest.stop().await;
                Err(elapsed)
            }
        };
        tenant.log_output("stderr", &stderr);

        match outcome {
            Err(_) => return Err(tenant.timed_out()),
            Ok(Err(e)) => match e.downcast_ref::<I32Exit>() {
                // A program that exits (with any code) has still produced its output; CGI judges the output.
                Some(I32Exit(code)) => {
                    if *code != 0 {
                        tracing::info!(exit_code = code, "CGI program exited with a non-zero status");
                    }
                }
                None => return Err(tenant.guest_failure(&e)),
            },
            Ok(Ok(())) => {}
        }
        // Too large is judged before well-formed: output cut off at the cap may not parse.
        let too_large = || {
            let detail = format!("CGI response body over {} bytes", tenant.limits.max_response_body);
            tenant.limit_fired(LimitKind::ResponseBody, &detail);
            HandlerError::new(Fault::GuestBadResponse, "guest response too large", detail)
        };
        if stdout.overflowed() {
            return Err(too_large());
        }
        let parsed = response::parse(stdout.take())
            .map_err(|e| HandlerError::new(Fault::GuestBadResponse, "guest sent a malformed CGI response", e))?;
        if parsed.body.len() as u64 > tenant.limits.max_response_body {
            return Err(too_large());
        }
        let mut out = http::Response::new(if parts.method == http::Method::HEAD {
            full_body(Bytes::new())
        } else {
            full_body(parsed.body)
        });
        *out.status_mut() = parsed.status;
        *out.headers_mut() = parsed.headers;
        out.extensions_mut().insert(clock);
        Ok(out)
    }

    fn new_store(
        &self,
        vars: Vec<(String, String)>,
        body: Bytes,
        stdout: &CappedPipe,
        stderr: &CappedPipe,
    ) -> Result<Store<CgiState>, HandlerError> {
        let mut wasi = WasiCtxBuilder::new();
        self.tenant.configure_wasi(&mut wasi, false)?;
        wasi.arg(&self.program)
            .envs(&vars)
            .stdin(MemoryInputPipe::new(body))
            .stdout(stdout.clone())
            .stderr(stderr.clone());
        let state = CgiState { wasi: wasi.build_p1(), limiter: self.tenant.limiter() };
        let mut store = Store::new(self.prepared.pre.module().engine(), state);
        store.limiter(|s| &mut s.limiter);
        Ok(store)
    }
}

/// Reads a whole body, or `None` once it passes `limit` bytes.
async fn collect_bounded(mut body: RequestBody, limit: usize) -> Result<Option<Bytes>, palisade_http::BoxError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buf.len() + data.len() > limit {
                return Ok(None);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Some(buf.freeze()))
}

impl Handler for CgiApp {
    fn handle(
        &self,
        request: http::Request<RequestBody>,
        context: RequestContext,
    ) -> BoxFuture<'static, Result<http::Response<Body>, HandlerError>> {
        Box::pin(self.inner.clone().handle(request, context))
    }
}
