//! Requests to answers: authentication, routing by method and path, JSON in and out.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;

use crate::console::{self, Presented, Sessions};
use crate::{Control, ControlError, ControlResult, KvCall, KvReply, PurgeRequest, Refusal};

/// The largest sign-in body `POST /console/session` takes.
const MAX_SIGN_IN: usize = 4096;

/// What every admin request is checked against: the operator's token and the console's sessions.
#[derive(Debug)]
pub(crate) struct Gate {
    /// The operator's token; `None`: every request is the operator's (loopback only).
    token: Option<std::sync::Arc<str>>,
    /// Browsers signed in to the console.
    sessions: Sessions,
    /// Whether the listener speaks HTTPS.
    secure: bool,
}

impl Gate {
    /// Checks requests against `token` (none: open, loopback only), on a listener speaking HTTPS if `secure`.
    pub(crate) fn new(token: Option<std::sync::Arc<str>>, secure: bool) -> Gate {
        Gate { token, sessions: Sessions::new(secure), secure }
    }
}

/// The largest `.wasm` a deploy may upload.
pub const MAX_APP_SIZE: usize = 256 << 20;

type Answer = Response<Full<Bytes>>;

/// The largest tenant document `PUT /v1/tenants/{t}` takes.
pub const MAX_TENANT_DOCUMENT: usize = 1 << 20;

/// The largest body `POST /v1/tenants/{t}/purge` takes.
const MAX_PURGE_BODY: usize = 1 << 20;
/// Most tags and URLs named by one purge: each path costs a pass over the tenant's keys.
const MAX_PURGE_ITEMS: usize = 1000;

/// The largest value `PUT /v1/tenants/{t}/buckets/{b}/keys/{key}` takes (the tenant's quota may allow less).
pub const MAX_KV_VALUE: usize = 64 << 20;

/// Who is calling, by the bearer token it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Caller {
    /// The operator's token (or no token is required): every endpoint.
    Operator,
    /// A token scoped to this tenant.
    Tenant(String),
}

impl Caller {
    /// Whether the caller may call `method` on `segments`: a tenant may read its own tenant (and the list,
    /// which shows it alone), deploy and remove its own apps, and use its own buckets.
    fn may(&self, method: &Method, segments: &[&str]) -> bool {
        let Caller::Tenant(own) = self else { return true };
        match (method, segments) {
            (&Method::GET, ["v1", "tenants"] | ["v1", "stats"]) => true,
            (&Method::GET, ["v1", "tenants", tenant]) => tenant == own,
            (&Method::PUT | &Method::DELETE, ["v1", "tenants", tenant, "apps", _]) => tenant == own,
            (_, ["v1", "tenants", tenant, "buckets", ..]) => tenant == own,
            (&Method::POST, ["v1", "tenants", tenant, "purge"]) => tenant == own,
            _ => false,
        }
    }
}

pub(crate) async fn answer<C: Control>(control: &C, gate: &Gate, req: Request<Incoming>) -> Answer {
    let mut answer = route(control, gate, req).await;
    console::secure_headers(&mut answer);
    // API answers carry tokens, values and tenant data: never stored, never run as a page.
    let headers = answer.headers_mut();
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    }
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; sandbox"),
        );
    }
    answer
}

