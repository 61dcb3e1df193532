//! HTTP/3: files of every size, a component with a request body, many streams on one connection and two
//! tenants by SNI, through aioquic's client (`tests/clients/h3.py`), a QUIC stack written apart from palisade.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::harness::{Running, Site, TestCa, install_crypto_provider};
use crate::upstream::Upstream;

/// The Python with aioquic that `scripts/setup.sh` installs.
fn h3_python() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME");
    PathBuf::from(home).join(".cache/palisade-test/h3/bin/python")
}

/// alice (`alice.test`: files, the probe component and CGI program, a proxy route to `upstream` with and
/// without the cache) and bob (`bob.test`: a file), over HTTPS and HTTP/3.
fn h3_site(ca: &TestCa, upstream: &str) -> Site {
    let site = Site::new();
    site.write("www/alice/one.bin", "x");
    let big: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    site.write("www/alice/big.bin", big);
    site.write("www/alice/index.html", "alice over h3\n");
    site.write("www/bob/index.html", "bob over h3\n");
    for (tenant, names) in [("alice", ["alice.test"]), ("bob", ["bob.test"])] {
        let (cert, key) = ca.leaf(&names);
        site.write(&format!("certs/{tenant}.pem"), cert);
        site.write(&format!("certs/{tenant}.key"), key);
    }
    site.write("certs/ca.pem", &ca.pem);
    let probe = site.guest("probe-component.wasm");
    let cgi = site.guest("probe-cgi.wasm");
    let data = site.path("data").display().to_string();
    site.config_with(
        &format!("listen = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\nhttp3 = true\ndata_dir = {data:?}"),
        &format!(
            r#"
[tenants.alice]
hosts = ["alice.test"]
tls = {{ cert = "certs/alice.pem", key = "certs/alice.key" }}
cache = {{ max_size = "64 MiB" }}

[[tenants.alice.routes]]
path = "/"
static = "www/alice"

[[tenants.alice.routes]]
path = "/app"
component = "{probe}"

[[tenants.alice.routes]]
path = "/cgi-bin/probe"
cgi = "{cgi}"

[[tenants.alice.routes]]
path = "/up"
proxy = "{upstream}"

[[tenants.alice.routes]]
path = "/download"
proxy = "{upstream}"

[[tenants.alice.routes]]
path = "/slow-head"
proxy = "{upstream}"

[[tenants.alice.routes]]
path = "/cached"
proxy = "{upstream}"
cache = true

[tenants.bob]
hosts = ["bob.test"]
tls = {{ cert = "certs/bob.pem", key = "certs/bob.key" }}

[[tenants.bob.routes]]
path = "/"
static = "www/bob"
"#
        ),
    );
    site
}

/// Requests every path at once on one HTTP/3 connection opened for `sni`; one summary per response, in order.
fn h3(site: &Site, server: &Running, sni: &str, options: &[&str], paths: &[&str]) -> Vec<Value> {
    let out = h3_command(site, server, sni, options, paths).output().expect("the aioquic client (scripts/setup.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "h3.py failed: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), paths.len(), "{stdout}");
    for line in &lines {
        assert!(line.get("error").is_none(), "{line}");
    }
    lines
}

/// The aioquic client's command line, for [`h3`] or to run in the background.
fn h3_command(site: &Site, server: &Running, sni: &str, options: &[&str], paths: &[&str]) -> Command {
    let mut command = Command::new(h3_python());
    command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/clients/h3.py"))
        .args([server.tls_addr().to_string().as_str(), sni, site.path("certs/ca.pem").to_str().unwrap()])
        .args(options)
        .args(paths);
    command
}

fn sha256(path: PathBuf) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

