//! The HTTP cache (`cache = true` on a route) in front of a real origin started here, which counts what
//! reaches it: freshness, no-store, private, Authorization, Vary, revalidation with 304, the client's own
//! conditional requests, HEAD from a stored GET, collapsed forwarding, stale-if-error with the origin failing,
//! invalidation by POST, the edge-only fields, tenant separation and the size bound.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::harness::{Running, Site, guest};

/// The origin's bodies: whole, or trickled.
type OriginBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// An origin whose answers are described by the request's query: `cc=` (Cache-Control), `etag=`, `vary=`,
/// `h=name:value` (any field, repeatable), `size=N` (a body of N bytes), `delay=MS`, `trickle=MS` (half the
/// body, then the rest MS later). Unless `size` is given
/// the body says how many requests reached that URL: `/path?query #N`. A request with an `If-None-Match`
/// holding the URL's `etag` gets a 304.
struct Origin {
    addr: SocketAddr,
    seen: Arc<Mutex<HashMap<String, usize>>>,
    failing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    async fn start() -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let failing = Arc::new(AtomicBool::new(false));
        let (s, f) = (seen.clone(), failing.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (s, f) = (s.clone(), f.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(s.clone(), f.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Origin { addr, seen, failing, task }
    }

    /// How many requests reached `path_and_query`.
    fn count(&self, path_and_query: &str) -> usize {
        self.seen.lock().unwrap().get(path_and_query).copied().unwrap_or(0)
    }
}

async fn answer(
    seen: Arc<Mutex<HashMap<String, usize>>>,
    failing: Arc<AtomicBool>,
    req: Request<Incoming>,
) -> Result<Response<OriginBody>, std::convert::Infallible> {
    let url = req.uri().path_and_query().map_or("/".to_string(), |p| p.to_string());
    let n = {
        let mut seen = seen.lock().unwrap();
        let n = seen.entry(url.clone()).or_default();
        *n += 1;
        *n
    };
    if failing.load(Ordering::SeqCst) {
        let mut r = Response::new(Full::new(Bytes::from_static(b"origin down\n")).boxed());
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return Ok(r);
    }
    let mut response = Response::builder();
    let mut body = format!("{url} #{n}");
    let mut etag = None;
    let mut on_304 = Vec::new();
    let mut trickle = None;
    for pair in req.uri().query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value).decode_utf8().unwrap().into_owned();
        match key {
            "cc" => response = response.header("cache-control", value),
            "etag" => {
                response = response.header("etag", value.clone());
                etag = Some(value);
            }
            "vary" => response = response.header("vary", value),
            "h" => {
                let (name, v) = value.split_once(':').unwrap();
                response = response.header(name.trim(), v.trim());
            }
            // A field a 304 carries in place of the 200's.
            "h304" => {
                let (name, v) = value.split_once(':').unwrap();
                on_304.push((name.trim().to_string(), v.trim().to_string()));
            }
            "size" => body = "x".repeat(value.parse().unwrap()),
            "delay" => tokio::time::sleep(Duration::from_millis(value.parse().unwrap())).await,
            "trickle" => trickle = Some(Duration::from_millis(value.parse().unwrap())),
            _ => {}
        }
    }
    if let (Some(etag), Some(asked)) = (&etag, req.headers().get("if-none-match"))
        && asked.to_str().unwrap().split(',').any(|t| t.trim() == etag)
    {
        let headers = response.headers_mut().unwrap();
        for (name, value) in on_304 {
            headers.insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        return Ok(response.status(304).body(Full::new(Bytes::new()).boxed()).unwrap());
    }
    let Some(pause) = trickle else { return Ok(response.body(Full::new(Bytes::from(body)).boxed()).unwrap()) };
    // Half the body, a pause, the rest (without a length, as a streaming origin sends it).
    let mut body = Bytes::from(body);
    let rest = body.split_off(body.len() / 2);
    let halves = futures::stream::iter([(body, Duration::ZERO), (rest, pause)]).then(|(half, pause)| async move {
        tokio::time::sleep(pause).await;
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(half))
    });
    Ok(response.body(BodyExt::boxed(http_body_util::StreamBody::new(halves))).unwrap())
}