async fn route<C: Control>(control: &C, gate: &Gate, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    // Health is open to probes, which send GET or HEAD (hyper leaves the body out of a HEAD answer).
    let probe = method == Method::GET || method == Method::HEAD;
    match (probe, segments.as_slice()) {
        (true, ["healthz"]) => return text(StatusCode::OK, "ok\n"),
        (true, ["readyz"]) => {
            return match control.readiness() {
                Ok(notes) => text(StatusCode::OK, &notes.iter().fold("ready\n".to_string(), |all, n| all + n + "\n")),
                Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("not ready: {why}\n")),
            };
        }
        _ => {}
    }
    if let Some(asset) = console::asset(&method, &path) {
        return asset;
    }
    if let Some(refusal) = cross_site(gate, &req) {
        return error(StatusCode::FORBIDDEN, refusal);
    }
    if segments == ["console", "session"] {
        return session(control, gate, req).await;
    }
    let caller = match caller(control, gate, &req) {
        Ok(caller) => caller,
        Err(Unknown::WithoutItsToken) => {
            return error(StatusCode::FORBIDDEN, "a request with the console's cookie needs its X-CSRF-Token");
        }
        Err(Unknown::Nobody) => {
            let mut answer = error(StatusCode::UNAUTHORIZED, "a bearer token is required: Authorization: Bearer TOKEN");
            answer.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return answer;
        }
    };
    if !caller.may(&method, &segments) {
        return error(StatusCode::FORBIDDEN, &format!("a tenant's token may not {method} {path}"));
    }
    let route = query_value(&req, "route");
    let cache = match query_value(&req, "cache").as_deref() {
        None | Some("false" | "0") => false,
        Some("true" | "1" | "") => true,
        Some(other) => return error(StatusCode::BAD_REQUEST, &format!("`cache` is true or false, not {other:?}")),
    };
    let result = match (&method, segments.as_slice()) {
        (&Method::GET, ["metrics"]) => {
            let mut answer = text(StatusCode::OK, &control.metrics());
            answer.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return answer;
        }
        (&Method::GET, ["v1", "stats"]) => Ok(match &caller {
            Caller::Operator => control.stats(None).await,
            Caller::Tenant(own) => control.stats(Some(own)).await,
        }),
        (&Method::GET, ["v1", "tenants"]) => match &caller {
            Caller::Operator => Ok(control.tenants().await),
            Caller::Tenant(own) => {
                Ok(serde_json::json!({ "tenants": control.tenant(own).await.into_iter().collect::<Vec<_>>() }))
            }
        },
        (&Method::GET, ["v1", "tenants", tenant]) => control
            .tenant(tenant)
            .await
            .ok_or_else(|| ControlError::new(Refusal::NotFound, format!("no tenant {tenant:?}"))),
        (&Method::PUT, ["v1", "tenants", tenant]) => {
            let tenant = tenant.to_string();
            let body = match read_body(req, MAX_TENANT_DOCUMENT, "a tenant document").await {
                Ok(body) => body,
                Err(answer) => return answer,
            };
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(spec) => match control.put_tenant(&tenant, spec).await {
                    Ok((created, value)) => {
                        tracing::info!(target: "palisade::admin", %method, path, created, "tenant stored");
                        return json(if created { StatusCode::CREATED } else { StatusCode::OK }, &value);
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(ControlError::new(Refusal::BadRequest, format!("the body is not JSON: {e}"))),
            }
        }
        (&Method::DELETE, ["v1", "tenants", tenant]) => control.delete_tenant(tenant).await,
        (&Method::POST, ["v1", "tenants", tenant, "tokens"]) => match control.issue_token(tenant).await {
            Ok(issued) => {
                tracing::info!(target: "palisade::admin", %method, path, "tenant token issued");
                return json(StatusCode::CREATED, &issued);
            }
            Err(e) => Err(e),
        },
        (&Method::DELETE, ["v1", "tenants", tenant, "tokens", id]) => control.revoke_token(tenant, id).await,
        (&Method::PUT, ["v1", "tenants", tenant, "apps", name]) => {
            let (tenant, name) = (tenant.to_string(), name.to_string());
            let wasm = match read_body(req, MAX_APP_SIZE, "an app").await {
                Ok(body) => body,
                Err(answer) => return answer,
            };
            match control.deploy(&tenant, &name, route.as_deref(), cache, wasm).await {
                Ok(record) => {
                    tracing::info!(target: "palisade::admin", %method, path, "app deployed");
                    return json(StatusCode::CREATED, &record);
                }
                Err(e) => Err(e),
            }
        }
        (&Method::DELETE, ["v1", "tenants", tenant, "apps", name]) => control.remove(tenant, name).await,
        (method, ["v1", "tenants", tenant, "buckets", bucket, "keys", rest @ ..]) if rest.len() <= 1 => {
            let (tenant, bucket) = (tenant.to_string(), decoded(bucket));
            let key = rest.first().map(|k| decoded(k));
            let call = match (method, key) {
                (&Method::GET, None) => match query_value(&req, "cursor").map(|c| c.parse::<u64>()) {
                    None => KvCall::List { cursor: 0 },
                    Some(Ok(cursor)) => KvCall::List { cursor },
                    Some(Err(_)) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "`cursor` is a number: the `cursor` of the previous page",
                        );
                    }
                },
                (&Method::GET, Some(key)) => KvCall::Get(key),
                (&Method::DELETE, Some(key)) => KvCall::Delete(key),
                (&Method::PUT, Some(key)) => match read_body(req, MAX_KV_VALUE, "a value").await {
                    Ok(value) => KvCall::Put(key, value),
                    Err(answer) => return answer,
                },
                _ => return error(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} is not allowed on {path}")),
            };
            match control.kv(&tenant, &bucket, call).await {
                Ok(KvReply::Value(Some(value))) => return octets(value),
                Ok(KvReply::Value(None)) => Err(ControlError::new(Refusal::NotFound, "no such key")),
                Ok(KvReply::Json(value)) => Ok(value),
                Err(e) => Err(e),
            }
        }
        (&Method::POST, ["v1", "tenants", tenant, "purge"]) => {
            let tenant = tenant.to_string();
            let body = match read_body(req, MAX_PURGE_BODY, "a purge").await {
                Ok(body) => body,
                Err(answer) => return answer,
            };
            match serde_json::from_slice::<PurgeRequest>(&body) {
                Ok(p) if p.keys.is_empty() && p.urls.is_empty() && !p.all => Err(ControlError::new(
                    Refusal::BadRequest,
                    "say what to purge: {\"keys\": [...]}, {\"urls\": [...]} or {\"all\": true}",
                )),
                Ok(p) if p.keys.len() + p.urls.len() > MAX_PURGE_ITEMS => Err(ControlError::new(
                    Refusal::BadRequest,
                    format!("at most {MAX_PURGE_ITEMS} keys and URLs in one purge"),
                )),
                Ok(p) if p.keys.iter().any(|k| k.trim().is_empty() || k.contains(char::is_whitespace)) => {
                    Err(ControlError::new(
                        Refusal::BadRequest,
                        "`keys`: a tag is one word (as in Surrogate-Key), not empty",
                    ))
                }
                Ok(p) if p.urls.iter().any(|u| !purgeable_url(u)) => Err(ControlError::new(
                    Refusal::BadRequest,
                    "`urls`: each is an absolute http(s) URL or a path starting with /",
                )),
                Ok(purge) => control.purge(&tenant, purge).await,
                Err(e) => Err(ControlError::new(Refusal::BadRequest, format!("the purge is not valid: {e}"))),
            }
        }
        (&Method::POST, ["v1", "reload"]) => control.reload().await,
        (
            _,
            ["metrics"]
            | ["v1", "stats"]
            | ["v1", "tenants"]
            | ["v1", "tenants", _]
            | ["v1", "tenants", _, "apps", _]
            | ["v1", "tenants", _, "tokens"]
            | ["v1", "tenants", _, "tokens", _]
            | ["v1", "tenants", _, "purge"]
            | ["v1", "reload"],
        ) => {
            return error(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} is not allowed on {path}"));
        }
        _ => return error(StatusCode::NOT_FOUND, &format!("no admin endpoint at {path}")),
    };
    // Reads are many (a console polls every two seconds) and change nothing: logged at debug level.
    if method == Method::GET {
        tracing::debug!(target: "palisade::admin", %method, path, ok = result.is_ok(), "admin request");
    } else {
        tracing::info!(target: "palisade::admin", %method, path, ok = result.is_ok(), "admin request");
    }
    respond(result)
}