// Multi-threaded: the upstream answers on the test's runtime while the client command blocks its thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http3_serves_every_route_kind_and_is_advertised() {
    let upstream = Upstream::start("origin");
    let ca = TestCa::new();
    let site = h3_site(&ca, &upstream.url());
    let server = site.start();
    assert!(server.log_contains("(HTTP/3, UDP)"), "{}", server.log());

    let got = h3(&site, &server, "alice.test", &[], &["/one.bin", "/big.bin", "/missing"]);
    for (i, file) in ["one.bin", "big.bin"].into_iter().enumerate() {
        assert_eq!(got[i]["status"], 200, "{}", got[i]);
        assert_eq!(got[i]["sha256"], sha256(site.path(&format!("www/alice/{file}"))), "{file}");
        assert!(got[i]["headers"]["date"].is_string(), "Date is sent: {}", got[i]);
    }
    assert_eq!(got[1]["length"], 16 * 1024 * 1024);
    assert_eq!(got[2]["status"], 404);

    // A component, with a request body streamed to it.
    site.write("body.txt", "a body sent over QUIC");
    let body = site.path("body.txt");
    let body = body.to_str().unwrap();
    let got = h3(&site, &server, "alice.test", &["--method", "POST", "--body-file", body], &["/app/echo"]);
    assert_eq!(got[0]["status"], 200, "{}", got[0]);
    let echoed = got[0]["body"].as_str().unwrap();
    assert!(
        echoed.starts_with("method=POST\nuri=/app/echo") && echoed.contains("body=a body sent over QUIC"),
        "{echoed}"
    );

    // A CGI program reading its body, and a proxied upstream, streamed and through the cache.
    let got = h3(&site, &server, "alice.test", &["--method", "POST", "--body-file", body], &["/cgi-bin/probe/body"]);
    assert_eq!((got[0]["status"].as_u64(), got[0]["body"].as_str()), (Some(200), Some("a body sent over QUIC")));
    let got = h3(&site, &server, "alice.test", &[], &["/up/hello", "/download?3000000", "/cached/x"]);
    assert_eq!(got[0]["status"], 200, "{}", got[0]);
    assert!(got[0]["body"].as_str().unwrap().starts_with("origin GET /up/hello"), "{}", got[0]);
    assert!(got[0]["headers"].get("x-hop").is_none(), "hop-by-hop fields dropped: {}", got[0]);
    assert_eq!((got[1]["status"].as_u64(), got[1]["length"].as_u64()), (Some(200), Some(3_000_000)));
    assert_eq!(got[2]["status"], 200, "{}", got[2]);
    assert!(got[2]["headers"]["cache-status"].as_str().unwrap().starts_with("palisade; fwd=uri-miss"), "{}", got[2]);

    // HTTPS over TCP says where HTTP/3 is.
    let client = server.https_client(&["alice.test"], &ca.pem);
    let r = client.get(server.https_url("alice.test", "/index.html")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let port = server.tls_addr().port();
    assert_eq!(r.headers()["alt-svc"], format!("h3=\":{port}\"; ma=86400").as_str());
    // Plain HTTP does not advertise it.
    let r = server.client(&["alice.test"]).get(server.url("alice.test", "/index.html")).send().await.unwrap();
    assert!(r.headers().get("alt-svc").is_none());
}

#[tokio::test]
async fn http3_serves_a_hundred_streams_on_one_connection_and_tenants_by_sni() {
    let ca = TestCa::new();
    let site = h3_site(&ca, "http://127.0.0.1:9");
    let server = site.start();
    let paths: Vec<String> = (0..100).map(|i| format!("/index.html?n={i}")).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    for got in h3(&site, &server, "alice.test", &[], &paths) {
        assert_eq!(got["status"], 200, "{got}");
        assert_eq!(got["body"], "alice over h3\n");
    }
    let got = h3(&site, &server, "bob.test", &[], &["/index.html"]);
    assert_eq!((got[0]["status"].as_u64(), got[0]["body"].as_str()), (Some(200), Some("bob over h3\n")));
    // Another tenant's host on a connection opened for bob: 421, as over TCP.
    let got = h3(&site, &server, "bob.test", &["--authority", "alice.test"], &["/index.html"]);
    assert_eq!(got[0]["status"], 421, "{}", got[0]);
}

