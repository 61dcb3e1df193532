//! What every request leaves behind when it is done: an access-log event and request metrics.
//!
//! Every response body goes out as a [`Served`], which counts the bytes sent and writes the record when the
//! body is finished (or dropped by a client that went away): a line's duration is the whole exchange, not just
//! the time to the response head. `Served` holds the handler's body and the record inline, so observing a
//! request allocates nothing; when neither the access log nor metrics are on it only passes frames through.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Version, header};
use http_body::{Frame, SizeHint};
use palisade_http::{Body, BoxError, InstanceTime};

use crate::stats::{RequestStats, RouteStats};

/// The `tracing` target of access-log events (the binary formats them: combined log format or JSON).
pub const ACCESS_TARGET: &str = "palisade::access";

/// What is observed about requests, decided once when the server starts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observers {
    /// Where requests are counted, if they are.
    pub(crate) stats: Option<Arc<RequestStats>>,
}

/// One request as it will be observed, gathered before its handler runs.
pub(crate) struct Exchange {
    started: Instant,
    /// What only the access log needs; `None` when it is off (boxed: the record travels with the body).
    line: Option<Box<RequestLine>>,
    /// Where it is counted (when requests are): its route's counters once routed, or the unrouted ones,
    /// settled after routing.
    stats: Option<Arc<RouteStats>>,
}

/// The request as the access log shows it.
struct RequestLine {
    id: u64,
    remote: SocketAddr,
    method: Method,
    target: Option<http::uri::PathAndQuery>,
    tenant: Option<Arc<str>>,
    route: Option<Arc<str>>,
    version: Version,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
}

impl Exchange {
    /// Starts observing `req`, if anything observes requests.
    pub(crate) fn begin<B>(observers: &Observers, req: &Request<B>, id: u64, remote: SocketAddr) -> Option<Exchange> {
        let log = tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO);
        if !log && observers.stats.is_none() {
            return None;
        }
        let started = Instant::now();
        let line = log.then(|| {
            Box::new(RequestLine {
                id,
                remote,
                method: req.method().clone(),
                target: req.uri().path_and_query().cloned(),
                tenant: None,
                route: None,
                version: req.version(),
                referer: req.headers().get(header::REFERER).cloned(),
                user_agent: req.headers().get(header::USER_AGENT).cloned(),
            })
        });
        Some(Exchange { started, line, stats: None })
    }

    /// Notes the tenant and route the request reached, and the route's counters (when requests are counted).
    pub(crate) fn routed(&mut self, tenant: &Arc<str>, route: &Arc<str>, stats: Option<&Arc<RouteStats>>) {
        if let Some(line) = &mut self.line {
            line.tenant = Some(tenant.clone());
            line.route = Some(route.clone());
        }
        if let Some(stats) = stats {
            self.stats = Some(stats.clone());
        }
    }

    /// Counts in `registry` (requests are counted): with the unrouted requests if it reached no route.
    pub(crate) fn settle(&mut self, registry: &RequestStats) {
        if self.stats.is_none() {
            self.stats = Some(registry.unrouted().clone());
        }
    }

    /// `response` with a body that records the exchange when it is done.
    pub(crate) fn watch(self, response: Response<Body>) -> Response<Served> {
        let status = response.status().as_u16();
        let instance = response.extensions().get::<InstanceTime>().cloned();
        response.map(|inner| Served { inner, bytes: 0, done: Some(Done { exchange: self, status, instance }) })
    }
}

struct Done {
    exchange: Exchange,
    status: u16,
    instance: Option<InstanceTime>,
}

impl Done {
    fn record(self, bytes: u64) {
        let x = self.exchange;
        let elapsed = x.started.elapsed();
        if let Some(stats) = &x.stats {
            stats.record(self.status, elapsed, bytes);
        }
        if let Some(line) = &x.line {
            let (tenant, route) = (line.tenant.as_deref().unwrap_or("-"), line.route.as_deref().unwrap_or("-"));
            let header = |v: &Option<HeaderValue>| v.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
            tracing::info!(
                target: ACCESS_TARGET,
                id = line.id,
                remote = %line.remote.ip(),
                method = %line.method,
                uri = line.target.as_ref().map_or("*", |t| t.as_str()),
                version = ?line.version,
                status = self.status,
                bytes,
                referer = header(&line.referer),
                user_agent = header(&line.user_agent),
                tenant,
                route,
                micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                instance_micros = self.instance.as_ref().map(InstanceTime::micros),
                "request"
            );
        }
    }
}

/// A response body as connections send it: the handler's, and when the exchange is observed, what records it
/// (with the bytes sent) when the body ends or is dropped.
pub(crate) struct Served {
    inner: Body,
    bytes: u64,
    done: Option<Done>,
}

impl Served {
    /// `inner`, observed by nothing.
    pub(crate) fn plain(inner: Body) -> Served {
        Served { inner, bytes: 0, done: None }
    }
}

impl http_body::Body for Served {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Served {
    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            done.record(self.bytes);
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.finish();
    }
}
