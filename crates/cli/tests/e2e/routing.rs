//! Host → tenant and longest prefix → route.

use crate::harness::{Site, status_line};
use crate::{HOSTS, two_tenants};

#[tokio::test]
async fn host_picks_the_tenant() {
    let site = two_tenants();
    let server = site.start();
    let client = server.client(HOSTS);
    let alice = client.get(server.url("alice.localhost", "/")).send().await.unwrap().text().await.unwrap();
    let bob = client.get(server.url("bob.localhost", "/")).send().await.unwrap().text().await.unwrap();
    assert_eq!(alice, "<h1>alice</h1>\n");
    assert_eq!(bob, "<h1>bob</h1>\n");
    // The Host header decides, in any case, with any port.
    let raw = server.raw("GET / HTTP/1.1\r\nHost: BOB.localhost:1234\r\nConnection: close\r\n\r\n");
    assert!(raw.ends_with("<h1>bob</h1>\n"), "{raw}");
}

#[tokio::test]
async fn longest_prefix_wins() {
    let site = two_tenants();
    let server = site.start();
    let client = server.client(HOSTS);
    let get = |p: &'static str| {
        let c = client.clone();
        let u = server.url("alice.localhost", p);
        async move { c.get(u).send().await.unwrap() }
    };
    assert_eq!(get("/app/admin/").await.text().await.unwrap(), "admin area\n");
    assert!(get("/app/echo").await.text().await.unwrap().contains("uri=/app/echo"));
    assert!(get("/app").await.text().await.unwrap().contains("probe ok"));
    // `/apple` is not under `/app`: it falls to the static root, which has no such file.
    assert_eq!(get("/apple").await.status(), 404);
    // bob has no /app route at all.
    let r = client.get(server.url("bob.localhost", "/app/echo")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn unknown_host_missing_host_and_no_route() {
    let site = two_tenants();
    let server = site.start();
    let raw = server.raw("GET / HTTP/1.1\r\nHost: carol.localhost\r\nConnection: close\r\n\r\n");
    assert!(status_line(&raw).starts_with("HTTP/1.1 404"), "{raw}");
    assert!(raw.contains("no site is configured for this host"), "{raw}");
    let raw = server.raw("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(status_line(&raw).starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("missing Host header"), "{raw}");

    let site = Site::new();
    site.write("www/index.html", "x");
    site.config("[tenants.t]\nhosts = [\"t.localhost\"]\n[[tenants.t.routes]]\npath = \"/only\"\nstatic = \"www\"\n");
    let server = site.start();
    let raw = server.raw("GET /elsewhere HTTP/1.1\r\nHost: t.localhost\r\nConnection: close\r\n\r\n");
    assert!(status_line(&raw).starts_with("HTTP/1.1 404"), "{raw}");
    assert!(raw.contains("no route matches this path"), "{raw}");
}

#[tokio::test]
async fn wildcard_tenant_takes_unclaimed_hosts() {
    let site = Site::new();
    site.write("www/a/index.html", "A");
    site.write("www/any/index.html", "ANY");
    site.config(
        "[tenants.a]\nhosts = [\"a.localhost\"]\n[[tenants.a.routes]]\npath = \"/\"\nstatic = \"www/a\"\n\n\
         [tenants.fallback]\nhosts = [\"*\"]\n[[tenants.fallback.routes]]\npath = \"/\"\nstatic = \"www/any\"\n",
    );
    let server = site.start();
    let client = server.client(&["a.localhost", "other.localhost"]);
    assert_eq!(client.get(server.url("a.localhost", "/")).send().await.unwrap().text().await.unwrap(), "A");
    assert_eq!(client.get(server.url("other.localhost", "/")).send().await.unwrap().text().await.unwrap(), "ANY");
}

#[tokio::test]
async fn routes_are_matched_on_the_normal_path_that_every_handler_sees() {
    let upstream = crate::upstream::Upstream::start("api");
    let site = Site::new();
    let hello = site.guest("hello.wasm");
    let cgi = site.guest("probe-cgi.wasm");
    site.write("www/sub/index.html", "the static file the app at /sub shadows\n");
    site.config(&format!(
        "[tenants.t]\nhosts = [\"t.localhost\"]\n\n[[tenants.t.routes]]\npath = \"/\"\nstatic = \"www\"\n\n\
         [[tenants.t.routes]]\npath = \"/sub\"\ncomponent = \"{hello}\"\n\n\
         [[tenants.t.routes]]\npath = \"/api\"\nproxy = {:?}\n\n\
         [[tenants.t.routes]]\npath = \"/cgi\"\ncgi = \"{cgi}\"\n\n\
         [[tenants.t.routes]]\npath = \"/café\"\ncomponent = \"{hello}\"\n",
        upstream.url()
    ));
    let server = site.start();
    let get =
        |target: &str| server.raw(&format!("GET {target} HTTP/1.1\r\nHost: t.localhost\r\nConnection: close\r\n\r\n"));
    let app = get("/%73ub/index.html");
    assert!(app.starts_with("HTTP/1.1 200") && app.contains("hello"), "escaped letters name the app's route: {app}");
    assert!(!app.contains("shadows"), "{app}");
    let sep = get("/sub%2findex.html");
    assert!(sep.starts_with("HTTP/1.1 400"), "an encoded slash cannot slip past the app: {sep}");
    let dots = get("/api/../cgi/env");
    assert!(dots.starts_with("HTTP/1.1 200") && dots.contains("PATH_INFO=/env\n"), "routed as /cgi/env: {dots}");
    assert_eq!(upstream.requests(), 0, "the proxy never saw /api/../cgi/env");
    let proxied = get("/api/./v1/%2e%2e/v2?q=%2F");
    assert!(proxied.contains(" GET /api/v2?q=%2F HTTP/1.1\n"), "the upstream sees the normal path: {proxied}");
    let above = get("/../etc/passwd");
    assert!(above.starts_with("HTTP/1.1 400"), "{above}");
    // A route written with a non-ASCII character is matched as clients send it: percent-encoded.
    for target in ["/caf%C3%A9", "/caf%c3%a9/x"] {
        let cafe = get(target);
        assert!(cafe.starts_with("HTTP/1.1 200") && cafe.contains("hello"), "{target}: {cafe}");
    }
}
