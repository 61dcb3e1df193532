//! Tenants as data: tenants created, replaced and removed through the admin API with every refusal,
//! tenant-scoped tokens allowed and refused per endpoint, persistence across a restart, a reload that would
//! clash with an API tenant, a removed tenant's apps and key-value data gone, the admin API over HTTPS with the
//! command-line clients, and two nodes sharing tenants and tokens through a real redis-server.

use std::time::{Duration, Instant};

use palisade_kv::test_support::RedisServer;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Running, Site, TestCa, guest, install_crypto_provider};

pub(crate) const TOKEN: &str = "operator-token-0123456789abcdef";

/// A server with an admin API and its own data directory; the file has tenant alice (a static site).
fn site() -> Site {
    let site = Site::new();
    site.write("www/index.html", "alice's static site\n");
    site.write("admin.token", format!("{TOKEN}\n"));
    write_config(&site, "");
    site
}

/// Polls `done` every 20 ms until it holds; how long that took. Fails after `limit`.
async fn wait_until<F: Future<Output = bool>>(what: &str, limit: Duration, mut done: impl FnMut() -> F) -> Duration {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

fn write_config(site: &Site, extra: &str) {
    let data = site.path("data").display().to_string();
    site.write(
        "palisade.toml",
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\ndata_dir = {data:?}\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\n\
             [tenants.alice]\nhosts = [\"alice.localhost\"]\n\
             [[tenants.alice.routes]]\npath = \"/\"\nstatic = \"www\"\n{extra}"
        ),
    );
}

/// One admin call with `token` (none: no Authorization header): (status, JSON or text).
async fn call(server: &Running, token: Option<&str>, method: Method, path: &str, body: Vec<u8>) -> (u16, Value) {
    install_crypto_provider();
    let mut request = reqwest::Client::new().request(method, server.admin_url(path)).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.expect("admin request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("admin answer");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub(crate) async fn operator(server: &Running, method: Method, path: &str, body: Vec<u8>) -> (u16, Value) {
    call(server, Some(TOKEN), method, path, body).await
}

pub(crate) async fn put_tenant(server: &Running, name: &str, spec: Value) -> (u16, Value) {
    operator(server, Method::PUT, &format!("/v1/tenants/{name}"), spec.to_string().into_bytes()).await
}

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(guest(name)).expect("guest")
}

async fn get(server: &Running, host: &str, path: &str) -> (u16, String) {
    let r = server.client(&[host]).get(server.url(host, path)).send().await.expect("get");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// The keys of an answer's `problems`.
fn problem_keys(answer: &Value) -> Vec<&str> {
    answer["problems"].as_array().into_iter().flatten().filter_map(|p| p["key"].as_str()).collect()
}

#[tokio::test]
async fn tenants_are_created_replaced_and_refused_through_the_api() {
    let site = site();
    let server = site.start();
    let acme = json!({"hosts": ["acme.localhost"], "env": {"GREETING": "hi from acme"}, "max_concurrency": 4});
    assert_eq!(put_tenant(&server, "acme", acme.clone()).await.0, 201);
    // A new tenant has no routes: its host is known, every path 404 until it deploys an app.
    assert_eq!(get(&server, "acme.localhost", "/").await.0, 404);
    let (status, record) =
        operator(&server, Method::PUT, "/v1/tenants/acme/apps/probe?route=/app", wasm("probe-component.wasm")).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(get(&server, "acme.localhost", "/app/env").await, (200, "hi from acme".into()));

    // Replaced: 200, and the app goes on in the new sandbox, with the new environment.
    let changed = json!({"hosts": ["acme.localhost", "www.acme.localhost"], "env": {"GREETING": "bonjour"}});
    assert_eq!(put_tenant(&server, "acme", changed.clone()).await.0, 200);
    assert_eq!(get(&server, "www.acme.localhost", "/app/env").await, (200, "bonjour".into()));
    let (status, shown) = operator(&server, Method::GET, "/v1/tenants/acme", Vec::new()).await;
    assert_eq!(status, 200);
    assert_eq!((shown["source"].as_str(), &shown["spec"]), (Some("api"), &changed), "{shown}");
    assert_eq!(shown["apps"][0]["name"], "probe");
    let (_, alice) = operator(&server, Method::GET, "/v1/tenants/alice", Vec::new()).await;
    assert_eq!(alice["source"], "file");

    // Refusals change nothing.
    let (status, answer) = put_tenant(&server, "alice", json!({"hosts": ["alice2.localhost"]})).await;
    assert_eq!(status, 409, "the file's tenants are the file's: {answer}");
    let (status, answer) = put_tenant(&server, "thief", json!({"hosts": ["alice.localhost"]})).await;
    assert_eq!((status, answer["error"].as_str().is_some_and(|e| e.contains("alice"))), (409, true), "{answer}");
    let (status, answer) = put_tenant(&server, "thief", json!({"hosts": ["www.acme.localhost"]})).await;
    assert_eq!(status, 409, "{answer}");
    let (status, answer) = put_tenant(&server, "typo", json!({"hosts": ["t.localhost"], "memroy": "1 MiB"})).await;
    assert_eq!((status, problem_keys(&answer)), (422, vec!["memroy"]), "{answer}");
    let bad = json!({"hosts": ["t.localhost"], "max_concurrency": 0, "timeout": "soon",
                     "routes": [{"path": "/", "static": "/etc"}, {"path": "/api", "proxy": "ftp://x"}]});
    let (status, answer) = put_tenant(&server, "typo", bad).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(problem_keys(&answer), vec!["routes[0].static"], "files on the server are refused first: {answer}");
    let bad = json!({"hosts": ["t.localhost"], "max_concurrency": 0, "timeout": "soon",
                     "routes": [{"path": "/api", "proxy": "ftp://x"}]});
    let (status, answer) = put_tenant(&server, "typo", bad).await;
    let mut keys = problem_keys(&answer);
    keys.sort_unstable();
    assert_eq!((status, keys), (422, vec!["max_concurrency", "routes[0].proxy", "timeout"]), "{answer}");
    let (status, _) = operator(&server, Method::PUT, "/v1/tenants/typo", b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(put_tenant(&server, "no%20good", json!({"hosts": ["x.localhost"]})).await.0, 400);
    assert_eq!(operator(&server, Method::DELETE, "/v1/tenants/alice", Vec::new()).await.0, 409);
    assert_eq!(operator(&server, Method::DELETE, "/v1/tenants/nobody", Vec::new()).await.0, 404);
    assert_eq!(operator(&server, Method::GET, "/v1/tenants/typo", Vec::new()).await.0, 404);
    assert_eq!(get(&server, "acme.localhost", "/app/env").await, (200, "bonjour".into()));
    assert_eq!(get(&server, "alice.localhost", "/").await, (200, "alice's static site\n".into()));

    // A reload whose file takes an API tenant's name or host is refused, and changes nothing.
    write_config(&site, "[tenants.acme]\nhosts = [\"other.localhost\"]\n");
    let (status, answer) = operator(&server, Method::POST, "/v1/reload", Vec::new()).await;
    assert_eq!(status, 422, "{answer}");
    write_config(&site, "[tenants.grab]\nhosts = [\"acme.localhost\"]\n");
    assert_eq!(operator(&server, Method::POST, "/v1/reload", Vec::new()).await.0, 422);
    write_config(&site, "[tenants.bob]\nhosts = [\"bob.localhost\"]\n");
    let (status, answer) = operator(&server, Method::POST, "/v1/reload", Vec::new()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(get(&server, "acme.localhost", "/app/env").await.0, 200, "a reload keeps the API's tenants");
}

#[tokio::test]
async fn tenant_tokens_reach_their_own_tenant_only() {
    let site = site();
    let server = site.start();
    assert_eq!(put_tenant(&server, "acme", json!({"hosts": ["acme.localhost"]})).await.0, 201);
    let (status, issued) = operator(&server, Method::POST, "/v1/tenants/acme/tokens", Vec::new()).await;
    assert_eq!(status, 201, "{issued}");
    let (id, token) = (issued["id"].as_str().expect("id"), issued["token"].as_str().expect("token").to_string());
    let acme = Some(token.as_str());
    // A token for a file tenant works the same way.
    let (status, alice_token) = operator(&server, Method::POST, "/v1/tenants/alice/tokens", Vec::new()).await;
    assert_eq!(status, 201);
    let alice = alice_token["token"].as_str();
    assert_eq!(operator(&server, Method::POST, "/v1/tenants/nobody/tokens", Vec::new()).await.0, 404);

    // Allowed: its own tenant, its own apps.
    let (status, list) = call(&server, acme, Method::GET, "/v1/tenants", Vec::new()).await;
    let names: Vec<&str> =
        list["tenants"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!((status, names), (200, vec!["acme"]), "{list}");
    assert_eq!(call(&server, acme, Method::GET, "/v1/tenants/acme", Vec::new()).await.0, 200);
    let (status, _) = call(&server, acme, Method::PUT, "/v1/tenants/acme/apps/hello", wasm("hello.wasm")).await;
    assert_eq!(status, 201);
    assert_eq!(get(&server, "acme.localhost", "/hello").await.0, 200);
    assert_eq!(call(&server, acme, Method::DELETE, "/v1/tenants/acme/apps/hello", Vec::new()).await.0, 200);
    assert_eq!(call(&server, alice, Method::PUT, "/v1/tenants/alice/apps/hi", wasm("hello.wasm")).await.0, 201);

    // Refused: everything else, 403; nothing changed.
    for (method, path) in [
        (Method::GET, "/v1/tenants/alice"),
        (Method::PUT, "/v1/tenants/alice/apps/x"),
        (Method::DELETE, "/v1/tenants/alice/apps/hi"),
        (Method::PUT, "/v1/tenants/acme"),
        (Method::PUT, "/v1/tenants/newco"),
        (Method::DELETE, "/v1/tenants/acme"),
        (Method::POST, "/v1/tenants/acme/tokens"),
        (Method::DELETE, &format!("/v1/tenants/acme/tokens/{id}")),
        (Method::POST, "/v1/reload"),
        (Method::GET, "/metrics"),
    ] {
        let body = if method == Method::PUT { wasm("hello.wasm") } else { Vec::new() };
        let (status, answer) = call(&server, acme, method.clone(), path, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
    }
    assert_eq!(get(&server, "alice.localhost", "/hi").await.0, 200);
    assert_eq!(call(&server, Some("pal_not-a-token"), Method::GET, "/v1/tenants", Vec::new()).await.0, 401);
    assert_eq!(call(&server, None, Method::GET, "/v1/tenants", Vec::new()).await.0, 401);

    // Tokens and API tenants survive a restart; a revoked token is refused at once.
    drop(server);
    let server = site.start();
    assert_eq!(call(&server, acme, Method::GET, "/v1/tenants/acme", Vec::new()).await.0, 200);
    assert_eq!(get(&server, "alice.localhost", "/hi").await.0, 200);
    let (status, _) = operator(&server, Method::DELETE, &format!("/v1/tenants/acme/tokens/{id}"), Vec::new()).await;
    assert_eq!(status, 200);
    assert_eq!(call(&server, acme, Method::GET, "/v1/tenants/acme", Vec::new()).await.0, 401);
    assert_eq!(operator(&server, Method::DELETE, &format!("/v1/tenants/acme/tokens/{id}"), Vec::new()).await.0, 404);
    // Stored only as a hash: the token itself is nowhere on disk.
    let stored = std::fs::read_to_string(site.path("data/tenants/alice.tokens.json")).expect("alice's tokens");
    assert!(!stored.contains(alice.expect("token")), "{stored}");
}

#[tokio::test]
async fn a_removed_tenant_takes_its_apps_tokens_and_data_with_it() {
    let site = site();
    let server = site.start();
    let spec = json!({"hosts": ["acme.localhost"]});
    assert_eq!(put_tenant(&server, "acme", spec.clone()).await.0, 201);
    let (status, _) = operator(&server, Method::PUT, "/v1/tenants/acme/apps/count", wasm("kv-counter.wasm")).await;
    assert_eq!(status, 201);
    let (_, issued) = operator(&server, Method::POST, "/v1/tenants/acme/tokens", Vec::new()).await;
    let token = issued["token"].as_str().map(str::to_string);
    for n in 1..=3 {
        assert_eq!(get(&server, "acme.localhost", "/count").await, (200, visitor(n)));
    }

    let (status, removed) = operator(&server, Method::DELETE, "/v1/tenants/acme", Vec::new()).await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["apps"], json!(["count"]));
    assert!(removed["keys"].as_u64().is_some_and(|k| k >= 1), "{removed}");
    assert_eq!(get(&server, "acme.localhost", "/count").await.0, 404, "its hosts answer 404 at once");
    assert_eq!(operator(&server, Method::GET, "/v1/tenants/acme", Vec::new()).await.0, 404);
    assert_eq!(call(&server, token.as_deref(), Method::GET, "/v1/tenants/acme", Vec::new()).await.0, 401);
    assert_eq!(get(&server, "alice.localhost", "/").await.0, 200);

    // Created again under the same name, it starts from nothing: no app, no counter, and across a restart
    // the old one does not come back.
    drop(server);
    let server = site.start();
    assert_eq!(get(&server, "acme.localhost", "/count").await.0, 404);
    assert_eq!(put_tenant(&server, "acme", spec).await.0, 201);
    assert_eq!(get(&server, "acme.localhost", "/count").await.0, 404, "no app came back");
    let (status, _) = operator(&server, Method::PUT, "/v1/tenants/acme/apps/count", wasm("kv-counter.wasm")).await;
    assert_eq!(status, 201);
    assert_eq!(get(&server, "acme.localhost", "/count").await, (200, visitor(1)), "the counter starts from nothing");
}

/// What the counter answers its `n`th visitor.
fn visitor(n: u64) -> String {
    format!("You are visitor number {n}.\n")
}

#[tokio::test]
async fn the_admin_api_speaks_https_to_its_clients() {
    let site = site();
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&["127.0.0.1", "admin.localhost"]);
    site.write("admin.pem", cert);
    site.write("admin.key", key);
    site.write("ca.pem", &ca.pem);
    let config = std::fs::read_to_string(site.path("palisade.toml")).expect("config").replace(
        "token_file = \"admin.token\"",
        "token_file = \"admin.token\"\ntls = { cert = \"admin.pem\", key = \"admin.key\" }",
    );
    site.write("palisade.toml", config);
    let server = site.start();
    let url = server.admin_url("");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // A client that trusts the CA gets answers; plain HTTP on that port gets none.
    install_crypto_provider();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("CA"))
        .build()
        .expect("client");
    let r = client.get(format!("{url}/v1/tenants")).bearer_auth(TOKEN).send().await.expect("https");
    assert_eq!(r.status().as_u16(), 200);
    let plain = url.replace("https://", "http://");
    let answer = reqwest::Client::new().get(format!("{plain}/v1/tenants")).bearer_auth(TOKEN).send().await;
    assert!(answer.is_err() || answer.is_ok_and(|r| r.status().as_u16() == 400), "plain HTTP is not served");

    // The command-line clients, with --cacert.
    site.write("acme.toml", "hosts = [\"acme.localhost\"]\nmax_concurrency = 4\n");
    let admin = ["--admin", url.as_str(), "--token-file", "admin.token", "--cacert", "ca.pem"];
    let tenants = |args: &[&str]| site.run(&[&["tenants"], &admin[..], args].concat());
    let (code, out, err) = tenants(&["create", "acme", "--file", "acme.toml"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = tenants(&["create", "acme", "--file", "acme.toml"]);
    assert!(code != 0 && err.contains("exists already"), "{err}");
    let (code, token, err) = tenants(&["token", "acme"]);
    assert_eq!(code, 0, "{err}");
    site.write("acme.token", token.trim());
    let probe = guest("probe-component.wasm").display().to_string();
    let deploy = [
        "deploy",
        "--admin",
        url.as_str(),
        "--token-file",
        "acme.token",
        "--cacert",
        "ca.pem",
        "--tenant",
        "acme",
        "--name",
        "probe",
        "--route",
        "/app",
        probe.as_str(),
    ];
    let (code, out, err) = site.run(&deploy);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(get(&server, "acme.localhost", "/app").await, (200, "probe ok\n".into()));
    let (code, out, _) = tenants(&["list"]);
    assert!(code == 0 && out.lines().any(|l| l.starts_with("acme") && l.contains("api")), "{out}");
    site.write("bad.toml", "hosts = [\"alice.localhost\"]\nmemroy = 1\n");
    let (code, _, err) = tenants(&["update", "acme", "--file", "bad.toml"]);
    assert!(code != 0 && err.contains("422") && err.contains("memroy"), "{err}");
    let (code, _, err) = site.run(&["tenants", "--admin", url.as_str(), "--token-file", "admin.token", "list"]);
    assert!(code != 0 && err.contains("--cacert"), "{err}");
    let (code, out, err) = tenants(&["delete", "acme"]);
    assert!(code == 0 && out.contains("deleted tenant acme (1 apps"), "{out}{err}");
}

#[tokio::test]
async fn two_nodes_share_tenants_and_tokens_through_redis() {
    let redis = RedisServer::start();
    let node = || {
        let site = site();
        write_config(&site, &format!("\n[cluster]\nredis = {:?}\nreconcile_interval = \"1s\"\n", redis.url()));
        site
    };
    let (site_a, site_b) = (node(), node());
    let (a, b) = (site_a.start(), site_b.start());
    for node in [&a, &b] {
        wait_until("ready", Duration::from_secs(10), || async {
            call(node, None, Method::GET, "/readyz", Vec::new()).await.0 == 200
        })
        .await;
    }

    // Created through A: B knows it, and a token issued by A deploys through B.
    let spec = json!({"hosts": ["acme.localhost"], "env": {"GREETING": "from the cluster"}});
    assert_eq!(put_tenant(&a, "acme", spec).await.0, 201);
    let took = wait_until("B has acme", Duration::from_secs(10), || async {
        operator(&b, Method::GET, "/v1/tenants/acme", Vec::new()).await.0 == 200
    })
    .await;
    eprintln!("a tenant created on node A was known to node B after {took:?}");
    let (_, issued) = operator(&a, Method::POST, "/v1/tenants/acme/tokens", Vec::new()).await;
    let token = issued["token"].as_str().map(str::to_string);
    wait_until("B knows the token", Duration::from_secs(10), || async {
        call(&b, token.as_deref(), Method::GET, "/v1/tenants/acme", Vec::new()).await.0 == 200
    })
    .await;
    let path = "/v1/tenants/acme/apps/probe?route=/app";
    assert_eq!(call(&b, token.as_deref(), Method::PUT, path, wasm("probe-component.wasm")).await.0, 201);
    for node in [&a, &b] {
        wait_until("both serve acme's app", Duration::from_secs(10), || async {
            get(node, "acme.localhost", "/app/env").await == (200, "from the cluster".into())
        })
        .await;
    }
    // A host of the cluster's API tenant is taken on every node.
    assert_eq!(put_tenant(&b, "thief", json!({"hosts": ["acme.localhost"]})).await.0, 409);

    // Removed through B: A stops serving it, and the token is refused everywhere.
    assert_eq!(operator(&b, Method::DELETE, "/v1/tenants/acme", Vec::new()).await.0, 200);
    wait_until("A forgets acme", Duration::from_secs(10), || async {
        get(&a, "acme.localhost", "/app/env").await.0 == 404
    })
    .await;
    assert_eq!(operator(&a, Method::GET, "/v1/tenants/acme", Vec::new()).await.0, 404);
    wait_until("A forgets the token", Duration::from_secs(10), || async {
        call(&a, token.as_deref(), Method::GET, "/v1/tenants", Vec::new()).await.0 == 401
    })
    .await;

    // A node that was away catches up when it comes back.
    drop(a);
    assert_eq!(put_tenant(&b, "late", json!({"hosts": ["late.localhost"]})).await.0, 201);
    let a = site_a.start();
    wait_until("A catches up", Duration::from_secs(10), || async {
        operator(&a, Method::GET, "/v1/tenants/late", Vec::new()).await.0 == 200
    })
    .await;
}

#[tokio::test]
async fn deployed_apps_load_at_their_first_request_and_the_least_recently_used_unload() {
    let site = site();
    let config = std::fs::read_to_string(site.path("palisade.toml")).expect("config");
    site.write("palisade.toml", config.replace("[server]\n", "[server]\nmax_loaded_apps = 2\n"));
    let server = site.start();
    let apps = [
        ("probe", "probe-component.wasm", "/probe"),
        ("hello", "hello.wasm", "/hello"),
        ("cgi", "hello-cgi.wasm", "/cgi"),
    ];
    for (name, file, route) in apps {
        let path = format!("/v1/tenants/alice/apps/{name}?route={route}");
        assert_eq!(operator(&server, Method::PUT, &path, wasm(file)).await.0, 201);
    }
    let loaded = |answer: &Value| -> Vec<String> {
        let apps = answer["apps"].as_array().cloned().unwrap_or_default();
        apps.iter()
            .filter(|a| a["loaded"] == json!(true))
            .filter_map(|a| a["name"].as_str().map(str::to_string))
            .collect()
    };
    let (_, alice) = operator(&server, Method::GET, "/v1/tenants/alice", Vec::new()).await;
    assert_eq!(loaded(&alice).len(), 2, "deploying loads an app, and the budget holds: {alice}");

    // After a restart nothing is loaded until asked.
    drop(server);
    let server = site.start();
    let (_, alice) = operator(&server, Method::GET, "/v1/tenants/alice", Vec::new()).await;
    assert!(loaded(&alice).is_empty(), "{alice}");
    assert_eq!(alice["apps"][0]["kind"], Value::Null, "not known before it loads");
    assert_eq!(get(&server, "alice.localhost", "/probe").await, (200, "probe ok\n".into()));
    let (_, alice) = operator(&server, Method::GET, "/v1/tenants/alice", Vec::new()).await;
    assert_eq!(loaded(&alice), ["probe"]);
    assert_eq!(get(&server, "alice.localhost", "/hello").await.0, 200);
    assert_eq!(get(&server, "alice.localhost", "/cgi").await.0, 200);
    let (_, alice) = operator(&server, Method::GET, "/v1/tenants/alice", Vec::new()).await;
    assert_eq!(loaded(&alice), ["cgi", "hello"], "the least recently used went: {alice}");
    // Unloaded is not gone: it loads again when asked.
    assert_eq!(get(&server, "alice.localhost", "/probe").await, (200, "probe ok\n".into()));
    let (_, metrics) = operator(&server, Method::GET, "/metrics", Vec::new()).await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(metrics.contains("palisade_app_loads_total 4"), "{metrics}");
    assert!(metrics.contains("palisade_app_unloads_total 2"), "{metrics}");
    assert!(metrics.contains("palisade_apps_loaded 2"), "{metrics}");
}

#[tokio::test]
async fn a_tenant_token_uses_its_own_buckets_through_the_api() {
    let site = site();
    let server = site.start();
    let spec = json!({"hosts": ["acme.localhost"], "kv": {"max_value": 16}});
    assert_eq!(put_tenant(&server, "acme", spec).await.0, 201);
    let (status, _) = operator(&server, Method::PUT, "/v1/tenants/acme/apps/kv?route=/", wasm("kv-probe.wasm")).await;
    assert_eq!(status, 201);
    let (_, issued) = operator(&server, Method::POST, "/v1/tenants/acme/tokens", Vec::new()).await;
    let acme = issued["token"].as_str().map(str::to_string);
    let acme = acme.as_deref();

    // Written through the API, read by the tenant's guest; and the other way round.
    let key = "/v1/tenants/acme/buckets/default/keys/greeting";
    let (status, answer) = call(&server, acme, Method::PUT, key, b"hello".to_vec()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(get(&server, "acme.localhost", "/?op=get&key=greeting").await, (200, "hello".into()));
    assert_eq!(get(&server, "acme.localhost", "/?op=set&key=from-guest&value=hi").await.0, 200);
    let (status, value) =
        call(&server, acme, Method::GET, "/v1/tenants/acme/buckets/default/keys/from-guest", Vec::new()).await;
    assert_eq!((status, value), (200, Value::String("hi".into())));
    let (status, list) = call(&server, acme, Method::GET, "/v1/tenants/acme/buckets/default/keys", Vec::new()).await;
    assert_eq!((status, &list["keys"]), (200, &json!(["from-guest", "greeting"])), "{list}");
    let (status, answer) =
        call(&server, acme, Method::GET, "/v1/tenants/acme/buckets/default/keys?cursor=next", Vec::new()).await;
    assert_eq!(status, 400, "{answer}");
    // A key with a slash, encoded as one path segment.
    let (status, _) = call(&server, acme, Method::PUT, "/v1/tenants/acme/buckets/b2/keys/a%2Fb", b"x".to_vec()).await;
    assert_eq!(status, 200);
    assert_eq!(get(&server, "acme.localhost", "/?op=get&bucket=b2&key=a%2Fb").await, (200, "x".into()));

    // Refusals: the quota (422), an absent key (404), another tenant's bucket (403).
    let (status, answer) = call(&server, acme, Method::PUT, key, vec![b'x'; 17]).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(call(&server, acme, Method::GET, "/v1/tenants/acme/buckets/default/keys/nope", Vec::new()).await.0, 404);
    assert_eq!(call(&server, acme, Method::GET, "/v1/tenants/alice/buckets/default/keys", Vec::new()).await.0, 403);
    assert_eq!(call(&server, acme, Method::DELETE, key, Vec::new()).await.0, 200);
    assert_eq!(get(&server, "acme.localhost", "/?op=get&key=greeting").await.0, 404);
    assert_eq!(operator(&server, Method::GET, "/v1/tenants/nobody/buckets/default/keys", Vec::new()).await.0, 404);
}
