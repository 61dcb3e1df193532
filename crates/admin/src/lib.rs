//! The admin listener: what operators and their tools talk to, apart from tenants' traffic.
//!
//! - `GET /healthz` (the process answers) and `GET /readyz` (it serves what it should), without a token;
//! - `GET /metrics`, Prometheus text format;
//! - `GET /v1/tenants`, `GET`, `PUT` (a JSON document) and `DELETE /v1/tenants/{t}`;
//! - `PUT` and `DELETE /v1/tenants/{t}/apps/{name}` (the body is the `.wasm`; `?route=/path` picks where it is
//!   served, `&cache=true` puts it behind the tenant's HTTP cache);
//! - `POST /v1/tenants/{t}/tokens` (a tenant-scoped token, shown once) and `DELETE /v1/tenants/{t}/tokens/{id}`;
//! - `GET /v1/tenants/{t}/buckets/{b}/keys[?cursor=N]`, and `GET`, `PUT`, `DELETE` on
//!   `/v1/tenants/{t}/buckets/{b}/keys/{key}`: the tenant's key-value data;
//! - `POST /v1/reload`;
//! - `GET /v1/stats`: request, error, latency, limit and cache counters per tenant, for the console's charts;
//! - the web console at `/` (its assets under `/console/`), signed in through `/console/session`.
//!
//! Everything but the health checks needs `Authorization: Bearer TOKEN` when a token is set: the operator's
//! token may do everything; a tenant's token ([`Control::token_tenant`]) may read its own tenant, deploy and
//! remove its own apps and use its own buckets, and gets 403 for everything else. What the operations do is the binary's business: it
//! implements [`Control`]; this crate is HTTP, authentication and JSON only.

mod api;
mod console;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpListener;

pub use api::{MAX_APP_SIZE, MAX_KV_VALUE, MAX_TENANT_DOCUMENT};

/// Why a control operation failed, in terms of HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the request is malformed (a bad name or route).
    BadRequest,
    /// 403: the caller's token does not allow it.
    Forbidden,
    /// 404: no such tenant or app.
    NotFound,
    /// 409: it conflicts with what is served (a route taken by another app or the configuration).
    Conflict,
    /// 422: the app or configuration is invalid; nothing changed.
    Invalid,
    /// 503: a store it needs (Redis) is unavailable; nothing changed.
    Unavailable,
    /// 500: something failed on this node.
    Internal,
}

/// A failed control operation: its kind and a message for the operator.
#[derive(Debug, Clone)]
pub struct ControlError {
    /// What kind of failure, which picks the status code.
    pub refusal: Refusal,
    /// What went wrong and what to do about it.
    pub message: String,
    /// More for the answer's JSON body beside `error` (the problems of an invalid document, say).
    pub details: Option<serde_json::Value>,
}

impl ControlError {
    /// A failure of `refusal`'s kind with `message`.
    pub fn new(refusal: Refusal, message: impl Into<String>) -> ControlError {
        ControlError { refusal, message: message.into(), details: None }
    }

    /// The same failure with `details` (an object whose keys join `error` in the answer's body).
    pub fn with_details(mut self, details: serde_json::Value) -> ControlError {
        self.details = Some(details);
        self
    }
}

/// A control operation's outcome: a JSON answer or a refusal.
pub type ControlResult = Result<serde_json::Value, ControlError>;

/// An operation on one of a tenant's key-value buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvCall {
    /// A page of the bucket's keys, from `cursor` on.
    List {
        /// Where the page starts (0: the first key); the previous page's answer says where the next one does.
        cursor: u64,
    },
    /// A key's value.
    Get(String),
    /// Store a value under a key (within the tenant's key-value quota).
    Put(String, Bytes),
    /// Remove a key.
    Delete(String),
}

/// `POST /v1/tenants/{t}/purge`: what to purge from the tenant's HTTP cache, from a JSON body
/// `{"keys": [...], "urls": [...], "all": true, "soft": true}` (at least one of the first three).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PurgeRequest {
    /// `Surrogate-Key` tags.
    pub keys: Vec<String>,
    /// URLs (`https://host/path?query`), or paths with query on every host of the tenant.
    pub urls: Vec<String>,
    /// Everything the tenant has stored.
    pub all: bool,
    /// Mark stale instead of removing.
    pub soft: bool,
}

/// What a [`KvCall`] answers: JSON, or a value's bytes (`None`: no such key).
#[derive(Debug, Clone)]
pub enum KvReply {
    /// A JSON answer (a list of keys, or what was done).
    Json(serde_json::Value),
    /// A value as stored, or `None` if the key is absent.
    Value(Option<Bytes>),
}

