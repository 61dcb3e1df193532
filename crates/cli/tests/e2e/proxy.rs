//! The reverse proxy against real upstream servers (see `upstream`): balancing, ejection and recovery,
//! forwarding headers, streaming without buffering, upgrades, timeouts and failures, and h2c upstreams.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

use crate::harness::{Running, Site, status_line};
use crate::upstream::Upstream;

/// A server whose tenant `app` (host `app.localhost`) proxies `/` with the `proxy` value given, with
/// `tenant_keys` added to the tenant.
fn proxy_site(proxy: &str, tenant_keys: &str) -> (Site, Running) {
    let site = Site::new();
    site.config(&format!(
        "[tenants.app]\nhosts = [\"app.localhost\"]\n{tenant_keys}\n[[tenants.app.routes]]\npath = \"/\"\nproxy = {proxy}\n"
    ));
    let server = site.start();
    (site, server)
}

fn upstream_list(upstreams: &[&Upstream]) -> String {
    let urls: Vec<String> = upstreams.iter().map(|u| format!("{:?}", u.url())).collect();
    format!("[{}]", urls.join(", "))
}

/// GETs `path` `n` times; returns each answer's `x-upstream`, failing on anything but 200.
async fn who_answers(server: &Running, path: &str, n: usize) -> Vec<String> {
    let client = server.client(&["app.localhost"]);
    let mut names = Vec::new();
    for _ in 0..n {
        let r = client.get(server.url("app.localhost", path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        names.push(r.headers()["x-upstream"].to_str().unwrap().to_string());
    }
    names
}

#[tokio::test]
async fn requests_are_spread_over_upstreams_with_forwarding_headers() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let (_site, server) = proxy_site(&format!("{{ upstreams = {} }}", upstream_list(&[&a, &b])), "");
    let names = who_answers(&server, "/", 10).await;
    assert_eq!(names.iter().filter(|n| *n == "a").count(), 5, "{names:?}");

    let client = server.client(&["app.localhost"]);
    let r = client
        .get(server.url("app.localhost", "/some/path?q=1"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "gopher")
        .header("connection", "x-private")
        .header("x-private", "for this hop only")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The upstream's own hop-by-hop headers stop at the proxy; Via is added.
    assert!(r.headers().get("x-hop").is_none() && r.headers().get("keep-alive").is_none(), "{:?}", r.headers());
    assert_eq!(r.headers()["via"], "1.1 palisade");
    let seen = r.text().await.unwrap();
    let port = server.addr.port();
    for expected in [
        " GET /some/path?q=1 HTTP/1.1\n",
        &format!("host: app.localhost:{port}\n"),
        "x-forwarded-for: 203.0.113.9, 127.0.0.1\n",
        "x-forwarded-proto: http\n",
        &format!("x-forwarded-host: app.localhost:{port}\n"),
        &format!("forwarded: for=127.0.0.1;proto=http;host=\"app.localhost:{port}\"\n"),
        "via: 1.1 palisade\n",
    ] {
        assert!(seen.contains(expected), "upstream did not see {expected:?}:\n{seen}");
    }
    for dropped in ["x-private", "proxy-connection", "\nte:", "connection: x-private"] {
        assert!(!seen.contains(dropped), "upstream saw {dropped:?}:\n{seen}");
    }

    // An HTTP/2 client: the upstream still gets HTTP/1.1 with the client's host.
    let h2 = server.h2c_client(&["app.localhost"]);
    let seen = h2.get(server.url("app.localhost", "/h2")).send().await.unwrap().text().await.unwrap();
    assert!(seen.contains(" GET /h2 HTTP/1.1\n") && seen.contains(&format!("host: app.localhost:{port}\n")), "{seen}");
    assert!(seen.contains("via: 2 palisade\n"), "{seen}");
}

#[tokio::test]
async fn upstream_connections_are_reused_and_replaced_once_closed() {
    let a = Upstream::start("a");
    let (_site, server) = proxy_site(&format!("{:?}", a.url()), "");
    // One client connection, served by one worker: its requests take turns on one pooled connection.
    who_answers(&server, "/", 20).await;
    assert_eq!(a.connections(), 1, "20 requests in turn took {} upstream connections", a.connections());

    // The upstream closes them all while they sit idle in the pool: the proxy notices at checkout (or sends
    // again on a new connection) and every request still gets its answer.
    a.close_connections();
    tokio::time::sleep(Duration::from_millis(200)).await;
    who_answers(&server, "/", 5).await;
    assert_eq!(a.connections(), 2, "after the close, {} upstream connections in all", a.connections());
    assert_eq!(a.requests(), 25);
}

#[tokio::test]
async fn a_pooled_connection_keeps_each_answers_deadline() {
    let a = Upstream::start("a");
    let (_site, server) = proxy_site(&format!("{{ upstreams = [{:?}], timeout = \"1s\" }}", a.url()), "");
    // One client connection throughout: it is served by one worker, whose pool holds one upstream connection.
    let client = server.client(&["app.localhost"]);
    let get = |path: &str| client.get(server.url("app.localhost", path)).send();
    // Idle for longer than the timeout: the deadline the connection kept from its last answer passes unused.
    for _ in 0..2 {
        assert_eq!(get("/").await.unwrap().status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(get("/").await.unwrap().status(), 200);
    // Part of a deadline gone by: the next answer still gets its whole second, not what was left of the last.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let started = Instant::now();
    let r = get("/slow-head").await.unwrap();
    let waited = started.elapsed();
    assert_eq!(r.status(), 504);
    assert!(waited > Duration::from_millis(900) && waited < Duration::from_secs(4), "504 after {waited:?}");
    assert_eq!(a.connections(), 1, "the requests took {} upstream connections", a.connections());
    // The connection that timed out is not pooled again.
    assert_eq!(get("/").await.unwrap().status(), 200);
    assert_eq!(a.connections(), 2);
}

#[tokio::test]
async fn a_connection_attempt_without_answer_is_given_up_after_connect_timeout() {
    // A listener that never accepts, with its queue full: a further connection attempt gets no answer at all.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let _queued: Vec<_> =
        (0..4).filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()).collect();
    let proxy = format!("{{ upstreams = [\"http://{addr}\"], connect_timeout = \"300ms\", timeout = \"10s\" }}");
    let (_site, server) = proxy_site(&proxy, "");
    let client = server.client(&["app.localhost"]);
    let started = Instant::now();
    let r = client.get(server.url("app.localhost", "/")).send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(r.status(), 502);
    assert_eq!(r.text().await.unwrap(), "502 upstream unavailable\n");
    assert!(waited > Duration::from_millis(250) && waited < Duration::from_secs(4), "502 after {waited:?}");
    assert!(server.log_contains("connect: no answer within 300ms"));
}

#[tokio::test]
async fn host_can_be_the_upstreams_own() {
    let a = Upstream::start("a");
    let (_site, server) = proxy_site(&format!("{{ upstreams = [{:?}], preserve_host = false }}", a.url()), "");
    let client = server.client(&["app.localhost"]);
    let seen = client.get(server.url("app.localhost", "/")).send().await.unwrap().text().await.unwrap();
    assert!(seen.contains(&format!("host: {}\n", a.addr)), "{seen}");
}

#[tokio::test]
async fn a_dead_upstream_is_ejected_and_comes_back() {
    let a = Upstream::start("a");
    let mut b = Upstream::start("b");
    let proxy =
        format!("{{ upstreams = {}, health = \"/healthz\", health_interval = \"300ms\" }}", upstream_list(&[&a, &b]));
    let (_site, server) = proxy_site(&proxy, "");
    assert!(who_answers(&server, "/", 4).await.contains(&"b".to_string()));

    // b dies: no request fails (a refused connection is retried on a), and b is taken out of rotation.
    let b_addr = b.addr;
    b.stop();
    let names = who_answers(&server, "/", 20).await;
    assert!(names.iter().all(|n| n == "a"), "{names:?}");
    assert!(server.log_count("upstream", 1) >= 1);
    assert!(server.log_contains("upstream ejected") || server.log_contains("failed its health check"));

    // b comes back on its port: the health check brings it back into rotation within a few intervals.
    let b = Upstream::start_on("b", b_addr);
    let started = Instant::now();
    while b.requests() == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "b never got traffic again");
        who_answers(&server, "/", 2).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.log_contains("upstream is healthy again"));

    // A failing health check takes a live upstream out too.
    a.set_healthy(false);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let names = who_answers(&server, "/", 6).await;
    assert!(names.iter().all(|n| n == "b"), "{names:?}");
}

#[tokio::test]
async fn large_bodies_stream_both_ways_without_being_held() {
    const SIZE: usize = 256 << 20;
    let a = Upstream::start("a");
    let (_site, server) = proxy_site(&format!("{:?}", a.url()), "max_request_body = \"1 GiB\"");
    let client = server.client(&["app.localhost"]);
    let before = server.rss_kib();

    let chunk = Bytes::from(vec![b'u'; 1 << 20]);
    let upload = futures::stream::iter((0..SIZE >> 20).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let r = client
        .post(server.url("app.localhost", "/upload"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), format!("a received {SIZE} bytes\n"));

    let r = client.get(server.url("app.localhost", &format!("/download?{SIZE}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut total = 0;
    while let Some(chunk) = stream.next().await {
        total += chunk.unwrap().len();
    }
    assert_eq!(total, SIZE);
    let grown = server.rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB moving 2 x {} MiB", SIZE >> 20);
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let a = Upstream::start("a");
    let (_site, server) = proxy_site(&format!("{{ upstreams = [{:?}], timeout = \"1s\" }}", a.url()), "");
    let (mut s, head) = crate::upstream::websocket(server.addr, "app.localhost");
    assert!(head.contains("upgrade: websocket") && head.contains("connection: upgrade"), "{head}");
    for message in [&b"hello"[..], b"over the tunnel"] {
        s.write_all(message).unwrap();
        let mut echoed = vec![0u8; message.len()];
        s.read_exact(&mut echoed).unwrap();
        assert_eq!(echoed, message);
    }
    // Idle for longer than the route's timeout: the tunnel is closed.
    let started = Instant::now();
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).map_err(|e| e.kind()), Ok(0), "{rest:?}");
    let waited = started.elapsed();
    assert!(waited > Duration::from_millis(800) && waited < Duration::from_secs(5), "closed after {waited:?}");
}

#[tokio::test]
async fn upstream_failures_are_502_and_504_with_a_reason() {
    let a = Upstream::start("a");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let site = Site::new();
    site.config(&format!(
        r#"
[tenants.app]
hosts = ["app.localhost"]
max_request_body = "1 KiB"

[[tenants.app.routes]]
path = "/"
proxy = {{ upstreams = [{a:?}], timeout = "1s" }}

[[tenants.app.routes]]
path = "/gone"
proxy = "http://{closed}"
"#,
        a = a.url()
    ));
    let server = site.start();
    let client = server.client(&["app.localhost"]);
    let get = |path: &str| client.get(server.url("app.localhost", path)).send();

    let started = Instant::now();
    let r = get("/slow-head").await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    assert_eq!(r.text().await.unwrap(), "504 upstream timed out\n");

    let r = get("/gone").await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.text().await.unwrap(), "502 upstream unavailable\n");
    assert!(server.log_contains("Connection refused"));

    // A stalled response body is cut off after the timeout: the client sees a broken body, not a hang.
    let started = Instant::now();
    let r = get("/stall").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.is_err(), "a stalled body must not end cleanly");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // Bodies over the tenant's limit: refused before the upstream sees them, declared or chunked.
    let before = a.requests();
    let r = client.post(server.url("app.localhost", "/upload")).body(vec![0u8; 4096]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let chunks = futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 1024]))));
    let r = client
        .post(server.url("app.localhost", "/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(a.requests(), before);
    assert!(
        status_line(&server.raw("GET / HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n")).contains("200")
    );
}

#[tokio::test]
async fn h2c_upstreams_get_http2() {
    let a = Upstream::start("a");
    let (_site, server) = proxy_site(&format!("{{ upstreams = [{:?}], protocol = \"h2c\" }}", a.url()), "");
    let client = server.client(&["app.localhost"]);
    for _ in 0..3 {
        let seen = client.get(server.url("app.localhost", "/x")).send().await.unwrap().text().await.unwrap();
        assert!(seen.contains(" GET http://") && seen.contains("/x HTTP/2.0\n"), "{seen}");
        assert!(seen.contains(&format!("host: app.localhost:{}\n", server.addr.port())), "{seen}");
    }
    let r = client.post(server.url("app.localhost", "/upload")).body(vec![1u8; 300_000]).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "a received 300000 bytes\n");
}