/// Why a request has no known caller.
enum Unknown {
    /// No valid token or session.
    Nobody,
    /// A session's cookie without the session's CSRF token.
    WithoutItsToken,
}

/// Who sent `req`: the operator (its token, or any request when no token is set) or a tenant (one of its
/// tokens), by its bearer token, else by its console session (its cookie and its CSRF token).
fn caller<C: Control, B>(control: &C, gate: &Gate, req: &Request<B>) -> Result<Caller, Unknown> {
    if gate.token.is_none() {
        return Ok(Caller::Operator);
    }
    if let Some(given) = bearer(req) {
        return caller_of(control, gate, given).ok_or(Unknown::Nobody);
    }
    session_caller(control, gate, req)
}

/// Who `req`'s console session belongs to; a session whose token was revoked ends with it.
fn session_caller<C: Control, B>(control: &C, gate: &Gate, req: &Request<B>) -> Result<Caller, Unknown> {
    match gate.sessions.of(req) {
        Presented::Nothing => Err(Unknown::Nobody),
        Presented::WithoutItsToken => Err(Unknown::WithoutItsToken),
        Presented::Session(id, session) => caller_of(control, gate, &session.token).ok_or_else(|| {
            gate.sessions.close(&id);
            Unknown::Nobody
        }),
    }
}

