//! HTTPS: a certificate per tenant by SNI, ALPN, 421, HSTS and redirects, resumption, reload, broken certificates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::harness::{Running, Site, TestCa, install_crypto_provider};

/// alice (`alice.test`, `*.alice.test`; HSTS, redirect) and bob (`bob.test`), each with a certificate from `ca`.
fn https_site(ca: &TestCa) -> Site {
    let site = Site::new();
    site.write("www/alice/index.html", "alice over https\n");
    site.write("www/bob/index.html", "bob over https\n");
    let (cert, key) = ca.leaf(&["alice.test", "*.alice.test"]);
    site.write("certs/alice.pem", cert);
    site.write("certs/alice.key", key);
    let (cert, key) = ca.leaf(&["bob.test"]);
    site.write("certs/bob.pem", cert);
    site.write("certs/bob.key", key);
    let cgi = site.guest("probe-cgi.wasm");
    let cache = site.path("data").display().to_string();
    site.config_with(
        &format!("listen = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\ndata_dir = {cache:?}"),
        &format!(
            r#"
[tenants.alice]
hosts = ["alice.test", "*.alice.test"]
tls = {{ cert = "certs/alice.pem", key = "certs/alice.key" }}
hsts = "max-age=63072000; includeSubDomains"
https_redirect = true

[[tenants.alice.routes]]
path = "/"
static = "www/alice"

[tenants.bob]
hosts = ["bob.test"]
tls = {{ cert = "certs/bob.pem", key = "certs/bob.key" }}

[[tenants.bob.routes]]
path = "/"
static = "www/bob"

[[tenants.bob.routes]]
path = "/cgi-bin/probe"
cgi = "{cgi}"
"#
        ),
    );
    site
}

/// A rustls client trusting `ca_pem`, offering `alpn`, optionally only TLS 1.2.
fn connector(ca_pem: &str, alpn: &[&[u8]], tls12_only: bool) -> TlsConnector {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let builder = if tls12_only {
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        rustls::ClientConfig::builder()
    };
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn handshake(connector: &TlsConnector, addr: SocketAddr, name: &str) -> std::io::Result<Tls> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    connector.connect(ServerName::try_from(name.to_string()).unwrap(), tcp).await
}

