//! The wasmtime engine: configuration, compile cache, linkers, and loading apps.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use once_cell::sync::OnceCell;
use palisade_config::Limits;
use palisade_kv::KvStore;
use palisade_sched::{Scheduler, SchedulerOptions, Share, Shares};
use wasmtime::{Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::cgi::{CgiApp, CgiState, PreparedModule};
use crate::component::{ComponentApp, ComponentState, PreparedComponent};
use crate::epoch::{self, EpochTicker};
use crate::error::LoadError;
use crate::introspect::AppInfo;
use crate::lazy::Resident;
use crate::limits::MemoryBudget;
use crate::prepared::Prepared;
use crate::tenant::{GuestDirs, TenantSandbox};

/// Process-wide sandbox settings.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled guests are cached (keyed by content hash and engine settings); `None` disables it.
    pub cache_dir: Option<PathBuf>,
    /// The largest per-instance memory any tenant may use, in bytes (sizes the pooling allocator's slots).
    pub max_memory: u64,
    /// Guest instances that may run at once across all tenants (sizes the pool).
    pub max_instances: u32,
    /// Worker threads that serve guests: each keeps a few warm instances, which the pool holds too. The
    /// background lane for long guests has as many threads.
    pub workers: usize,
    /// Linear memory all guest instances together may hold, in bytes (`[server] max_guest_memory`).
    pub max_guest_memory: u64,
    /// Deployed apps ([`crate::LazyGuest`]) kept loaded at once; loading one more unloads the least recently
    /// used.
    pub max_loaded_apps: usize,
}

use palisade_config::DEFAULT_MAX_LOADED_APPS;

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cache_dir: None,
            max_memory: 64 << 20,
            max_instances: 1000,
            workers: 1,
            max_guest_memory: 1 << 30,
            max_loaded_apps: DEFAULT_MAX_LOADED_APPS,
        }
    }
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) component_linker: wasmtime::component::Linker<ComponentState>,
    pub(crate) module_linker: wasmtime::Linker<CgiState>,
    /// Components prepared so far, by content.
    pub(crate) components: Prepared<PreparedComponent>,
    /// CGI modules prepared so far, by content.
    pub(crate) modules: Prepared<PreparedModule>,
    /// Where guests run: the foreground, or the fair background lane for long ones.
    pub(crate) scheduler: Scheduler,
    ticker: EpochTicker,
}

/// The guest runtime: one engine and its linkers, shared by every app.
///
/// The engine starts with the first guest loaded, not before: its pool reserves address space for every
/// instance it may hold (hundreds of GiB, mapped but never touched), which a server of static files and
/// proxies has no use for, and which a limit on address space (`ulimit -v`) would refuse.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Lazy>,
}

/// What every clone of a [`Runtime`] shares: its settings, and the engine once started.
struct Lazy {
    options: RuntimeOptions,
    /// Every tenant's share of the CPU, from its first sandbox on (the scheduler starts with the engine).
    shares: Shares,
    /// The linear memory all instances hold, against `max_guest_memory`.
    guest_memory: Arc<MemoryBudget>,
    /// Two first loads at once start one engine: the second waits for the first.
    started: OnceCell<Arc<RuntimeInner>>,
    /// The deployed apps loaded now, within `max_loaded_apps`.
    resident: Resident,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("started", &self.shared.started.get().is_some()).finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime sized by `options`: a pooling allocator for `max_instances` of up to `max_memory` each, epoch
    /// interruption, and the compile cache. Nothing starts until a guest is loaded.
    pub fn new(options: &RuntimeOptions) -> Runtime {
        Runtime {
            shared: Arc::new(Lazy {
                options: options.clone(),
                shares: Shares::default(),
                guest_memory: Arc::new(MemoryBudget::new(options.max_guest_memory)),
                started: OnceCell::new(),
                resident: Resident::new(options.max_loaded_apps),
            }),
        }
    }

    /// The deployed apps loaded now.
    pub(crate) fn resident(&self) -> &Resident {
        &self.shared.resident
    }