/// Who `token` belongs to: the operator, a tenant, or nobody.
fn caller_of<C: Control>(control: &C, gate: &Gate, token: &str) -> Option<Caller> {
    match &gate.token {
        None => Some(Caller::Operator),
        Some(operator) if same_secret(token, operator) => Some(Caller::Operator),
        Some(_) => control.token_tenant(token).map(Caller::Tenant),
    }
}

/// Why `req` is refused as a browser's request from another site, if it is: browsers say so in
/// `Sec-Fetch-Site` (a page elsewhere posting to this listener), and older ones in an `Origin` that is not
/// this listener's on a write. Without a token, the listener is on loopback and open, so a host name other
/// than a loopback one (DNS rebinding: another site's name pointed at 127.0.0.1) is refused as well.
fn cross_site<B>(gate: &Gate, req: &Request<B>) -> Option<&'static str> {
    let site = req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(site, Some("cross-site" | "same-site")) {
        return Some("requests from other sites' pages are refused");
    }
    let hosts = req.headers().get_all(header::HOST).iter().count();
    if hosts > 1 {
        return Some("a request names one host");
    }
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    let write = req.method() != Method::GET && req.method() != Method::HEAD;
    if write && let Some(origin) = req.headers().get(header::ORIGIN) {
        let scheme = if gate.secure { "https" } else { "http" };
        // HTTP/2 names the host in :authority, HTTP/1.1 in Host.
        let ours = host.or_else(|| req.uri().authority().map(|a| a.as_str()));
        let own = ours.is_some_and(|host| origin.as_bytes() == format!("{scheme}://{host}").as_bytes());
        if !own {
            return Some("writes from other origins' pages are refused");
        }
    }
    if gate.token.is_none() {
        // Every name the request gives for its host must be a loopback one (HTTP/2's :authority and a Host
        // field may both be there).
        let loopback = |authority: &str| {
            authority.parse::<http::uri::Authority>().is_ok_and(|a| {
                let name = a.host().trim_matches(['[', ']']);
                name.eq_ignore_ascii_case("localhost")
                    || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            })
        };
        let names = req.uri().authority().map(|a| a.as_str()).into_iter().chain(host);
        if !names.clone().all(loopback) || names.count() == 0 {
            return Some("without a token the admin API answers loopback host names only");
        }
    }
    None
}

