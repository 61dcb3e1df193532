//! [`Cached`]: a route's handler behind the tenant's cache. One request's path through it:
//!
//! 1. A method other than GET or HEAD goes to the origin; a successful unsafe one (POST, PUT, DELETE, ...)
//!    invalidates what is stored for its URL and for its `Location` and `Content-Location` (RFC 9111 §4.4).
//! 2. A stored variant (`Vary`) that is fresh and acceptable to the request's own `Cache-Control` is served:
//!    `Age` set, the client's `If-None-Match` / `If-Modified-Since` answered with 304, HEAD without a body.
//! 3. One stale within `stale-while-revalidate` is served at once while one request revalidates it behind.
//! 4. Otherwise one request per URL goes to the origin (the others wait for it, then look again), asking with
//!    the stored validators when there is a stale variant: a 304 refreshes it, a 5xx or a failure serves it
//!    within `stale-if-error`, and a storable answer is stored (bodies up to the cache's object size).
//!
//! Every answer of a cached route says what happened in `Cache-Status` (RFC 9211), and loses the edge-only
//! fields (`CDN-Cache-Control`, `Surrogate-Control`, `Surrogate-Key`) that were for this cache alone.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http::header::{
    AGE, AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_LOCATION, CONTENT_RANGE, DATE, ETAG, HOST,
    HeaderName, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION, PRAGMA, RANGE, SET_COOKIE,
    TRANSFER_ENCODING, UPGRADE, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use palisade_http::{
    Body, BoxError, Fault, Handler, HandlerError, RangeRequest, RequestBody, RequestContext, Validators, empty_body,
    full_body, http_date, normalise_host, range_request,
};

use crate::collapse::{InFlight, Leader, Turn, wait};
use crate::directives::{CDN_CACHE_CONTROL, Directives, SURROGATE_CONTROL};
use crate::freshness::{Freshness, storable};
use crate::status::CacheStatus;
use crate::store::{COLLAPSE_WAIT, HitFields, Stored, TenantCache, host_of, key, key_parts, normalised, now};
use crate::storing::{OnComplete, StoringBody};

/// `Surrogate-Key`: space-separated tags the origin gives a response, for purges.
const SURROGATE_KEY: &str = "surrogate-key";
/// Hop-by-hop fields, never stored (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 5] = ["keep-alive", "proxy-connection", "te", "trailer", "proxy-authenticate"];

/// A route's handler behind its tenant's cache.
pub struct Cached {
    inner: Arc<dyn Handler>,
    cache: Arc<TenantCache>,
    inflight: Arc<InFlight>,
}

impl Cached {
    /// `inner` behind `cache`.
    pub fn new(inner: Arc<dyn Handler>, cache: Arc<TenantCache>) -> Cached {
        Cached { inner, cache, inflight: Arc::default() }
    }
}

impl Handler for Cached {
    fn handle(
        &self,
        request: Request<RequestBody>,
        context: RequestContext,
    ) -> BoxFuture<'static, Result<Response<Body>, HandlerError>> {
        let route = Route { inner: self.inner.clone(), cache: self.cache.clone(), inflight: self.inflight.clone() };
        Box::pin(route.serve(request, context))
    }
}

/// What one request through the cache needs (cloned from [`Cached`] so the future owns it).
#[derive(Clone)]
struct Route {
    inner: Arc<dyn Handler>,
    cache: Arc<TenantCache>,
    inflight: Arc<InFlight>,
}