    /// The sandbox of tenant `name`: its limits, guest environment, the directories its guests see, and the
    /// key-value store its components' buckets live in (`None`: `wasi:keyvalue` answers `no-such-store`). Its
    /// guests share the server's `max_guest_memory` and get the CPU by the tenant's `weight`.
    pub fn sandbox(
        &self,
        name: &str,
        limits: Limits,
        env: impl IntoIterator<Item = (String, String)>,
        dirs: GuestDirs,
        kv: Option<Arc<dyn KvStore>>,
    ) -> Arc<TenantSandbox> {
        let share = self.shared.shares.share(name, limits.weight);
        TenantSandbox::new(name, limits, env, dirs, kv, share, self.shared.guest_memory.clone())
    }

    /// Every tenant's CPU share: what its guests used and waited, for metrics.
    pub fn shares(&self) -> Vec<Arc<Share>> {
        self.shared.shares.all()
    }

    /// Linear memory all guest instances hold now, in bytes.
    pub fn guest_memory_in_use(&self) -> u64 {
        self.shared.guest_memory.used()
    }

    /// The engine, started now if this is the first guest. A failure is reported to every load that needs the
    /// engine, and the next one tries again.
    fn started(&self) -> Result<Arc<RuntimeInner>, LoadError> {
        let shared = &self.shared;
        shared.started.get_or_try_init(|| RuntimeInner::start(&shared.options, &shared.shares).map(Arc::new)).cloned()
    }

    /// Starts the engine now rather than with the first guest loaded: for a server whose guests load at their
    /// first request (deployed apps), so that the first one does not wait for the engine too.
    pub fn start(&self) -> Result<(), LoadError> {
        self.started().map(drop)
    }

    /// Compiles (or loads from cache) a `wasi:http/proxy` component and prepares it for `tenant`.
    pub fn load_component(&self, path: &Path, tenant: Arc<TenantSandbox>) -> Result<ComponentApp, LoadError> {
        let bytes = read_guest(path, GuestKind::Component)?;
        ComponentApp::load(self.started()?, path, &bytes, tenant)
    }

    /// Compiles (or loads from cache) a WASI preview1 command module and prepares it as a CGI program.
    pub fn load_cgi(&self, path: &Path, tenant: Arc<TenantSandbox>) -> Result<CgiApp, LoadError> {
        let bytes = read_guest(path, GuestKind::Module)?;
        CgiApp::load(self.started()?, path, &bytes, tenant)
    }

    /// Compiles (or finds already prepared) a guest given as bytes, a component or a CGI module by what the
    /// bytes are, and prepares it for `tenant`. `label` names it in messages (a deployed app's `tenant/name`).
    pub fn load_guest(
        &self,
        label: &Path,
        bytes: &[u8],
        tenant: Arc<TenantSandbox>,
    ) -> Result<(Arc<dyn palisade_http::Handler>, AppInfo), LoadError> {
        if is_component(bytes) {
            let app = ComponentApp::load(self.started()?, label, bytes, tenant)?;
            let info = app.info().clone();
            Ok((Arc::new(app), info))
        } else if bytes.starts_with(b"\0asm") {
            let app = CgiApp::load(self.started()?, label, bytes, tenant)?;
            let info = app.info().clone();
            Ok((Arc::new(app), info))
        } else {
            Err(LoadError::WrongKind {
                path: label.to_path_buf(),
                reason: "is not a WebAssembly binary (it does not start with \\0asm)".into(),
            })
        }
    }

    /// The most linear memory one instance can have: tenants' `memory` must stay within it.
    pub fn max_memory(&self) -> u64 {
        self.shared.options.max_memory
    }
}

