//! Operating palisade: the admin API (tokens, deploys swapped in under load with zero failed requests,
//! refusals that change nothing, reload), metrics, access logs, health, apps kept across restarts, and two
//! nodes sharing apps and key-value data through a real redis-server, through its restart, and through a
//! Sentinel failover.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use palisade_kv::test_support::{RedisServer, SentinelSet};
use serde_json::Value;

use crate::harness::{Running, Site, guest, install_crypto_provider};

const TOKEN: &str = "test-admin-token-0123456789";
const V1: &str = "hello from a wasi:http component!";

/// A site with its own data directory (deployed apps live there), an admin listener with a token, and
/// tenant alice: a static `/`, and `extra` routes or sections after it.
fn admin_site(extra: &str) -> Site {
    let site = Site::new();
    site.write("www/index.html", "alice's static site\n");
    site.write("admin.token", format!("{TOKEN}\n"));
    let data = site.path("data").display().to_string();
    site.write(
        "palisade.toml",
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\ndata_dir = {data:?}\nshutdown_timeout = \"5s\"\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\n\
             [tenants.alice]\nhosts = [\"alice.localhost\"]\n\
             [[tenants.alice.routes]]\npath = \"/\"\nstatic = \"www\"\n{extra}"
        ),
    );
    site
}

/// The admin API of one running server.
struct Admin {
    server_url: String,
    client: reqwest::Client,
}

impl Admin {
    fn of(server: &Running) -> Admin {
        Admin { server_url: server.admin_url(""), client: plain_client() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .client
            .request(method, format!("{}{path}", self.server_url))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .await
            .expect("admin request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("admin answer");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn deploy(&self, tenant: &str, name: &str, query: &str, wasm: &[u8]) -> (u16, Value) {
        self.call(reqwest::Method::PUT, &format!("/v1/tenants/{tenant}/apps/{name}{query}"), wasm.to_vec()).await
    }

    async fn text(&self, path: &str) -> String {
        let r = self.client.get(format!("{}{path}", self.server_url)).bearer_auth(TOKEN).send().await.expect("get");
        r.text().await.expect("text")
    }
}

/// A client for plain-HTTP URLs.
fn plain_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::new()
}

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(guest(name)).expect("guest")
}

async fn get(server: &Running, path: &str) -> (u16, String) {
    let r = server.client(&["alice.localhost"]).get(server.url("alice.localhost", path)).send().await.expect("get");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// Clients running, the flag that stops them, and what each saw.
type Load = (Arc<AtomicBool>, Vec<tokio::task::JoinHandle<Vec<(u16, String)>>>);

/// Requests `path` on every server from `clients` tasks each, until the returned flag is set; the tasks
/// return every (status, body) they saw.
fn load(servers: &[&Running], path: &str, clients: usize) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for server in servers {
        for _ in 0..clients {
            let (client, url, stop) =
                (server.client(&["alice.localhost"]), server.url("alice.localhost", path), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            seen.push((status, r.text().await.unwrap_or_else(|e| format!("body failed: {e}"))));
                        }
                        Err(e) => seen.push((0, format!("request failed: {e}"))),
                    }
                }
                seen
            }));
        }
    }
    (stop, tasks)
}

/// Stops the load and checks every answer was a 200 with one of `bodies` (a prefix of it); how many answers.
async fn assert_no_failures((stop, tasks): Load, bodies: &[&str]) -> usize {
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for task in tasks {
        for (status, body) in task.await.expect("load task") {
            assert!(status == 200 && bodies.iter().any(|b| body.starts_with(b)), "a failed request: {status} {body:?}");
            total += 1;
        }
    }
    total
}