impl Route {
    async fn serve(
        self,
        request: Request<RequestBody>,
        context: RequestContext,
    ) -> Result<Response<Body>, HandlerError> {
        let key = cache_key(&request, context.secure);
        let method = request.method().clone();
        if method != Method::GET && method != Method::HEAD {
            return self.forward_other(key, request, context).await;
        }
        let wants = Directives::of(request.headers(), CACHE_CONTROL);
        // Pragma: no-cache counts only when the request has no Cache-Control (RFC 9111 §5.4).
        let no_cache = wants.has("no-cache")
            || (request.headers().get_all(PRAGMA).iter().any(|v| v.as_bytes().starts_with(b"no-cache"))
                && !request.headers().contains_key(CACHE_CONTROL));
        let mut collapsed = false;
        loop {
            let now = now();
            let variants = self.cache.get(&key).await;
            let stored = variants.as_ref().and_then(|v| v.0.iter().find(|s| s.matches(request.headers())).cloned());
            let miss = match (&variants, &stored) {
                (None, _) => "uri-miss",
                (Some(_), None) => "vary-miss",
                (Some(_), Some(_)) if no_cache => "request",
                _ => "stale",
            };
            if let Some(stored) = &stored
                && !no_cache
                && acceptable(stored, &wants, now)
            {
                self.cache.metrics.hit.increment(1);
                return Ok(answer(stored, &request, stored.hit_fields(now)));
            }
            if wants.has("only-if-cached") {
                let mut response = Fault::UpstreamTimeout.response("not in the cache");
                CacheStatus::forward(miss).add_to(response.headers_mut());
                return Ok(response);
            }
            if let Some(stored) = &stored
                && !no_cache
                && method == Method::GET
                && stored.freshness.stale_within(stored.freshness.stale_while_revalidate, now)
            {
                if let Turn::Lead(leader) = self.inflight.turn(&key) {
                    let behind = self.clone();
                    let (parts, _) = request_head(&request);
                    let (stored, context, key) = (stored.clone(), context.clone(), key.clone());
                    tokio::spawn(async move {
                        let request = Request::from_parts(parts, empty_body());
                        let _ = behind
                            .fetch(key, request, context, Trip::new(Some(stored), Some(leader), "stale", false))
                            .await;
                    });
                }
                self.cache.metrics.stale.increment(1);
                let status = CacheStatus::hit(stored.freshness.ttl(now)).detail("stale-while-revalidate");
                return Ok(answer(stored, &request, stored.fields(now, status)));
            }
            if method == Method::HEAD || collapsed {
                return self.fetch(key, request, context, Trip::new(stored, None, miss, collapsed)).await;
            }
            match self.inflight.turn(&key) {
                Turn::Lead(leader) => {
                    return self.fetch(key, request, context, Trip::new(stored, Some(leader), miss, false)).await;
                }
                Turn::Wait(done) => {
                    wait(done, COLLAPSE_WAIT).await;
                    collapsed = true;
                }
            }
        }
    }

    /// A request that is not GET or HEAD: to the origin, invalidating after a successful unsafe method.
    async fn forward_other(
        self,
        key: String,
        request: Request<RequestBody>,
        context: RequestContext,
    ) -> Result<Response<Body>, HandlerError> {
        let unsafe_method = !matches!(*request.method(), Method::OPTIONS | Method::TRACE);
        let mut response = self.inner.handle(request, context).await.unwrap_or_else(failed);
        let status = response.status();
        if unsafe_method && (status.is_success() || status.is_redirection()) {
            self.cache.invalidate(&key);
            for field in [LOCATION, CONTENT_LOCATION] {
                if let Some(related) = response.headers().get(field).and_then(|v| related_key(&key, v)) {
                    self.cache.invalidate(&related);
                }
            }
        }
        self.cache.metrics.pass.increment(1);
        strip_edge_fields(response.headers_mut());
        CacheStatus::forward("method").add_to(response.headers_mut());
        Ok(response)
    }

