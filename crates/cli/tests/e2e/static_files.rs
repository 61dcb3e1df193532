//! Static files: validators, conditional and range requests, HEAD, directories, traversal.

use std::time::Duration;

use crate::harness::status_line;
use crate::{HOSTS, two_tenants};

#[tokio::test]
async fn conditional_requests() {
    let site = two_tenants();
    let server = site.start();
    let client = server.client(HOSTS);
    let url = server.url("alice.localhost", "/style.css");
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let modified = r.headers()["last-modified"].to_str().unwrap().to_string();

    let r = client.get(&url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert!(r.text().await.unwrap().is_empty());

    let r = client.get(&url).header("if-modified-since", &modified).send().await.unwrap();
    assert_eq!(r.status(), 304);
    let r = client.get(&url).header("if-none-match", "\"something-else\"").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn ranges_and_head() {
    let site = two_tenants();
    let server = site.start();
    let client = server.client(HOSTS);
    let url = server.url("alice.localhost", "/style.css"); // "body { color: red }\n", 20 bytes
    let r = client.get(&url).header("range", "bytes=5-9").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 5-9/20");
    assert_eq!(r.text().await.unwrap(), "{ col");

    let r = client.get(&url).header("range", "bytes=-4").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.text().await.unwrap(), "d }\n");

    let r = client.get(&url).header("range", "bytes=100-200").send().await.unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */20");

    let r = client.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "20");
    assert!(r.text().await.unwrap().is_empty());

    let r = client.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
}

#[tokio::test]
async fn large_file_streams_intact() {
    let site = two_tenants();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    site.write("www/alice/big.bin", &big);
    let server = site.start();
    let client = server.client(HOSTS);
    let r = client.get(server.url("alice.localhost", "/big.bin")).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(&r.bytes().await.unwrap()[..], &big[..]);
    let r =
        client.get(server.url("alice.localhost", "/big.bin")).header("range", "bytes=2999990-").send().await.unwrap();
    assert_eq!(&r.bytes().await.unwrap()[..], &big[2_999_990..]);
}

