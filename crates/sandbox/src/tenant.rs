//! What one tenant's guests share: limits, environment, directories, concurrency permits, the memory
//! budget, and the counters of limits that fired.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade_config::{KvLimits, Limits};
use palisade_http::{Fault, HandlerError};
use palisade_kv::{KvStore, Quota};
use palisade_sched::Share;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::keyvalue::KvCtx;
use crate::limits::{GuestLimiter, LimitCounters, LimitExceeded, LimitKind, MemoryBudget};
use crate::pipe::CappedPipe;
use palisade_http::declared_length;

/// Where a tenant's private `data` directory appears inside its guests.
pub const DATA_MOUNT: &str = "/data";

/// One tenant's sandbox settings and shared state, used by all of its apps.
#[derive(Debug)]
pub struct TenantSandbox {
    pub(crate) name: Arc<str>,
    pub(crate) limits: Limits,
    pub(crate) env: Vec<(String, String)>,
    dirs: GuestDirs,
    /// The key-value store components reach through `wasi:keyvalue`, as this tenant.
    pub(crate) kv: Option<KvCtx>,
    instances: Arc<Semaphore>,
    /// Requests waiting for one of `instances` now, at most `max_queue`.
    queued: AtomicU32,
    memory: Arc<MemoryBudget>,
    /// Every tenant's instances together, against `max_guest_memory`.
    guest_memory: Arc<MemoryBudget>,
    /// The tenant's share of the CPU: its weight, and what its guests used.
    pub(crate) share: Arc<Share>,
    counters: LimitCounters,
}

/// A host directory made visible inside guests.
#[derive(Debug, Clone)]
pub struct Preopen {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where guests see it, e.g. `/data`.
    pub guest: String,
    /// Whether guests may create, change and delete files in it.
    pub writable: bool,
}

/// Which directories each kind of guest sees. Nothing, unless configured.
#[derive(Debug, Clone, Default)]
pub struct GuestDirs {
    /// Preopened in CGI modules (a tenant's `data` is `/data` here).
    pub cgi: Vec<Preopen>,
    /// Preopened in components (only with `component_data`).
    pub components: Vec<Preopen>,
}

/// The key-value quota a tenant's `kv` limits set: what its guests, and its token through the admin API, may
/// store.
pub fn kv_quota(limits: &KvLimits) -> Quota {
    Quota { max_keys: limits.max_keys, max_value: limits.max_value, max_total: limits.max_total }
}

