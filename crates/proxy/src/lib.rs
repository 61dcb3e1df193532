//! The reverse proxy: a route that forwards requests to upstream servers and streams their answers back.
//!
//! One [`Proxy`] per route owns a keep-alive connection pool (hyper's client, HTTP/1.1 or h2c), the
//! route's [`upstreams`] with their balancing and ejection state, and the task running its active
//! [`health`] checks. A request passes through [`forwarding`] (hop-by-hop headers out, `X-Forwarded-*`,
//! `Forwarded` and `Via` in), its body through [`request_body`] (size limit, a short read-ahead), and an
//! upgrade (WebSocket) through [`tunnel`].
//!
//! Failures are the upstream's, and say so: 502 when no upstream can be reached or one fails mid-answer,
//! 504 when the answer does not start within the route's `timeout`. A refused connection is retried on the
//! next upstream when the request body can be sent again.

mod forwarding;
mod health;
mod request_body;
mod tunnel;
mod upstreams;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use palisade_config::{ProxyConfig, UpstreamProtocol};
use palisade_http::{
    Body, BoxError, Fault, Handler, HandlerError, PatientBody, RequestBody, RequestContext, declared_length, empty_body,
};

use crate::upstreams::{Picked, Upstreams};

/// The pooled client every request and health check of one route goes through.
pub(crate) type HttpClient = Client<HttpConnector, RequestBody>;

/// How long an idle pooled connection to an upstream is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream.
const POOL_MAX_IDLE: usize = 1024;
/// How much of a health check's answer is read (so its connection can be reused).
pub(crate) const MAX_HEALTH_BODY: usize = 64 * 1024;

/// A proxy route could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("invalid upstream address: {0}")]
pub struct ProxyError(#[from] http::uri::InvalidUri);

/// A reverse-proxy route: the [`Handler`] for `proxy = ...`.
pub struct Proxy {
    shared: Arc<Shared>,
    health: Option<tokio::task::AbortHandle>,
}

struct Shared {
    /// One client (so one connection pool) per thread: a pooled connection is driven by the runtime that
    /// opened it, and a worker using another worker's connections pays two thread wake-ups per request.
    clients: thread_local::ThreadLocal<HttpClient>,
    connect_timeout: Duration,
    h2c: bool,
    upstreams: Arc<Upstreams>,
    /// The HTTP version spoken upstream.
    version: Version,
    timeout: Duration,
    preserve_host: bool,
    max_request_body: u64,
}

impl Proxy {
    /// A proxy for `config`, refusing request bodies over `max_request_body` bytes. Health checks, if
    /// configured, start on the current tokio runtime (when there is one) and stop when the proxy is dropped.
    pub fn new(config: &ProxyConfig, max_request_body: u64) -> Result<Proxy, ProxyError> {
        let h2c = config.protocol == UpstreamProtocol::H2c;
        let shared = Arc::new(Shared {
            clients: thread_local::ThreadLocal::new(),
            connect_timeout: config.connect_timeout,
            h2c,
            upstreams: Arc::new(Upstreams::new(&config.upstreams, config.balance)?),
            version: if h2c { Version::HTTP_2 } else { Version::HTTP_11 },
            timeout: config.timeout,
            preserve_host: config.preserve_host,
            max_request_body,
        });
        let health = match (&config.health, tokio::runtime::Handle::try_current()) {
            (Some(check), Ok(runtime)) => {
                let checks = health::check_forever(
                    shared.upstreams.clone(),
                    shared.new_client(),
                    check.clone(),
                    shared.version,
                    check.interval.min(config.timeout),
                );
                Some(runtime.spawn(checks).abort_handle())
            }
            _ => None,
        };
        Ok(Proxy { shared, health })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = &self.health {
            task.abort();
        }
    }
}

impl Handler for Proxy {
    fn handle(
        &self,
        request: Request<RequestBody>,
        context: RequestContext,
    ) -> BoxFuture<'static, Result<Response<Body>, HandlerError>> {
        Box::pin(self.shared.clone().forward(request, context))
    }
}