#[tokio::test]
async fn directories_index_and_redirect() {
    let site = two_tenants();
    site.write("www/alice/docs/index.html", "docs index");
    site.mkdir("www/alice/empty");
    let server = site.start();
    let client = server.client(HOSTS);
    let r = client.get(server.url("alice.localhost", "/docs/")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "docs index");
    let r = client.get(server.url("alice.localhost", "/docs?x=1")).send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "/docs/?x=1");
    // No listings.
    let r = client.get(server.url("alice.localhost", "/empty/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = client.get(server.url("alice.localhost", "/missing.txt")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_directory_redirect_never_names_another_host_and_a_fifo_does_not_hang_a_worker() {
    let site = two_tenants();
    site.write("www/alice/evil.example/index.html", "inside");
    let status = std::process::Command::new("mkfifo").arg(site.path("www/alice/pipe")).status().unwrap();
    assert!(status.success(), "mkfifo");
    let server = site.start();
    let port = server.addr.port();
    let raw = server
        .raw(&format!("GET //evil.example HTTP/1.1\r\nHost: alice.localhost:{port}\r\nConnection: close\r\n\r\n"));
    assert!(raw.starts_with("HTTP/1.1 301"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("location: /evil.example/\r\n"), "a path on this host: {raw}");
    // Opening a FIFO would wait for a writer: with a single worker, every later request would wait too.
    let client = server.client(HOSTS);
    for _ in 0..2 {
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.get(server.url("alice.localhost", "/pipe")).send(),
        )
        .await
        .expect("the FIFO was answered")
        .unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = client.get(server.url("alice.localhost", "/evil.example/")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "inside");
}

#[tokio::test]
async fn ranges_and_preconditions_follow_rfc_9110() {
    let site = two_tenants();
    site.write("www/alice/ten.txt", "0123456789");
    site.write("www/alice/empty.txt", "");
    let server = site.start();
    let client = server.client(HOSTS);
    let get = |path: &'static str, h: &'static str, v: String| {
        let (client, url) = (client.clone(), server.url("alice.localhost", path));
        async move { client.get(url).header(h, v).send().await.unwrap() }
    };
    let r = get("/ten.txt", "range", "bytes=0-5,3-8".into()).await;
    assert_eq!(r.status(), 200, "overlapping ranges are satisfiable: the whole file");
    let r = get("/empty.txt", "range", "bytes=0-".into()).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-range").is_none());
    let r = get("/ten.txt", "range", "bytes=20-30".into()).await;
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */10");
    assert_eq!(r.text().await.unwrap(), "416 range not satisfiable\n");
    let etag = get("/ten.txt", "x-any", String::new()).await.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(get("/ten.txt", "if-match", etag).await.status(), 200);
    assert_eq!(get("/ten.txt", "if-match", "\"stale\"".into()).await.status(), 412);
    let r = get("/ten.txt", "if-unmodified-since", "Sat, 01 Jan 2000 00:00:00 GMT".into()).await;
    assert_eq!(r.status(), 412);
}

#[tokio::test]
async fn traversal_never_escapes_the_root() {
    let site = two_tenants();
    std::os::unix::fs::symlink("/etc/passwd", site.path("www/alice/passwd-link")).unwrap();
    std::os::unix::fs::symlink("../bob", site.path("www/alice/bob-link")).unwrap();
    site.write("www/alice/inner.txt", "inner");
    std::os::unix::fs::symlink("inner.txt", site.path("www/alice/inner-link")).unwrap();
    let server = site.start();
    for path in [
        "/../bob/index.html",
        "/%2e%2e/bob/index.html",
        "/%2E%2E%2Fbob%2Findex.html",
        "/..%2f..%2fetc%2fpasswd",
        "/passwd-link",
        "/bob-link/index.html",
        "/a%00b",
    ] {
        let raw = server.raw(&format!("GET {path} HTTP/1.1\r\nHost: alice.localhost\r\nConnection: close\r\n\r\n"));
        let status = status_line(&raw);
        assert!(status.contains(" 404 ") || status.contains(" 400 "), "{path}: {status}");
        assert!(!raw.contains("root:"), "{path} leaked /etc/passwd");
        assert!(!raw.contains("<h1>bob</h1>"), "{path} reached bob's site");
    }
    // A symlink that stays inside the root is fine.
    let raw = server.raw("GET /inner-link HTTP/1.1\r\nHost: alice.localhost\r\nConnection: close\r\n\r\n");
    assert!(raw.ends_with("inner"), "{raw}");
}

/// Files are cached for a second: a changed file is served, with a new ETag, once that second has passed.
#[tokio::test]
async fn a_changed_file_is_served_within_a_second() {
    let site = two_tenants();
    let server = site.start();
    let client = server.client(HOSTS);
    let url = server.url("alice.localhost", "/style.css");
    let first = client.get(&url).send().await.unwrap();
    let first_etag = first.headers()["etag"].clone();
    assert_eq!(first.text().await.unwrap(), "body { color: red }\n");
    site.write("www/alice/style.css", "body { color: blue; margin: 0 }\n");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = client.get(&url).send().await.unwrap();
    assert_ne!(second.headers()["etag"], first_etag);
    assert_eq!(second.text().await.unwrap(), "body { color: blue; margin: 0 }\n");
    // A file removed is gone once its entry has expired.
    std::fs::remove_file(site.path("www/alice/style.css")).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(client.get(&url).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn dotfiles_are_hidden_unless_the_route_serves_them() {
    let site = crate::harness::Site::new();
    for dir in ["www", "open"] {
        site.write(&format!("{dir}/.env"), "SECRET=1");
        site.write(&format!("{dir}/.git/config"), "[core]");
        site.write(&format!("{dir}/.well-known/security.txt"), "Contact: mailto:security@example.test");
        site.write(&format!("{dir}/index.html"), "home");
    }
    site.config(
        "[tenants.t]\nhosts = [\"t.localhost\"]\n[[tenants.t.routes]]\npath = \"/\"\nstatic = \"www\"\n\
         [[tenants.t.routes]]\npath = \"/open\"\nstatic = \"open\"\ndotfiles = true\n",
    );
    let server = site.start();
    let client = server.client(&["t.localhost"]);
    let status = |path: &'static str| {
        let request = client.get(server.url("t.localhost", path));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for hidden in ["/.env", "/.git/config", "/.git/", "/%2egit/config"] {
        assert_eq!(status(hidden).await, 404, "{hidden} is hidden by default");
    }
    assert_eq!(status("/.well-known/security.txt").await, 200, "RFC 8615's directory is served");
    assert_eq!(status("/index.html").await, 200);
    for shown in ["/open/.env", "/open/.git/config"] {
        assert_eq!(status(shown).await, 200, "{shown}: the route serves dotfiles");
    }
}