impl TenantSandbox {
    /// The tenant's limits, as configured.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the tenant's `outbound` list allows a request to `uri` (scheme, host and port must match).
    pub(crate) fn allows_outbound(&self, uri: &http::Uri) -> bool {
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            _ => return false,
        };
        let Some(authority) = uri.authority() else { return false };
        let host = palisade_http::normalise_host(authority.host());
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        self.limits.outbound.iter().any(|rule| rule.allows(https, &host, port))
    }

    /// Settings for tenant `name` (see [`crate::Runtime::sandbox`]), charged to `share` and `guest_memory`.
    pub(crate) fn new(
        name: &str,
        limits: Limits,
        env: impl IntoIterator<Item = (String, String)>,
        dirs: GuestDirs,
        kv: Option<Arc<dyn KvStore>>,
        share: Arc<Share>,
        guest_memory: Arc<MemoryBudget>,
    ) -> Arc<TenantSandbox> {
        let kv = kv.map(|store| KvCtx { store, tenant: name.into(), quota: kv_quota(&limits.kv) });
        Arc::new(TenantSandbox {
            kv,
            name: name.into(),
            instances: Arc::new(Semaphore::new(limits.max_concurrency as usize)),
            queued: AtomicU32::new(0),
            memory: Arc::new(MemoryBudget::new(limits.max_total_memory)),
            guest_memory,
            share,
            limits,
            env: env.into_iter().collect(),
            dirs,
            counters: LimitCounters::default(),
        })
    }

    /// The tenant's share of the CPU: its weight, and the CPU time its guests used and waited.
    pub fn share(&self) -> &Arc<Share> {
        &self.share
    }

    /// How often each limit has fired for this tenant.
    pub fn limit_counters(&self) -> &LimitCounters {
        &self.counters
    }

    /// How many of the tenant's guest instances are running now.
    pub fn instances_in_flight(&self) -> u32 {
        let free = u32::try_from(self.instances.available_permits()).unwrap_or(u32::MAX);
        self.limits.max_concurrency.saturating_sub(free)
    }

    /// Records that `kind` fired: one counter, one log line naming the tenant and the limit.
    pub(crate) fn limit_fired(&self, kind: LimitKind, detail: &str) {
        self.counters.bump(kind);
        metrics::counter!("palisade_limits_total", "tenant" => self.name.clone(), "kind" => kind.name()).increment(1);
        tracing::warn!(tenant = %self.name, limit = kind.name(), "limit reached: {detail}");
    }

    /// Takes one of the tenant's instance slots. When all are taken, the request waits in line for at most
    /// `queue_timeout`, behind at most `max_queue` others; past either it is answered 503 with `Retry-After`.
    /// A request waiting in line costs no CPU, only the memory its head takes. When all tenants' instances
    /// together leave no room of the server's `max_guest_memory` for this tenant's next one (see
    /// [`MemoryBudget`] for how it is shared when short), no instance is started (503 too).
    pub(crate) async fn admit(&self) -> Result<OwnedSemaphorePermit, HandlerError> {
        if !self.guest_memory.has_room(MIN_ROOM, self.memory.used()) {
            let detail =
                format!("guests hold {} bytes of the server's {}", self.guest_memory.used(), self.guest_memory.limit());
            self.limit_fired(LimitKind::GuestMemory, &detail);
            return Err(overloaded("the server is out of memory for guests", detail));
        }
        if let Ok(permit) = self.instances.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let in_line = Queued::join(&self.queued);
        if in_line.ahead >= self.limits.max_queue {
            let detail =
                format!("{} instances in flight and {} requests waiting", self.limits.max_concurrency, in_line.ahead);
            self.limit_fired(LimitKind::Concurrency, &detail);
            return Err(overloaded("tenant is at its concurrency limit", detail));
        }
        match tokio::time::timeout(self.limits.queue_timeout, self.instances.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                let detail = format!(
                    "{} instances in flight; waited {:?} for one",
                    self.limits.max_concurrency, self.limits.queue_timeout
                );
                self.limit_fired(LimitKind::Concurrency, &detail);
                Err(overloaded("tenant is at its concurrency limit", detail))
            }
        }
    }

    /// Refuses a request whose declared body is over `max_request_body` before any guest starts.
    pub(crate) fn check_declared_body(&self, headers: &http::HeaderMap) -> Result<(), HandlerError> {
        match declared_length(headers) {
            Some(n) if n > self.limits.max_request_body => Err(self.body_too_large(Some(n))),
            _ => Ok(()),
        }
    }

    /// The 413 for a request body over `max_request_body` (of `declared` bytes, if it said so up front).
    pub(crate) fn body_too_large(&self, declared: Option<u64>) -> HandlerError {
        let limit = self.limits.max_request_body;
        let detail = match declared {
            Some(n) => format!("request body of {n} bytes; the limit is {limit}"),
            None => format!("request body passed the limit of {limit} bytes"),
        };
        self.limit_fired(LimitKind::RequestBody, &detail);
        HandlerError::new(Fault::PayloadTooLarge, "request body too large", detail)
    }

    /// Adds the tenant's environment and directories for one guest of the given kind to a WASI context.
    ///
    /// Sockets and name lookup stay off whatever the guest imports: guests reach the network only through
    /// the host's HTTP client, which enforces the tenant's outbound policy.
    pub(crate) fn configure_wasi(&self, wasi: &mut WasiCtxBuilder, component: bool) -> Result<(), HandlerError> {
        wasi.envs(&self.env).allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        let dirs = if component { &self.dirs.components } else { &self.dirs.cgi };
        for dir in dirs {
            let perms = if dir.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
            wasi.preopened_dir(&dir.host, &dir.guest, perms).map_err(|e| {
                HandlerError::new(
                    Fault::Internal,
                    "internal error",
                    format!("cannot open {}: {e:#}", dir.host.display()),
                )
            })?;
        }
        Ok(())
    }

    /// The resource limiter of one store: `memory` per instance, `max_total_memory` for the tenant,
    /// `max_guest_memory` for the server.
    pub(crate) fn limiter(&self) -> GuestLimiter {
        GuestLimiter::new(self.limits.memory, self.memory.clone(), self.guest_memory.clone())
    }

    /// A sink for a guest's stderr (or a component's stdout), capped at `max_stderr`.
    pub(crate) fn log_pipe(&self) -> CappedPipe {
        CappedPipe::new(usize::try_from(self.limits.max_stderr).unwrap_or(usize::MAX))
    }

    /// Logs what a guest wrote to stderr/stdout; going past `max_stderr` fires that limit.
    pub(crate) fn log_output(&self, stream: &'static str, pipe: &CappedPipe) {
        crate::pipe::log_output(stream, pipe);
        if pipe.overflowed() {
            self.limit_fired(LimitKind::Stderr, &format!("{stream} past {} bytes was dropped", self.limits.max_stderr));
        }
    }

    /// Turns a failed guest run into the fault the client sees, counting the limit or trap behind it.
    /// The full story (trap message, wasm backtrace) goes into the detail, which is logged.
    pub(crate) fn guest_failure(&self, error: &wasmtime::Error) -> HandlerError {
        let detail = format!("{error:?}");
        if error.is::<wasmtime::PoolConcurrencyLimitError>() {
            // The server's pool, shared by every tenant, is full: not this guest's failure.
            tracing::warn!(tenant = %self.name, "no room for another guest instance: {error}");
            return HandlerError::new(
                Fault::Overloaded { retry_after: Duration::from_secs(1) },
                "the server is at its instance capacity",
                detail,
            );
        }
        if let Some(LimitExceeded(kind)) = error.downcast_ref::<LimitExceeded>() {
            self.limit_fired(*kind, "guest stopped");
            return match kind {
                LimitKind::CpuTime => HandlerError::new(Fault::GuestTimeout, "guest exceeded its CPU time", detail),
                // The server's memory for guests ran out: not this guest's doing, so a retry may succeed.
                LimitKind::GuestMemory => overloaded("the server is out of memory for guests", detail),
                _ => HandlerError::new(Fault::GuestFailed, "guest exceeded its memory limit", detail),
            };
        }
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => self.timed_out(),
            Some(trap) => {
                self.limit_fired(LimitKind::Trap, &trap.to_string());
                HandlerError::new(Fault::GuestFailed, "guest failed", detail)
            }
            None => HandlerError::new(Fault::GuestFailed, "guest failed", detail),
        }
    }

    /// The 504 for a request that reached its wall-clock deadline.
    pub(crate) fn timed_out(&self) -> HandlerError {
        self.limit_fired(LimitKind::Timeout, &format!("deadline of {:?} reached", self.limits.timeout));
        HandlerError::new(Fault::GuestTimeout, "guest exceeded its deadline", "deadline reached")
    }
}