    /// Asks the origin (with the stale variant's validators when there is one), stores what may be stored,
    /// and answers.
    async fn fetch(
        self,
        key: String,
        request: Request<RequestBody>,
        context: RequestContext,
        trip: Trip,
    ) -> Result<Response<Body>, HandlerError> {
        let Trip { stale, leader, fwd, collapsed } = trip;
        let (parts, body) = request.into_parts();
        let client = Request::from_parts(parts.clone(), ());
        let validating = stale.as_ref().filter(|s| client.method() == Method::GET && s.status == StatusCode::OK);
        let request_time = now();
        let mut result = self.inner.handle(origin_request(parts, body, validating), context.clone()).await;
        if let Ok(response) = &result
            && response.status() == StatusCode::NOT_MODIFIED
            && let Some(s) = validating
            && !same_validator(&s.headers, response.headers())
        {
            // The origin's current version is not the stored one after all (RFC 9111 §4.3.4): drop it, and ask
            // again without conditions, so that a client that sent none never gets a 304.
            self.cache.forget(&key, s);
            let (parts, _) = request_head(&client);
            result = self.inner.handle(origin_request(parts, empty_body(), None), context).await;
        }
        let response_time = now();
        let status = |fwd: &'static str| {
            let s = CacheStatus::forward(fwd);
            if collapsed { s.collapsed() } else { s }
        };
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                if let Some(s) =
                    stale.as_ref().filter(|s| s.freshness.stale_within(s.freshness.stale_if_error, response_time))
                {
                    self.cache.metrics.stale.increment(1);
                    let cs = status(fwd).ttl(s.freshness.ttl(response_time)).detail("stale-if-error");
                    return Ok(answer(s, &client, s.fields(response_time, cs)));
                }
                let code = error.fault.status();
                let mut response = failed(error);
                self.cache.metrics.miss.increment(1);
                status(fwd).fwd_status(code).add_to(response.headers_mut());
                return Ok(response);
            }
        };
        let code = response.status();
        if code.is_server_error()
            && let Some(s) =
                stale.as_ref().filter(|s| s.freshness.stale_within(s.freshness.stale_if_error, response_time))
        {
            self.cache.metrics.stale.increment(1);
            let cs = status(fwd).fwd_status(code).ttl(s.freshness.ttl(response_time)).detail("stale-if-error");
            return Ok(answer(s, &client, s.fields(response_time, cs)));
        }
        if code == StatusCode::NOT_MODIFIED
            && let Some(s) = validating
            && same_validator(&s.headers, response.headers())
        {
            let refreshed = Arc::new(refresh(s, response.headers(), request_time, response_time));
            self.cache.metrics.revalidated.increment(1);
            // The 304's own directives decide whether the refreshed response may still be kept for others.
            let (said, _) = Directives::for_edge(response.headers());
            let keep = !said.has("no-store") && !said.has("private");
            if keep {
                self.cache.put(&key, client.headers(), refreshed.clone());
            } else {
                self.cache.forget(&key, s);
            }
            drop(leader);
            let cs = status(fwd).fwd_status(code).stored(keep).ttl(refreshed.freshness.ttl(response_time));
            let mut answered = answer(&refreshed, &client, refreshed.fields(response_time, cs));
            // A cookie the 304 sets is for this client alone: it is never stored (see `refresh`).
            for cookie in response.headers().get_all(SET_COOKIE) {
                answered.headers_mut().append(SET_COOKIE, cookie.clone());
            }
            return Ok(answered);
        }
        let (mut head, body) = response.into_parts();
        let (directives, targeted) = Directives::for_edge(&head.headers);
        let tags = surrogate_keys(&head.headers);
        strip_edge_fields(&mut head.headers);
        if !head.headers.contains_key(DATE) {
            head.headers.insert(DATE, http_date(response_time));
        }
        let wants = Directives::of(client.headers(), CACHE_CONTROL);
        let may_store = storable(client.method(), client.headers(), &wants, code, &head.headers, &directives, targeted);
        let freshness = Freshness::of(code, &head.headers, &directives, targeted, request_time, response_time);
        let varied = varied(client.headers(), &head.headers);
        if !may_store || !freshness.worth_keeping(&head.headers) || varied.is_none() {
            // What the origin answers now replaces the variant this request selected, even when it cannot be
            // stored itself; unless the request alone kept it from being stored (its `no-store`, its
            // credentials), which must not let any client empty the cache.
            let request_side = wants.has("no-store") || client.headers().contains_key(AUTHORIZATION);
            if let Some(s) = &stale
                && !code.is_server_error()
                && !request_side
            {
                self.cache.forget(&key, s);
            }
            self.cache.metrics.miss.increment(1);
            status(fwd).fwd_status_if(code, stale.is_some()).add_to(&mut head.headers);
            return Ok(Response::from_parts(head, body));
        }
        // A body that is not known to be small, for a request that needs nothing cut from it (a 304, a
        // range), goes to the client as it arrives and is stored at its end.
        let small = body.size_hint().upper().is_some_and(|n| n <= STREAM_ABOVE);
        let too_large = body.size_hint().lower() > self.cache.max_object() as u64;
        if !small && !too_large && !conditional_or_ranged(client.headers()) {
            remove_hop_by_hop(&mut head.headers);
            let mut kept = kept_fields(&head.headers, &directives);
            let (cache, put_key, request) = (self.cache.clone(), key.clone(), client.headers().clone());
            let (varied, ttl) = (varied.unwrap_or_default(), freshness.ttl(response_time));
            let age = freshness.age(response_time).as_secs();
            let on_complete: OnComplete = Box::new(move |bytes: Bytes| {
                kept.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                let stored = Stored {
                    status: code,
                    varied,
                    headers: kept,
                    body: bytes,
                    freshness,
                    tags,
                    hit_fields: HitFields::default(),
                };
                cache.put(&put_key, &request, Arc::new(stored));
            });
            self.cache.metrics.miss.increment(1);
            head.headers.insert(AGE, HeaderValue::from(age));
            // Not `stored`: that is known only at the body's end (it may outgrow the bound, or its client leave).
            status(fwd).fwd_status_if(code, stale.is_some()).ttl(ttl).add_to(&mut head.headers);
            let body = StoringBody::new(body, self.cache.max_object(), leader, on_complete);
            return Ok(Response::from_parts(head, http_body_util::BodyExt::boxed_unsync(body)));
        }
        match collect_up_to(body, self.cache.max_object()).await {
            Ok(Collected::Whole(bytes)) => {
                remove_hop_by_hop(&mut head.headers);
                head.headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                let kept = kept_fields(&head.headers, &directives);
                let stored = Arc::new(Stored {
                    status: code,
                    varied: varied.unwrap_or_default(),
                    headers: kept,
                    body: bytes,
                    freshness,
                    tags,
                    hit_fields: HitFields::default(),
                });
                self.cache.put(&key, client.headers(), stored.clone());
                drop(leader);
                self.cache.metrics.miss.increment(1);
                let cs = status(fwd)
                    .fwd_status_if(code, stale.is_some())
                    .stored(true)
                    .ttl(stored.freshness.ttl(response_time));
                let mut answered = answer(&stored, &client, stored.fields(response_time, cs));
                for (name, value) in head.headers.iter().filter(|(n, _)| !stored.headers.contains_key(*n)) {
                    answered.headers_mut().append(name.clone(), value.clone());
                }
                Ok(answered)
            }
            Ok(Collected::TooLarge(body)) => {
                self.cache.metrics.miss.increment(1);
                status(fwd).add_to(&mut head.headers);
                Ok(Response::from_parts(head, body))
            }
            Err(e) => Err(HandlerError::new(
                Fault::UpstreamFailed,
                "upstream failed",
                format!("reading the response to store it: {e}"),
            )),
        }
    }
}

