//! palisade's HTTP cache: a shared cache (RFC 9111) in front of a route's handler, one per tenant.
//!
//! - [`Cached`] wraps any [`palisade_http::Handler`] (a proxy route, a component, a CGI program) for routes
//!   with `cache = true`: freshness, `Vary`, revalidation, invalidation by unsafe methods,
//!   `stale-while-revalidate` and `stale-if-error` (RFC 5861), `CDN-Cache-Control` (RFC 9213) and
//!   `Surrogate-Control`, collapsed forwarding, and `Cache-Status` (RFC 9211) on every answer.
//! - [`TenantCache`] holds one tenant's responses within its `max_size` (moka: W-TinyLFU, weighed in bytes),
//!   and with `cache.disk` a disk tier behind it that survives a restart (redb, `disk.rs`).
//!
//! The RFC's decisions are this crate's own (`freshness.rs`, `directives.rs`), not a library's: see
//! ARCHITECTURE.md for why.

mod collapse;
mod directives;
mod disk;
mod freshness;
mod handler;
mod status;
mod store;
mod storing;

pub use handler::Cached;
pub use store::{COLLAPSE_WAIT, CacheCounts, Caches, Purge, TenantCache};
