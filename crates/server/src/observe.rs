//! What every request leaves behind when it is done: an access-log event and request metrics.
//!
//! The response body is wrapped so that the bytes sent are counted and the record is written when the body
//! is finished (or dropped by a client that went away): a line's duration is the whole exchange, not just
//! the time to the response head. Nothing is wrapped when neither the access log nor metrics are on.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Version, header};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use palisade_http::{Body, BoxError, InstanceTime};

/// The `tracing` target of access-log events (the binary formats them: combined log format or JSON).
pub const ACCESS_TARGET: &str = "palisade::access";

/// Request latency histogram buckets, in seconds: from a fast static file to a guest at its deadline.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// What is observed about requests, decided once when the server starts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Observers {
    /// Record `palisade_requests_total` and `palisade_request_duration_seconds`.
    pub(crate) metrics: bool,
}

/// One request as it will be observed, gathered before its handler runs.
pub(crate) struct Exchange {
    started: Instant,
    tenant: Option<Arc<str>>,
    route: Option<Arc<str>>,
    /// What only the access log needs; `None` when it is off.
    line: Option<RequestLine>,
    metrics: bool,
}

/// The request as the access log shows it.
struct RequestLine {
    id: u64,
    remote: SocketAddr,
    method: Method,
    target: Option<http::uri::PathAndQuery>,
    version: Version,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
}

impl Exchange {
    /// Starts observing `req`, if anything observes requests.
    pub(crate) fn begin<B>(observers: Observers, req: &Request<B>, id: u64, remote: SocketAddr) -> Option<Exchange> {
        let log = tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO);
        if !log && !observers.metrics {
            return None;
        }
        let started = Instant::now();
        let line = log.then(|| RequestLine {
            id,
            remote,
            method: req.method().clone(),
            target: req.uri().path_and_query().cloned(),
            version: req.version(),
            referer: req.headers().get(header::REFERER).cloned(),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
        });
        Some(Exchange { started, tenant: None, route: None, line, metrics: observers.metrics })
    }

    /// Notes the tenant and route the request reached.
    pub(crate) fn routed(&mut self, tenant: &Arc<str>, route: &Arc<str>) {
        self.tenant = Some(tenant.clone());
        self.route = Some(route.clone());
    }

    /// Wraps `response`'s body so that the exchange is recorded when the body is done.
    pub(crate) fn watch(self, response: Response<Body>) -> Response<Body> {
        let status = response.status().as_u16();
        let instance = response.extensions().get::<InstanceTime>().cloned();
        response.map(|inner| {
            Observed { inner, bytes: 0, done: Some(Done { exchange: self, status, instance }) }.boxed_unsync()
        })
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
        if x.metrics {
            let labels = |status: bool| {
                let mut labels = vec![
                    metrics::Label::new(
                        "tenant",
                        metrics::SharedString::from(x.tenant.clone().unwrap_or_else(|| "".into())),
                    ),
                    metrics::Label::new(
                        "route",
                        metrics::SharedString::from(x.route.clone().unwrap_or_else(|| "".into())),
                    ),
                ];
                if status {
                    labels.push(metrics::Label::new("status", self.status.to_string()));
                }
                labels
            };
            metrics::counter!("palisade_requests_total", labels(true)).increment(1);
            metrics::histogram!("palisade_request_duration_seconds", labels(false)).record(elapsed.as_secs_f64());
            metrics::counter!("palisade_response_bytes_total", labels(false)).increment(bytes);
        }
        if let Some(line) = &x.line {
            let (tenant, route) = (x.tenant.as_deref().unwrap_or("-"), x.route.as_deref().unwrap_or("-"));
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

/// A response body that counts what it sends and records its exchange when it ends or is dropped.
struct Observed {
    inner: Body,
    bytes: u64,
    done: Option<Done>,
}

impl http_body::Body for Observed {
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

impl Observed {
    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            done.record(self.bytes);
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.finish();
    }
}
