//! Requests to answers: authentication, routing by method and path, JSON in and out.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;

use crate::{Control, ControlError, ControlResult, Refusal};

/// The largest `.wasm` a deploy may upload.
pub const MAX_APP_SIZE: usize = 256 << 20;

type Answer = Response<Full<Bytes>>;

pub(crate) async fn answer<C: Control>(control: &C, token: Option<&str>, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    // Health is open to probes, which send GET or HEAD (hyper leaves the body out of a HEAD answer).
    let probe = method == Method::GET || method == Method::HEAD;
    match (probe, segments.as_slice()) {
        (true, ["healthz"]) => return text(StatusCode::OK, "ok\n"),
        (true, ["readyz"]) => {
            return match control.readiness() {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("not ready: {why}\n")),
            };
        }
        _ => {}
    }
    if let Some(token) = token
        && !authorized(&req, token)
    {
        let mut answer = error(StatusCode::UNAUTHORIZED, "a bearer token is required: Authorization: Bearer TOKEN");
        answer.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return answer;
    }
    let route = query_value(&req, "route");
    let result = match (&method, segments.as_slice()) {
        (&Method::GET, ["metrics"]) => {
            let mut answer = text(StatusCode::OK, &control.metrics());
            answer.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return answer;
        }
        (&Method::GET, ["v1", "tenants"]) => Ok(control.tenants().await),
        (&Method::GET, ["v1", "tenants", tenant]) => control
            .tenant(tenant)
            .await
            .ok_or_else(|| ControlError::new(Refusal::NotFound, format!("no tenant {tenant:?}"))),
        (&Method::PUT, ["v1", "tenants", tenant, "apps", name]) => {
            // Refused on the declared length, before a byte of it is read.
            if declared_length(&req).is_some_and(|length| length > MAX_APP_SIZE as u64) {
                return error(StatusCode::PAYLOAD_TOO_LARGE, &format!("an app may be at most {MAX_APP_SIZE} bytes"));
            }
            let (tenant, name) = (tenant.to_string(), name.to_string());
            match Limited::new(req.into_body(), MAX_APP_SIZE).collect().await {
                Ok(body) => match control.deploy(&tenant, &name, route.as_deref(), body.to_bytes()).await {
                    Ok(record) => {
                        tracing::info!(target: "palisade::admin", %method, path, "app deployed");
                        return json(StatusCode::CREATED, &record);
                    }
                    Err(e) => Err(e),
                },
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("an app may be at most {MAX_APP_SIZE} bytes"),
                    );
                }
                Err(e) => Err(ControlError::new(Refusal::BadRequest, format!("could not read the upload: {e}"))),
            }
        }
        (&Method::DELETE, ["v1", "tenants", tenant, "apps", name]) => control.remove(tenant, name).await,
        (&Method::POST, ["v1", "reload"]) => control.reload().await,
        (
            _,
            ["metrics"] | ["v1", "tenants"] | ["v1", "tenants", _] | ["v1", "tenants", _, "apps", _] | ["v1", "reload"],
        ) => {
            return error(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} is not allowed on {path}"));
        }
        _ => return error(StatusCode::NOT_FOUND, &format!("no admin endpoint at {path}")),
    };
    tracing::info!(target: "palisade::admin", %method, path, ok = result.is_ok(), "admin request");
    respond(result)
}

fn respond(result: ControlResult) -> Answer {
    match result {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => {
            let status = match e.refusal {
                Refusal::BadRequest => StatusCode::BAD_REQUEST,
                Refusal::NotFound => StatusCode::NOT_FOUND,
                Refusal::Conflict => StatusCode::CONFLICT,
                Refusal::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                Refusal::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, &e.message)
        }
    }
}

/// The request's `Content-Length`, if it declares one.
fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Whether the request carries `token` as its bearer token (compared in constant time).
fn authorized<B>(req: &Request<B>, token: &str) -> bool {
    let Some(given) =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (given, token) = (given.trim().as_bytes(), token.as_bytes());
    given.len() == token.len() && given.iter().zip(token).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The decoded value of `name` in the query, if present (`+` is a space, as in forms).
fn query_value<B>(req: &Request<B>, name: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned())
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let req = |v: &str| Request::builder().header(header::AUTHORIZATION, v).body(()).expect("request");
        assert!(authorized(&req("Bearer s3cret"), "s3cret"));
        assert!(!authorized(&req("Bearer s3cre"), "s3cret"));
        assert!(!authorized(&req("Basic s3cret"), "s3cret"));
        assert!(!authorized(&Request::new(()), "s3cret"));
    }

    #[test]
    fn query_values_are_decoded() {
        let req = Request::builder().uri("/x?a=1&route=%2Fhello%20world&b").body(()).expect("request");
        assert_eq!(query_value(&req, "route").as_deref(), Some("/hello world"));
        assert_eq!(query_value(&req, "b").as_deref(), Some(""));
        assert_eq!(query_value(&req, "c"), None);
    }
}
