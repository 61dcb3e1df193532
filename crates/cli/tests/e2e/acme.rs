//! ACME against a real ACME server: pebble (with its DNS stub pointing every name at loopback), started here,
//! for tenants of the file and tenants created through the admin API.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::harness::{Running, Site, TestCa, install_crypto_provider};
use crate::tenants::{TOKEN, operator, put_tenant};

/// Certificates pebble issues live this long, so that renewal (at a third of the lifetime left) happens
/// within the test.
const VALIDITY_SECS: u64 = 24;

/// pebble and its DNS stub, killed on drop.
struct Pebble {
    children: Vec<Child>,
    /// The ACME directory URL.
    directory: String,
    /// pebble's management API (the issuing root is at `/roots/0`).
    management: String,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_listening(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`, its own HTTPS listener
/// certified by `ca` (files written into `site`).
fn start_pebble(site: &Site, ca: &TestCa, http_port: u16, tls_port: u16) -> Pebble {
    let (cert, key) = ca.leaf(&["127.0.0.1", "localhost"]);
    site.write("pebble/cert.pem", cert);
    site.write("pebble/key.pem", key);
    let (listen, management, dns, dns_management) = (free_port(), free_port(), free_port(), free_port());
    let config = format!(
        r#"{{"pebble": {{"listenAddress": "127.0.0.1:{listen}", "managementListenAddress": "127.0.0.1:{management}",
            "certificate": "cert.pem", "privateKey": "key.pem", "httpPort": {http_port}, "tlsPort": {tls_port},
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
            "certificateValidityPeriod": {VALIDITY_SECS}}}}}"#
    );
    site.write("pebble/pebble.json", config);
    let log = |name: &str| Stdio::from(std::fs::File::create(site.path(&format!("pebble/{name}.log"))).unwrap());
    let dns_stub = Command::new("pebble-challtestsrv")
        .args(["-dns01", &format!("127.0.0.1:{dns}"), "-management", &format!("127.0.0.1:{dns_management}")])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv6", "", "-defaultIPv4", "127.0.0.1"])
        .stdout(log("challtestsrv"))
        .stderr(Stdio::null())
        .spawn()
        .expect("pebble-challtestsrv (Debian package pebble; scripts/setup.sh installs it)");
    let pebble = Command::new("pebble")
        .args(["-config", "pebble.json", "-dnsserver", &format!("127.0.0.1:{dns}")])
        .current_dir(site.path("pebble"))
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(log("pebble"))
        .stderr(Stdio::null())
        .spawn()
        .expect("pebble (Debian package pebble; scripts/setup.sh installs it)");
    let pebble = Pebble {
        children: vec![dns_stub, pebble],
        directory: format!("https://127.0.0.1:{listen}/dir"),
        management: format!("https://127.0.0.1:{management}"),
    };
    wait_listening(listen);
    wait_listening(management);
    wait_listening(dns_management);
    pebble
}

/// Waits up to `limit` for `needle` to appear `count` times in the log.
fn wait_for_log(server: &Running, needle: &str, count: usize, limit: Duration) -> usize {
    let start = Instant::now();
    loop {
        let seen = server.log().matches(needle).count();
        if seen >= count || start.elapsed() > limit {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn certificates_are_obtained_renewed_and_stored() {
    let ca = TestCa::new();
    let site = Site::new();
    site.write("www/index.html", "hello from acme\n");
    site.write("pebble/ca.pem", &ca.pem);
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = start_pebble(&site, &ca, http_port, tls_port);
    let directory = &pebble.directory;
    site.config_with(
        &format!("listen = [\"127.0.0.1:{http_port}\"]\ntls_listen = [\"127.0.0.1:{tls_port}\"]\ndata_dir = \"data\""),
        &format!(
            r#"
[tenants.alice]
hosts = ["alice.test"]
acme = {{ directory = "{directory}", email = "ops@alice.test", ca = "pebble/ca.pem" }}
hsts = true

[[tenants.alice.routes]]
path = "/"
static = "www"

[tenants.bob]
hosts = ["bob.test", "www.bob.test"]
acme = {{ directory = "{directory}", challenge = "http-01", ca = "pebble/ca.pem" }}

[[tenants.bob.routes]]
path = "/"
static = "www"
"#
        ),
    );
    let mut server = site.start();
    let obtained = "ACME certificate obtained";
    assert_eq!(wait_for_log(&server, obtained, 2, Duration::from_secs(60)), 2, "both tenants get certificates");
    assert!(server.log_contains("answered an ACME TLS-ALPN-01 validation"), "alice used TLS-ALPN-01");
    assert!(server.log_contains("answered an ACME HTTP-01 validation"), "bob used HTTP-01");

    // The certificates chain to pebble's root and cover each tenant's names.
    let root = pebble_root(&pebble, &ca).await;
    let client = server.https_client(&["alice.test", "bob.test", "www.bob.test"], &root);
    for host in ["alice.test", "bob.test", "www.bob.test"] {
        let r = client.get(server.https_url(host, "/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{host}");
        assert_eq!(r.text().await.unwrap(), "hello from acme\n");
    }
    for file in ["account.json", "cert.pem", "key.pem"] {
        assert!(site.path(&format!("data/acme/alice/{file}")).exists(), "{file} stored");
    }

    // Renewal: a third of the lifetime before expiry, each tenant gets a new certificate.
    let renew_by = Duration::from_secs(VALIDITY_SECS * 2);
    assert!(wait_for_log(&server, obtained, 4, renew_by) >= 4, "certificates renewed");
    let r = client.get(server.https_url("alice.test", "/")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // A restart serves the stored certificate at once, without waiting for the CA.
    assert_eq!(server.terminate(Duration::from_secs(10)), Some(0));
    let server = site.start();
    assert!(server.log_contains("stored ACME certificate installed"));
    let client = server.https_client(&["bob.test"], &root);
    assert_eq!(client.get(server.https_url("bob.test", "/")).send().await.unwrap().status(), 200);
}

/// pebble's issuing root, which the certificates it issues chain to.
async fn pebble_root(pebble: &Pebble, ca: &TestCa) -> String {
    install_crypto_provider();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    client.get(format!("{}/roots/0", pebble.management)).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn tenants_created_through_the_api_get_certificates_and_lose_them_when_removed() {
    let ca = TestCa::new();
    let site = Site::new();
    site.write("pebble/ca.pem", &ca.pem);
    site.write("admin.token", format!("{TOKEN}\n"));
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = start_pebble(&site, &ca, http_port, tls_port);
    let directory = pebble.directory.clone();
    // No tenant of the file has a certificate: with [admin], the HTTPS listener is there for the API's.
    site.write(
        "palisade.toml",
        format!(
            "[server]\nlisten = [\"127.0.0.1:{http_port}\"]\ntls_listen = [\"127.0.0.1:{tls_port}\"]\ndata_dir = \"data\"\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\nacme_ca = \"pebble/ca.pem\"\n"
        ),
    );
    let server = site.start();
    let root = pebble_root(&pebble, &ca).await;

    // A tenant may not name a CA file on the server.
    let acme = json!({"directory": directory, "email": "ops@shop.test", "ca": "/etc/ssl/certs/ca-certificates.crt"});
    let (status, answer) = put_tenant(&server, "shop", json!({"hosts": ["shop.test"], "acme": acme})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["problems"][0]["key"], "acme.ca", "{answer}");

    let acme = json!({"directory": directory, "email": "ops@shop.test"});
    let (status, answer) = put_tenant(&server, "shop", json!({"hosts": ["shop.test"], "acme": acme})).await;
    assert_eq!(status, 201, "{answer}");
    let obtained = "ACME certificate obtained";
    assert_eq!(wait_for_log(&server, obtained, 1, Duration::from_secs(60)), 1, "the API tenant gets a certificate");
    let (_, shown) = operator(&server, Method::GET, "/v1/tenants/shop", Vec::new()).await;
    assert_eq!(shown["certificate"], true, "{shown}");
    // Served over HTTPS (404: a tenant created through the API has no routes until it deploys an app).
    let client = server.https_client(&["shop.test", "www.shop.test"], &root);
    let r = client.get(server.https_url("shop.test", "/")).send().await.expect("a handshake with the certificate");
    assert_eq!(r.status(), 404);
    assert!(site.path("data/acme/shop/cert.pem").exists());

    // New hosts: a certificate for them is ordered, while the current one keeps serving the old host.
    let spec = json!({"hosts": ["shop.test", "www.shop.test"], "acme": acme});
    assert_eq!(put_tenant(&server, "shop", spec).await.0, 200);
    assert_eq!(client.get(server.https_url("shop.test", "/")).send().await.unwrap().status(), 404);
    assert_eq!(wait_for_log(&server, obtained, 2, Duration::from_secs(60)), 2, "a certificate for the new hosts");
    assert_eq!(client.get(server.https_url("www.shop.test", "/")).send().await.unwrap().status(), 404);

    // A restart serves the stored certificate at once.
    drop(server);
    let server = site.start();
    assert!(server.log_contains("stored ACME certificate installed"), "{}", server.log());
    let client = server.https_client(&["shop.test", "www.shop.test"], &root);
    assert_eq!(client.get(server.https_url("www.shop.test", "/")).send().await.unwrap().status(), 404);

    // Removed: no certificate for its names from the next handshake on, and none stored.
    let (status, answer) = operator(&server, Method::DELETE, "/v1/tenants/shop", Vec::new()).await;
    assert_eq!(status, 200, "{answer}");
    let refused = client.get(server.https_url("shop.test", "/")).send().await;
    assert!(refused.is_err(), "no certificate for a removed tenant's host: {refused:?}");
    assert!(!site.path("data/acme/shop").exists(), "its account and certificate are deleted");
}

/// A cluster's nodes answer the CA for each other: pebble validates only through node A's ports, and node B
/// still gets its certificates, because its challenge answers reach A through Redis.
#[tokio::test]
async fn cluster_nodes_answer_each_others_challenges() {
    let ca = TestCa::new();
    let redis = palisade_kv::test_support::RedisServer::start();
    let (a, b) = (Site::new(), Site::new());
    let (a_http, a_tls) = (free_port(), free_port());
    let pebble = start_pebble(&a, &ca, a_http, a_tls);
    let directory = &pebble.directory;
    for (node, http, tls) in [(&a, a_http, a_tls), (&b, free_port(), free_port())] {
        node.write("www/index.html", "hello from the cluster\n");
        node.write("pebble/ca.pem", &ca.pem);
        node.write(
            "palisade.toml",
            format!(
                r#"[server]
listen = ["127.0.0.1:{http}"]
tls_listen = ["127.0.0.1:{tls}"]
data_dir = "data"
shutdown_timeout = "5s"

[cluster]
redis = "{redis}"

[tenants.alice]
hosts = ["alice.test"]
acme = {{ directory = "{directory}", ca = "pebble/ca.pem" }}

[[tenants.alice.routes]]
path = "/"
static = "www"

[tenants.bob]
hosts = ["bob.test"]
acme = {{ directory = "{directory}", challenge = "http-01", ca = "pebble/ca.pem" }}

[[tenants.bob.routes]]
path = "/"
static = "www"
"#,
                redis = redis.url()
            ),
        );
    }
    let node_a = a.start();
    let node_b = b.start();
    let obtained = "ACME certificate obtained";
    for (name, node) in [("A", &node_a), ("B", &node_b)] {
        assert!(wait_for_log(node, obtained, 2, Duration::from_secs(90)) >= 2, "node {name}:\n{}", node.log());
    }
    // B's validations were answered by A, both kinds.
    assert!(!node_b.log().contains("answered an ACME"), "pebble never reaches B:\n{}", node_b.log());
    assert!(wait_for_log(&node_a, "answered an ACME HTTP-01 validation", 2, Duration::from_secs(5)) >= 2);
    assert!(wait_for_log(&node_a, "answered an ACME TLS-ALPN-01 validation", 2, Duration::from_secs(5)) >= 2);
    let root = pebble_root(&pebble, &ca).await;
    let client = node_b.https_client(&["alice.test", "bob.test"], &root);
    for host in ["alice.test", "bob.test"] {
        let r = client.get(node_b.https_url(host, "/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{host} on node B");
    }
}