/// The leaf certificate the server presents for `name`.
async fn served_leaf(server: &Running, ca_pem: &str, name: &str) -> Vec<u8> {
    let tls = handshake(&connector(ca_pem, &[], false), server.tls_addr(), name).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// One HTTP/1.1 request with `host` over a TLS connection opened for `sni`; the whole response.
async fn raw_over_tls(server: &Running, ca_pem: &str, sni: &str, host: &str) -> String {
    let mut tls = handshake(&connector(ca_pem, &[b"http/1.1"], false), server.tls_addr(), sni).await.unwrap();
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn sni_picks_each_tenants_certificate() {
    let ca = TestCa::new();
    let site = https_site(&ca);
    let server = site.start();
    let client = server.https_client(&["alice.test", "www.alice.test", "bob.test"], &ca.pem);
    // The client verifies the certificate against the name: a wrong certificate would fail the request.
    for (host, body) in [("alice.test", "alice"), ("www.alice.test", "alice"), ("bob.test", "bob")] {
        let r = client.get(server.https_url(host, "/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{host}");
        assert_eq!(r.text().await.unwrap(), format!("{body} over https\n"));
    }
    // A name no tenant has: the handshake is refused with unrecognized_name.
    let err = handshake(&connector(&ca.pem, &[], false), server.tls_addr(), "carol.test").await.unwrap_err();
    assert!(format!("{err:?}").contains("UnrecognisedName"), "{err:?}");
    // A wildcard covers one label only, like the certificate.
    let err = handshake(&connector(&ca.pem, &[], false), server.tls_addr(), "a.b.alice.test").await.unwrap_err();
    assert!(format!("{err:?}").contains("UnrecognisedName"), "{err:?}");
}

#[tokio::test]
async fn alpn_offers_h2_and_http11() {
    let ca = TestCa::new();
    let site = https_site(&ca);
    let server = site.start();
    let addr = server.tls_addr();
    let negotiated = |alpn: &'static [&'static [u8]]| {
        let c = connector(&ca.pem, alpn, false);
        async move { handshake(&c, addr, "alice.test").await.unwrap().get_ref().1.alpn_protocol().map(<[u8]>::to_vec) }
    };
    assert_eq!(negotiated(&[b"h2", b"http/1.1"]).await.as_deref(), Some(&b"h2"[..]));
    assert_eq!(negotiated(&[b"http/1.1"]).await.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(negotiated(&[]).await, None);

    // Where ALPN chose h2, HTTP/2 is all that is spoken (RFC 9113 section 3.3): an HTTP/1.1 request there
    // is an invalid connection preface, and the connection ends after the server's SETTINGS, unanswered.
    let mut tls = handshake(&connector(&ca.pem, &[b"h2"], false), addr, "alice.test").await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: alice.test\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read_to_end(&mut out)).await.expect("closed");
    assert_eq!(out.get(3), Some(&4), "a SETTINGS frame first: {out:?}");
    assert!(!String::from_utf8_lossy(&out).contains("HTTP/1.1"), "no HTTP/1.1 answer: {out:?}");

    // Real clients: curl over HTTP/2 and HTTP/1.1.
    site.write("ca.pem", &ca.pem);
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = std::process::Command::new("curl")
            .args(["-sS", flag, "--cacert", "ca.pem", "-w", "%{http_version} %{http_code}", "-o", "/dev/null"])
            .args(["--resolve", &format!("bob.test:{}:127.0.0.1", addr.port())])
            .arg(server.https_url("bob.test", "/"))
            .current_dir(site.dir.path())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{version} 200"), "{out:?}");
    }
    // An HTTP/2 request, and the scheme a guest sees is https (http on the plain listener).
    let h2 = server.https_client(&["bob.test"], &ca.pem);
    let r = h2.get(server.https_url("bob.test", "/cgi-bin/probe/env")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let env = r.text().await.unwrap();
    assert!(env.contains("\nHTTPS=on\n") && env.contains("\nREQUEST_SCHEME=https\n"), "{env}");
    let plain = server.client(&["bob.test"]);
    let env = plain.get(server.url("bob.test", "/cgi-bin/probe/env")).send().await.unwrap().text().await.unwrap();
    assert!(!env.contains("HTTPS=") && env.contains("\nREQUEST_SCHEME=http\n"), "{env}");
}

#[tokio::test]
async fn host_that_is_not_the_sni_name_gets_421() {
    let ca = TestCa::new();
    let site = https_site(&ca);
    let server = site.start();
    let ok = raw_over_tls(&server, &ca.pem, "alice.test", "alice.test").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let misdirected = raw_over_tls(&server, &ca.pem, "alice.test", "bob.test").await;
    assert!(misdirected.starts_with("HTTP/1.1 421"), "{misdirected}");
    assert!(misdirected.contains("another host"), "{misdirected}");
    // Case and a port in Host do not matter.
    let ok = raw_over_tls(&server, &ca.pem, "alice.test", "ALICE.test:443").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[tokio::test]
async fn hsts_and_redirect_per_tenant() {
    let ca = TestCa::new();
    let site = https_site(&ca);
    let server = site.start();
    let https = server.https_client(&["alice.test", "bob.test"], &ca.pem);
    let alice = https.get(server.https_url("alice.test", "/")).send().await.unwrap();
    assert_eq!(alice.headers()["strict-transport-security"], "max-age=63072000; includeSubDomains");
    let bob = https.get(server.https_url("bob.test", "/")).send().await.unwrap();
    assert!(bob.headers().get("strict-transport-security").is_none());

    // Plain HTTP: alice redirects to the same path and query on HTTPS, without HSTS; bob is served.
    let plain = server.client(&["alice.test", "bob.test"]);
    let r = plain.post(server.url("alice.test", "/a/b?x=1")).send().await.unwrap();
    assert_eq!(r.status(), 308);
    let port = server.tls_addr().port();
    assert_eq!(r.headers()["location"], format!("https://alice.test:{port}/a/b?x=1").as_str());
    assert!(r.headers().get("strict-transport-security").is_none());
    let r = plain.get(server.url("bob.test", "/")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "bob over https\n");
}

#[tokio::test]
async fn sessions_resume_with_tls13_and_tls12() {
    let ca = TestCa::new();
    let site = https_site(&ca);
    let server = site.start();
    for tls12_only in [false, true] {
        // One client config: its session cache carries the ticket or session ID to the second handshake.
        let c = connector(&ca.pem, &[], tls12_only);
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let mut tls = handshake(&c, server.tls_addr(), "bob.test").await.unwrap();
            // TLS 1.3 tickets arrive after the handshake: exchange a request so the client reads them.
            tls.write_all(b"GET / HTTP/1.1\r\nHost: bob.test\r\nConnection: close\r\n\r\n").await.unwrap();
            let mut out = Vec::new();
            let _ = tls.read_to_end(&mut out).await;
            let conn = tls.get_ref().1;
            kinds.push((conn.protocol_version(), conn.handshake_kind()));
        }
        let version = if tls12_only { rustls::ProtocolVersion::TLSv1_2 } else { rustls::ProtocolVersion::TLSv1_3 };
        assert_eq!(kinds[0], (Some(version), Some(rustls::HandshakeKind::Full)), "tls12_only={tls12_only}");
        assert_eq!(kinds[1], (Some(version), Some(rustls::HandshakeKind::Resumed)), "tls12_only={tls12_only}");
    }
}

#[tokio::test]
async fn certificate_reload_under_load_fails_no_request() {
    let ca = TestCa::new();
    let site = https_site(&ca);
    let server = site.start();
    let before = served_leaf(&server, &ca.pem, "bob.test").await;

    // Clients making a new connection (a full handshake) per request, for the whole test.
    let client = server.https_client(&["bob.test"], &ca.pem);
    let url = server.https_url("bob.test", "/");
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop = Instant::now() + Duration::from_secs(6);
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, url, ok, failed) = (client.clone(), url.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let body = match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => r.text().await.ok(),
                    _ => None,
                };
                let counter = if body.as_deref() == Some("bob over https\n") { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Replace the certificate three times while they run: twice by rewriting the files, once with SIGHUP.
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (cert, key) = ca.leaf(&["bob.test"]);
        let tmp_key = site.write("certs/bob.key.new", key);
        let tmp_cert = site.write("certs/bob.pem.new", cert);
        std::fs::rename(tmp_key, site.path("certs/bob.key")).unwrap();
        std::fs::rename(tmp_cert, site.path("certs/bob.pem")).unwrap();
        if round == 2 {
            server.signal("HUP");
        }
    }
    for l in load {
        l.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed during reloads");
    assert!(ok.load(Ordering::Relaxed) > 20, "too few requests to prove anything");
    assert!(server.log_contains("certificate reloaded"));
    let expected = std::fs::read(site.path("certs/bob.pem")).unwrap();
    let expected = CertificateDer::from_pem_slice(&expected).unwrap().to_vec();
    assert_ne!(before, expected);
    assert_eq!(served_leaf(&server, &ca.pem, "bob.test").await, expected, "the newest certificate is served");
}

#[tokio::test]
async fn broken_certificate_is_refused_and_the_old_one_keeps_serving() {
    let ca = TestCa::new();
    let site = https_site(&ca);
    let server = site.start();
    let before = served_leaf(&server, &ca.pem, "bob.test").await;

    site.write("certs/bob.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
    assert!(server.log_contains("certificate not reloaded, the previous one stays in use"));
    assert!(server.log_contains("bob.pem"));
    assert_eq!(served_leaf(&server, &ca.pem, "bob.test").await, before);

    // A valid certificate with someone else's key.
    let (cert, _) = ca.leaf(&["bob.test"]);
    site.write("certs/bob.pem", cert);
    assert!(server.log_contains("does not belong to the certificate"));
    // A valid certificate for names bob does not serve.
    let (cert, key) = ca.leaf(&["mallory.test"]);
    site.write("certs/bob.key", key);
    site.write("certs/bob.pem", cert);
    assert!(server.log_contains("does not cover host bob.test"));
    server.signal("HUP");
    assert_eq!(server.log_count("does not cover host bob.test", 2), 2, "SIGHUP refuses it again");
    assert_eq!(served_leaf(&server, &ca.pem, "bob.test").await, before);
    let client = server.https_client(&["bob.test"], &ca.pem);
    assert_eq!(client.get(server.https_url("bob.test", "/")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn check_validates_certificates() {
    let ca = TestCa::new();
    let site = https_site(&ca);
    let (code, out, err) = site.run(&["check", "--config", "palisade.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tls_listen: https://127.0.0.1:0"), "{out}");
    assert!(out.contains("tls: certificate for alice.test, *.alice.test, valid until"), "{out}");

    // Expired: served (and warned about), not refused.
    let (cert, key) = ca.leaf_until(&["bob.test"], Some((2020, 1, 1)));
    site.write("certs/bob.pem", cert);
    site.write("certs/bob.key", key);
    let (code, out, err) = site.run(&["check", "--config", "palisade.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("warning: EXPIRED"), "{out}");

    // Names that do not cover the hosts, a key that does not match, a file that is not PEM: refused, with
    // the config line and the file named.
    let line = site.line_of("tls = { cert = \"certs/bob.pem\"");
    let (cert, key) = ca.leaf(&["bob.example"]);
    site.write("certs/bob.pem", cert);
    site.write("certs/bob.key", key);
    let (code, _, err) = site.run(&["check", "--config", "palisade.toml"]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("palisade.toml:{line}:")), "{err}");
    assert!(err.contains("bob.pem: the certificate (for bob.example) does not cover host bob.test"), "{err}");

    let (cert, _) = ca.leaf(&["bob.test"]);
    site.write("certs/bob.pem", cert);
    let (code, _, err) = site.run(&["check", "--config", "palisade.toml"]);
    assert_ne!(code, 0);
    assert!(err.contains("bob.key does not belong to the certificate in"), "{err}");

    site.write("certs/bob.key", "hello");
    let (code, _, err) = site.run(&["check", "--config", "palisade.toml"]);
    assert_ne!(code, 0);
    assert!(err.contains("bob.key: no PKCS#8, RSA or EC private key found"), "{err}");
}

#[tokio::test]
async fn https_configuration_errors_name_the_line() {
    let site = Site::new();
    site.write("www/index.html", "x");
    site.config_with(
        "listen = [\"127.0.0.1:0\"]",
        r#"
[tenants.alice]
hosts = ["alice.test"]
tls = { cert = "missing.pem", key = "missing.key" }
hsts = "max-age=soon"
[[tenants.alice.routes]]
path = "/"
static = "www"

[tenants.bob]
hosts = ["bob.test", "*.bob.test"]
acme = { directory = "http://ca.test/dir" }
https_redirect = true
[[tenants.bob.routes]]
path = "/"
static = "www"

[tenants.carol]
hosts = ["carol.test"]
https_redirect = true # carol
[[tenants.carol.routes]]
path = "/"
static = "www"

[tenants.dave]
hosts = ["dave.test"]
tls = { cert = "dave.pem", key_pem = "-----BEGIN PRIVATE KEY-----" }
"#,
    );
    let (code, _, err) = site.run(&["check", "--config", "palisade.toml"]);
    assert_ne!(code, 0);
    for expected in [
        format!("palisade.toml:{}:", site.line_of("missing.pem")),
        "has a certificate but [server] has no `tls_listen` address".into(),
        "`tls.cert`: file".into(),
        "`hsts`: \"max-age=soon\" is not a Strict-Transport-Security value".into(),
        "`acme.directory` must be an https:// URL".into(),
        "`acme` cannot get a certificate for host *.bob.test".into(),
        format!("palisade.toml:{}:", site.line_of("https_redirect = true # carol")),
        "`https_redirect` needs HTTPS".into(),
        format!("palisade.toml:{}:", site.line_of("key_pem = ")),
        "`tls` needs `cert` and `key` (files)".into(),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
}

/// The DER of the first certificate in `pem`.
fn leaf_der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
}

#[tokio::test]
async fn tenants_created_through_the_api_bring_their_certificate_as_pem() {
    use reqwest::Method;
    use serde_json::json;

    use crate::tenants::{TOKEN, operator, put_tenant};

    let ca = TestCa::new();
    let site = Site::new();
    site.write("admin.token", format!("{TOKEN}\n"));
    let data = site.path("data").display().to_string();
    site.write(
        "palisade.toml",
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\ndata_dir = {data:?}\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n"
        ),
    );
    let server = site.start();
    let (cert, key) = ca.leaf(&["shop.test"]);
    let tls = |cert: &str, key: &str| json!({"cert_pem": cert, "key_pem": key});

    // Refusals, each naming its key: files on the server, a certificate for other names, someone else's key.
    let (status, answer) = put_tenant(
        &server,
        "shop",
        json!({"hosts": ["shop.test"], "tls": {"cert": "/etc/a.pem", "key": "/etc/a.key"}}),
    )
    .await;
    assert_eq!((status, answer["problems"][0]["key"].as_str()), (422, Some("tls.cert")), "{answer}");
    let (other_cert, other_key) = ca.leaf(&["other.test"]);
    let (status, answer) =
        put_tenant(&server, "shop", json!({"hosts": ["shop.test"], "tls": tls(&other_cert, &other_key)})).await;
    assert_eq!((status, answer["problems"][0]["key"].as_str()), (422, Some("tls")), "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("does not cover host shop.test"), "{answer}");
    let (status, answer) =
        put_tenant(&server, "shop", json!({"hosts": ["shop.test"], "tls": tls(&cert, &other_key)})).await;
    assert_eq!(status, 422, "{answer}");

    let (status, answer) = put_tenant(&server, "shop", json!({"hosts": ["shop.test"], "tls": tls(&cert, &key)})).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["certificate"], true, "{answer}");
    assert_eq!(answer["certificates"][0]["names"], json!(["shop.test"]), "{answer}");
    assert!(answer["certificates"][0]["days_left"].as_u64().unwrap() > 0, "{answer}");
    assert_eq!(answer["spec"]["tls"]["key_pem"], "(hidden)", "the key is never sent back: {answer}");
    assert_eq!(served_leaf(&server, &ca.pem, "shop.test").await, leaf_der(&cert), "served at once");
    let stored = std::fs::metadata(site.path("data/tenants/shop.json")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&stored.permissions()) & 0o777, 0o600, "owner only");

    // A new certificate with new hosts replaces it from the next handshake on.
    let (cert2, key2) = ca.leaf(&["shop.test", "www.shop.test"]);
    let spec = json!({"hosts": ["shop.test", "www.shop.test"], "tls": tls(&cert2, &key2)});
    assert_eq!(put_tenant(&server, "shop", spec).await.0, 200);
    assert_eq!(served_leaf(&server, &ca.pem, "www.shop.test").await, leaf_der(&cert2));
    let client = server.https_client(&["www.shop.test"], &ca.pem);
    assert_eq!(client.get(server.https_url("www.shop.test", "/")).send().await.unwrap().status(), 404, "no routes yet");

    // Removed: its names get no certificate.
    assert_eq!(operator(&server, Method::DELETE, "/v1/tenants/shop", Vec::new()).await.0, 200);
    let refused = handshake(&connector(&ca.pem, &[], false), server.tls_addr(), "shop.test").await;
    assert!(refused.is_err(), "no certificate for a removed tenant's host");
}