#[test]
fn http3_keys_without_what_they_need_are_refused_with_their_line() {
    let site = Site::new();
    site.write("www/index.html", "hi\n");
    site.write(
        "palisade.toml",
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp3 = true\n\n[tenants.t]\nhosts = [\"*\"]\n\
         [[tenants.t.routes]]\npath = \"/\"\nstatic = \"www\"\n",
    );
    let (code, _, err) = site.run(&["check", "--config", "palisade.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("palisade.toml:3:9: `http3` needs a `tls_listen` address"), "{err}");

    let config = std::fs::read_to_string(site.path("palisade.toml")).unwrap();
    site.write("palisade.toml", config.replace("http3 = true", "quic_retry = true"));
    let (code, _, err) = site.run(&["check", "--config", "palisade.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("palisade.toml:3:14: `quic_retry` applies to HTTP/3"), "{err}");
}

#[tokio::test]
async fn http3_ignores_garbage_datagrams_and_holds_clients_to_the_connection_limits() {
    let ca = TestCa::new();
    let site = h3_site(&ca, "http://127.0.0.1:9");
    let config = std::fs::read_to_string(site.path("palisade.toml")).unwrap();
    site.write("palisade.toml", config.replacen("http3 = true", "http3 = true\nmax_connections_per_ip = 2", 1));
    let server = site.start();

    // Datagrams that are not QUIC, or QUIC long headers with nonsense after them, cost nothing lasting.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut noise = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..2000 {
        let len = 1 + (i * 37) % 1400;
        let datagram: Vec<u8> = (0..len)
            .map(|_| {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                noise as u8
            })
            .collect();
        let mut datagram = datagram;
        if i % 2 == 0 {
            datagram[0] = 0xc0; // a long header: QUIC's Initial packet type, version and lengths garbage
        }
        udp.send_to(&datagram, server.tls_addr()).unwrap();
    }
    let got = h3(&site, &server, "alice.test", &[], &["/index.html"]);
    assert_eq!(got[0]["status"], 200, "{}", got[0]);

    // Two connections held open from this address; a third is refused while they are, TCP or QUIC alike.
    let held: Vec<_> = (0..2)
        .map(|_| h3_command(&site, &server, "alice.test", &["--hold", "6"], &["/index.html"]).spawn().unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let third = h3_command(&site, &server, "alice.test", &[], &["/index.html"]).output().unwrap();
    assert!(!third.status.success(), "a third connection was served: {}", String::from_utf8_lossy(&third.stdout));
    for mut client in held {
        assert!(client.wait().unwrap().success());
    }
    let got = h3(&site, &server, "alice.test", &[], &["/index.html"]);
    assert_eq!(got[0]["status"], 200, "served again once the others closed: {}", got[0]);
}

// Multi-threaded: the upstream answers on the test's runtime while the test thread waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http3_requests_in_flight_finish_when_the_server_stops() {
    let upstream = Upstream::start("origin");
    let ca = TestCa::new();
    let site = h3_site(&ca, &upstream.url());
    let mut server = site.start();
    // Answered by the upstream after 5 s; the server is told to stop 1 s in.
    let mut slow = h3_command(&site, &server, "alice.test", &[], &["/slow-head"]);
    let slow = tokio::task::spawn_blocking(move || slow.output());
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let code = server.terminate(std::time::Duration::from_secs(15));
    assert_eq!(code, Some(0), "{}", server.log());
    let out = slow.await.unwrap().unwrap();
    let line: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(line["status"], 200, "the request in flight was answered: {}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test]
async fn with_quic_retry_every_connection_proves_its_address_first() {
    let ca = TestCa::new();
    let site = h3_site(&ca, "http://127.0.0.1:9");
    let config = std::fs::read_to_string(site.path("palisade.toml")).unwrap();
    let config = config.replacen("http3 = true", "http3 = true\nquic_retry = true", 1);
    site.write("palisade.toml", format!("{config}\n[admin]\nlisten = \"127.0.0.1:0\"\n"));
    let server = site.start();
    let got = h3(&site, &server, "alice.test", &[], &["/index.html"]);
    assert_eq!(got[0]["status"], 200, "served after the Retry round trip: {}", got[0]);
    install_crypto_provider();
    let metrics = reqwest::get(server.admin_url("/metrics")).await.unwrap().text().await.unwrap();
    for (result, count) in [("retry", 1), ("ok", 1)] {
        let line = format!("palisade_quic_connections_total{{result=\"{result}\"}} {count}");
        assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    }
}

#[tokio::test]
async fn http3_refuses_connection_specific_fields() {
    let ca = TestCa::new();
    let site = h3_site(&ca, "http://127.0.0.1:9");
    let server = site.start();
    for (field, status) in
        [("connection:close", 400), ("transfer-encoding:chunked", 400), ("te:gzip", 400), ("te:trailers", 200)]
    {
        let got = h3(&site, &server, "alice.test", &["--header", field], &["/index.html"]);
        assert_eq!(got[0]["status"], status, "{field}: {}", got[0]);
    }
}
