//! One request: find the tenant and route, call its handler, turn failures into clear responses.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::{BoxFuture, Either};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use palisade_config::TrafficLimits;
use palisade_http::{
    Activity, Body, BoxError, Fault, HandlerError, PatientBody, RequestContext, empty_body, full_body,
};
use palisade_tls::{Challenges, HTTP01_PREFIX};
use tracing::Instrument;

use crate::head_watch::Framing;
use crate::host::{HostError, request_host, settle_host};
use crate::normalise::{PathError, normal_path};
use crate::observe::{Exchange, Observers, Served};

/// What every connection shares: the router, HTTPS settings and the request counter.
pub(crate) struct Dispatcher {
    /// Swapped whole by deploys and reloads; a request keeps the handler it was routed to.
    router: Arc<crate::LiveRoutes>,
    /// Whether requests are counted in metrics (the access log is on whenever its target is enabled).
    pub(crate) observers: Observers,
    /// ACME HTTP-01 answers to serve, if any tenant uses ACME.
    pub(crate) challenges: Option<Arc<Challenges>>,
    /// The port plain-HTTP requests are redirected to, for tenants with `https_redirect`.
    pub(crate) https_port: Option<u16>,
    /// `Alt-Svc` for HTTPS responses by the port they are served on, when that port also answers HTTP/3.
    pub(crate) alt_svc: Vec<(u16, HeaderValue)>,
    limits: RequestLimits,
    next_request_id: AtomicU64,
    /// Set when the server stops: HTTP/1 responses then say `Connection: close`, so that a busy keep-alive
    /// connection ends after its next answer instead of racing the server's close.
    draining: Arc<AtomicBool>,
}

/// The per-request parts of [`TrafficLimits`].
struct RequestLimits {
    max_uri_length: usize,
    max_header_count: usize,
    max_header_size: usize,
    body_timeout: Duration,
}

impl RequestLimits {
    fn new(traffic: &TrafficLimits) -> RequestLimits {
        RequestLimits {
            max_uri_length: usize::try_from(traffic.max_uri_length).unwrap_or(usize::MAX),
            max_header_count: usize::try_from(traffic.max_header_count).unwrap_or(usize::MAX),
            max_header_size: usize::try_from(traffic.max_header_size).unwrap_or(usize::MAX),
            body_timeout: traffic.body_timeout,
        }
    }
}

/// A request body as a connection delivers it: hyper's for HTTP/1.1 and HTTP/2, a QUIC stream's for HTTP/3.
pub(crate) trait ClientBody:
    http_body::Body<Data = bytes::Bytes, Error: Into<BoxError>> + Send + Unpin + 'static
{
}

impl<B> ClientBody for B where B: http_body::Body<Data = bytes::Bytes, Error: Into<BoxError>> + Send + Unpin + 'static {}

/// The connection a request arrived on.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) remote: SocketAddr,
    pub(crate) local: SocketAddr,
    /// `Some` on TLS connections: the SNI name the client asked for, if it sent one.
    pub(crate) tls: Option<Option<Arc<str>>>,
    /// What the connection's [`crate::head_watch::HeadWatch`] found in the raw bytes.
    pub(crate) framing: Arc<Framing>,
    /// When the connection last moved a byte.
    pub(crate) activity: Arc<Activity>,
}

