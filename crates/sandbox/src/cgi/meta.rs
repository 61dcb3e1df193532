//! CGI/1.1 meta-variables (RFC 3875 §4.1) for one request.

use http::{HeaderMap, Method, Version, header};
use palisade_http::RequestContext;
use percent_encoding::percent_decode_str;

/// What the meta-variables are built from (the request without its body).
pub(crate) struct MetaRequest<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a http::Uri,
    pub(crate) version: Version,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) content_length: Option<usize>,
}

/// Header names never passed as `HTTP_*`: `Proxy` would become `HTTP_PROXY`, which many HTTP clients read as
/// their proxy setting ("httpoxy"); the others are given as their own meta-variables or are connection-level.
fn withheld(name: &str) -> bool {
    matches!(
        name,
        "proxy"
            | "content-type"
            | "content-length"
            | "authorization"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "upgrade"
    )
}

/// The meta-variables, in a stable order; returns `Err` for a path that cannot be given to a program
/// (it decodes to a NUL byte or to invalid UTF-8).
pub(crate) fn meta_variables(req: &MetaRequest<'_>, cx: &RequestContext) -> Result<Vec<(String, String)>, String> {
    let path = req.uri.path();
    let path_info_raw = cx.path_below_route(path);
    let path_info = percent_decode_str(path_info_raw)
        .decode_utf8()
        .map_err(|_| "PATH_INFO is not valid UTF-8 once decoded".to_string())?;
    if path_info.contains('\0') {
        return Err("PATH_INFO contains a NUL byte once decoded".into());
    }
    let script_name = if &*cx.route == "/" { "" } else { &cx.route };

    let (server_name, server_port) = server_name_and_port(req, cx);
    let mut vars: Vec<(String, String)> = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("SERVER_SOFTWARE".into(), concat!("palisade/", env!("CARGO_PKG_VERSION")).into()),
        ("SERVER_PROTOCOL".into(), protocol(req.version).into()),
        ("SERVER_NAME".into(), server_name),
        ("SERVER_PORT".into(), server_port),
        ("REQUEST_METHOD".into(), req.method.as_str().into()),
        ("REQUEST_URI".into(), req.uri.path_and_query().map_or(path, |pq| pq.as_str()).into()),
        ("SCRIPT_NAME".into(), script_name.into()),
        ("PATH_INFO".into(), path_info.into_owned()),
        ("QUERY_STRING".into(), req.uri.query().unwrap_or("").into()),
        ("REMOTE_ADDR".into(), cx.remote_addr.ip().to_string()),
        ("REMOTE_PORT".into(), cx.remote_addr.port().to_string()),
    ];
    if cx.secure {
        // What Apache and nginx's fastcgi_params set, and what CGI programs test to build absolute URLs.
        vars.push(("HTTPS".into(), "on".into()));
    }
    vars.push(("REQUEST_SCHEME".into(), if cx.secure { "https" } else { "http" }.into()));
    if let Some(len) = req.content_length {
        vars.push(("CONTENT_LENGTH".into(), len.to_string()));
    }
    if let Some(ct) = req.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        vars.push(("CONTENT_TYPE".into(), ct.into()));
    }
    for name in req.headers.keys() {
        // `X_Forwarded_For` would become the same variable as `X-Forwarded-For`: a client could pass its own
        // value off as the one a proxy in front set. Names with `_` are dropped, as nginx does by default.
        if withheld(name.as_str()) || name.as_str().contains('_') {
            continue;
        }
        let joined: Vec<&str> = req.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        if joined.is_empty() {
            continue;
        }
        let var = format!("HTTP_{}", name.as_str().to_ascii_uppercase().replace('-', "_"));
        vars.push((var, joined.join(", ")));
    }
    Ok(vars)
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// SERVER_NAME is the host the client asked for (without port); SERVER_PORT the port it connected to.
fn server_name_and_port(req: &MetaRequest<'_>, cx: &RequestContext) -> (String, String) {
    let host = req
        .uri
        .host()
        .map(str::to_string)
        .or_else(|| {
            let h = req.headers.get(header::HOST)?.to_str().ok()?;
            let authority: http::uri::Authority = h.parse().ok()?;
            Some(authority.host().to_string())
        })
        .unwrap_or_else(|| cx.local_addr.ip().to_string());
    (host, cx.local_addr.port().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn cx(route: &str) -> RequestContext {
        RequestContext {
            request_id: 7,
            tenant: "alice".into(),
            route: route.into(),
            remote_addr: SocketAddr::from(([10, 0, 0, 9], 5555)),
            local_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            secure: false,
        }
    }

    fn vars(route: &str, uri: &str, headers: &[(&str, &str)]) -> Result<Vec<(String, String)>, String> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let uri: http::Uri = uri.parse().unwrap();
        meta_variables(
            &MetaRequest {
                method: &Method::POST,
                uri: &uri,
                version: Version::HTTP_11,
                headers: &map,
                content_length: Some(3),
            },
            &cx(route),
        )
    }

    fn get<'a>(v: &'a [(String, String)], k: &str) -> Option<&'a str> {
        v.iter().find(|(n, _)| n == k).map(|(_, val)| val.as_str())
    }

    #[test]
    fn standard_variables() {
        let v = vars(
            "/cgi-bin/mail",
            "/cgi-bin/mail/inbox%20new?x=1&y=2",
            &[("host", "alice.localhost:8080"), ("content-type", "text/plain"), ("x-thing", "a"), ("x-thing", "b")],
        )
        .unwrap();
        assert_eq!(get(&v, "SCRIPT_NAME"), Some("/cgi-bin/mail"));
        assert_eq!(get(&v, "PATH_INFO"), Some("/inbox new"));
        assert_eq!(get(&v, "QUERY_STRING"), Some("x=1&y=2"));
        assert_eq!(get(&v, "REQUEST_METHOD"), Some("POST"));
        assert_eq!(get(&v, "SERVER_NAME"), Some("alice.localhost"));
        assert_eq!(get(&v, "SERVER_PORT"), Some("8080"));
        assert_eq!(get(&v, "SERVER_PROTOCOL"), Some("HTTP/1.1"));
        assert_eq!(get(&v, "REMOTE_ADDR"), Some("10.0.0.9"));
        assert_eq!(get(&v, "CONTENT_LENGTH"), Some("3"));
        assert_eq!(get(&v, "CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(get(&v, "HTTP_X_THING"), Some("a, b"));
        assert_eq!(get(&v, "HTTP_HOST"), Some("alice.localhost:8080"));
        assert_eq!(get(&v, "GATEWAY_INTERFACE"), Some("CGI/1.1"));
        assert_eq!(get(&v, "HTTP_CONTENT_TYPE"), None);
    }

    #[test]
    fn root_route_has_empty_script_name() {
        let v = vars("/", "/a/b", &[]).unwrap();
        assert_eq!(get(&v, "SCRIPT_NAME"), Some(""));
        assert_eq!(get(&v, "PATH_INFO"), Some("/a/b"));
    }

    #[test]
    fn httpoxy_and_credentials_are_withheld() {
        let v = vars("/", "/", &[("proxy", "http://evil"), ("authorization", "Basic x")]).unwrap();
        assert_eq!(get(&v, "HTTP_PROXY"), None);
        assert_eq!(get(&v, "HTTP_AUTHORIZATION"), None);
    }

    #[test]
    fn nul_in_path_is_refused() {
        assert!(vars("/", "/a%00b", &[]).is_err());
        assert!(vars("/", "/a%ffb", &[]).is_err());
    }
}