async fn wait_until<F: Future<Output = bool>>(what: &str, limit: Duration, mut done: impl FnMut() -> F) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most 10 s each) until every node's `/readyz` answers 200.
async fn wait_ready(nodes: &[&Running]) {
    for node in nodes {
        let readyz = node.admin_url("/readyz");
        wait_until("ready", Duration::from_secs(10), || async {
            plain_client().get(readyz.as_str()).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
    }
}

#[tokio::test]
async fn deploys_swap_atomically_under_load_and_refusals_change_nothing() {
    let site = admin_site("");
    let server = site.start();
    let admin = Admin::of(&server);

    // Without the token: 401, and nothing is deployed.
    let r = plain_client()
        .put(admin.server_url.clone() + "/v1/tenants/alice/apps/app")
        .body(wasm("hello.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"));
    assert_eq!(get(&server, "/app/x").await.0, 404);

    let (status, v1) = admin.deploy("alice", "app", "", &wasm("hello.wasm")).await;
    assert_eq!(status, 201, "{v1}");
    assert_eq!((v1["route"].as_str(), v1["tenant"].as_str()), (Some("/app"), Some("alice")));
    let (status, body) = get(&server, "/app/x").await;
    assert_eq!((status, body.starts_with(V1)), (200, true), "{body}");

    // v2 is the CGI hello, at the same route: swapped back and forth under load, no request fails.
    let (_, v2_body) = {
        let (status, record) = admin.deploy("alice", "app", "", &wasm("hello-cgi.wasm")).await;
        assert_eq!(status, 201, "{record}");
        assert!(record["version"].as_u64() > v1["version"].as_u64(), "{record}");
        get(&server, "/app/x").await
    };
    assert!(!v2_body.starts_with(V1), "{v2_body}");
    let v2 = v2_body.lines().next().unwrap_or_default().to_string();
    let traffic = load(&[&server], "/app/x", 6);
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let guest = if round % 2 == 0 { "hello.wasm" } else { "hello-cgi.wasm" };
        let (status, record) = admin.deploy("alice", "app", "", &wasm(guest)).await;
        assert_eq!(status, 201, "{record}");
        // Every request after the deploy answered gets the new version.
        let (_, body) = get(&server, "/app/x").await;
        assert_eq!(body.starts_with(V1), guest == "hello.wasm", "round {round}: {body}");
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let answered = assert_no_failures(traffic, &[V1, &v2]).await;
    assert!(answered > 50, "only {answered} requests during the deploys");

    // Refusals: each says why, and the app served stays the last one deployed (the CGI hello).
    for (tenant, name, query, bytes, want, says) in [
        ("alice", "app", "", b"not wasm at all".to_vec(), 422, "not a WebAssembly binary"),
        ("alice", "app", "", wasm("hello.wasm")[..200].to_vec(), 422, "not a valid WebAssembly component"),
        ("nobody", "app", "", wasm("hello.wasm"), 404, "no tenant"),
        ("alice", "bad.name", "", wasm("hello.wasm"), 400, "app name"),
        ("alice", "root", "?route=/", wasm("hello.wasm"), 409, "in the configuration file"),
        ("alice", "other", "?route=/app", wasm("hello.wasm"), 409, "served by app \"app\""),
        ("alice", "dots", "?route=/a/../b", wasm("hello.wasm"), 400, "'..'"),
    ] {
        let (status, answer) = admin.deploy(tenant, name, query, &bytes).await;
        assert_eq!(status, want, "{tenant}/{name}{query}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| e.contains(says)), "{tenant}/{name}: {answer}");
    }
    assert_eq!(get(&server, "/app/x").await.1.lines().next(), Some(v2.as_str()));
    assert_eq!(get(&server, "/").await, (200, "alice's static site\n".into()));

    // The API lists it; `palisade apps` shows it; removal stops serving it.
    let (status, tenant) = admin.call(reqwest::Method::GET, "/v1/tenants/alice", Vec::new()).await;
    assert_eq!(status, 200);
    assert_eq!(tenant["apps"][0]["name"], "app");
    assert_eq!(tenant["apps"][0]["kind"], "CGI module");
    assert_eq!(tenant["routes"][0]["kind"], "static");
    let token_file = site.path("admin.token");
    let (code, out, err) =
        site.run(&["apps", "--admin", &admin.server_url, "--token-file", token_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("alice") && l.contains("/app") && l.contains("app app")), "{out}");
    let (status, _) = admin.call(reqwest::Method::DELETE, "/v1/tenants/alice/apps/app", Vec::new()).await;
    assert_eq!(status, 200);
    assert_eq!(get(&server, "/app/x").await.0, 404);
    assert_eq!(admin.call(reqwest::Method::DELETE, "/v1/tenants/alice/apps/app", Vec::new()).await.0, 404);
}

#[tokio::test]
async fn deployed_apps_survive_a_restart_and_the_cli_deploys() {
    let site = admin_site("");
    let mut server = site.start();
    let token_file = site.path("admin.token").display().to_string();
    let app = guest("hello.wasm").display().to_string();
    let admin_url = server.admin_url("");
    let deploy = |tenant: &str, name: &str, more: &[&str]| {
        let args = ["deploy", "--admin", &admin_url, "--token-file", &token_file, "--tenant", tenant, "--name", name];
        site.run(&[&args[..], more, &[&app]].concat())
    };
    let (code, out, err) = deploy("alice", "hi", &["--route", "/greet"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("deployed alice/hi version 1 at /greet"), "{out}");
    // A refused deploy exits 1 with the reason.
    let (code, _, err) = deploy("bob", "x", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("404") && err.contains("no tenant \"bob\""), "{err}");
    // A name is a name: it cannot smuggle a query (here, a route) into the request.
    let (code, _, err) = deploy("alice", "x?route=/", &[]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(get(&server, "/").await.1, "alice's static site\n", "nothing was deployed at /");

    assert!(get(&server, "/greet/x").await.1.starts_with(V1));
    assert_eq!(server.terminate(Duration::from_secs(10)), Some(0));
    let server = site.start();
    assert!(get(&server, "/greet/x").await.1.starts_with(V1), "the deployed app is served after a restart");
}

#[tokio::test]
async fn reload_applies_a_changed_config_or_changes_nothing() {
    let site = admin_site("");
    let server = site.start();
    let admin = Admin::of(&server);
    assert_eq!(admin.deploy("alice", "app", "", &wasm("echo-cgi.wasm")).await.0, 201);
    assert!(get(&server, "/app").await.1.starts_with("hello from CGI (no greeting)"));
    assert_eq!(get(&server, "/more/index.html").await.0, 404);
    // A component too: by now every worker holds a warm instance of it, made with the old settings.
    assert_eq!(admin.deploy("alice", "probe", "", &wasm("probe-component.wasm")).await.0, 201);
    for _ in 0..6 {
        assert_eq!(get(&server, "/probe/env").await.1, "(unset)");
    }

    // A new route and new env: applied; the deployed app is kept, bound to the tenant's new settings.
    let config = std::fs::read_to_string(site.path("palisade.toml")).unwrap();
    let extended = config.replace(
        "hosts = [\"alice.localhost\"]\n",
        "hosts = [\"alice.localhost\"]\nenv = { GREETING = \"reloaded\" }\n",
    ) + "[[tenants.alice.routes]]\npath = \"/more\"\nstatic = \"www\"\n";
    site.write("palisade.toml", &extended);
    let (status, answer) = admin.call(reqwest::Method::POST, "/v1/reload", Vec::new()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["restart_needed"], serde_json::json!([]));
    assert_eq!(get(&server, "/more/index.html").await.0, 200);
    let (_, body) = get(&server, "/app").await;
    assert!(body.starts_with("hello from CGI (reloaded)"), "{body}");
    for _ in 0..6 {
        assert_eq!(get(&server, "/probe/env").await.1, "reloaded", "no request is served by an old instance");
    }

    // A broken file: 422 naming the line, and everything stays as it was.
    site.write("palisade.toml", extended.replace("static = \"www\"", "static = \"www\"\nmemory = \"lots\""));
    let (status, answer) = admin.call(reqwest::Method::POST, "/v1/reload", Vec::new()).await;
    assert_eq!(status, 422, "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("palisade.toml:") && error.contains("unknown field"), "{answer}");
    assert_eq!(get(&server, "/more/index.html").await.0, 200);
    assert!(get(&server, "/app").await.1.starts_with("hello from CGI (reloaded)"));

    // SIGHUP reloads too.
    site.write("palisade.toml", &config);
    server.signal("HUP");
    wait_until("SIGHUP removed /more", Duration::from_secs(10), || async {
        get(&server, "/more/index.html").await.0 == 404
    })
    .await;
}

/// A tenant a reload removes keeps its deployed apps on disk, unserved; a reload that brings the tenant back
/// serves them again, as a restart would. A change a reload cannot apply names the line to change.
#[tokio::test]
async fn a_tenant_removed_and_restored_by_reloads_serves_its_apps_again() {
    let bob = "[tenants.bob]\nhosts = [\"bob.localhost\"]\n[[tenants.bob.routes]]\npath = \"/\"\nstatic = \"www\"\n";
    let site = admin_site(bob);
    let server = site.start();
    let admin = Admin::of(&server);
    let bob_get = |path: &str| {
        let (client, url) = (server.client(&["bob.localhost"]), server.url("bob.localhost", path));
        async move {
            let r = client.get(url).send().await.expect("get");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    assert_eq!(admin.deploy("bob", "greet", "", &wasm("hello.wasm")).await.0, 201);
    assert!(bob_get("/greet").await.1.starts_with(V1));

    let with_bob = std::fs::read_to_string(site.path("palisade.toml")).expect("config");
    site.write("palisade.toml", with_bob.replace(bob, ""));
    let (status, answer) = admin.call(reqwest::Method::POST, "/v1/reload", Vec::new()).await;
    assert_eq!((status, &answer["removed_tenants"]), (200, &serde_json::json!(["bob"])), "{answer}");
    assert_eq!(bob_get("/greet").await.0, 404, "bob is gone");

    site.write("palisade.toml", &with_bob);
    let (status, answer) = admin.call(reqwest::Method::POST, "/v1/reload", Vec::new()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(bob_get("/greet").await.1.starts_with(V1), "bob's app is served again");
    let (status, listed) = admin.call(reqwest::Method::GET, "/v1/tenants/bob", Vec::new()).await;
    assert_eq!(status, 200);
    assert!(listed.to_string().contains("greet"), "and listed: {listed}");
    assert_eq!(admin.call(reqwest::Method::DELETE, "/v1/tenants/bob/apps/greet", Vec::new()).await.0, 200);

    site.write("palisade.toml", with_bob.replace("[tenants.bob]\n", "[tenants.bob]\nmemory = \"2 GiB\"\n"));
    let (status, answer) = admin.call(reqwest::Method::POST, "/v1/reload", Vec::new()).await;
    assert_eq!(status, 422, "{answer}");
    let line = with_bob.lines().position(|l| l == "[tenants.bob]").expect("bob's table") + 1;
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains(&format!("palisade.toml:{line}:")) && error.contains("needs a restart"), "{answer}");
}

/// Connections opened together are spread over the workers (whichever accepts them), and the
/// `palisade_open_connections` gauge shows each worker's share.
#[tokio::test]
async fn a_burst_of_connections_is_spread_over_the_workers() {
    use std::io::{Read, Write};
    let site = admin_site("");
    let config = std::fs::read_to_string(site.path("palisade.toml")).expect("config");
    site.write("palisade.toml", config.replacen("[server]\n", "[server]\nworkers = 2\n", 1));
    let server = site.start();
    let admin = Admin::of(&server);

    let mut held: Vec<_> = (0..8).map(|_| std::net::TcpStream::connect(server.addr).expect("connect")).collect();
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s.write_all(b"GET / HTTP/1.1\r\nHost: alice.localhost\r\n\r\n").expect("write");
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&answer).ends_with("alice's static site\n") {
            let n = s.read(&mut buf).expect("read");
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    }
    let metrics = admin.text("/metrics").await;
    let open = |worker: usize| -> u32 {
        let prefix = format!("palisade_open_connections{{worker=\"{worker}\"}} ");
        let line = metrics.lines().find_map(|l| l.strip_prefix(prefix.as_str()));
        line.and_then(|n| n.parse::<f64>().ok()).map_or(0, |n| n as u32)
    };
    let shares = [open(0), open(1)];
    assert_eq!(shares.iter().sum::<u32>(), 8, "{metrics}");
    assert!(shares.iter().all(|&n| n >= 3), "connections not spread: {shares:?}");
    drop(held);
}

#[tokio::test]
async fn metrics_health_and_access_logs() {
    let probe = guest("probe-component.wasm").display().to_string();
    let site = admin_site(&format!("[[tenants.alice.routes]]\npath = \"/probe\"\ncomponent = {probe:?}\n"));
    let server = Running::spawn(&[
        "--log-format".as_ref(),
        "json".as_ref(),
        "serve".as_ref(),
        "--config".as_ref(),
        site.path("palisade.toml").as_os_str(),
    ]);
    let admin = Admin::of(&server);
    // Health and readiness need no token; metrics do.
    let plain = plain_client();
    for (path, want) in [("/healthz", 200), ("/readyz", 200), ("/metrics", 401), ("/v1/tenants", 401), ("/nope", 401)] {
        assert_eq!(plain.get(admin.server_url.clone() + path).send().await.unwrap().status().as_u16(), want, "{path}");
    }
    assert_eq!(admin.call(reqwest::Method::GET, "/nope", Vec::new()).await.0, 404);
    assert_eq!(admin.call(reqwest::Method::POST, "/v1/tenants", Vec::new()).await.0, 405);

    for _ in 0..3 {
        assert_eq!(get(&server, "/").await.0, 200);
    }
    assert_eq!(get(&server, "/missing").await.0, 404);
    assert_eq!(get(&server, "/probe/trap").await.0, 500);
    assert_eq!(get(&server, "/probe/env").await.0, 200);
    // The guest task frees its concurrency slot just after the response has gone out (it still has to return
    // from its handler), so the in-flight gauge reaches 0 a moment later.
    let idle = r#"palisade_instances_in_flight{tenant="alice"} 0"#;
    wait_until("no instance in flight", Duration::from_secs(5), || async {
        admin.text("/metrics").await.lines().any(|l| l == idle)
    })
    .await;
    let metrics = admin.text("/metrics").await;
    for line in [
        r#"palisade_requests_total{tenant="alice",route="/",status="200"} 3"#,
        r#"palisade_requests_total{tenant="alice",route="/",status="404"} 1"#,
        r#"palisade_requests_total{tenant="alice",route="/probe",status="500"} 1"#,
        r#"palisade_limits_total{tenant="alice",kind="trap"} 1"#,
        r#"palisade_request_duration_seconds_count{tenant="alice",route="/"} 4"#,
        idle,
        "palisade_ready 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} is not in:\n{metrics}");
    }
    assert!(metrics.contains("palisade_compile_cache_total{result=\"miss\"}"), "{metrics}");

    // One JSON access line per request, with tenant, route, status, bytes, duration and instance time.
    assert!(server.log_count("\"uri\"", 6) >= 6, "{}", server.log());
    let line = server
        .log()
        .lines()
        .find(|l| l.contains("\"user_agent\"") && l.contains("\"/probe/trap\""))
        .map(str::to_string);
    let entry: Value = serde_json::from_str(line.as_deref().expect("access line for /probe/trap")).expect("json");
    assert_eq!(
        (entry["tenant"].as_str(), entry["route"].as_str(), entry["status"].as_u64()),
        (Some("alice"), Some("/probe"), Some(500))
    );
    let static_line =
        server.log().lines().find(|l| l.contains("\"uri\":\"/\"")).map(str::to_string).expect("access line for /");
    let entry: Value = serde_json::from_str(&static_line).expect("json");
    assert_eq!(entry["bytes"].as_u64(), Some("alice's static site\n".len() as u64), "{entry}");
    assert!(entry["micros"].as_u64().is_some(), "{entry}");
    let guest_line = server.log().lines().find(|l| l.contains("\"uri\":\"/probe/env\"")).map(str::to_string);
    let entry: Value = serde_json::from_str(&guest_line.expect("access line for /probe/env")).expect("json");
    assert!(entry["instance_micros"].as_u64().is_some_and(|i| i <= entry["micros"].as_u64().unwrap_or(0)), "{entry}");
}

#[tokio::test]
async fn combined_access_log_and_an_open_admin_api_is_refused() {
    let site = admin_site("");
    let server = site.start();
    let (status, _) = get(&server, "/").await;
    assert_eq!(status, 200);
    // The combined log format, then palisade's own fields.
    assert!(server.log_contains("\"GET / HTTP/1.1\" 200 20 \"-\" \""), "{}", server.log());
    assert!(server.log_contains(" tenant=alice route=/ micros="));

    // No token on a non-loopback address: refused at start, naming the file and line.
    let config = std::fs::read_to_string(site.path("palisade.toml")).unwrap();
    site.write(
        "palisade.toml",
        config.replace("listen = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"", "listen = \"0.0.0.0:0\""),
    );
    let (code, _, err) = site.run(&["serve", "--config", "palisade.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("palisade.toml:") && err.contains("open to the network"), "{err}");
}

/// A node of a cluster on `redis`: its own data directory, the probe at `/kv`.
fn cluster_node(redis: &str) -> Site {
    let probe = guest("kv-probe.wasm").display().to_string();
    admin_site(&format!(
        "[[tenants.alice.routes]]\npath = \"/kv\"\ncomponent = {probe:?}\n\n[cluster]\nredis = {redis:?}\nreconcile_interval = \"1s\"\n"
    ))
}

#[tokio::test]
async fn two_nodes_share_apps_and_data_through_redis() {
    let redis_dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redis = RedisServer::start_persistent_on(port, redis_dir.path());
    let (site_a, site_b) = (cluster_node(&redis.url()), cluster_node(&redis.url()));
    let (a, b) = (site_a.start(), site_b.start());
    let admin_a = Admin::of(&a);
    wait_ready(&[&a, &b]).await;

    // v1 through node A: both serve it.
    assert_eq!(admin_a.deploy("alice", "app", "", &wasm("hello.wasm")).await.0, 201);
    for node in [&a, &b] {
        wait_until("v1 everywhere", Duration::from_secs(10), || async { get(node, "/app/x").await.1.starts_with(V1) })
            .await;
    }

    // v2 under load on both nodes: no failed request, and both switch.
    let traffic = load(&[&a, &b], "/app/x", 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(admin_a.deploy("alice", "app", "", &wasm("hello-cgi.wasm")).await.0, 201);
    for node in [&a, &b] {
        wait_until("v2 everywhere", Duration::from_secs(10), || async { !get(node, "/app/x").await.1.starts_with(V1) })
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v2 = get(&b, "/app/x").await.1.lines().next().unwrap_or_default().to_string();
    assert!(assert_no_failures(traffic, &[V1, &v2]).await > 20);

    // Key-value data written through A is read through B.
    assert_eq!(get(&a, "/kv?op=set&key=greeting&value=from-a").await, (200, "ok\n".into()));
    assert_eq!(get(&b, "/kv?op=get&key=greeting").await, (200, "from-a".into()));

    // Redis restarts: both nodes keep serving; a deploy while it is down is refused and changes nothing;
    // once it is back, a deploy reaches both again.
    drop(redis);
    assert!(get(&a, "/app/x").await.1.starts_with(&v2) && get(&b, "/app/x").await.1.starts_with(&v2));
    let (status, answer) = admin_a.deploy("alice", "app", "", &wasm("hello.wasm")).await;
    assert_eq!(status, 503, "{answer}");
    assert!(get(&a, "/app/x").await.1.starts_with(&v2));
    let _redis = RedisServer::start_persistent_on(port, redis_dir.path());
    wait_until("a deploy through A after Redis is back", Duration::from_secs(15), || async {
        admin_a.deploy("alice", "app", "", &wasm("hello.wasm")).await.0 == 201
    })
    .await;
    for node in [&a, &b] {
        wait_until("v3 everywhere", Duration::from_secs(15), || async { get(node, "/app/x").await.1.starts_with(V1) })
            .await;
    }
    wait_until("key-value data through B again", Duration::from_secs(10), || async {
        get(&b, "/kv?op=get&key=greeting").await == (200, "from-a".into())
    })
    .await;

    // A node that joins later catches up with the apps and the data.
    let site_c = cluster_node(&format!("redis://127.0.0.1:{port}/0"));
    let c = site_c.start();
    wait_until("the late node serves v3", Duration::from_secs(10), || async {
        get(&c, "/app/x").await.1.starts_with(V1)
    })
    .await;
    assert_eq!(get(&c, "/kv?op=get&key=greeting").await, (200, "from-a".into()));
}

/// Redis behind Sentinel: two nodes on a master, its replica and three Sentinels. The master is killed: the
/// nodes serve throughout, a deploy succeeds again within 15 s (once Sentinel has promoted the replica), every
/// app deployed before is still served, key-value data written before is still there, and `/readyz` and the
/// metrics say what happened.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_on_sentinel_deploys_again_after_its_master_dies() {
    let mut set = tokio::task::block_in_place(SentinelSet::start);
    let (site_a, site_b) = (cluster_node(&set.url()), cluster_node(&set.url()));
    let (a, b) = (site_a.start(), site_b.start());
    let admin_a = Admin::of(&a);
    wait_ready(&[&a, &b]).await;
    assert_eq!(admin_a.deploy("alice", "app", "", &wasm("hello.wasm")).await.0, 201);
    assert_eq!(admin_a.deploy("alice", "cgi", "", &wasm("hello-cgi.wasm")).await.0, 201);
    for node in [&a, &b] {
        wait_until("both apps everywhere", Duration::from_secs(10), || async {
            get(node, "/app/x").await.1.starts_with(V1) && get(node, "/cgi/x").await.0 == 200
        })
        .await;
    }
    assert_eq!(get(&a, "/kv?op=set&key=greeting&value=before").await, (200, "ok\n".into()));
    let readyz = plain_client().get(a.admin_url("/readyz")).send().await.unwrap().text().await.unwrap();
    let master = format!("sentinel master palisade-test at 127.0.0.1:{}", set.master_port());
    assert!(readyz.contains(&format!("redis (cluster): {master}")), "{readyz}");

    tokio::task::block_in_place(|| set.sync_replica());
    set.kill_master();
    let killed = Instant::now();
    // Serving goes on from what each node has.
    for node in [&a, &b] {
        assert!(get(node, "/app/x").await.1.starts_with(V1));
    }
    wait_until("a deploy after the failover", Duration::from_secs(15), || async {
        admin_a.deploy("alice", "after", "", &wasm("hello.wasm")).await.0 == 201
    })
    .await;
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(15), "{took:?}");
    for node in [&a, &b] {
        wait_until("every app on every node", Duration::from_secs(10), || async {
            get(node, "/app/x").await.1.starts_with(V1)
                && get(node, "/cgi/x").await.0 == 200
                && get(node, "/after/x").await.1.starts_with(V1)
        })
        .await;
    }
    wait_until("key-value data through the new master", Duration::from_secs(10), || async {
        get(&b, "/kv?op=get&key=greeting").await == (200, "before".into())
    })
    .await;
    let readyz = plain_client().get(a.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 200);
    let readyz = readyz.text().await.unwrap();
    let promoted = format!("sentinel master palisade-test at 127.0.0.1:{}", set.replica_port());
    assert!(readyz.contains(&format!("redis (cluster): {promoted}, 1 failover(s) seen; answering")), "{readyz}");
    let metrics = admin_a.text("/metrics").await;
    assert!(metrics.contains("palisade_redis_failovers_total"), "{metrics}");
    assert!(metrics.contains("palisade_redis_up{link=\"cluster\"} 1"), "{metrics}");
}

/// `palisade_compile_cache_total{result="miss"}`: guests prepared anew.
async fn prepared_anew(admin: &Admin) -> u64 {
    let metrics = admin.text("/metrics").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("palisade_compile_cache_total{result=\"miss\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn compiled_code_no_route_uses_is_freed() {
    let site = admin_site("");
    let server = site.start();
    let admin = Admin::of(&server);
    let (status, record) = admin.deploy("alice", "app", "", &wasm("hello.wasm")).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(get(&server, "/app/x").await.0, 200);
    let first = prepared_anew(&admin).await;
    assert!(first >= 1);
    // Replaced, then removed: nothing routes to the first version any more.
    let (status, record) = admin.deploy("alice", "app", "", &wasm("hello-cgi.wasm")).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(get(&server, "/app/x").await.0, 200);
    let (status, _) = admin.call(reqwest::Method::DELETE, "/v1/tenants/alice/apps/app", Vec::new()).await;
    assert_eq!(status, 200);
    assert_eq!(get(&server, "/app/x").await.0, 404);
    // The same bytes again are compiled (from the disk cache) and prepared anew: the old copy was freed.
    let (status, record) = admin.deploy("alice", "app", "", &wasm("hello.wasm")).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(get(&server, "/app/x").await.0, 200);
    assert_eq!(prepared_anew(&admin).await, first + 2, "hello.wasm was still held after its routes were gone");
}

#[tokio::test]
async fn oversized_uploads_are_refused_on_their_declared_length_and_probes_may_head() {
    use std::io::{Read, Write};
    let site = admin_site("");
    let server = site.start();
    let admin = Admin::of(&server);
    let r = plain_client().head(format!("{}/healthz", admin.server_url)).send().await.unwrap();
    assert_eq!(r.status(), 200, "HEAD /healthz needs no token, as GET does not");
    let addr = admin.server_url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let head = format!(
            "PUT /v1/tenants/alice/apps/big HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: 300000000\r\n\r\n\0asm"
        );
        s.write_all(head.as_bytes()).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "refused at once on the declared length: {answer:?}");
}