/// Bodies up to this size are read whole before they are answered (it costs nothing to wait for them); larger
/// ones, or those of unknown size, go to the client as they arrive.
const STREAM_ABOVE: u64 = 64 << 10;

/// Whether the client asked for something to be cut from the stored answer: a 304 or a range.
fn conditional_or_ranged(request: &HeaderMap) -> bool {
    request.keys().any(|k| k == IF_NONE_MATCH || k == IF_MODIFIED_SINCE || k == RANGE)
}

/// The fields of a response as they are stored: those named by `no-cache="..."` go to the client that caused
/// the fetch only (RFC 9111 §5.2.2.4), and so does a cookie: it was set for this visitor, not for everyone the
/// stored answer will reach.
fn kept_fields(headers: &HeaderMap, directives: &Directives) -> HeaderMap {
    let mut kept = headers.clone();
    kept.remove(SET_COOKIE);
    for name in directives.qualified_fields("no-cache") {
        kept.remove(name.as_str());
    }
    kept
}

/// The request to the origin: the client's, without its own conditions (answered here, from what is stored),
/// with the stored variant's validator when revalidating it.
fn origin_request(
    mut parts: http::request::Parts,
    body: RequestBody,
    validating: Option<&Arc<Stored>>,
) -> Request<RequestBody> {
    parts.headers.remove(IF_NONE_MATCH);
    parts.headers.remove(IF_MODIFIED_SINCE);
    if let Some(s) = validating {
        if let Some(etag) = s.headers.get(ETAG) {
            parts.headers.insert(IF_NONE_MATCH, etag.clone());
        } else if let Some(modified) = s.headers.get(LAST_MODIFIED) {
            parts.headers.insert(IF_MODIFIED_SINCE, modified.clone());
        }
    }
    Request::from_parts(parts, body)
}