/// A server with tenants `a` and `b`, each caching a proxy route to `origin` (`b` with a 1 MiB cache).
fn server(origin: &Origin) -> (Site, Running) {
    let site = Site::new();
    let up = format!("http://{}", origin.addr);
    site.config(&format!(
        r#"
[tenants.a]
hosts = ["a.test"]
[[tenants.a.routes]]
path = "/"
proxy = "{up}"
cache = true

[tenants.b]
hosts = ["b.test"]
cache = {{ max_size = "1 MiB" }}
[[tenants.b.routes]]
path = "/"
proxy = "{up}"
cache = true
[[tenants.b.routes]]
path = "/uncached"
proxy = "{up}"
"#
    ));
    let server = site.start();
    (site, server)
}

struct Got {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
}

async fn send(server: &Running, method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let client = server.client(&[host]);
    let mut request = client.request(method.parse().unwrap(), server.url(host, path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = request.send().await.expect("request");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    Got { status, headers, body: r.text().await.unwrap() }
}

async fn get(server: &Running, path: &str) -> Got {
    send(server, "GET", "a.test", path, &[]).await
}

#[tokio::test]
async fn fresh_responses_are_served_from_the_cache_and_the_rest_reach_the_origin() {
    let origin = Origin::start().await;
    let (_site, server) = server(&origin);

    let first = get(&server, "/f?cc=max-age%3D60").await;
    assert_eq!((first.status, first.body.as_str()), (200, "/f?cc=max-age%3D60 #1"));
    assert!(first.header("cache-status").starts_with("palisade; fwd=uri-miss; stored"), "{:?}", first.headers);
    let second = get(&server, "/f?cc=max-age%3D60").await;
    assert_eq!(second.body, "/f?cc=max-age%3D60 #1", "served from the cache");
    assert!(second.header("cache-status").starts_with("palisade; hit; ttl="), "{:?}", second.headers);
    assert!(second.header("age").parse::<u64>().is_ok(), "Age is set");
    assert_eq!(origin.count("/f?cc=max-age%3D60"), 1);

    for path in ["/n?cc=no-store", "/p?cc=private%2C%20max-age%3D60", "/c?cc=max-age%3D60&h=set-cookie:s%3D1"] {
        get(&server, path).await;
        let again = get(&server, path).await;
        assert_eq!(origin.count(path), 2, "{path} is not stored: {:?}", again.headers);
    }
    // A request with Authorization is stored only when the response allows it.
    let auth = [("authorization", "Bearer x")];
    for (path, stored) in [("/auth1?cc=max-age%3D60", false), ("/auth2?cc=s-maxage%3D60", true)] {
        send(&server, "GET", "a.test", path, &auth).await;
        send(&server, "GET", "a.test", path, &auth).await;
        assert_eq!(origin.count(path), if stored { 1 } else { 2 }, "{path}");
    }
    // The client may ask for a fresh answer.
    let forced = send(&server, "GET", "a.test", "/f?cc=max-age%3D60", &[("cache-control", "no-cache")]).await;
    assert_eq!(forced.body, "/f?cc=max-age%3D60 #2");
    assert!(forced.header("cache-status").contains("fwd=request"), "{:?}", forced.headers);
    // A HEAD is answered from a stored GET, without a body.
    let head = send(&server, "HEAD", "a.test", "/f?cc=max-age%3D60", &[]).await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(head.header("content-length"), "21");
    assert_eq!(origin.count("/f?cc=max-age%3D60"), 2);
    // Ranges of a stored 200 are cut from it: one range, a suffix, one past the end, a stale If-Range.
    let body = "/f?cc=max-age%3D60 #2";
    for (range, if_range, status, expected, content_range) in [
        ("bytes=0-1", None, 206, &body[0..2], "bytes 0-1/21"),
        ("bytes=-3", None, 206, &body[18..], "bytes 18-20/21"),
        ("bytes=50-", None, 416, "", "bytes */21"),
        ("bytes=0-1", Some("Thu, 01 Jan 1970 00:00:00 GMT"), 200, body, ""),
    ] {
        let mut headers = vec![("range", range)];
        headers.extend(if_range.map(|d| ("if-range", d)));
        let got = send(&server, "GET", "a.test", "/f?cc=max-age%3D60", &headers).await;
        assert_eq!((got.status, got.body.as_str(), got.header("content-range")), (status, expected, content_range));
        assert_eq!(got.header("content-length"), expected.len().to_string(), "{range}");
        assert!(got.header("cache-status").contains("hit"), "{:?}", got.headers);
    }
    assert_eq!(origin.count("/f?cc=max-age%3D60"), 2);
    // A route without `cache` passes everything through, without Cache-Status.
    let plain = send(&server, "GET", "b.test", "/uncached?cc=max-age%3D60", &[]).await;
    send(&server, "GET", "b.test", "/uncached?cc=max-age%3D60", &[]).await;
    assert_eq!(origin.count("/uncached?cc=max-age%3D60"), 2);
    assert_eq!(plain.header("cache-status"), "");
}

#[tokio::test]
async fn vary_selects_variants_and_validators_refresh_stale_ones() {
    let origin = Origin::start().await;
    let (_site, server) = server(&origin);
    let path = "/v?cc=max-age%3D60&vary=accept-language";
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    assert_eq!(send(&server, "GET", "a.test", path, &en).await.body, format!("{path} #1"));
    let other = send(&server, "GET", "a.test", path, &fr).await;
    assert_eq!(other.body, format!("{path} #2"));
    assert!(other.header("cache-status").contains("fwd=vary-miss"), "{:?}", other.headers);
    assert_eq!(send(&server, "GET", "a.test", path, &en).await.body, format!("{path} #1"));
    assert_eq!(send(&server, "GET", "a.test", path, &fr).await.body, format!("{path} #2"));
    assert_eq!(origin.count(path), 2);

    // Stale at once, with an ETag: revalidated with If-None-Match, and the origin's 304 keeps the body.
    let path = "/r?cc=max-age%3D0&etag=%22v1%22";
    assert_eq!(get(&server, path).await.body, format!("{path} #1"));
    let refreshed = get(&server, path).await;
    assert_eq!((refreshed.status, refreshed.body.as_str()), (200, format!("{path} #1").as_str()));
    assert!(refreshed.header("cache-status").contains("fwd=stale; fwd-status=304"), "{:?}", refreshed.headers);
    assert_eq!(origin.count(path), 2, "the revalidation reached the origin");

    // The client's own conditional request is answered from what is stored.
    let path = "/e?cc=max-age%3D60&etag=%22v2%22";
    get(&server, path).await;
    let not_modified = send(&server, "GET", "a.test", path, &[("if-none-match", "\"v2\"")]).await;
    assert_eq!((not_modified.status, not_modified.body.as_str()), (304, ""));
    assert_eq!(not_modified.header("etag"), "\"v2\"");
    let modified = send(&server, "GET", "a.test", path, &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(modified.status, 200);
    assert_eq!(origin.count(path), 1);
}

#[tokio::test]
async fn concurrent_misses_collapse_and_a_failing_origin_gets_stale_answers() {
    let origin = Origin::start().await;
    let (_site, server) = server(&origin);
    let path = "/slow?cc=max-age%3D60&delay=300";
    let server = Arc::new(server);
    let requests: Vec<_> = (0..10)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move { get(&server, path).await })
        })
        .collect();
    let mut collapsed = 0;
    for r in requests {
        let got = r.await.unwrap();
        assert_eq!(got.body, format!("{path} #1"));
        collapsed +=
            usize::from(got.header("cache-status").contains("collapsed") || got.header("cache-status").contains("hit"));
    }
    assert_eq!(origin.count(path), 1, "one request reached the origin");
    assert_eq!(collapsed, 9);

    let path = "/sie?cc=max-age%3D1%2C%20stale-if-error%3D60";
    assert_eq!(get(&server, path).await.body, format!("{path} #1"));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.failing.store(true, Ordering::SeqCst);
    let stale = get(&server, path).await;
    assert_eq!((stale.status, stale.body.as_str()), (200, format!("{path} #1").as_str()), "{:?}", stale.headers);
    assert!(stale.header("cache-status").contains("stale-if-error"), "{:?}", stale.headers);
    // Without stale-if-error the origin's failure is the answer.
    let path = "/nosie?cc=max-age%3D1";
    origin.failing.store(false, Ordering::SeqCst);
    get(&server, path).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.failing.store(true, Ordering::SeqCst);
    assert_eq!(get(&server, path).await.status, 503);
}