/// Raw requests whose framing is ambiguous or malformed, each with the status it must get. None of them may
/// reach the upstream, which records every byte it receives.
const SMUGGLING: &[(&str, &str, u16)] = &[
    (
        "CL then TE",
        "POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        400,
    ),
    (
        "TE then CL",
        "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG",
        400,
    ),
    (
        "CL + TE after another request",
        "GET / HTTP/1.1\r\nHost: nobody.localhost\r\n\r\nPOST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        400,
    ),
    (
        "differing Content-Lengths",
        "POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    ),
    ("Content-Length list", "POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 5, 6\r\n\r\nhello!", 400),
    ("signed Content-Length", "POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: +5\r\n\r\nhello", 400),
    ("hex Content-Length", "POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 0x5\r\n\r\nhello", 400),
    ("space before colon", "POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length : 5\r\n\r\nhello", 400),
    (
        "invalid chunk size",
        "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "overflowing chunk size",
        "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk data longer than its size",
        "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunked not last",
        "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunked twice",
        "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("bare CR in a value", "GET / HTTP/1.1\r\nHost: app.localhost\r\nX-A: a\rb\r\n\r\n", 400),
    ("NUL in a value", "GET / HTTP/1.1\r\nHost: app.localhost\r\nX-A: a\0b\r\n\r\n", 400),
    ("obs-fold", "GET / HTTP/1.1\r\nHost: app.localhost\r\nX-A: a\r\n b\r\n\r\n", 400),
    (
        "obs-fold of Transfer-Encoding",
        "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    ("two Hosts", "GET / HTTP/1.1\r\nHost: app.localhost\r\nHost: other.localhost\r\nConnection: close\r\n\r\n", 400),
    ("unknown coding", "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
];

#[tokio::test]
async fn smuggling_attempts_never_reach_the_upstream() {
    let recorder = crate::upstream::Recorder::start();
    let (_site, server) = proxy_site(&format!("\"http://{}\"", recorder.addr), "");
    for (name, request, status) in SMUGGLING {
        let answer = server.raw(request);
        // One answer per request sent before the refused one (only a 404 for another host here), then
        // the refusal, and the connection is closed.
        let statuses: Vec<&str> = answer.match_indices("HTTP/1.1 ").map(|(i, _)| &answer[i + 9..i + 12]).collect();
        assert_eq!(statuses.last(), Some(&status.to_string().as_str()), "{name}: {answer}");
        assert!(statuses[..statuses.len() - 1].iter().all(|s| *s == "404"), "{name}: {answer}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(recorder.received(), "", "bytes reached the upstream");
}

#[tokio::test]
async fn smuggling_is_refused_in_heads_with_many_fields_when_the_limit_allows_them() {
    let recorder = crate::upstream::Recorder::start();
    let site = Site::new();
    site.config_with(
        "listen = [\"127.0.0.1:0\"]\nmax_header_count = 500",
        &format!(
            "[tenants.app]\nhosts = [\"app.localhost\"]\n[[tenants.app.routes]]\npath = \"/\"\nproxy = \"http://{}\"\n",
            recorder.addr
        ),
    );
    let server = site.start();
    let fields: String = (0..300).map(|i| format!("X-Field-{i}: {i}\r\n")).collect();
    let answer = server.raw(&format!(
        "POST / HTTP/1.1\r\nHost: app.localhost\r\n{fields}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"
    ));
    assert_eq!(status_line(&answer), "HTTP/1.1 400 Bad Request", "{answer}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(recorder.received(), "", "bytes reached the upstream");
}

#[tokio::test]
async fn upstreams_and_cgi_programs_see_only_the_host_routed_on() {
    let upstream = Upstream::start("a");
    let site = Site::new();
    let cgi = site.guest("probe-cgi.wasm");
    site.config(&format!(
        "[tenants.app]\nhosts = [\"app.localhost\"]\n\n[[tenants.app.routes]]\npath = \"/\"\nproxy = {:?}\n\n\
         [[tenants.app.routes]]\npath = \"/cgi\"\ncgi = \"{cgi}\"\n",
        upstream.url()
    ));
    let server = site.start();
    let port = server.addr.port();
    // Routed on the absolute-form target's authority, so Host must say that authority and nothing else.
    let absolute = |path: &str| {
        format!("GET http://app.localhost:{port}{path} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    };
    let seen = server.raw(&absolute("/reset"));
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.contains(&format!("host: app.localhost:{port}\n")), "{seen}");
    assert!(!seen.contains("evil.example"), "the upstream saw the client's Host: {seen}");
    let env = server.raw(&absolute("/cgi/env"));
    assert!(env.contains(&format!("HTTP_HOST=app.localhost:{port}\n")), "{env}");
    assert!(env.contains("SERVER_NAME=app.localhost\n"), "{env}");
    assert!(!env.contains("evil.example"), "the CGI program saw the client's Host: {env}");

    // HTTP/2: a `host` field naming another host than `:authority` is malformed.
    let h2 = server.h2c_client(&["app.localhost"]);
    let r = h2.get(server.url("app.localhost", "/reset")).header("host", "evil.example").send().await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("evil.example"));
    assert_eq!(upstream.requests(), 1, "only the first request reached the upstream");
}

#[tokio::test]
async fn trace_and_connect_are_refused_and_cgi_drops_header_names_with_underscores() {
    let upstream = Upstream::start("a");
    let site = Site::new();
    let cgi = site.guest("probe-cgi.wasm");
    site.config(&format!(
        "[tenants.app]\nhosts = [\"app.localhost\"]\n\n[[tenants.app.routes]]\npath = \"/\"\nproxy = {:?}\n\n\
         [[tenants.app.routes]]\npath = \"/cgi\"\ncgi = \"{cgi}\"\n",
        upstream.url()
    ));
    let server = site.start();
    let trace = server.raw("TRACE / HTTP/1.1\r\nHost: app.localhost\r\nCookie: session=1\r\nConnection: close\r\n\r\n");
    assert!(trace.starts_with("HTTP/1.1 405"), "{trace}");
    let connect = server.raw("CONNECT app.localhost:443 HTTP/1.1\r\nHost: app.localhost:443\r\n\r\n");
    assert!(connect.starts_with("HTTP/1.1 405"), "{connect}");
    assert_eq!(upstream.requests(), 0, "TRACE never reached the upstream");
    let env = server.raw(
        "GET /cgi/env HTTP/1.1\r\nHost: app.localhost\r\nX_Forwarded_For: 6.6.6.6\r\nX-Real: 1\r\nConnection: close\r\n\r\n",
    );
    assert!(env.contains("HTTP_X_REAL=1\n"), "{env}");
    assert!(!env.contains("6.6.6.6"), "a name with '_' passed for X-Forwarded-For: {env}");
}