impl Shared {
    /// A client with its own pool of keep-alive connections.
    fn new_client(&self) -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.connect_timeout));
        connector.set_nodelay(true);
        Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE)
            .http2_only(self.h2c)
            .build(connector)
    }

    /// This thread's client.
    fn client(&self) -> &HttpClient {
        self.clients.get_or(|| self.new_client())
    }

    async fn forward(
        self: Arc<Self>,
        mut request: Request<RequestBody>,
        context: RequestContext,
    ) -> Result<Response<Body>, HandlerError> {
        let too_large = |detail: String| HandlerError::new(Fault::PayloadTooLarge, "request body too large", detail);
        if let Some(n) = declared_length(request.headers())
            && n > self.max_request_body
        {
            return Err(too_large(format!("declared {n} bytes; the limit is {}", self.max_request_body)));
        }
        let upgrade = forwarding::requested_upgrade(request.headers(), request.version());
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        let host = parts
            .headers
            .get(header::HOST)
            .cloned()
            .or_else(|| parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
        let client = forwarding::Client {
            addr: context.remote_addr.ip(),
            secure: context.secure,
            host: host.as_ref(),
            version: parts.version,
        };
        let upgrading = upgrade.is_some();
        forwarding::request(&mut parts.headers, &client, upgrade, self.preserve_host, self.version == Version::HTTP_2);

        let exceeded = Arc::new(AtomicBool::new(false));
        let read_ahead = parts.version <= Version::HTTP_11;
        let mut outgoing = request_body::prepare(body, self.max_request_body, exceeded.clone(), read_ahead).await?;
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str()).to_string();

        let mut tried = Vec::new();
        let mut last_failure = String::from("no upstream");
        while let Some(picked) = self.upstreams.pick(&tried) {
            tried.push(picked.index());
            let Some(body) = outgoing.take() else { break };
            let uri = Uri::builder()
                .scheme("http")
                .authority(picked.upstream().authority.clone())
                .path_and_query(path.as_str())
                .build()
                .map_err(|e| HandlerError::new(Fault::BadRequest, "invalid request target", e.to_string()))?;
            let mut upstream_request = Request::new(body);
            *upstream_request.method_mut() = parts.method.clone();
            *upstream_request.uri_mut() = uri;
            *upstream_request.version_mut() = self.version;
            *upstream_request.headers_mut() = parts.headers.clone();

            match tokio::time::timeout(self.timeout, self.client().request(upstream_request)).await {
                Ok(Ok(response)) => return Ok(self.respond(response, picked, client_upgrade, upgrading)),
                Ok(Err(e)) if e.is_connect() => {
                    last_failure = format!("{}: {}", picked.upstream().config, describe(&e));
                    picked.eject(&describe(&e));
                    if !outgoing.replayable() {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    if exceeded.load(Ordering::Acquire) {
                        return Err(too_large(format!("request body passed the limit of {}", self.max_request_body)));
                    }
                    let detail = format!("{}: {}", picked.upstream().config, describe(&e));
                    return Err(HandlerError::new(Fault::UpstreamFailed, "upstream failed", detail));
                }
                Err(_) => {
                    let detail = format!("{}: no response within {:?}", picked.upstream().config, self.timeout);
                    return Err(HandlerError::new(Fault::UpstreamTimeout, "upstream timed out", detail));
                }
            }
        }
        Err(HandlerError::new(Fault::UpstreamFailed, "upstream unavailable", last_failure))
    }

    /// The upstream's response, made the client's: headers rewritten, body streamed with the idle timeout,
    /// and for an accepted upgrade the tunnel started.
    fn respond(
        &self,
        mut response: Response<Incoming>,
        picked: Picked,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        upgrading: bool,
    ) -> Response<Body> {
        let upgraded = upgrading && response.status() == StatusCode::SWITCHING_PROTOCOLS;
        let upstream_version = response.version();
        let tunnel = match (upgraded, client_upgrade) {
            (true, Some(client)) => Some((client, hyper::upgrade::on(&mut response))),
            _ => None,
        };
        let (mut parts, body) = response.into_parts();
        forwarding::response(&mut parts.headers, upstream_version, upgraded);
        parts.version = Version::default();
        parts.extensions = http::Extensions::new();
        let body = match tunnel {
            Some((client, upstream)) => {
                tunnel::spawn(client, upstream, self.timeout, picked);
                empty_body()
            }
            None => {
                let body =
                    PatientBody::new(body, self.timeout, "the upstream paused too long while sending its response");
                InFlight { body, _upstream: picked }.boxed_unsync()
            }
        };
        Response::from_parts(parts, body)
    }
}

/// A response body that keeps its upstream counted as in flight (for least-requests) until it is done.
struct InFlight<B> {
    body: B,
    _upstream: Picked,
}

impl<B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin> http_body::Body for InFlight<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// An error and its causes on one line (hyper's own message is only its category).
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
