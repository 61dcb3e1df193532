//! What one tenant's guests share: limits, environment, private data directory, concurrency permits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use palisade_http::{Fault, HandlerError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// A tenant's hard limits per guest request.
#[derive(Debug, Clone)]
pub struct TenantLimits {
    /// Maximum linear memory of one instance, in bytes.
    pub memory: u64,
    /// Wall-clock deadline of one request, from arrival to the end of the guest's work.
    pub timeout: Duration,
    /// Instances in flight at once.
    pub max_concurrency: u32,
}

/// Upper bound on request bodies buffered for CGI guests (they read stdin, so the body is held in memory).
pub(crate) const MAX_CGI_REQUEST_BODY: usize = 16 << 20;
/// Upper bound on what a CGI guest may write to stdout (its whole response).
pub(crate) const MAX_CGI_RESPONSE: usize = 64 << 20;
/// How much of a guest's stderr (and a component's stdout) is kept for the log per request.
pub(crate) const MAX_LOGGED_OUTPUT: usize = 64 << 10;

/// One tenant's sandbox settings, shared by all of its apps.
#[derive(Debug)]
pub struct TenantSandbox {
    pub(crate) name: Arc<str>,
    pub(crate) limits: TenantLimits,
    pub(crate) env: Vec<(String, String)>,
    dirs: GuestDirs,
    instances: Arc<Semaphore>,
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
    /// Preopened in components.
    pub components: Vec<Preopen>,
}

impl TenantSandbox {
    /// Settings for tenant `name`: its limits, guest environment and the directories its guests see.
    pub fn new(
        name: &str,
        limits: TenantLimits,
        env: impl IntoIterator<Item = (String, String)>,
        dirs: GuestDirs,
    ) -> Arc<TenantSandbox> {
        Arc::new(TenantSandbox {
            name: name.into(),
            instances: Arc::new(Semaphore::new(limits.max_concurrency as usize)),
            limits,
            env: env.into_iter().collect(),
            dirs,
        })
    }

    /// Takes one of the tenant's instance slots, or fails with 503 when all are in use.
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit, HandlerError> {
        self.instances.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!(tenant = %self.name, limit = "max_concurrency", max = self.limits.max_concurrency, "limit reached");
            HandlerError::new(
                Fault::Overloaded {
                    retry_after: Duration::from_secs(1),
                },
                "tenant is at its concurrency limit",
                "max_concurrency reached",
            )
        })
    }

    /// Adds the tenant's environment and directories for one guest of the given kind to a WASI context.
    pub(crate) fn configure_wasi(&self, wasi: &mut WasiCtxBuilder, component: bool) -> Result<(), HandlerError> {
        wasi.envs(&self.env);
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

    /// Store limits for one instance: memory growth past the limit traps (→ 500), so no guest can
    /// mistake an allocation failure for success.
    pub(crate) fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(usize::try_from(self.limits.memory).unwrap_or(usize::MAX))
            .instances(64)
            .trap_on_grow_failure(true)
            .build()
    }
}