/// `/console/session`: GET says who is signed in (to a page that shows the session's cookie and CSRF
/// token), POST `{"token": "..."}` signs in and is the only answer with the CSRF token, DELETE signs out.
async fn session<C: Control>(control: &C, gate: &Gate, req: Request<Incoming>) -> Answer {
    let signed_in = |caller: &Caller, csrf: Option<&str>| {
        let tenant = match caller {
            Caller::Operator => None,
            Caller::Tenant(name) => Some(name.clone()),
        };
        let mut who = serde_json::json!({ "signed_in": true, "operator": tenant.is_none(), "tenant": tenant });
        if let (Some(csrf), Some(who)) = (csrf, who.as_object_mut()) {
            who.insert("csrf".into(), csrf.into());
        }
        json(StatusCode::OK, &who)
    };
    match req.method().clone() {
        Method::GET | Method::HEAD => match session_caller(control, gate, &req) {
            Ok(caller) => signed_in(&caller, None),
            // Nobody signed in is not an error: a 401 would be one in the browser's console.
            Err(_) => json(StatusCode::OK, &serde_json::json!({ "signed_in": false })),
        },
        Method::POST => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct SignIn {
                token: String,
            }
            let body = match read_body(req, MAX_SIGN_IN, "a sign-in").await {
                Ok(body) => body,
                Err(answer) => return answer,
            };
            let Ok(SignIn { token }) = serde_json::from_slice::<SignIn>(&body) else {
                return error(StatusCode::BAD_REQUEST, "sign in with {\"token\": \"...\"}");
            };
            let Some(caller) = caller_of(control, gate, token.trim()) else {
                tracing::info!(target: "palisade::admin", "console sign-in with a wrong token");
                return error(StatusCode::UNAUTHORIZED, "this token is not valid");
            };
            let (id, session) = match gate.sessions.open(token.trim()) {
                Ok(opened) => opened,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("no random numbers: {e}")),
            };
            tracing::info!(target: "palisade::admin", ?caller, "console sign-in");
            let mut answer = signed_in(&caller, Some(&session.csrf));
            answer.headers_mut().insert(header::SET_COOKIE, gate.sessions.set_cookie(Some(&id)));
            answer
        }
        Method::DELETE => match gate.sessions.of(&req) {
            Presented::Session(id, _) => {
                gate.sessions.close(&id);
                let mut answer = Response::new(Full::new(Bytes::new()));
                *answer.status_mut() = StatusCode::NO_CONTENT;
                answer.headers_mut().insert(header::SET_COOKIE, gate.sessions.set_cookie(None));
                answer
            }
            Presented::WithoutItsToken => error(StatusCode::FORBIDDEN, "signing out needs the session's X-CSRF-Token"),
            Presented::Nothing => error(StatusCode::UNAUTHORIZED, "not signed in"),
        },
        ref method => error(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} is not allowed here")),
    }
}

/// The request's body, at most `limit` bytes (refused with 413 on its declared length before a byte is
/// read); `what` names it in the refusal.
async fn read_body(req: Request<Incoming>, limit: usize, what: &str) -> Result<Bytes, Answer> {
    let too_large = || error(StatusCode::PAYLOAD_TOO_LARGE, &format!("{what} may be at most {limit} bytes"));
    if declared_length(&req).is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(error(StatusCode::BAD_REQUEST, &format!("could not read the upload: {e}"))),
    }
}

fn respond(result: ControlResult) -> Answer {
    match result {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => {
            let status = match e.refusal {
                Refusal::BadRequest => StatusCode::BAD_REQUEST,
                Refusal::Forbidden => StatusCode::FORBIDDEN,
                Refusal::NotFound => StatusCode::NOT_FOUND,
                Refusal::Conflict => StatusCode::CONFLICT,
                Refusal::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                Refusal::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let mut body = serde_json::json!({ "error": e.message });
            if let (Some(serde_json::Value::Object(details)), Some(body)) = (e.details, body.as_object_mut()) {
                body.extend(details);
            }
            json(status, &body)
        }
    }
}

/// The request's `Content-Length`, if it declares one.
fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// The request's bearer token, if it carries one (the scheme's name is case-insensitive, RFC 9110 §11.1).
fn bearer<B>(req: &Request<B>) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("Bearer").then(|| token.trim())
}

