//! Every per-tenant limit fires with its documented status, is logged with the tenant and the limit's
//! name, and leaves the server and the tenant able to serve the next request.

use std::time::{Duration, Instant};

use crate::harness::{Running, Site};

/// `evil` runs the probes under tight limits; `good` is its neighbour on the same server.
pub fn limited_site() -> Site {
    let site = Site::new();
    let component = site.guest("probe-component.wasm");
    let cgi = site.guest("probe-cgi.wasm");
    site.mkdir("tenants/evil");
    site.write("tenants/good/secret.txt", "good's secret\n");
    site.write("www/good/index.html", "good and well\n");
    site.config(&format!(
        r#"
[tenants.evil]
hosts = ["evil.localhost"]
memory = "16 MiB"
max_total_memory = "40 MiB"
timeout = "5s"
cpu_time = "500ms"
max_concurrency = 4
max_request_body = "64 KiB"
max_response_body = "1 MiB"
max_stderr = "16 KiB"
data = "tenants/evil"

[[tenants.evil.routes]]
path = "/app"
component = "{component}"

[[tenants.evil.routes]]
path = "/cgi"
cgi = "{cgi}"

[tenants.good]
hosts = ["good.localhost"]
data = "tenants/good"

[[tenants.good.routes]]
path = "/"
static = "www/good"

[[tenants.good.routes]]
path = "/app"
component = "{component}"

[[tenants.good.routes]]
path = "/cgi"
cgi = "{cgi}"
"#
    ));
    site
}

pub const HOSTS: &[&str] = &["evil.localhost", "good.localhost"];

/// GET `path` as `host`; returns status, body and how long it took.
pub async fn get(server: &Running, client: &reqwest::Client, host: &str, path: &str) -> (u16, String, Duration) {
    let start = Instant::now();
    let r = client.get(server.url(host, path)).send().await.unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    (status, body, start.elapsed())
}

#[tokio::test]
async fn every_kind_of_trap_is_a_500_logged_with_message_and_backtrace() {
    let site = limited_site();
    let server = site.start();
    let client = server.client(HOSTS);
    let traps = [
        ("/app/trap", "wasm `unreachable` instruction executed"),
        ("/app/stackoverflow", "call stack exhausted"),
        ("/app/oob", "out of bounds memory access"),
        ("/app/divzero", "integer divide by zero"),
        ("/app/badcall", "out of bounds table access"),
        ("/cgi/stackoverflow", "call stack exhausted"),
        ("/cgi/trap", "wasm `unreachable` instruction executed"),
    ];
    for (path, message) in traps {
        let (status, body, _) = get(&server, &client, "evil.localhost", path).await;
        assert_eq!((status, body.as_str()), (500, "500 guest failed\n"), "{path}");
        assert!(server.log_contains(message), "{path}: trap message {message:?} is logged");
    }
    assert_eq!(server.log_count("limit=\"trap\"", traps.len()), traps.len(), "one limit line per trap");
    let log = server.log();
    assert!(log.contains("wasm backtrace"), "traps are logged with their wasm backtrace");
    assert!(!log.contains("panicked"), "{log}");
    let (status, body, _) = get(&server, &client, "evil.localhost", "/app/echo").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_spinning_guest_is_stopped_at_its_cpu_time_before_its_deadline() {
    let site = limited_site();
    let server = site.start();
    let client = server.client(HOSTS);
    for path in ["/app/loop", "/cgi/loop"] {
        let (status, body, took) = get(&server, &client, "evil.localhost", path).await;
        assert_eq!((status, body.as_str()), (504, "504 guest exceeded its CPU time\n"), "{path}");
        assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(5), "{path} stopped after {took:?}");
    }
    assert!(server.log_contains("cpu_time"), "the limit is logged by name");
    // A guest that waits (without using CPU) is held to the wall-clock deadline instead.
    let (status, body, took) = get(&server, &client, "evil.localhost", "/app/sleep").await;
    assert_eq!((status, body.as_str()), (504, "504 guest exceeded its deadline\n"));
    assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(10), "stopped after {took:?}");
}