impl RuntimeInner {
    /// Builds the engine: pooling allocator sized by `options`, epoch interruption, and the compile cache.
    fn start(options: &RuntimeOptions, shares: &Shares) -> Result<RuntimeInner, LoadError> {
        let engine_err = |e: wasmtime::Error| LoadError::Engine(format!("{e:#}"));
        let mut config = Config::new();
        config.epoch_interruption(true);
        // Explicit bounds checks instead of guard pages: a reused pool slot then never needs its page
        // protections changed, which would cost an mprotect and a TLB shootdown on every core per request.
        config.signals_based_traps(false).memory_guard_size(0).guard_before_linear_memory(false);
        config.wasm_component_model(true);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(options)));
        if let Some(dir) = &options.cache_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| LoadError::Engine(format!("cannot create cache directory {}: {e}", dir.display())))?;
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            config.cache(Some(Cache::new(cache).map_err(engine_err)?));
        }
        let engine = Engine::new(&config).map_err(engine_err)?;

        let mut component_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker).map_err(engine_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component_linker).map_err(engine_err)?;
        crate::keyvalue::add_to_linker(&mut component_linker, ComponentState::kv_view).map_err(engine_err)?;

        let mut module_linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut module_linker, |s: &mut CgiState| &mut s.wasi)
            .map_err(engine_err)?;

        let scheduler = Scheduler::start(
            &SchedulerOptions { threads: options.workers.max(1), ..SchedulerOptions::default() },
            shares,
        )
        .map_err(|e| LoadError::Engine(format!("cannot start the guest threads: {e}")))?;
        let epoch = engine.clone();
        let ticker = EpochTicker::start(move || epoch.increment_epoch())
            .map_err(|e| LoadError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(RuntimeInner {
            engine,
            component_linker,
            module_linker,
            components: Prepared::default(),
            modules: Prepared::default(),
            scheduler,
            ticker,
        })
    }

    /// Holds `store` to `deadline` and `cpu_time` (see [`epoch::arm_deadline`]), with the epoch advancing for as
    /// long as the store lives.
    pub(crate) fn arm_deadline<T: 'static>(
        &self,
        store: &mut wasmtime::Store<T>,
        deadline: tokio::time::Instant,
        cpu_time: Duration,
    ) {
        epoch::arm_deadline(store, self.ticker.hold(), deadline, cpu_time);
    }
}

/// The pooling allocator keeps memories, tables and stacks mapped between instances, so a fresh instance per
/// request costs no page-table changes (and no TLB shootdowns across cores).
fn pooling(options: &RuntimeOptions) -> PoolingAllocationConfig {
    let warm = u32::try_from(options.workers.saturating_mul(crate::warm::PER_WORKER)).unwrap_or(u32::MAX);
    let n = options.max_instances.max(1).saturating_add(warm);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(8))
        .total_stacks(n)
        .max_memory_size(usize::try_from(options.max_memory).unwrap_or(usize::MAX))
        // What stays resident of a slot between instances: enough for a small guest's stack, data and heap,
        // and little enough that hundreds of slots a memory flood touched do not hold much past the budget.
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(2 << 20)
        // Memory past `keep_resident` goes back to the system as soon as its instance is dropped, not in
        // batches: a guest that touched 40 MiB would otherwise leave it resident until 63 more had gone, and
        // `max_guest_memory` would not bound what the process holds.
        .decommit_batch_size(1)
        // Reset only the pages a request dirtied (Linux 6.7+; ignored elsewhere) instead of all resident ones.
        .pagemap_scan(wasmtime::Enabled::Auto);
    pool
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum GuestKind {
    Component,
    Module,
}

/// Reads a guest and checks it is the binary kind its route key says, so a wrong key gets a clear message.
fn read_guest(path: &Path, want: GuestKind) -> Result<Vec<u8>, LoadError> {
    let wrong = |reason: &str| LoadError::WrongKind { path: path.to_path_buf(), reason: reason.to_string() };
    let bytes = std::fs::read(path).map_err(|e| wrong(&format!("cannot read: {e}")))?;
    // Text format is accepted too (wasmtime assembles it); only binaries are checked for their kind.
    if !bytes.starts_with(b"\0asm") {
        return Ok(bytes);
    }
    match (want, is_component(&bytes)) {
        (GuestKind::Component, false) => Err(wrong(
            "is a core WebAssembly module, not a component; serve it with `cgi = ...` or make it a component",
        )),
        (GuestKind::Module, true) => {
            Err(wrong("is a WebAssembly component, not a preview1 command module; serve it with `component = ...`"))
        }
        _ => Ok(bytes),
    }
}

/// Whether a WebAssembly binary is a component (layer 1) rather than a core module.
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm") && bytes.get(4..8) == Some(&[0x0d, 0x00, 0x01, 0x00])
}
