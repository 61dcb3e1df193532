//! Each route kind answers correctly, over HTTP/1.1 and h2c.

use crate::{HOSTS, two_tenants};

#[tokio::test]
async fn static_component_and_cgi_over_http1() {
    let site = two_tenants();
    let server = site.start();
    let client = server.client(HOSTS);

    let r = client.get(server.url("alice.localhost", "/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert!(r.headers().contains_key("etag"));
    assert_eq!(r.text().await.unwrap(), "<h1>alice</h1>\n");

    let r = client
        .post(server.url("alice.localhost", "/app/echo?x=1&y=%20z"))
        .header("x-custom", "custom value")
        .body("request body bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-echo"], "yes");
    assert_eq!(r.headers()["content-type"], "text/plain");
    let body = r.text().await.unwrap();
    assert!(body.contains("method=POST\n"), "{body}");
    assert!(body.contains("uri=/app/echo?x=1&y=%20z\n"), "guest sees the full original URI: {body}");
    assert!(body.contains("x-custom: custom value\n"), "{body}");
    assert!(body.contains("body-length=18\nbody=request body bytes"), "{body}");

    let r = client.get(server.url("alice.localhost", "/cgi-bin/probe")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "probe ok\n");
}

#[tokio::test]
async fn every_kind_over_h2c_prior_knowledge() {
    let site = two_tenants();
    let server = site.start();
    let client = server.h2c_client(HOSTS);
    for (path, expect) in [("/", "<h1>alice</h1>"), ("/app/echo", "uri=/app/echo"), ("/cgi-bin/probe", "probe ok")] {
        let r = client.get(server.url("alice.localhost", path)).send().await.unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 200, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains(expect), "{path}: {body}");
    }
    // A request body over HTTP/2 reaches the component.
    let r = client.put(server.url("alice.localhost", "/app/echo")).body("h2 body").send().await.unwrap();
    assert!(r.text().await.unwrap().contains("method=PUT\nuri=/app/echo\n"));
}

#[tokio::test]
async fn curl_h2c_prior_knowledge() {
    let site = two_tenants();
    let server = site.start();
    let out = std::process::Command::new("curl")
        .args(["-s", "-i", "--http2-prior-knowledge", "--resolve"])
        .arg(format!("alice.localhost:{}:127.0.0.1", server.addr.port()))
        .arg(server.url("alice.localhost", "/app/stream"))
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.contains("chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n"), "{text}");
}

#[tokio::test]
async fn component_status_env_and_streamed_body() {
    let site = two_tenants();
    let server = site.start();
    let client = server.client(HOSTS);
    let r = client.get(server.url("alice.localhost", "/app/status/201")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    // Interim and out-of-range statuses are no answer: 502, in the response and in the log alike.
    for bad in ["100", "101", "600"] {
        let raw = server
            .raw(&format!("GET /app/status/{bad} HTTP/1.1\r\nHost: alice.localhost\r\nConnection: close\r\n\r\n"));
        assert!(raw.starts_with("HTTP/1.1 502"), "status {bad}: {raw}");
    }
    assert!(server.log_contains("guest answered with status 101"));
    let r = client.get(server.url("alice.localhost", "/app/env")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hi-alice");
    let r = client.get(server.url("alice.localhost", "/app/stream")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");
}