#[tokio::test]
async fn memory_is_capped_per_instance_and_per_tenant() {
    let site = limited_site();
    let server = site.start();
    let client = server.client(HOSTS);
    let (status, body, _) = get(&server, &client, "evil.localhost", "/app/membomb").await;
    assert_eq!((status, body.as_str()), (500, "500 guest exceeded its memory limit\n"));
    let (status, _, _) = get(&server, &client, "evil.localhost", "/app/hold/14").await;
    assert_eq!(status, 200, "one instance fits in `memory`");

    // Three instances holding 14 MiB each do not fit in max_total_memory = 40 MiB; one fits in `memory`.
    let holders: Vec<_> = (0..3)
        .map(|_| {
            let c = client.clone();
            let u = server.url("evil.localhost", "/app/hold/14");
            tokio::spawn(async move { c.get(u).send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for h in holders {
        statuses.push(h.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses.first(), Some(&200), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&500), "{statuses:?}");
    assert!(server.log_contains("limit=\"max_total_memory\""));
    // What they held is returned to the tenant when they finish.
    let (status, _, _) = get(&server, &client, "evil.localhost", "/app/hold/14").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn request_bodies_over_the_limit_get_413() {
    let site = limited_site();
    let server = site.start();
    let client = server.client(HOSTS);
    let big = vec![b'b'; 100 << 10];
    for path in ["/app/echo", "/cgi/body"] {
        let r = client.post(server.url("evil.localhost", path)).body(big.clone()).send().await.unwrap();
        assert_eq!(r.status(), 413, "{path} with Content-Length");
        // Without a Content-Length, the body is cut off as it streams in.
        let chunks = futures::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b'c'; 10 << 10])));
        let r = client
            .post(server.url("evil.localhost", path))
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "{path} streamed");
    }
    let r = client.post(server.url("evil.localhost", "/app/echo")).body(vec![b'k'; 60 << 10]).send().await.unwrap();
    assert_eq!(r.status(), 200, "a body under the limit is fine");
    assert!(r.text().await.unwrap().contains("body-length=61440"));
    assert!(server.log_contains("max_request_body"));
}

#[tokio::test]
async fn responses_over_the_limit_are_cut_off_and_never_endless() {
    let site = limited_site();
    let server = site.start();
    let client = server.client(HOSTS);
    // A CGI response is judged whole: too large is a 502.
    let (status, body, _) = get(&server, &client, "evil.localhost", "/cgi/huge/2").await;
    assert_eq!((status, body.as_str()), (502, "502 guest response too large\n"));
    // A component streams: the head has gone out, so the body is cut off at the limit.
    for path in ["/app/huge/2", "/app/endless"] {
        let start = Instant::now();
        let r = client.get(server.url("evil.localhost", path)).send().await.unwrap();
        let got = r.bytes().await;
        assert!(got.is_err() || got.as_ref().is_ok_and(|b| b.len() <= 1 << 20), "{path} was not cut off");
        assert!(start.elapsed() < Duration::from_secs(5), "{path} took {:?}", start.elapsed());
    }
    // A response that drips forever ends at the deadline.
    let start = Instant::now();
    let r = client.get(server.url("evil.localhost", "/app/drip")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(4) && took < Duration::from_secs(10), "drip ended after {took:?}");
    assert!(server.log_contains("max_response_body"));
    let (status, _, _) = get(&server, &client, "evil.localhost", "/app/echo").await;
    assert_eq!(status, 200, "the tenant's slots are all free again");
}

#[tokio::test]
async fn ten_megabytes_of_stderr_are_capped_in_the_log() {
    let site = limited_site();
    let server = site.start();
    let client = server.client(HOSTS);
    for path in ["/app/stderr/10", "/cgi/stderr/10"] {
        let (status, body, _) = get(&server, &client, "evil.localhost", path).await;
        assert_eq!((status, body.as_str()), (200, "wrote stderr\n"), "{path}");
    }
    assert!(server.log_contains("max_stderr"));
    let log = server.log();
    assert!(log.len() < 512 << 10, "the log holds {} bytes: stderr was not capped", log.len());
}