#[tokio::test]
async fn unsafe_methods_invalidate_and_edge_fields_stay_at_the_edge() {
    let origin = Origin::start().await;
    let (_site, server) = server(&origin);
    let path = "/i?cc=max-age%3D60";
    get(&server, path).await;
    get(&server, path).await;
    assert_eq!(origin.count(path), 1);
    let posted = send(&server, "POST", "a.test", path, &[]).await;
    assert!(posted.header("cache-status").contains("fwd=method"), "{:?}", posted.headers);
    assert_eq!(get(&server, path).await.body, format!("{path} #3"), "invalidated by the POST");

    // CDN-Cache-Control overrides Cache-Control for this cache; it, Surrogate-Control and Surrogate-Key are
    // removed from what clients get.
    let path = "/edge?cc=no-store&h=cdn-cache-control:max-age%3D60&h=surrogate-key:product-1%20all";
    let first = get(&server, path).await;
    for field in ["cdn-cache-control", "surrogate-control", "surrogate-key"] {
        assert_eq!(first.header(field), "", "{field} is stripped");
    }
    assert_eq!(first.header("cache-control"), "no-store", "the browser's directives pass unchanged");
    get(&server, path).await;
    assert_eq!(origin.count(path), 1, "stored by CDN-Cache-Control");
}