/// Room an instance needs at the least: with less left of `max_guest_memory`, none is started.
const MIN_ROOM: u64 = 1 << 20;

/// The 503 a client gets when the tenant or the server has no room for its request now.
fn overloaded(reason: &'static str, detail: String) -> HandlerError {
    HandlerError::new(Fault::Overloaded { retry_after: Duration::from_secs(1) }, reason, detail)
}

/// A request's place in its tenant's line for an instance slot, for as long as it waits.
struct Queued<'a> {
    line: &'a AtomicU32,
    /// How many were waiting when it joined.
    ahead: u32,
}

impl<'a> Queued<'a> {
    fn join(line: &'a AtomicU32) -> Queued<'a> {
        Queued { line, ahead: line.fetch_add(1, Ordering::AcqRel) }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.line.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Runtime, RuntimeOptions};

    fn tenant(limits: Limits) -> Arc<TenantSandbox> {
        Runtime::new(&RuntimeOptions::default()).sandbox("t", limits, Vec::new(), GuestDirs::default(), None)
    }

    fn status(refused: Result<OwnedSemaphorePermit, HandlerError>) -> Option<u16> {
        refused.err().map(|e| e.fault.status().as_u16())
    }

    #[tokio::test]
    async fn the_concurrency_limit_answers_503_and_is_counted() {
        let tenant = tenant(Limits { max_concurrency: 1, ..Limits::default() });
        let held = tenant.admit().await;
        assert!(held.is_ok());
        let started = std::time::Instant::now();
        assert_eq!(status(tenant.admit().await), Some(503));
        let waited = started.elapsed();
        let wait = tenant.limits.queue_timeout;
        assert!(waited >= wait && waited < Duration::from_secs(5), "refused after {waited:?}");
        assert_eq!(tenant.limit_counters().get(LimitKind::Concurrency), 1);
        drop(held);
        assert!(tenant.admit().await.is_ok(), "a released slot can be taken again");
        assert_eq!(tenant.limit_counters().get(LimitKind::Trap), 0);
    }

    #[tokio::test]
    async fn a_slot_freed_while_waiting_is_taken() {
        let tenant = tenant(Limits { max_concurrency: 1, ..Limits::default() });
        let held = tenant.admit().await;
        let wait = tenant.limits.queue_timeout;
        let release = tokio::spawn(async move {
            tokio::time::sleep(wait / 2).await;
            drop(held);
        });
        assert!(tenant.admit().await.is_ok(), "the slot freed meanwhile");
        assert_eq!(tenant.limit_counters().get(LimitKind::Concurrency), 0);
        release.await.expect("release");
    }

    #[tokio::test]
    async fn past_max_queue_the_answer_is_at_once() {
        let limits =
            Limits { max_concurrency: 1, max_queue: 1, queue_timeout: Duration::from_secs(5), ..Limits::default() };
        let tenant = tenant(limits);
        let held = tenant.admit().await;
        let waiting = tokio::spawn({
            let tenant = tenant.clone();
            async move { tenant.admit().await.is_ok() }
        });
        while tenant.queued.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        assert_eq!(status(tenant.admit().await), Some(503), "the line is full");
        assert!(started.elapsed() < Duration::from_secs(1), "refused without waiting");
        drop(held);
        assert!(waiting.await.unwrap_or(false), "the one in line got the slot");
        assert_eq!(tenant.queued.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn no_instance_starts_when_guests_hold_the_servers_memory() {
        let runtime = Runtime::new(&RuntimeOptions { max_guest_memory: 16 << 20, ..RuntimeOptions::default() });
        let sandbox = |name: &str| runtime.sandbox(name, Limits::default(), Vec::new(), GuestDirs::default(), None);
        let (a, b, newcomer) = (sandbox("a"), sandbox("b"), sandbox("c"));
        let mut b_holds = b.limiter();
        assert!(wasmtime::ResourceLimiter::memory_growing(&mut b_holds, 0, 15 << 19, None).unwrap_or(false));
        let mut a_holds = a.limiter();
        assert!(wasmtime::ResourceLimiter::memory_growing(&mut a_holds, 0, 8 << 20, None).unwrap_or(false));
        assert_eq!(status(b.admit().await), Some(503), "15.5 of 16 MiB held: less than an instance's room left");
        assert_eq!(b.limit_counters().get(LimitKind::GuestMemory), 1);
        assert!(newcomer.admit().await.is_ok(), "a tenant holding nothing may always start a small instance");
        drop(b_holds);
        assert!(b.admit().await.is_ok(), "room again once the instance is gone");
        drop(a_holds);
    }
}