impl Dispatcher {
    pub(crate) fn new(router: Arc<crate::LiveRoutes>) -> Dispatcher {
        Dispatcher {
            router,
            observers: Observers::default(),
            challenges: None,
            https_port: None,
            alt_svc: Vec::new(),
            limits: RequestLimits::new(&TrafficLimits::default()),
            next_request_id: AtomicU64::new(1),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The flag that makes HTTP/1 responses close their connections (set when the server stops).
    pub(crate) fn draining(&self) -> Arc<AtomicBool> {
        self.draining.clone()
    }

    /// Applies `traffic`'s per-request limits (the server does, once, when it starts serving).
    pub(crate) fn limit_requests(&mut self, traffic: &TrafficLimits) {
        self.limits = RequestLimits::new(traffic);
    }

    /// Answers one request. Routing happens now, before the first poll; the future owns what it needs and
    /// stays small (hyper moves it into the connection for every request, and a chain of `async fn`s would
    /// hold the request several times over).
    pub(crate) fn dispatch<B: ClientBody>(
        &self,
        req: Request<B>,
        peer: &Peer,
    ) -> impl Future<Output = Response<Served>> + Send + 'static + use<B> {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let mut exchange = Exchange::begin(&self.observers, &req, request_id, peer.remote);
        // A request that may leave HTTP/1: its head watch stops if the answer says it did.
        let connect = req.method() == Method::CONNECT;
        let may_switch = (connect || req.headers().contains_key(header::UPGRADE)).then(|| peer.framing.clone());
        let close = req.version() <= http::Version::HTTP_11 && self.draining.load(Ordering::Relaxed);
        let alt_svc = match peer.tls {
            Some(_) if req.version() != http::Version::HTTP_3 => {
                self.alt_svc.iter().find(|(port, _)| *port == peer.local.port()).map(|(_, v)| v.clone())
            }
            _ => None,
        };
        let answer = match self.answer(req, peer, request_id, exchange.as_mut()) {
            Answer::Now(response) => Either::Left(std::future::ready(response)),
            Answer::Handler(call) => Either::Right(call),
        };
        if let (Some(exchange), Some(registry)) = (exchange.as_mut(), &self.observers.stats) {
            exchange.settle(registry);
        }
        // Until its response head is out, the connection is busy, not idle.
        let answering = peer.framing.answering();
        answer.map(move |mut response| {
            drop(answering);
            if let Some(alt_svc) = alt_svc {
                // This edge's, replacing any an origin gave for itself.
                response.headers_mut().insert(header::ALT_SVC, alt_svc);
            }
            if close && response.status() != StatusCode::SWITCHING_PROTOCOLS {
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            if let Some(framing) = may_switch {
                let status = response.status();
                if status == StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success()) {
                    framing.switched_protocols();
                }
            }
            match exchange {
                Some(exchange) => exchange.watch(response),
                None => response.map(Served::plain),
            }
        })
    }

    fn answer<B: ClientBody>(
        &self,
        mut req: Request<B>,
        peer: &Peer,
        request_id: u64,
        exchange: Option<&mut Exchange>,
    ) -> Answer {
        // Counted first, for every request: the watch counts every head.
        let ambiguous = peer.framing.next_request_is_ambiguous();

        // The target as sent: origin-form, or the whole absolute-form URI.
        let target_length = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len())
            + req.uri().authority().map_or(0, |a| a.as_str().len());
        if target_length > self.limits.max_uri_length {
            return Answer::Now(Fault::UriTooLong.response("the request target is too long"));
        }
        if req.headers().len() > self.limits.max_header_count {
            return Answer::Now(Fault::HeadersTooLarge.response("the request has too many header fields"));
        }
        // HTTP/2 bounds its header list in the protocol (SETTINGS_MAX_HEADER_LIST_SIZE); HTTP/1's read buffer
        // holds a long target beside the header section (see the connection's `max_head`), which is measured here.
        if req.version() < http::Version::HTTP_2 && header_section_size(req.headers()) > self.limits.max_header_size {
            return Answer::Now(Fault::HeadersTooLarge.response("the request's header fields are too large"));
        }
        let refusal = if ambiguous { Some(crate::strict::LENGTH_WITH_CODING) } else { crate::strict::refuse(&req) };
        if let Some((fault, reason)) = refusal {
            // The framing may be ambiguous: nothing more is read from this connection.
            let mut response = fault.response(reason);
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Answer::Now(response);
        }
        if let Err(reason) = normalise_path(&mut req) {
            return Answer::Now(Fault::BadRequest.response(reason));
        }
        let settled = settle_host(&mut req);
        let path = req.uri().path();
        if let Some(answer) = self.acme_http01(path) {
            return Answer::Now(answer);
        }
        let host = match settled.and_then(|()| request_host(&req)) {
            Ok(h) => h,
            Err(HostError::Missing) => return Answer::Now(Fault::BadRequest.response("missing Host header")),
            Err(HostError::Invalid) => return Answer::Now(Fault::BadRequest.response("invalid Host header")),
            Err(HostError::Conflict) => {
                return Answer::Now(Fault::BadRequest.response("the host field names another host than :authority"));
            }
        };
        if let (Some(Some(sni)), Some(host)) = (&peer.tls, &host)
            && **sni != **host
        {
            return Answer::Now(Fault::Misdirected.response("this connection was opened for another host"));
        }
        // The handler is called while the routes are held: a deploy may swap them, and the request keeps the
        // handler it was routed to (its future owns what it needs).
        let router = self.router.load();
        let Some(tenant) = router.tenant(host.as_deref()) else {
            tracing::debug!(request_id, host = host.as_deref().unwrap_or(""), "no tenant for host");
            return Answer::Now(Fault::NotFound.response("no site is configured for this host"));
        };
        if peer.tls.is_none()
            && tenant.https_redirect
            && let Some(port) = self.https_port
        {
            return Answer::Now(redirect_to_https(host.as_deref().unwrap_or(""), port, &req));
        }
        let hsts = if peer.tls.is_some() { tenant.hsts.clone() } else { None };
        let Some(route) = tenant.route(path) else {
            let mut response = Fault::NotFound.response("no route matches this path");
            if let Some(hsts) = hsts {
                add_hsts(&mut response, hsts);
            }
            return Answer::Now(response);
        };
        // An upgrade hands the connection to its handler (a proxy's tunnel), which then watches it for idleness.
        if req.headers().contains_key(header::UPGRADE) {
            req.extensions_mut().insert(peer.activity.clone());
        }
        if let Some(exchange) = exchange {
            let stats = self.observers.stats.as_ref().map(|registry| route.stats(registry, &tenant.name));
            exchange.routed(&tenant.name, &route.prefix, stats);
        }
        let context = RequestContext {
            request_id,
            tenant: tenant.name.clone(),
            route: route.prefix.clone(),
            remote_addr: peer.remote,
            local_addr: peer.local,
            secure: peer.tls.is_some(),
        };
        Answer::Handler(self.call(route.handler.as_ref(), req, context, hsts))
    }