#[tokio::test]
async fn tenants_have_caches_of_their_own_within_their_size() {
    let origin = Origin::start().await;
    let (_site, server) = server(&origin);
    let path = "/shared?cc=max-age%3D60";
    assert_eq!(send(&server, "GET", "a.test", path, &[]).await.body, format!("{path} #1"));
    assert_eq!(send(&server, "GET", "b.test", path, &[]).await.body, format!("{path} #2"), "b's cache is b's");
    assert_eq!(send(&server, "GET", "b.test", path, &[]).await.body, format!("{path} #2"));

    // b's cache holds 1 MiB: a response over a quarter of it passes through, and twenty of 200 KiB evict
    // each other.
    let big = "/big?cc=max-age%3D60&size=400000";
    send(&server, "GET", "b.test", big, &[]).await;
    let again = send(&server, "GET", "b.test", big, &[]).await;
    assert_eq!((again.body.len(), origin.count(big)), (400_000, 2), "not stored");
    for i in 0..20 {
        send(&server, "GET", "b.test", &format!("/fill{i}?cc=max-age%3D60&size=200000"), &[]).await;
    }
    let still = (0..20).filter(|i| origin.count(&format!("/fill{i}?cc=max-age%3D60&size=200000")) == 1).count();
    let mut kept = 0;
    for i in 0..20 {
        let p = format!("/fill{i}?cc=max-age%3D60&size=200000");
        if send(&server, "GET", "b.test", &p, &[]).await.header("cache-status").contains("hit") {
            kept += 1;
        }
    }
    assert_eq!(still, 20);
    assert!(kept <= 5, "at most 1 MiB of 200 KB responses stays: {kept} hits");
    // a's entries are untouched by b's traffic.
    assert_eq!(send(&server, "GET", "a.test", path, &[]).await.body, format!("{path} #1"));
}

