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
mod pool;
mod request_body;
mod tunnel;
mod upstreams;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use palisade_config::{ProxyConfig, UpstreamProtocol};
use palisade_http::{
    Activity, Body, BoxError, Fault, Handler, HandlerError, PatientBody, RequestBody, RequestContext, declared_length,
    empty_body,
};

use crate::pool::{Conn, Pools, TimedOut};
use crate::upstreams::{Picked, Upstreams};

/// A proxy route could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("invalid upstream address: {0}")]
pub struct ProxyError(#[from] http::uri::InvalidUri);

/// A reverse-proxy route: the [`Handler`] for `proxy = ...`.
pub struct Proxy {
    shared: Arc<Shared>,
    health: Option<tokio::task::AbortHandle>,
}

pub(crate) struct Shared {
    pools: Arc<Pools>,
    upstreams: Arc<Upstreams>,
    /// The HTTP version spoken upstream.
    version: Version,
    timeout: Duration,
    preserve_host: bool,
    max_request_body: u64,
}

/// How one attempt to exchange a request with an upstream failed.
enum Attempt {
    /// No connection could be made: the upstream is ejected and the next one tried.
    Connect(String),
    /// The connection failed while sending or waiting for the response; `reused` if it had served before,
    /// and the request back if it was never sent.
    Send { error: hyper::Error, reused: bool, unsent: Option<Box<Request<RequestBody>>> },
    /// No response head within the route's `timeout`.
    TimedOut,
    /// A streamed body was already sent by an earlier attempt.
    BodyGone,
}

/// One upstream's state, as the admin console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHealth {
    /// The upstream as configured (`http://host:port`).
    pub upstream: String,
    /// Its last health check passed (always true without health checks).
    pub healthy: bool,
    /// Out of rotation for a while after a failed connection.
    pub ejected: bool,
    /// Requests it is answering now.
    pub in_flight: usize,
}

impl Proxy {
    /// Each upstream's health, in the configured order.
    pub fn health(&self) -> Vec<UpstreamHealth> {
        self.shared.upstreams.health()
    }