#[tokio::test]
async fn guest_output_cannot_forge_log_lines() {
    let site = limited_site();
    let server = site.start();
    let client = server.client(HOSTS);
    let (status, body, _) = get(&server, &client, "evil.localhost", "/cgi/forge").await;
    assert_eq!((status, body.as_str()), (200, "forged\n"));
    assert!(server.log_contains("forged tenant=other"));
    let log = server.log();
    assert!(
        log.contains(r"first\n2026-01-01T00:00:00Z  WARN palisade: forged tenant=other\r\u{1b}[2K"),
        "the guest's output is one escaped line:\n{log}"
    );
    assert!(!log.lines().any(|l| l.starts_with("2026-01-01")), "a guest wrote a line of its own:\n{log}");
}

#[tokio::test]
async fn no_request_sees_memory_an_earlier_request_left_behind() {
    let site = limited_site();
    let server = site.start();
    let client = server.client(HOSTS);
    let (status, _, _) = get(&server, &client, "evil.localhost", "/app/remember?LEFT-BEHIND-42").await;
    assert_eq!(status, 200);
    for _ in 0..3 {
        let (status, body, _) = get(&server, &client, "evil.localhost", "/app/recall").await;
        assert_eq!(status, 200);
        assert!(!body.contains("LEFT-BEHIND"), "an earlier request's memory leaked:\n{body}");
        assert!(body.starts_with("static=....."), "static memory starts zeroed:\n{body}");
    }
}

#[tokio::test]
async fn components_see_data_only_when_configured() {
    let site = Site::new();
    let component = site.guest("probe-component.wasm");
    site.write("ro/note.txt", "read me\n");
    site.mkdir("rw");
    site.mkdir("none");
    let mut tenants = String::new();
    for (name, access) in [("ro", "read-only"), ("rw", "read-write"), ("none", "none")] {
        tenants.push_str(&format!(
            "[tenants.{name}]\nhosts = [\"{name}.localhost\"]\ndata = \"{name}\"\ncomponent_data = \"{access}\"\n\
             [[tenants.{name}.routes]]\npath = \"/\"\ncomponent = \"{component}\"\n"
        ));
    }
    site.config(&tenants);
    let server = site.start();
    let client = server.client(&["ro.localhost", "rw.localhost", "none.localhost"]);
    assert_eq!(get(&server, &client, "ro.localhost", "/data-read").await.1, "read me\n");
    assert_eq!(get(&server, &client, "ro.localhost", "/data-write?no").await.0, 403);
    assert_eq!(std::fs::read_to_string(site.path("ro/note.txt")).unwrap(), "read me\n");
    assert_eq!(get(&server, &client, "rw.localhost", "/data-write?yes").await.0, 200);
    assert_eq!(std::fs::read_to_string(site.path("rw/note.txt")).unwrap(), "yes");
    assert_eq!(get(&server, &client, "none.localhost", "/data-read").await.0, 404);
    assert_eq!(get(&server, &client, "none.localhost", "/data-write?no").await.0, 403);
    assert!(!site.path("none/note.txt").exists());
}

/// A client still uploading far more than the limit gets its 413, marked `Connection: close` (the rest of
/// its body is never read, so the connection cannot carry another request).
#[test]
fn an_early_413_reaches_a_client_that_is_still_sending() {
    use std::io::{Read, Write};
    let site = limited_site();
    let server = site.start();
    for path in ["/app/echo", "/cgi/body"] {
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: evil.localhost\r\nContent-Length: 10485760\r\n\r\n");
        s.write_all(head.as_bytes()).unwrap();
        // The client keeps sending (far more than the limit) while it waits for the answer, as uploaders do.
        let mut writer = s.try_clone().unwrap();
        let sending = std::thread::spawn(move || {
            for _ in 0..160 {
                if writer.write_all(&[b'u'; 64 << 10]).is_err() {
                    break;
                }
            }
        });
        let mut response = Vec::new();
        let _ = s.read_to_end(&mut response);
        sending.join().unwrap();
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 413 "), "{path}: {response:?}");
        assert!(response.to_ascii_lowercase().contains("connection: close"), "{path}: {response}");
    }
}