#[tokio::test]
async fn purges_by_tag_url_and_all_through_the_admin_api_and_the_client() {
    let origin = Origin::start().await;
    let site = Site::new();
    let up = format!("http://{}", origin.addr);
    site.config(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[tenants.a]\nhosts = [\"a.test\"]\n[[tenants.a.routes]]\npath = \"/\"\nproxy = \"{up}\"\ncache = true\n"
    ));
    let server = site.start();
    let purge = |body: serde_json::Value| {
        let url = server.admin_url("/v1/tenants/a/purge");
        async move {
            let r = reqwest::Client::new().post(url).body(body.to_string()).send().await.unwrap();
            let status = r.status().as_u16();
            (status, serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap()).unwrap_or_default())
        }
    };
    let tagged = [
        "/t1?cc=max-age%3D60&h=surrogate-key:p1%20all",
        "/t2?cc=max-age%3D60&h=surrogate-key:p1",
        "/t3?cc=max-age%3D60&h=surrogate-key:p2",
    ];
    for path in tagged {
        get(&server, path).await;
    }
    let (status, answer) = purge(serde_json::json!({"keys": ["p1"]})).await;
    assert_eq!((status, answer["purged"].as_u64()), (200, Some(2)), "{answer}");
    for (path, reached) in tagged.iter().zip([2, 2, 1]) {
        get(&server, path).await;
        assert_eq!(origin.count(path), reached, "{path}");
    }
    let (_, answer) = purge(serde_json::json!({"urls": [format!("http://a.test{}", tagged[2])]})).await;
    assert_eq!(answer["purged"], 1, "{answer}");
    get(&server, tagged[2]).await;
    assert_eq!(origin.count(tagged[2]), 2);

    // Soft: marked stale, so stale-if-error still serves it while the origin fails.
    let path = "/soft?cc=max-age%3D600%2C%20stale-if-error%3D600";
    get(&server, path).await;
    let (_, answer) = purge(serde_json::json!({"urls": [path], "soft": true})).await;
    assert_eq!(answer["purged"], 1, "a path purges it on every host: {answer}");
    origin.failing.store(true, Ordering::SeqCst);
    let stale = get(&server, path).await;
    assert_eq!((stale.status, stale.body.as_str()), (200, format!("{path} #1").as_str()), "{:?}", stale.headers);
    origin.failing.store(false, Ordering::SeqCst);

    let (status, answer) = purge(serde_json::json!({"soft": true})).await;
    assert_eq!(status, 400, "nothing named: {answer}");
    let (status, _) = purge(serde_json::json!({"tags": ["p1"]})).await;
    assert_eq!(status, 400, "unknown keys are refused");
    for bad in [
        serde_json::json!({"keys": [""]}),
        serde_json::json!({"keys": ["two words"]}),
        serde_json::json!({"urls": ["ftp://a.test/x"]}),
        serde_json::json!({"urls": ["a.test/x"]}),
        serde_json::json!({"keys": vec!["k"; 1001]}),
    ] {
        let (status, answer) = purge(bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "a reason: {answer}");
    }
    let admin = server.admin_url("");
    let (code, out, err) = site.run(&["purge", "--admin", &admin, "--tenant", "a", "--all"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("purged 4 URLs of tenant a"), "{out}");
    get(&server, tagged[1]).await;
    assert_eq!(origin.count(tagged[1]), 3, "everything was purged");
}