/// What the admin API operates on: the running server, as the binary wires it.
pub trait Control: Send + Sync + 'static {
    /// Every tenant, with its hosts, routes and deployed apps.
    fn tenants(&self) -> impl Future<Output = serde_json::Value> + Send;
    /// One tenant, or `None` if there is no such tenant.
    fn tenant(&self, name: &str) -> impl Future<Output = Option<serde_json::Value>> + Send;
    /// Validates and deploys `wasm` as the tenant's app `name` (at `route`, or `/name`; behind the tenant's
    /// HTTP cache with `cache`), swapping it in atomically; answers with the app's record.
    fn deploy(
        &self,
        tenant: &str,
        name: &str,
        route: Option<&str>,
        cache: bool,
        wasm: Bytes,
    ) -> impl Future<Output = ControlResult> + Send;
    /// Creates tenant `name` from `spec` (the keys of a `[tenants.NAME]` table), or replaces the one the API
    /// created before; answers whether it is new, and the tenant.
    fn put_tenant(
        &self,
        name: &str,
        spec: serde_json::Value,
    ) -> impl Future<Output = Result<(bool, serde_json::Value), ControlError>> + Send;
    /// Removes tenant `name` (created through the API) with its apps, tokens and key-value data.
    fn delete_tenant(&self, name: &str) -> impl Future<Output = ControlResult> + Send;
    /// Purges what `purge` names from `tenant`'s HTTP cache: answers `{"purged": N}`.
    fn purge(&self, tenant: &str, purge: PurgeRequest) -> impl Future<Output = ControlResult> + Send;
    /// Issues a token scoped to `tenant`: answers `{"id": ..., "token": ...}`, the only time the token is shown.
    fn issue_token(&self, tenant: &str) -> impl Future<Output = ControlResult> + Send;
    /// Revokes `tenant`'s token `id`.
    fn revoke_token(&self, tenant: &str, id: &str) -> impl Future<Output = ControlResult> + Send;
    /// Runs `call` on `tenant`'s bucket `bucket`.
    fn kv(
        &self,
        tenant: &str,
        bucket: &str,
        call: KvCall,
    ) -> impl Future<Output = Result<KvReply, ControlError>> + Send;
    /// The tenant whose token `token` is, if it is one.
    fn token_tenant(&self, token: &str) -> Option<String>;
    /// Stops serving and forgets the tenant's app `name`.
    fn remove(&self, tenant: &str, name: &str) -> impl Future<Output = ControlResult> + Send;
    /// Re-reads the configuration file and applies it, or changes nothing and says why.
    fn reload(&self) -> impl Future<Output = ControlResult> + Send;
    /// `Ok` when the server serves what it should, with notes on how it is (its Redis links); otherwise why not.
    fn readiness(&self) -> Result<Vec<String>, String>;
    /// The metrics, in Prometheus text format.
    fn metrics(&self) -> String;
    /// Counters since the server started, for the console's live charts: every tenant's, or `tenant`'s only.
    fn stats(&self, tenant: Option<&str>) -> impl Future<Output = serde_json::Value> + Send;
}

/// The admin listener, bound.
pub struct Admin {
    listener: TcpListener,
    token: Option<Arc<str>>,
    limits: AdminLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// What the admin listener holds its clients to: the server's traffic limits, so that half-sent requests
/// cannot pile up there and take the descriptors the tenants' listeners need.
#[derive(Debug, Clone, Copy)]
pub struct AdminLimits {
    /// Time a client has to send a request head.
    pub header_timeout: std::time::Duration,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl Admin {
    /// Serves on `listener` (bound by the binary, or handed over by the process it replaces). With `token`,
    /// every request but `/healthz` and `/readyz` must carry it as a bearer token.
    pub fn on_listener(
        listener: std::net::TcpListener,
        token: Option<String>,
        limits: AdminLimits,
    ) -> std::io::Result<Admin> {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        Ok(Admin { listener, token: token.map(Arc::from), limits, tls: None })
    }

    /// Speaks HTTPS through `acceptor` instead of plain HTTP.
    pub fn with_tls(mut self, acceptor: tokio_rustls::TlsAcceptor) -> Admin {
        self.tls = Some(acceptor);
        self
    }

    /// The address bound (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `control` until the task is dropped.
    pub async fn serve<C: Control>(self, control: Arc<C>) {
        let open = Arc::new(tokio::sync::Semaphore::new(self.limits.max_connections.max(1)));
        let gate = Arc::new(api::Gate::new(self.token.clone(), self.tls.is_some()));
        let mut failing = 0u64;
        loop {
            let (stream, remote) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Said once per episode (usually descriptors running out), not at every retry.
                    if failing == 0 {
                        tracing::warn!("admin listener cannot accept connections: {e}");
                    }
                    failing += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            if failing > 0 {
                tracing::info!("admin listener accepts connections again (after {failing} failed tries)");
                failing = 0;
            }
            let Ok(slot) = open.clone().try_acquire_owned() else {
                tracing::debug!(%remote, "admin connection refused: {} open", self.limits.max_connections);
                continue;
            };
            let (control, gate, tls) = (control.clone(), gate.clone(), self.tls.clone());
            let header_timeout = self.limits.header_timeout;
            tokio::spawn(async move {
                let _slot = slot;
                let result = match tls {
                    None => connection(stream, control, gate, header_timeout).await,
                    // The handshake gets the time a request head gets: a silent client is dropped as soon.
                    Some(tls) => match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => connection(stream, control, gate, header_timeout).await,
                        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
                        Err(_) => Err("TLS handshake timed out".into()),
                    },
                };
                if let Err(e) = result {
                    tracing::debug!(%remote, "admin connection: {e}");
                }
            });
        }
    }
}

/// Serves one admin connection (plain or TLS) with HTTP/1.1 or HTTP/2.
async fn connection<C: Control, IO>(
    io: IO,
    control: Arc<C>,
    gate: Arc<api::Gate>,
    header_timeout: std::time::Duration,
) -> Result<(), String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let (control, gate) = (control.clone(), gate.clone());
        async move { Ok::<_, std::convert::Infallible>(api::answer(&*control, &gate, req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
    builder.serve_connection(hyper_util::rt::TokioIo::new(io), service).await.map_err(|e| e.to_string())
}