/// The answer for a failure of the route's handler, logged as the server logs one, so that it can carry a
/// `Cache-Status` like every other answer of a cached route.
fn failed(error: HandlerError) -> Response<Body> {
    tracing::warn!(status = error.fault.status().as_u16(), "{error}");
    error.response()
}

/// Why and how a request goes to the origin.
struct Trip {
    /// The stored variant it selected, stale: revalidated, and served if the origin fails within
    /// `stale-if-error`.
    stale: Option<Arc<Stored>>,
    /// Held until the answer is stored, so that requests waiting for it find it.
    leader: Option<Leader>,
    /// Why the origin is asked, for `Cache-Status`.
    fwd: &'static str,
    /// The request waited for another's fetch first.
    collapsed: bool,
}

impl Trip {
    fn new(stale: Option<Arc<Stored>>, leader: Option<Leader>, fwd: &'static str, collapsed: bool) -> Trip {
        Trip { stale, leader, fwd, collapsed }
    }
}

/// The key of a request (the tenant is the cache itself): its scheme, its authority exactly as the origin will
/// get it (lower-cased; a port or a trailing dot keeps it apart, since an origin may reflect them), and its
/// path with query: `https a.test/p?q`. The path is already in normal form (the server rewrote it before
/// routing).
fn cache_key<B>(request: &Request<B>, secure: bool) -> String {
    let authority = match request.uri().authority() {
        Some(a) => a.as_str(),
        None => request.headers().get(HOST).and_then(|h| h.to_str().ok()).unwrap_or(""),
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    key(if secure { "https" } else { "http" }, authority, path)
}

/// The key for a `Location` or `Content-Location` value of a response to the request with key `of`, if it
/// names a URL on the same host (relative ones do); it gets the request's scheme and authority.
fn related_key(of: &str, value: &HeaderValue) -> Option<String> {
    let (scheme, authority, _) = key_parts(of);
    let uri: http::Uri = value.to_str().ok()?.parse().ok()?;
    let path = uri.path_and_query()?.as_str();
    match uri.host() {
        None if path.starts_with('/') => Some(key(scheme, authority, path)),
        Some(h) if normalise_host(h) == normalise_host(host_of(authority)) => Some(key(scheme, authority, path)),
        _ => None,
    }
}

/// Whether `stored` may answer a request with `wants` directives without the origin: fresh (and fresh
/// enough for `max-age` and `min-fresh`), or stale within the client's `max-stale`.
fn acceptable(stored: &Stored, wants: &Directives, now: SystemTime) -> bool {
    let f = &stored.freshness;
    let age = f.age(now);
    if let Some(max_age) = wants.seconds("max-age")
        && age.as_secs() > max_age.unwrap_or(0)
    {
        return false;
    }
    if let Some(min_fresh) = wants.seconds("min-fresh")
        && f.lifetime.saturating_sub(age).as_secs() < min_fresh.unwrap_or(0)
    {
        return false;
    }
    if f.fresh_at(age) {
        return true;
    }
    match wants.seconds("max-stale") {
        Some(limit) => !f.must_revalidate && !f.no_cache && limit.is_none_or(|l| f.staleness(now).as_secs() <= l),
        None => false,
    }
}

/// `stored` as the answer to `client` with `headers` (its fields, `Age` and `Cache-Status`): a 304 for a
/// condition it meets, a range asked for, no body for HEAD.
fn answer<B>(stored: &Stored, client: &Request<B>, mut headers: HeaderMap) -> Response<Body> {
    let conditional = stored.status == StatusCode::OK && conditional_or_ranged(client.headers());
    let (code, body) = if conditional {
        from_stored_200(stored, client, &mut headers)
    } else {
        // Content-Length is stored with the body.
        let body = if client.method() == Method::HEAD { empty_body() } else { full_body(stored.body.clone()) };
        (stored.status, body)
    };
    let mut response = Response::new(body);
    *response.status_mut() = code;
    *response.headers_mut() = headers;
    response
}

/// A stored 200 for a request with conditions or a `Range`: 304 when the client's copy is current (RFC 9110
/// §13.1.2, §13.1.3), 206 with the one range asked for, 416 for a range past the end, else the whole body.
fn from_stored_200<B>(stored: &Stored, client: &Request<B>, headers: &mut HeaderMap) -> (StatusCode, Body) {
    let validators = Validators::of_fields(&stored.headers);
    if validators.not_modified(client.headers()) {
        headers.remove(CONTENT_LENGTH);
        return (StatusCode::NOT_MODIFIED, empty_body());
    }
    let size = stored.body.len() as u64;
    let range = match client.method() {
        &Method::GET => range_request(client.headers(), size, &validators),
        _ => RangeRequest::Full,
    };
    // The range is within the body (`range_request` checked it against `size`).
    let (code, body, content_range) = match range {
        RangeRequest::Partial(r) if (*r.end() as usize) < stored.body.len() => {
            let content_range = format!("bytes {}-{}/{size}", r.start(), r.end());
            (StatusCode::PARTIAL_CONTENT, stored.body.slice(*r.start() as usize..=*r.end() as usize), content_range)
        }
        RangeRequest::Unsatisfiable => (StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new(), format!("bytes */{size}")),
        RangeRequest::Full | RangeRequest::Partial(_) => {
            let body = if client.method() == Method::HEAD { empty_body() } else { full_body(stored.body.clone()) };
            return (StatusCode::OK, body);
        }
    };
    if let Ok(value) = HeaderValue::from_str(&content_range) {
        headers.insert(CONTENT_RANGE, value);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    (code, full_body(body))
}

/// Whether a 304 may refresh `stored` (RFC 9111 §4.3.4): its strong validator, if it has one, is stored's.
fn same_validator(stored: &HeaderMap, fresh: &HeaderMap) -> bool {
    match (fresh.get(ETAG), stored.get(ETAG)) {
        (Some(new), Some(old)) => {
            new.as_bytes().strip_prefix(b"W/").unwrap_or(new.as_bytes())
                == old.as_bytes().strip_prefix(b"W/").unwrap_or(old.as_bytes())
        }
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// `stored` updated by a 304's fields (RFC 9111 §3.2: all but `Content-Length` and the edge-only ones, and
/// `Set-Cookie`, which was for the client whose request revalidated it).
fn refresh(stored: &Stored, fresh: &HeaderMap, request_time: SystemTime, response_time: SystemTime) -> Stored {
    let (directives, targeted) = Directives::for_edge(fresh);
    let mut headers = stored.headers.clone();
    let mut replaced: Vec<&HeaderName> = Vec::new();
    for (name, value) in fresh {
        if *name == CONTENT_LENGTH || *name == SET_COOKIE || is_edge_field(name) || HOP_BY_HOP.contains(&name.as_str())
        {
            continue;
        }
        if !replaced.contains(&name) {
            headers.remove(name);
            replaced.push(name);
        }
        headers.append(name.clone(), value.clone());
    }
    // A 304 without cache directives of its own leaves the stored ones in force.
    let (directives, targeted) = if fresh.contains_key(CACHE_CONTROL) || targeted {
        (directives, targeted)
    } else {
        Directives::for_edge(&stored.headers)
    };
    let tags = if fresh.contains_key(SURROGATE_KEY) { surrogate_keys(fresh) } else { stored.tags.clone() };
    if !headers.contains_key(DATE) {
        headers.insert(DATE, http_date(response_time));
    }
    let freshness = Freshness::of(stored.status, &headers, &directives, targeted, request_time, response_time);
    let varied = stored.varied.clone();
    Stored {
        status: stored.status,
        headers,
        body: stored.body.clone(),
        freshness,
        varied,
        tags,
        hit_fields: HitFields::default(),
    }
}

/// The request's values of the fields `response` varies on; `None` when `Vary` names something that is not a
/// field name (the response cannot be matched to requests, so it is not stored).
fn varied(request: &HeaderMap, response: &HeaderMap) -> Option<Vec<(HeaderName, Option<HeaderValue>)>> {
    let mut varied = Vec::new();
    for value in response.get_all(VARY) {
        for name in value.as_bytes().split(|b| *b == b',').map(<[u8]>::trim_ascii).filter(|n| !n.is_empty()) {
            let name = HeaderName::from_bytes(name).ok()?;
            let value = normalised(request, &name);
            varied.push((name, value));
        }
    }
    Some(varied)
}

fn surrogate_keys(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SURROGATE_KEY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(str::split_whitespace)
        .map(str::to_string)
        .collect()
}

fn is_edge_field(name: &HeaderName) -> bool {
    [CDN_CACHE_CONTROL, SURROGATE_CONTROL, SURROGATE_KEY].contains(&name.as_str())
}

/// Removes the fields meant for this cache alone.
fn strip_edge_fields(headers: &mut HeaderMap) {
    for name in [CDN_CACHE_CONTROL, SURROGATE_CONTROL, SURROGATE_KEY] {
        headers.remove(name);
    }
}

/// Removes hop-by-hop fields and those `Connection` names before storing.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect();
    for name in listed.iter().map(String::as_str).chain(HOP_BY_HOP) {
        headers.remove(name);
    }
    for name in [CONNECTION, TRANSFER_ENCODING, UPGRADE] {
        headers.remove(name);
    }
}

/// The request's method, URI and fields, for a request made on its behalf.
fn request_head<B>(request: &Request<B>) -> (http::request::Parts, ()) {
    let mut builder =
        Request::builder().method(request.method().clone()).uri(request.uri().clone()).version(request.version());
    if let Some(headers) = builder.headers_mut() {
        *headers = request.headers().clone();
    }
    match builder.body(()) {
        Ok(r) => r.into_parts(),
        Err(_) => Request::new(()).into_parts(),
    }
}

/// A body read whole, or too large to be and still to be streamed.
enum Collected {
    Whole(Bytes),
    TooLarge(Body),
}

/// Reads `body` whole if it is at most `limit` bytes; otherwise gives back a body that yields what was
/// read and then the rest.
async fn collect_up_to(mut body: Body, limit: usize) -> Result<Collected, BoxError> {
    if body.size_hint().lower() > limit as u64 {
        return Ok(Collected::TooLarge(body));
    }
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Ok(data) = frame.into_data() else { continue };
        bytes.extend_from_slice(&data);
        if bytes.len() > limit {
            let read = futures::stream::once(async move { Ok::<_, BoxError>(http_body::Frame::data(bytes.freeze())) });
            let rest = http_body_util::BodyStream::new(body);
            let chained = http_body_util::StreamBody::new(futures::StreamExt::chain(read, rest));
            return Ok(Collected::TooLarge(chained.boxed_unsync()));
        }
    }
    Ok(Collected::Whole(bytes.freeze()))
}
