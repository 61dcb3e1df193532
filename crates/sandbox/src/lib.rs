//! palisade's sandbox: every guest request runs in a fresh wasmtime instance with its tenant's limits.
//!
//! - [`Runtime`] owns the one wasmtime [`Engine`](wasmtime::Engine) (pooling allocator, epoch interruption,
//!   on-disk compile cache) and the linkers for both guest ABIs, started with the first guest loaded.
//! - [`Runtime::load_component`] compiles a `wasi:http/proxy` component once and pre-instantiates it;
//!   the resulting [`ComponentApp`] is a [`Handler`](palisade_http::Handler) that creates a new `Store` and
//!   instance for every request and streams bodies both ways.
//! - [`Runtime::load_cgi`] does the same for a WASI preview1 command module speaking CGI/1.1 ([`CgiApp`]):
//!   meta-variables in the environment, the body on stdin, a CGI response parsed from stdout.
//! - [`LazyGuest`] is a deployed app loaded on its first request, within a budget of loaded apps.
//! - [`TenantSandbox`] is what one tenant's apps share: limits (memory, deadline, concurrency), the
//!   environment, and the private `/data` directory.
//!
//! Limits are enforced by wasmtime, not by trusting the guest: linear memory through a `ResourceLimiter` per
//! store (growth past the instance's or the tenant's limit traps), CPU and wall-clock time through epoch
//! interruption plus a host-side deadline on every await, concurrency through a semaphore per tenant, body
//! sizes by the host as bytes pass. Every limit that fires is counted per tenant ([`LimitCounters`]) and
//! logged once with the tenant and the limit's name. A trap, a timeout or a malformed response becomes a
//! [`HandlerError`](palisade_http::HandlerError) with the right [`Fault`](palisade_http::Fault); the detail
//! is logged with the tenant and route, and never reaches the client.

mod cgi;
mod component;
mod engine;
mod epoch;
mod error;
mod introspect;
mod keyvalue;
mod lazy;
mod limits;
mod pipe;
mod prepared;
mod presence;
mod tenant;
mod warm;

pub use cgi::CgiApp;

/// Entry points for the fuzz targets in `fuzz/` (built only by `cargo fuzz`).
#[cfg(fuzzing)]
pub mod fuzzing {
    /// Parses `output` as a CGI program's stdout.
    pub fn cgi_response(output: &[u8]) -> bool {
        crate::cgi::parse_response(bytes::Bytes::copy_from_slice(output))
    }
}
pub use component::ComponentApp;
pub use engine::{Runtime, RuntimeOptions, is_component};
pub use error::LoadError;
pub use introspect::AppInfo;
pub use lazy::{GuestBytes, LazyGuest};
pub use limits::{LimitCounters, LimitKind};
pub use palisade_config::Limits;
pub use presence::Present;
pub use tenant::{DATA_MOUNT, GuestDirs, Preopen, TenantSandbox, kv_quota};
