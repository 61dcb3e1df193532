//! CGI/1.1 programs: meta-variables, request body, response parsing, and the private /data directory.

use crate::{HOSTS, two_tenants};

fn var<'a>(env: &'a str, name: &str) -> Option<&'a str> {
    env.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
}

#[tokio::test]
async fn meta_variables() {
    let site = two_tenants();
    let server = site.start();
    let client = server.client(HOSTS);
    let r = client
        .post(server.url("alice.localhost", "/cgi-bin/probe/env?a=1&b=two"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-custom-header", "v1")
        .header("proxy", "http://attacker.invalid")
        .body("k=v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let env = r.text().await.unwrap();
    let port = server.addr.port().to_string();
    for (name, want) in [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", "POST"),
        ("SCRIPT_NAME", "/cgi-bin/probe"),
        ("PATH_INFO", "/env"),
        ("QUERY_STRING", "a=1&b=two"),
        ("CONTENT_TYPE", "application/x-www-form-urlencoded"),
        ("CONTENT_LENGTH", "3"),
        ("SERVER_NAME", "alice.localhost"),
        ("SERVER_PORT", port.as_str()),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("HTTP_X_CUSTOM_HEADER", "v1"),
        ("GREETING", "hi-alice"),
    ] {
        assert_eq!(var(&env, name), Some(want), "{name} in:\n{env}");
    }
    assert_eq!(var(&env, "HTTP_PROXY"), None, "httpoxy: the Proxy header must not become HTTP_PROXY");
}

#[tokio::test]
async fn post_body_on_stdin() {
    let site = two_tenants();
    let server = site.start();
    let client = server.client(HOSTS);
    let body = "x".repeat(100_000) + "end";
    let r = client.post(server.url("alice.localhost", "/cgi-bin/probe/body")).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), body);
}

#[tokio::test]
async fn status_location_and_exit_code() {
    let site = two_tenants();
    let server = site.start();
    let client = server.client(HOSTS);
    let r = client.get(server.url("alice.localhost", "/cgi-bin/probe/status")).send().await.unwrap();
    assert_eq!(r.status(), 418);
    assert_eq!(r.headers()["x-probe"], "status");
    assert_eq!(r.text().await.unwrap(), "short and stout\n");

    let r = client.get(server.url("alice.localhost", "/cgi-bin/probe/redirect")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/elsewhere");

    // A non-zero exit after a valid response still serves the response.
    let r = client.get(server.url("alice.localhost", "/cgi-bin/probe/exit3")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "partial success\n");
}

#[tokio::test]
async fn malformed_output_is_502() {
    let site = two_tenants();
    let server = site.start();
    let client = server.client(HOSTS);
    let r = client.get(server.url("alice.localhost", "/cgi-bin/probe/malformed")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let body = r.text().await.unwrap();
    assert!(body.contains("malformed CGI response"), "{body}");
    assert!(!body.contains("this is not a CGI response"), "guest output must not leak to the client");
    assert!(server.log_contains("malformed CGI response: no blank line after the headers"), "reason is logged");
}

#[tokio::test]
async fn data_directory_is_private_and_persistent() {
    let site = two_tenants();
    // A symlink planted in alice's data dir that points outside it.
    std::os::unix::fs::symlink("/etc", site.path("tenants/alice/link-out")).unwrap();
    let server = site.start();
    let client = server.client(HOSTS);

    let r = client.get(server.url("alice.localhost", "/cgi-bin/probe/data-write?alice-note")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "written\n");
    assert_eq!(std::fs::read_to_string(site.path("tenants/alice/note.txt")).unwrap(), "alice-note");
    let r = client.get(server.url("alice.localhost", "/cgi-bin/probe/data-read")).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("OPENED /data/note.txt: alice-note"));

    // bob's program sees bob's directory, not alice's file.
    let r = client.get(server.url("bob.localhost", "/cgi-bin/probe/data-read")).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("denied /data/note.txt"));

    // /etc/passwd, `..` out of /data, a relative path, the planted symlink, and bob's secret by its host path.
    let bobs_secret = site.path("tenants/bob/secret.txt");
    let url = server.url("alice.localhost", &format!("/cgi-bin/probe/escape?{}", bobs_secret.display()));
    let report = client.get(url).send().await.unwrap().text().await.unwrap();
    assert!(!report.contains("OPENED"), "nothing outside /data may open:\n{report}");
    assert!(!report.contains("bob's secret"), "{report}");
    assert_eq!(report.matches("denied").count(), 6, "{report}");
}