/// Whether `given` is `secret`, compared in constant time.
pub(crate) fn same_secret(given: &str, secret: &str) -> bool {
    let (given, secret) = (given.as_bytes(), secret.as_bytes());
    given.len() == secret.len() && given.iter().zip(secret).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The decoded value of `name` in the query, if present (`+` is a space, as in forms).
fn query_value<B>(req: &Request<B>, name: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned())
    })
}

/// A path segment percent-decoded (a key may hold any character).
fn decoded(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

fn octets(value: Bytes) -> Answer {
    let mut answer = Response::new(Full::new(value));
    answer.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
    answer
}

fn text(status: StatusCode, body: &str) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(body.to_string())));
    *answer.status_mut() = status;
    answer.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    answer
}

fn json(status: StatusCode, value: &serde_json::Value) -> Answer {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    answer.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    answer
}

fn error(status: StatusCode, message: &str) -> Answer {
    json(status, &serde_json::json!({ "error": message }))
}

/// Whether `url` can name cached responses: an absolute `http`/`https` URL with a host, or a path.
fn purgeable_url(url: &str) -> bool {
    if url.starts_with('/') {
        return url.parse::<http::uri::PathAndQuery>().is_ok();
    }
    url.parse::<http::Uri>().is_ok_and(|u| {
        matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some_and(|a| !a.host().is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let req = |v: &str| Request::builder().header(header::AUTHORIZATION, v).body(()).expect("request");
        assert_eq!(bearer(&req("Bearer s3cret ")), Some("s3cret"));
        assert_eq!(bearer(&req("bearer s3cret")), Some("s3cret"));
        assert_eq!(bearer(&req("Basic s3cret")), None);
        assert_eq!(bearer(&req("Basic s3cret")), None);
        assert_eq!(bearer(&Request::new(())), None);
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cre", "s3cret"));
    }

    #[test]
    fn a_tenant_token_reaches_its_own_tenant_only() {
        let me = Caller::Tenant("acme".into());
        assert!(me.may(&Method::GET, &["v1", "tenants"]));
        assert!(me.may(&Method::GET, &["v1", "tenants", "acme"]));
        assert!(me.may(&Method::PUT, &["v1", "tenants", "acme", "apps", "hello"]));
        assert!(me.may(&Method::DELETE, &["v1", "tenants", "acme", "apps", "hello"]));
        assert!(!me.may(&Method::GET, &["v1", "tenants", "other"]));
        assert!(!me.may(&Method::PUT, &["v1", "tenants", "other", "apps", "hello"]));
        assert!(!me.may(&Method::PUT, &["v1", "tenants", "acme"]));
        assert!(!me.may(&Method::DELETE, &["v1", "tenants", "acme"]));
        assert!(!me.may(&Method::POST, &["v1", "tenants", "acme", "tokens"]));
        assert!(!me.may(&Method::POST, &["v1", "reload"]));
        assert!(!me.may(&Method::GET, &["metrics"]));
        assert!(me.may(&Method::PUT, &["v1", "tenants", "acme", "buckets", "default", "keys", "k"]));
        assert!(!me.may(&Method::GET, &["v1", "tenants", "other", "buckets", "default", "keys"]));
        assert!(Caller::Operator.may(&Method::POST, &["v1", "reload"]));
    }

    #[test]
    fn query_values_are_decoded() {
        let req = Request::builder().uri("/x?a=1&route=%2Fhello%20world&b").body(()).expect("request");
        assert_eq!(query_value(&req, "route").as_deref(), Some("/hello world"));
        assert_eq!(query_value(&req, "b").as_deref(), Some(""));
        assert_eq!(query_value(&req, "c"), None);
    }
}