    /// Calls the route's handler; its failures become responses when the [`Call`] completes.
    fn call<B: ClientBody>(
        &self,
        handler: &dyn palisade_http::Handler,
        req: Request<B>,
        context: RequestContext,
        hsts: Option<HeaderValue>,
    ) -> Call {
        let span =
            tracing::info_span!("request", id = context.request_id, tenant = %context.tenant, route = %context.route);
        let body_timeout = self.limits.body_timeout;
        // Most requests have no body: nothing to wait for, nothing to allocate.
        let body_timed_out = (!req.body().is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
        let req = req.map(|b| match &body_timed_out {
            Some(flag) => PatientBody::new(b, body_timeout, "the client paused too long while sending the body")
                .flagging(flag.clone())
                .boxed_unsync(),
            None => empty_body(),
        });
        let handling = handler.handle(req, context).instrument(span.clone());
        Call { handling, span, body_timed_out, body_timeout, hsts }
    }

    /// The key authorization for an ACME HTTP-01 token, if the path asks for one that is published.
    fn acme_http01(&self, path: &str) -> Option<Response<Body>> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        let answer = self.challenges.as_ref()?.http01(token)?;
        tracing::info!(token, "answered an ACME HTTP-01 validation");
        let mut response = Response::new(full_body(answer));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        Some(response)
    }
}

/// Rewrites the request's path to its normal form (see [`crate::normalise`]), which routes are matched on and
/// handlers see; the reason to refuse it otherwise.
fn normalise_path<B>(req: &mut Request<B>) -> Result<(), &'static str> {
    let normal = match normal_path(req.uri().path()) {
        Ok(Cow::Borrowed(_)) => return Ok(()),
        Ok(Cow::Owned(normal)) => normal,
        Err(PathError::EncodedSeparator) => return Err("an encoded '/' or '\\' in the path is not allowed"),
        Err(PathError::AboveRoot) => return Err("the path climbs above the root"),
    };
    let target = match req.uri().query() {
        Some(query) => format!("{normal}?{query}"),
        None => normal,
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(target.parse().map_err(|_| "invalid path")?);
    *req.uri_mut() = http::Uri::from_parts(parts).map_err(|_| "invalid path")?;
    Ok(())
}

/// How a request is answered: at once (a refusal, a redirect, no route), or by its route's handler.
enum Answer {
    Now(Response<Body>),
    Handler(Call),
}

/// A handler answering one request: completes with its response, or with the response for its failure.
struct Call {
    handling: tracing::instrument::Instrumented<BoxFuture<'static, Result<Response<Body>, HandlerError>>>,
    span: tracing::Span,
    /// Set if the request body timed out (the handler then sees a failed body, whatever it answers).
    body_timed_out: Option<Arc<AtomicBool>>,
    body_timeout: Duration,
    hsts: Option<HeaderValue>,
}

impl Future for Call {
    type Output = Response<Body>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<Body>> {
        let result = ready!(self.handling.poll_unpin(cx));
        let mut response = match result {
            Ok(r) => r,
            Err(e) => {
                self.span.in_scope(|| tracing::warn!(status = e.fault.status().as_u16(), "{e}"));
                e.response()
            }
        };
        if self.body_timed_out.as_ref().is_some_and(|flag| flag.load(Ordering::Acquire)) {
            let timeout = self.body_timeout;
            self.span.in_scope(|| tracing::info!("request body timed out after {timeout:?} without data"));
            response = Fault::RequestTimeout.response("request body not received in time");
        }
        if let Some(hsts) = self.hsts.take() {
            add_hsts(&mut response, hsts);
        }
        Poll::Ready(response)
    }
}

fn add_hsts(response: &mut Response<Body>, hsts: HeaderValue) {
    response.headers_mut().entry(header::STRICT_TRANSPORT_SECURITY).or_insert(hsts);
}

/// 308 to the same path and query on HTTPS (308 keeps the method and body, unlike 301).
fn redirect_to_https<B>(host: &str, port: u16, req: &Request<B>) -> Response<Body> {
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    let authority = if port == 443 { host } else { format!("{host}:{port}") };
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("https://{authority}{path}");
    let mut response = Response::new(full_body(format!("308 moved to {location}\n")));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(value) = HeaderValue::try_from(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Bytes of an HTTP/1 header section as sent (name, `: `, value, CRLF), less any optional whitespace.
fn header_section_size(headers: &http::HeaderMap) -> usize {
    headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum()
}
