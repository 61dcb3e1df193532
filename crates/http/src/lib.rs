//! The vocabulary every route kind shares, so the server never matches on kinds.
//!
//! A route's target (static directory, `wasi:http` component, CGI module) is a [`Handler`]: it takes a
//! request with a [`RequestBody`] and a [`RequestContext`], and returns a response with a [`Body`] or a
//! [`HandlerError`]. A [`HandlerError`] records who is at fault as a [`Fault`]; [`Fault::response`] is the one
//! place that turns a fault into a status code and a short plain-text reason. Error detail (trap messages,
//! guest stderr) goes to the log, never to the client.

mod activity;
mod conditional;
mod hosts;
mod instance_time;
mod limited;
pub mod lingering;
mod patient;

pub use activity::Activity;
pub use conditional::{RangeRequest, Validators, http_date, range_request};
pub use hosts::{HostMap, normalise_host};
pub use instance_time::InstanceTime;
pub use limited::{BodyTooLarge, LimitedBody, declared_length};
pub use patient::PatientBody;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};

/// Any error a body can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body: streamed, boxed once.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A request body as handlers see it (the server boxes hyper's body once).
pub type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

/// A response body holding `bytes` in full.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// An empty response body (allocates nothing: boxing a zero-sized body is free).
pub fn empty_body() -> Body {
    http_body_util::Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Who sent this request and which tenant and route it reached.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Unique (per process) request number, for following one request through the logs.
    pub request_id: u64,
    /// The tenant whose host matched.
    pub tenant: Arc<str>,
    /// The matched route prefix (normalised, e.g. `/cgi-bin/mail` or `/`).
    pub route: Arc<str>,
    /// The client's address.
    pub remote_addr: SocketAddr,
    /// The listener address the request arrived on.
    pub local_addr: SocketAddr,
    /// Whether the request arrived over TLS (the `https` scheme).
    pub secure: bool,
}

impl RequestContext {
    /// The part of `path` below the route prefix: `/cgi-bin/mail/inbox` → `/inbox`, and `""` when equal.
    pub fn path_below_route<'p>(&self, path: &'p str) -> &'p str {
        if &*self.route == "/" { path } else { path.get(self.route.len()..).unwrap_or("") }
    }
}

/// A request handler: what a route points at.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(
        &self,
        request: http::Request<RequestBody>,
        context: RequestContext,
    ) -> BoxFuture<'static, Result<Response<Body>, HandlerError>>;
}

/// Who is at fault when a request cannot be answered normally, and so which status the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The request itself is malformed (400).
    BadRequest,
    /// Nothing is configured for this host or path (404).
    NotFound,
    /// The route does not answer this method (405; the handler adds `Allow`).
    MethodNotAllowed,
    /// The request's host is not the one its TLS connection was opened for (421, RFC 9110 §15.5.20).
    Misdirected,
    /// The request body is larger than allowed (413).
    PayloadTooLarge,
    /// The client paused too long while sending the request body (408).
    RequestTimeout,
    /// The request target is longer than allowed (414).
    UriTooLong,
    /// The request has too many header fields, or they are too large (431).
    HeadersTooLarge,
    /// The tenant is at its concurrency limit (503 with `Retry-After`).
    Overloaded {
        /// Seconds the client should wait.
        retry_after: Duration,
    },
    /// The guest trapped, ran out of memory or failed to answer (500).
    GuestFailed,
    /// The guest did not answer within its deadline (504).
    GuestTimeout,
    /// The guest answered with something that is not a valid HTTP response (502).
    GuestBadResponse,
    /// A proxied upstream could not be reached or failed while answering (502).
    UpstreamFailed,
    /// A proxied upstream did not answer in time (504).
    UpstreamTimeout,
    /// Something went wrong in palisade itself (500).
    Internal,
    /// The request uses a feature palisade does not implement, such as a transfer coding (501).
    NotImplemented,
}

impl Fault {
    /// The status code this fault is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Fault::BadRequest => StatusCode::BAD_REQUEST,
            Fault::NotFound => StatusCode::NOT_FOUND,
            Fault::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Fault::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Fault::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Fault::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Fault::UriTooLong => StatusCode::URI_TOO_LONG,
            Fault::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Fault::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Fault::GuestFailed | Fault::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Fault::GuestTimeout | Fault::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Fault::GuestBadResponse | Fault::UpstreamFailed => StatusCode::BAD_GATEWAY,
            Fault::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// The response a client gets for this fault: the status and `reason` as one line of plain text.
    ///
    /// `reason` must be safe to show anyone: never guest output or internal detail.
    pub fn response(self, reason: &str) -> Response<Body> {
        let mut response = Response::new(full_body(format!("{} {reason}\n", self.status().as_u16())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        match self {
            Fault::Overloaded { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            // The rest of the body was never read, so this connection cannot carry another request; saying so
            // keeps clients from sending their next request on it. (HTTP/2 drops the header: it has streams.)
            Fault::PayloadTooLarge | Fault::RequestTimeout => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// Why a handler could not answer: the fault decides the status, the detail goes to the log.
#[derive(Debug)]
pub struct HandlerError {
    /// Who is at fault.
    pub fault: Fault,
    /// A short reason safe to show the client, e.g. "guest exceeded its deadline".
    pub reason: &'static str,
    /// Everything else worth logging (trap message, parser error); never sent to the client.
    pub detail: String,
}

impl HandlerError {
    /// A new error with a public `reason` and private `detail`.
    pub fn new(fault: Fault, reason: &'static str, detail: impl Into<String>) -> HandlerError {
        HandlerError { fault, reason, detail: detail.into() }
    }

    /// The response the client gets.
    pub fn response(&self) -> Response<Body> {
        self.fault.response(self.reason)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.reason, self.detail)
        }
    }
}

impl std::error::Error for HandlerError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(route: &str) -> RequestContext {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        RequestContext {
            request_id: 1,
            tenant: "t".into(),
            route: route.into(),
            remote_addr: addr,
            local_addr: addr,
            secure: false,
        }
    }

    #[test]
    fn path_below_route() {
        assert_eq!(ctx("/").path_below_route("/a/b"), "/a/b");
        assert_eq!(ctx("/cgi").path_below_route("/cgi/x"), "/x");
        assert_eq!(ctx("/cgi").path_below_route("/cgi"), "");
    }

    #[test]
    fn payload_too_large_closes_the_connection() {
        let r = Fault::PayloadTooLarge.response("too large");
        assert_eq!(r.status(), 413);
        assert_eq!(r.headers()[header::CONNECTION], "close");
    }

    #[test]
    fn overloaded_carries_retry_after() {
        let r = Fault::Overloaded { retry_after: Duration::from_secs(2) }.response("busy");
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