    /// A proxy for `config`, refusing request bodies over `max_request_body` bytes. Health checks, if
    /// configured, start on the current tokio runtime (when there is one) and stop when the proxy is dropped.
    pub fn new(config: &ProxyConfig, max_request_body: u64) -> Result<Proxy, ProxyError> {
        let h2c = config.protocol == UpstreamProtocol::H2c;
        let upstreams = Arc::new(Upstreams::new(&config.upstreams, config.balance)?);
        let shared = Arc::new(Shared {
            pools: Arc::new(Pools::new(upstreams.len(), config.connect_timeout, h2c)),
            upstreams,
            version: if h2c { Version::HTTP_2 } else { Version::HTTP_11 },
            timeout: config.timeout,
            preserve_host: config.preserve_host,
            max_request_body,
        });
        let health = match (&config.health, tokio::runtime::Handle::try_current()) {
            (Some(check), Ok(runtime)) => {
                let checks = health::check_forever(shared.clone(), check.clone(), check.interval.min(config.timeout));
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
        // The head is rewritten before the first poll: the future then holds only what the exchange needs.
        match self.shared.rewrite(request, &context) {
            Ok(request) => Box::pin(self.shared.clone().forward(request)),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}

/// A request rewritten for the upstreams (see [`forwarding`]), not sent yet.
struct Rewritten {
    parts: http::request::Parts,
    body: RequestBody,
    /// Whether the headers carry `Host` (otherwise an HTTP/1.1 attempt adds its upstream's).
    has_host: bool,
    /// The client's side of the upgrade it asked for, if it did, and its connection's activity.
    client_upgrade: Option<(hyper::upgrade::OnUpgrade, Option<Arc<Activity>>)>,
}

fn too_large(detail: String) -> HandlerError {
    HandlerError::new(Fault::PayloadTooLarge, "request body too large", detail)
}

impl Shared {
    /// Refuses a body declared over the limit, and rewrites the head for the upstreams.
    fn rewrite(&self, mut request: Request<RequestBody>, context: &RequestContext) -> Result<Rewritten, HandlerError> {
        // TRACE echoes the request, cookies and credentials included, back to whoever can read the response
        // (cross-site tracing): refused, as most proxies do.
        if request.method() == http::Method::TRACE {
            return Err(HandlerError::new(Fault::MethodNotAllowed, "TRACE is not allowed", "TRACE refused"));
        }
        // A proxy route forwards requests to its upstreams; it opens no tunnels to wherever a client names.
        if request.method() == http::Method::CONNECT {
            return Err(HandlerError::new(Fault::MethodNotAllowed, "CONNECT is not allowed", "CONNECT refused"));
        }
        if let Some(n) = declared_length(request.headers())
            && n > self.max_request_body
        {
            return Err(too_large(format!("declared {n} bytes; the limit is {}", self.max_request_body)));
        }
        let mut fields = forwarding::Fields::of(request.headers());
        let upgrade = forwarding::requested_upgrade(request.headers(), &fields, request.version());
        let client_upgrade = upgrade.is_some().then(|| {
            let activity = request.extensions().get::<Arc<Activity>>().cloned();
            (hyper::upgrade::on(&mut request), activity)
        });
        let (mut parts, body) = request.into_parts();
        let host =
            fields.take_host().or_else(|| parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
        let client = forwarding::Client {
            addr: context.remote_addr.ip(),
            secure: context.secure,
            host: host.as_ref(),
            version: parts.version,
        };
        let keep_te_trailers = self.version == Version::HTTP_2;
        forwarding::request(&mut parts.headers, fields, &client, upgrade, self.preserve_host, keep_te_trailers);
        let has_host = self.preserve_host && host.is_some();
        Ok(Rewritten { parts, body, has_host, client_upgrade })
    }

    /// Sends the request to an upstream and returns its response. (An `async` block rather than an `async fn`:
    /// the arguments of an `async fn` are moved into its future twice over.)
    #[expect(clippy::manual_async_fn, reason = "an `async fn` would hold the request twice")]
    fn forward(
        self: Arc<Self>,
        mut request: Rewritten,
    ) -> impl Future<Output = Result<Response<Body>, HandlerError>> + Send + 'static {
        async move {
            let read_ahead = request.parts.version <= Version::HTTP_11;
            let mut outgoing = request_body::prepare(request.body, self.max_request_body, read_ahead).await?;
            // Shared with the client's request target, not copied.
            let path = request.parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));

            // Upstreams that failed to connect, for the next pick to pass over (no allocation until one does).
            let mut tried = Vec::new();
            let mut last_failure = None;
            'upstreams: while let Some(picked) = self.upstreams.pick(&tried) {
                let authority = picked.upstream().authority.clone();
                // A reused connection the upstream closed meanwhile gets one more try on a new connection.
                let mut fresh = false;
                loop {
                    let (parts, has_host) = (&mut request.parts, request.has_host);
                    let attempt = async {
                        let mut conn =
                            self.pools.get(picked.index(), &authority, fresh).await.map_err(Attempt::Connect)?;
                        let body = outgoing.take().ok_or(Attempt::BodyGone)?;
                        let request = self
                            .upstream_request(parts, has_host, path.clone(), &authority, body)
                            .map_err(Attempt::Connect)?;
                        match conn.send(request, self.timeout).await {
                            Ok(Ok(response)) => Ok((response, conn)),
                            Ok(Err((error, unsent))) => Err(Attempt::Send { error, reused: conn.reused, unsent }),
                            Err(TimedOut) => Err(Attempt::TimedOut),
                        }
                    };
                    let error = match attempt.await {
                        Ok((response, conn)) => {
                            return Ok(self.respond(response, picked, conn, request.client_upgrade.take()));
                        }
                        Err(error) => error,
                    };
                    match error {
                        Attempt::Connect(why) => {
                            last_failure = Some(format!("{}: {why}", picked.upstream().config));
                            picked.eject(&why);
                            tried.push(picked.index());
                            continue 'upstreams;
                        }
                        // Never sent: everything comes back for one more try.
                        Attempt::Send { reused: true, unsent: Some(unsent), .. } if !fresh => {
                            let (unsent, body) = (*unsent).into_parts();
                            request.parts.headers = unsent.headers;
                            outgoing.put_back(body);
                            fresh = true;
                        }
                        Attempt::Send { error, .. } => {
                            if outgoing.exceeded() {
                                let limit = self.max_request_body;
                                return Err(too_large(format!("request body passed the limit of {limit}")));
                            }
                            let detail = format!("{}: {}", picked.upstream().config, describe(&error));
                            return Err(HandlerError::new(Fault::UpstreamFailed, "upstream failed", detail));
                        }
                        Attempt::TimedOut => {
                            let detail = format!("{}: no response within {:?}", picked.upstream().config, self.timeout);
                            return Err(HandlerError::new(Fault::UpstreamTimeout, "upstream timed out", detail));
                        }
                        Attempt::BodyGone => break 'upstreams,
                    }
                }
            }
            let detail = last_failure.unwrap_or_else(|| "no upstream".into());
            Err(HandlerError::new(Fault::UpstreamFailed, "upstream unavailable", detail))
        }
    }

    /// The request for one attempt: origin-form with `Host` over HTTP/1.1, absolute-form over HTTP/2. A connect
    /// failure happens before this, so the next upstream still finds the headers in `parts`. `has_host`: whether
    /// they carry `Host`.
    fn upstream_request(
        &self,
        parts: &mut http::request::Parts,
        has_host: bool,
        path: PathAndQuery,
        authority: &http::uri::Authority,
        body: RequestBody,
    ) -> Result<Request<RequestBody>, String> {
        let mut request = Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.version_mut() = self.version;
        // Moved, not copied: a request that was never sent gives them back (see `Attempt::Send`).
        *request.headers_mut() = std::mem::take(&mut parts.headers);
        let mut target = http::uri::Parts::default();
        target.path_and_query = Some(path);
        if self.version == Version::HTTP_2 {
            target.scheme = Some(http::uri::Scheme::HTTP);
            target.authority = Some(authority.clone());
        } else if !has_host && let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            request.headers_mut().insert(header::HOST, host);
        }
        // The parts come from a parsed request target and a configured upstream, so they fit together; a
        // failure here is not the upstream's.
        *request.uri_mut() = Uri::from_parts(target).map_err(|e| format!("request target: {e}"))?;
        Ok(request)
    }