#[tokio::test]
async fn outbound_http_is_denied_counted_and_logged() {
    let site = limited_site();
    let server = site.start();
    let client = server.client(HOSTS);
    let (status, body, _) = get(&server, &client, "evil.localhost", "/app/outbound").await;
    assert_eq!((status, body.as_str()), (200, "denied\n"), "the guest sees HTTP-request-denied");
    assert!(server.log_contains("limit=\"outbound_denied\""), "the denial is logged as the tenant's limit");
    assert!(server.log_contains("outbound request to http://127.0.0.1:9/ denied"));
}

/// A backend on loopback that answers each of `count` requests with 200 and a body of `body_len` bytes.
fn tiny_backend(count: usize, body_len: usize) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&vec![b'b'; body_len]);
        }
    });
    addr
}

#[tokio::test]
async fn outbound_http_reaches_only_declared_backends() {
    let backend = tiny_backend(2, 4096);
    let site = Site::new();
    let component = site.guest("probe-component.wasm");
    site.config(&format!(
        r#"
[tenants.caller]
hosts = ["caller.localhost"]
outbound = ["http://127.0.0.1:{port}", "https://*.example.test"]
max_response_body = "1 KiB"

[[tenants.caller.routes]]
path = "/app"
component = "{component}"
"#,
        port = backend.port()
    ));
    let server = site.start();
    let client = server.client(&["caller.localhost"]);
    let call = |target: String| {
        let (client, url) = (client.clone(), server.url("caller.localhost", &format!("/app/outbound?{target}")));
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    // Allowed; the backend's 4 KiB body is cut off at the tenant's `max_response_body`.
    let answer = call(format!("127.0.0.1:{}", backend.port())).await;
    assert!(answer.starts_with("sent, status 200, cut off after "), "{answer}");
    let read: usize = answer.trim_end().rsplit(' ').nth(1).unwrap().parse().unwrap();
    assert!(read <= 1024, "{answer}");
    // The same backend by another name, another port on the same host, palisade itself: all denied.
    assert_eq!(call(format!("localhost:{}", backend.port())).await, "denied\n");
    assert_eq!(call(format!("127.0.0.1:{}", backend.port() + 1)).await, "denied\n");
    assert_eq!(call(format!("127.0.0.1:{}", server.addr.port())).await, "denied\n");
    assert_eq!(server.log_count("(not in `outbound`)", 3), 3);
}

#[tokio::test]
async fn memory_a_guest_touched_goes_back_to_the_system_when_it_ends() {
    let site = Site::new();
    let probe = site.guest("probe-component.wasm");
    site.config(&format!(
        "[tenants.big]\nhosts = [\"big.localhost\"]\nmemory = \"64 MiB\"\nmax_concurrency = 8\n\n\
         [[tenants.big.routes]]\npath = \"/\"\ncomponent = \"{probe}\"\n"
    ));
    let server = site.start();
    let client = server.client(&["big.localhost"]);
    let (status, _, _) = get(&server, &client, "big.localhost", "/echo").await;
    assert_eq!(status, 200);
    let baseline = server.rss_kib();
    // Twelve guests, four at a time, each touching 40 MiB: 480 MiB if what they touched stayed resident.
    for _ in 0..3 {
        let held = (0..4).map(|_| get(&server, &client, "big.localhost", "/hold/40"));
        for (status, body, _) in futures::future::join_all(held).await {
            assert_eq!((status, body.as_str()), (200, "held\n"));
        }
    }
    // An instance is dropped just after its response is sent, so its slot may be decommitted a moment after the
    // client has the answer: give it a bounded while to go back.
    let mut grew = u64::MAX;
    for _ in 0..50 {
        grew = server.rss_kib().saturating_sub(baseline) / 1024;
        if grew < 64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(grew < 64, "RSS grew by {grew} MiB after the guests ended");
}