#[tokio::test]
async fn a_purge_reaches_every_node_of_a_cluster() {
    let redis = palisade_kv::test_support::RedisServer::start();
    let origin = Origin::start().await;
    let up = format!("http://{}", origin.addr);
    // Fixed ports: node B starts again below, and clients' Host (with its port) is part of what is stored.
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let node = |port: u16| {
        let site = Site::new();
        site.config_with(
            &format!("listen = [\"127.0.0.1:{port}\"]\ndata_dir = \"data\""),
            &format!(
                "[kv]\nbackend = {url:?}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[cluster]\nredis = {url:?}\n\n\
                 [tenants.a]\nhosts = [\"a.test\"]\ncache = {{ disk = \"8 MiB\" }}\n\
                 [[tenants.a.routes]]\npath = \"/\"\nproxy = \"{up}\"\ncache = true\n",
                url = redis.url()
            ),
        );
        let server = site.start();
        (site, server)
    };
    let ((_site_a, a), (site_b, mut b)) = (node(free_port()), node(free_port()));
    let path = "/everywhere?cc=max-age%3D600";
    get(&a, path).await;
    get(&b, path).await;
    assert!(get(&b, path).await.header("cache-status").contains("hit"));
    assert_eq!(origin.count(path), 2, "each node stored its own copy");

    let url = a.admin_url("/v1/tenants/a/purge");
    let r = reqwest::Client::new().post(url).body(format!("{{\"urls\": [\"{path}\"]}}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Node B purges its copy when the announcement arrives (pub/sub: well within a second on loopback).
    let start = std::time::Instant::now();
    loop {
        let got = get(&b, path).await;
        if !got.header("cache-status").contains("hit") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "node B still serves the purged copy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!get(&a, path).await.body.ends_with("#1"), "node A fetched again too");

    // Cut both nodes' subscriptions (they subscribe again a second later) and purge at once: B was not
    // listening, and applies the purge from Redis's log when it is back.
    let cut = "/cut?cc=max-age%3D600";
    get(&b, cut).await;
    assert!(get(&b, cut).await.header("cache-status").contains("hit"));
    let killed = std::process::Command::new("redis-cli")
        .args(["-u", &redis.url(), "CLIENT", "KILL", "TYPE", "pubsub"])
        .output()
        .unwrap();
    assert!(killed.status.success(), "{killed:?}");
    let url = a.admin_url("/v1/tenants/a/purge");
    let r = reqwest::Client::new().post(url).body(format!("{{\"urls\": [\"{cut}\"]}}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let start = std::time::Instant::now();
    while get(&b, cut).await.header("cache-status").contains("hit") {
        assert!(start.elapsed() < Duration::from_secs(10), "node B never applied the purge it missed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(b.log_contains("applying cache purges missed while cut off"), "{}", b.log());

    // Stop B with a copy on its disk, purge it while B is down: started again, B applies the purge before it
    // serves the copy.
    let down = "/down?cc=max-age%3D600";
    get(&b, down).await;
    assert!(get(&b, down).await.header("cache-status").contains("hit"));
    assert_eq!(b.terminate(Duration::from_secs(10)), Some(0));
    let url = a.admin_url("/v1/tenants/a/purge");
    let r = reqwest::Client::new().post(url).body(format!("{{\"urls\": [\"{down}\"]}}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let b = site_b.start();
    let start = std::time::Instant::now();
    while !b.log_contains("applying cache purges missed while cut off") {
        assert!(start.elapsed() < Duration::from_secs(10), "node B never caught up: {}", b.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = get(&b, down).await;
    assert!(!again.header("cache-status").contains("hit"), "{:?}", again.headers);
    assert_eq!(origin.count(down), 2);
}

#[tokio::test]
async fn a_disk_tier_keeps_responses_across_a_restart_within_its_size() {
    let origin = Origin::start().await;
    let site = Site::new();
    let up = format!("http://{}", origin.addr);
    let data = site.mkdir("data");
    // One port across the restart: clients' Host (with its port) is part of what is stored.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    site.config_with(
        &format!("listen = [\"127.0.0.1:{port}\"]\ndata_dir = {:?}", data.display().to_string()),
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\n[tenants.a]\nhosts = [\"a.test\"]\n\
             cache = {{ max_size = \"1 MiB\", disk = \"2 MiB\" }}\n\
             [[tenants.a.routes]]\npath = \"/\"\nproxy = \"{up}\"\ncache = true\n"
        ),
    );
    let mut server = site.start();
    // Twenty of 200 KB: memory holds five of them, the disk about ten more, the oldest stored going first.
    let fill = |i: usize| format!("/fill{i}?cc=max-age%3D600&size=200000");
    for i in 0..20 {
        get(&server, &fill(i)).await;
    }
    let mut hits = 0;
    for i in (0..20).rev() {
        if get(&server, &fill(i)).await.header("cache-status").contains("hit") {
            hits += 1;
        }
    }
    assert!((8..=12).contains(&hits), "{hits} of 20 hits: memory (1 MiB) and disk (2 MiB) hold about 15");
    let metrics = reqwest::get(server.admin_url("/metrics")).await.unwrap().text().await.unwrap();
    let on_disk: f64 = metrics
        .lines()
        .find(|l| l.starts_with("palisade_cache_disk_bytes{tenant=\"a\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("disk bytes in /metrics");
    assert!(on_disk > 0.0 && on_disk <= 2.0 * 1024.0 * 1024.0, "{on_disk}");

    // Restart: what was on disk is served without asking the origin again.
    let kept = "/kept?cc=max-age%3D600&h=surrogate-key:k";
    let tagged = "/tagged?cc=max-age%3D600&h=surrogate-key:t";
    for path in [kept, tagged] {
        assert_eq!(get(&server, path).await.body, format!("{path} #1"));
    }
    assert_eq!(server.terminate(Duration::from_secs(10)), Some(0));
    assert!(data.join("http-cache/a.redb").exists());
    let server = site.start();
    // fill0 was the last of the twenty stored (again, by the misses above), so the first-in-first-out disk
    // kept it.
    for path in [kept, &fill(0)] {
        let before = origin.count(path);
        let again = get(&server, path).await;
        assert!(
            again.header("cache-status").contains("hit"),
            "{path} from disk after the restart: {:?}",
            again.headers
        );
        assert_eq!(origin.count(path), before);
    }
    // A purge by tag reaches what was stored before the restart, in memory since or on disk alone.
    let purged = reqwest::Client::new()
        .post(server.admin_url("/v1/tenants/a/purge"))
        .body(serde_json::json!({"keys": ["k", "t"]}).to_string())
        .send()
        .await
        .unwrap();
    let status = purged.status();
    let purged: serde_json::Value = serde_json::from_slice(&purged.bytes().await.unwrap()).unwrap();
    assert_eq!((status.as_u16(), &purged["purged"]), (200, &serde_json::json!(2)), "{purged}");
    for path in [kept, tagged] {
        assert_eq!(get(&server, path).await.body, format!("{path} #2"), "purged by its tag after the restart");
    }

    // Without `disk` the tier's file goes; the cache keeps working from memory.
    site.config_with(
        &format!("listen = [\"127.0.0.1:{port}\"]\ndata_dir = {:?}", data.display().to_string()),
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\n[tenants.a]\nhosts = [\"a.test\"]\n\
             [[tenants.a.routes]]\npath = \"/\"\nproxy = \"{up}\"\ncache = true\n"
        ),
    );
    let reload = reqwest::Client::new().post(server.admin_url("/v1/reload")).send().await.unwrap();
    assert_eq!(reload.status(), 200);
    assert!(!data.join("http-cache/a.redb").exists(), "the disk tier is deleted with its config");
    get(&server, tagged).await;
    let n = origin.count(tagged);
    assert!(get(&server, tagged).await.header("cache-status").contains("hit"));
    assert_eq!(origin.count(tagged), n);
}

#[tokio::test]
async fn what_one_client_causes_never_reaches_or_empties_anothers() {
    let origin = Origin::start().await;
    let (_site, server) = server(&origin);
    // A 304 that sets a cookie sets it for the client that revalidated, never in what is stored.
    let cookie = "/r?cc=max-age%3D0&etag=%22e%22&h304=cache-control:max-age%3D60&h304=set-cookie:s%3Dvictim";
    get(&server, cookie).await;
    let revalidated = get(&server, cookie).await;
    assert_eq!(revalidated.header("set-cookie"), "s=victim", "{:?}", revalidated.headers);
    let next = get(&server, cookie).await;
    assert!(next.header("cache-status").contains("hit"), "{:?}", next.headers);
    assert_eq!((next.header("set-cookie"), origin.count(cookie)), ("", 2));
    // ... nor a 200's cookie, even one the origin allowed to be stored (`public`).
    let public = "/pc?cc=public%2C%20max-age%3D60&h=set-cookie:s%3Done";
    assert_eq!(get(&server, public).await.header("set-cookie"), "s=one");
    let hit = get(&server, public).await;
    assert_eq!((hit.header("set-cookie"), origin.count(public)), ("", 1));
    // A 304 that says `private` ends the sharing.
    let private = "/rp?cc=max-age%3D0&etag=%22e%22&h304=cache-control:private%2C%20max-age%3D60";
    for _ in 0..3 {
        get(&server, private).await;
    }
    assert_eq!(origin.count(private), 3);
    // A Surrogate-Control without caching directives leaves Cache-Control's `private` in force.
    let esi = "/esi?cc=private%2C%20max-age%3D60&h=surrogate-control:content%3D%22ESI/1.0%22";
    get(&server, esi).await;
    get(&server, esi).await;
    assert_eq!(origin.count(esi), 2);
    // A client's own `no-store` does not take what is stored from the others.
    let kept = "/kept?cc=max-age%3D60";
    get(&server, kept).await;
    send(&server, "GET", "a.test", kept, &[("cache-control", "no-cache, no-store")]).await;
    assert!(get(&server, kept).await.header("cache-status").contains("hit"));
    assert_eq!(origin.count(kept), 2);
    // Request values that Vary selects on are compared byte for byte, and a Vary that names no field is not
    // stored at all.
    let varies = "/v?cc=max-age%3D60&vary=x-user";
    send(&server, "GET", "a.test", varies, &[("x-user", "")]).await;
    let other = send(&server, "GET", "a.test", varies, &[("x-user", "b\u{e9}")]).await;
    assert_eq!(other.body, format!("{varies} #2"), "another variant");
    let odd = "/odd?cc=max-age%3D60&vary=x%20y";
    get(&server, odd).await;
    get(&server, odd).await;
    assert_eq!(origin.count(odd), 2);
    // The port a client wrote keeps its answers apart (an origin may reflect it); a URL purge reaches both.
    let client = reqwest::Client::new();
    let with_port = |port: u16| {
        let request = client.get(format!("http://{}/ported?cc=max-age%3D60", server.addr));
        request.header("host", format!("a.test:{port}")).send()
    };
    assert_eq!(with_port(1).await.unwrap().text().await.unwrap(), "/ported?cc=max-age%3D60 #1");
    assert_eq!(with_port(2).await.unwrap().text().await.unwrap(), "/ported?cc=max-age%3D60 #2");
    assert_eq!(with_port(1).await.unwrap().text().await.unwrap(), "/ported?cc=max-age%3D60 #1");
}

#[tokio::test]
async fn apps_deployed_with_cache_are_answered_from_it() {
    let site = Site::new();
    site.config("[admin]\nlisten = \"127.0.0.1:0\"\n\n[tenants.a]\nhosts = [\"a.test\"]\n");
    let server = site.start();
    let admin = server.admin_url("");
    let wasm = guest("probe-component.wasm").display().to_string();
    for (name, cache) in [("cached", true), ("plain", false)] {
        let mut args = vec!["deploy", "--admin", &admin, "--tenant", "a", "--name", name];
        if cache {
            args.push("--cache");
        }
        args.push(&wasm);
        let (code, out, err) = site.run(&args);
        assert_eq!(code, 0, "{out}{err}");
    }
    let first = get(&server, "/cached/cacheable").await;
    assert_eq!((first.status, first.body.as_str()), (200, "cacheable\n"));
    // A guest's body of unknown length is streamed, and stored at its end: the hit after it says so.
    assert!(first.header("cache-status").starts_with("palisade; fwd=uri-miss"), "{:?}", first.headers);
    let second = get(&server, "/cached/cacheable").await;
    assert!(second.header("cache-status").contains("hit"), "{:?}", second.headers);
    assert_eq!(get(&server, "/plain/cacheable").await.header("cache-status"), "", "deployed without --cache");
    let listed = reqwest::get(server.admin_url("/v1/tenants/a")).await.unwrap().bytes().await.unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    let apps = listed["apps"].as_array().unwrap();
    let cached: Vec<_> = apps.iter().map(|a| (a["name"].as_str().unwrap(), a["cache"] == true)).collect();
    assert!(cached.contains(&("cached", true)) && cached.contains(&("plain", false)), "{listed}");
    let refused = reqwest::Client::new()
        .put(server.admin_url("/v1/tenants/a/apps/x?cache=maybe"))
        .body(std::fs::read(&wasm).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn a_large_miss_reaches_its_client_as_it_arrives_and_is_stored_whole() {
    let origin = Origin::start().await;
    let (_site, server) = server(&origin);
    let path = "/large?cc=max-age%3D60&size=200000&trickle=1500";
    let client = server.client(&["a.test"]);
    let started = std::time::Instant::now();
    let mut response = client.get(server.url("a.test", path)).send().await.unwrap();
    // Whether it will be stored is known only at its end: the head does not say `stored`.
    let status = response.headers()["cache-status"].to_str().unwrap().to_string();
    assert!(status.starts_with("palisade; fwd=uri-miss; ttl=") && !status.contains("stored"), "{status}");
    let first = response.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    let mut length = first.len();
    while let Some(chunk) = response.chunk().await.unwrap() {
        length += chunk.len();
    }
    assert!(first_at < Duration::from_millis(1200), "the first bytes came after {first_at:?}");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(length, 200_000);
    let again = get(&server, path).await;
    assert!(again.header("cache-status").contains("hit"), "{:?}", again.headers);
    assert_eq!((again.body.len(), again.header("content-length")), (200_000, "200000"));
    assert_eq!(origin.count(path), 1);

    // A client that goes away mid-body leaves nothing half stored: the next request fetches again.
    let cut = "/cut-off?cc=max-age%3D60&size=200000&trickle=1000";
    let mut response = client.get(server.url("a.test", cut)).send().await.unwrap();
    response.chunk().await.unwrap();
    drop(response);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let after = get(&server, cut).await;
    assert_eq!((after.body.len(), origin.count(cut)), (200_000, 2), "{:?}", after.headers);
}