    /// The upstream's response, made the client's: headers rewritten, body streamed with the idle timeout,
    /// and for an accepted upgrade the tunnel started.
    fn respond(
        &self,
        mut response: Response<Incoming>,
        picked: Picked,
        conn: Conn,
        client_upgrade: Option<(hyper::upgrade::OnUpgrade, Option<Arc<Activity>>)>,
    ) -> Response<Body> {
        let upgraded = client_upgrade.is_some() && response.status() == StatusCode::SWITCHING_PROTOCOLS;
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
            Some(((client, activity), upstream)) => {
                tunnel::spawn(client, upstream, self.timeout, activity, picked);
                empty_body()
            }
            None => {
                let body =
                    PatientBody::new(body, self.timeout, "the upstream paused too long while sending its response");
                InFlight { body, done: false, conn: Some(conn), pools: self.pools.clone(), upstream: picked }
                    .boxed_unsync()
            }
        };
        Response::from_parts(parts, body)
    }
}

/// A response body that keeps its upstream counted as in flight (for least-requests) until it is done, and
/// hands its HTTP/1.1 connection back to the pool if it was read to the end.
struct InFlight<B: http_body::Body> {
    body: B,
    done: bool,
    conn: Option<Conn>,
    pools: Arc<Pools>,
    upstream: Picked,
}

impl<B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin> http_body::Body for InFlight<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.done = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B: http_body::Body> Drop for InFlight<B> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && (self.done || self.body.is_end_stream())
        {
            conn.release(&self.pools, self.upstream.index());
        }
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
