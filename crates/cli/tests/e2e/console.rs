//! The web console on the admin listener: its sessions and their cookie, CSRF and cross-site refusals over
//! plain HTTP, then the whole console in headless Chromium (sign-in, tenants and apps, a deploy by upload,
//! live charts, tenant tokens, removals, a tenant's narrower view, revocation, a clean browser console).

use std::time::Duration;

use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::harness::{Running, Site, guest, install_crypto_provider};

const TOKEN: &str = "console-operator-token-0123456789";

/// alice (a static site) and bob (another, and a proxy route to an upstream nothing listens on), behind an
/// admin listener with an operator token.
fn console_site() -> Site {
    let site = Site::new();
    site.write("www/alice/index.html", "alice's site\n");
    site.write("www/bob/index.html", "bob's site\n");
    site.write("admin.token", format!("{TOKEN}\n"));
    let data = site.path("data").display().to_string();
    site.write(
        "palisade.toml",
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\ndata_dir = {data:?}\nshutdown_timeout = \"2s\"\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\n\
             [tenants.alice]\nhosts = [\"alice.localhost\"]\n\
             [[tenants.alice.routes]]\npath = \"/\"\nstatic = \"www/alice\"\n\n\
             [tenants.bob]\nhosts = [\"bob.localhost\"]\n\
             [[tenants.bob.routes]]\npath = \"/\"\nstatic = \"www/bob\"\n\
             [[tenants.bob.routes]]\npath = \"/api\"\nproxy = \"http://127.0.0.1:9\"\n"
        ),
    );
    site
}

fn plain() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The JSON answer to `request`.
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// Signs in with `token` over plain HTTP: the `Cookie` value to send back and the CSRF token.
async fn sign_in(server: &Running, token: &str) -> (String, String) {
    let r = plain().post(server.admin_url("/console/session")).json(&json!({ "token": token })).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    let pair = cookie.split(';').next().unwrap().to_string();
    (pair, body["csrf"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn console_sessions_are_strict_cookies_and_writes_need_their_csrf_token() {
    let site = console_site();
    let server = site.start();
    let client = plain();

    // The page: no tenant data, a strict policy, no sniffing or framing.
    let page = client.get(server.admin_url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(!html.contains("alice") && !html.contains("bob"), "tenant data before sign-in:\n{html}");
    for asset in ["/console/console.js", "/console/console.css", "/console/icon.svg"] {
        assert_eq!(client.get(server.admin_url(asset)).send().await.unwrap().status(), 200, "{asset}");
    }

    // Nobody signed in: said plainly, not as an error; a wrong token opens nothing.
    let who = json_of(client.get(server.admin_url("/console/session"))).await;
    assert_eq!(who, json!({ "signed_in": false }));
    let wrong =
        client.post(server.admin_url("/console/session")).json(&json!({ "token": "nope" })).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    let malformed = client.post(server.admin_url("/console/session")).body("token=x").send().await.unwrap();
    assert_eq!(malformed.status(), 400);

    // The operator's token: an HttpOnly, SameSite=Strict cookie (not Secure over plain HTTP).
    let r = client.post(server.admin_url("/console/session")).json(&json!({ "token": TOKEN })).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let set_cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(set_cookie.starts_with("palisade_session="), "{set_cookie}");
    assert!(set_cookie.contains("; HttpOnly") && set_cookie.contains("; SameSite=Strict"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let who: Value = r.json().await.unwrap();
    assert_eq!((who["operator"].clone(), who["tenant"].clone()), (json!(true), Value::Null));
    let (cookie, csrf) = sign_in(&server, TOKEN).await;

    // The cookie alone opens nothing (a tenant's app on another port of this host would see it): every
    // request shows the session's CSRF token too, which the server gives only in the sign-in answer.
    let r = client.get(server.admin_url("/v1/tenants")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let who = json_of(client.get(server.admin_url("/console/session")).header(COOKIE, &cookie)).await;
    assert_eq!(who, json!({ "signed_in": false }));
    let with_csrf =
        |path: &str| client.get(server.admin_url(path)).header(COOKIE, &cookie).header("x-csrf-token", &csrf);
    let r = with_csrf("/v1/tenants").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let who = json_of(with_csrf("/console/session")).await;
    assert_eq!(who, json!({ "signed_in": true, "operator": true, "tenant": null }), "no CSRF token given back");
    let tossed = client
        .get(server.admin_url("/v1/tenants"))
        .header(COOKIE, format!("{cookie}; palisade_session=0123"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(tossed.status(), 401, "two session cookies: neither is trusted");
    let carol = json!({ "hosts": ["carol.localhost"] }).to_string();
    let put = |csrf: Option<&str>| {
        let mut r = client.put(server.admin_url("/v1/tenants/carol")).header(COOKIE, &cookie).body(carol.clone());
        if let Some(csrf) = csrf {
            r = r.header("x-csrf-token", csrf);
        }
        r.send()
    };
    let refused = put(None).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("X-CSRF-Token"));
    assert_eq!(put(Some("0123")).await.unwrap().status(), 403);
    let r = client.get(server.admin_url("/v1/tenants/carol")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 404, "a refused write changed nothing");
    let r = client
        .put(server.admin_url("/v1/tenants/carol"))
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .header("origin", "http://127.0.0.1:1")
        .body(carol.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a write from another origin's page");
    assert_eq!(put(Some(&csrf)).await.unwrap().status(), 201);

    // A browser's request from another site's page is refused, cookie or not.
    let r = client
        .get(server.admin_url("/v1/tenants"))
        .header(COOKIE, &cookie)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The console's counters: requests by tenant, with the latency buckets they fall in.
    let alice = server.client(&["alice.localhost"]);
    for _ in 0..5 {
        assert_eq!(alice.get(server.url("alice.localhost", "/")).send().await.unwrap().status(), 200);
    }
    let stats = json_of(with_csrf("/v1/stats")).await;
    assert_eq!(stats["tenants"]["alice"]["requests"], 5, "{stats}");
    assert_eq!(stats["tenants"]["alice"]["errors"], 0, "{stats}");
    let buckets = stats["latency_buckets"].as_array().unwrap().len();
    let latency = stats["tenants"]["alice"]["latency"].as_array().unwrap();
    assert_eq!(latency.len(), buckets + 1);
    assert_eq!(latency.iter().map(|c| c.as_u64().unwrap()).sum::<u64>(), 5);
    let upstreams = stats["upstreams"].as_array().unwrap();
    assert_eq!(upstreams.len(), 1, "{stats}");
    assert_eq!((upstreams[0]["tenant"].as_str(), upstreams[0]["route"].as_str()), (Some("bob"), Some("/api")));
    assert!(upstreams[0]["upstream"].as_str().unwrap().contains("127.0.0.1:9"), "{stats}");

    // A tenant's session sees its own tenant and counters only.
    let issued = json_of(client.post(server.admin_url("/v1/tenants/alice/tokens")).bearer_auth(TOKEN)).await;
    let (tenant_cookie, tenant_csrf) = sign_in(&server, issued["token"].as_str().unwrap()).await;
    let get = |path: &str| {
        client.get(server.admin_url(path)).header(COOKIE, &tenant_cookie).header("x-csrf-token", &tenant_csrf).send()
    };
    let stats: Value = get("/v1/stats").await.unwrap().json().await.unwrap();
    let names: Vec<_> = stats["tenants"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(names, ["alice"]);
    assert_eq!(stats["upstreams"], json!([]), "bob's upstreams are bob's business");
    assert_eq!(get("/v1/tenants/bob").await.unwrap().status(), 403);
    assert_eq!(get("/metrics").await.unwrap().status(), 403);

    // Revoking the token ends the session it opened, at once.
    let id = issued["id"].as_str().unwrap();
    let r = client.delete(server.admin_url(&format!("/v1/tenants/alice/tokens/{id}"))).bearer_auth(TOKEN).send();
    assert_eq!(r.await.unwrap().status(), 200);
    assert_eq!(get("/v1/tenants/alice").await.unwrap().status(), 401);

    // Signing out needs the CSRF token, and ends the session.
    let out = |csrf: &str| {
        client.delete(server.admin_url("/console/session")).header(COOKIE, &cookie).header("x-csrf-token", csrf).send()
    };
    assert_eq!(out("wrong").await.unwrap().status(), 403);
    let r = out(&csrf).await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(with_csrf("/v1/tenants").send().await.unwrap().status(), 401);
}

/// Messages the browser logged as errors, but those `allowed` names.
fn errors(log: &[(String, String)], allowed: &[&str]) -> Vec<String> {
    log.iter()
        .filter(|(level, message)| level == "SEVERE" && !allowed.iter().any(|a| message.contains(a)))
        .map(|(_, message)| message.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_headless_chromium() {
    let site = console_site();
    let server = site.start();
    let browser = Browser::start().await;
    let b = &browser.client;
    let section = |tenant: &str| format!(".tenant[data-tenant=\"{tenant}\"]");
    b.goto(&server.admin_url("/")).await.unwrap();
    browser.wait_for("#signin").await;

    // Before sign-in: a form, and no tenant's name anywhere in the page.
    let source = b.source().await.unwrap();
    assert!(!source.contains("alice") && !source.contains("bob"), "tenant data before sign-in");
    assert_eq!(browser.eval("document.getElementById('console').hidden").await, json!(true));

    // A wrong token: an error, still nothing shown.
    browser.wait_for("#token").await.send_keys("not-the-token").await.unwrap();
    browser.wait_for("#signin-button").await.click().await.unwrap();
    browser.wait_until("the sign-in error", "document.getElementById('signin-error').textContent.trim() !== ''").await;
    assert_eq!(browser.eval("document.getElementById('console').hidden").await, json!(true));
    assert!(!b.source().await.unwrap().contains("alice"));
    let log = browser.console_log().await;
    assert_eq!(errors(&log, &["401"]), Vec::<String>::new(), "browser console: {log:?}");

    // The operator's token: every tenant.
    let token = browser.wait_for("#token").await;
    token.clear().await.unwrap();
    token.send_keys(TOKEN).await.unwrap();
    browser.wait_for("#signin-button").await.click().await.unwrap();
    browser.wait_until("signed in", "document.getElementById('whoami').textContent.includes('operator')").await;
    browser.wait_for(&section("alice")).await;
    browser.wait_for(&section("bob")).await;
    // Upstream health, from the stats.
    browser.wait_until("the upstreams", "!document.getElementById('upstreams').hidden").await;
    let upstreams = browser.eval("document.getElementById('upstreams').textContent").await;
    assert!(upstreams.as_str().unwrap().contains("127.0.0.1:9"), "{upstreams}");
    // A reload keeps the tab's session.
    b.refresh().await.unwrap();
    browser.wait_until("still signed in", "document.getElementById('whoami').textContent.includes('operator')").await;
    browser.wait_for(&section("bob")).await;
    assert!(
        browser
            .wait_for(&format!("{} .hosts", section("alice")))
            .await
            .text()
            .await
            .unwrap()
            .contains("alice.localhost")
    );

    // A deploy through the upload form, served at once.
    let hello = guest("hello.wasm").canonicalize().unwrap();
    let deploy = |field: &str| format!("{} .{field}", section("alice"));
    browser.wait_for(&deploy("deploy-file")).await.send_keys(&hello.display().to_string()).await.unwrap();
    browser.wait_for(&deploy("deploy-name")).await.send_keys("hello").await.unwrap();
    browser.wait_for(&deploy("deploy-button")).await.click().await.unwrap();
    let app_row = format!("{} tr[data-app=\"hello\"]", section("alice"));
    browser.wait_for(&app_row).await;
    let alice = server.client(&["alice.localhost"]);
    let r = alice.get(server.url("alice.localhost", "/hello")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("hello from a wasi:http component"));

    // Traffic moves the charts and readouts.
    for _ in 0..100 {
        assert_eq!(alice.get(server.url("alice.localhost", "/hello")).send().await.unwrap().status(), 200);
    }
    let stat =
        |name: &str| format!("Number(document.querySelector('{} .{name}').dataset.value || 0)", section("alice"));
    browser.wait_until("the request count", &format!("{} >= 101", stat("stat-requests"))).await;
    let traffic = format!("document.querySelector('{} canvas[data-series=\"traffic\"]')", section("alice"));
    browser.wait_until("a request rate", &format!("{} > 0", stat("stat-rate"))).await;
    browser.wait_until("a chart moving on", &format!("Number({traffic}.dataset.points) >= 2")).await;
    browser.wait_until("a p99", &format!("{} > 0", stat("stat-p99"))).await;
    browser.eval("window.scrollTo(0, 0) || true").await;
    let shot = b.screenshot().await.unwrap();
    let artifact = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    std::fs::write(&artifact, &shot).unwrap();
    assert!(shot.starts_with(b"\x89PNG"), "a PNG screenshot");
    eprintln!("console screenshot: {}", artifact.display());

    // A tenant created from the console, and deleted again (a second click confirms).
    browser.wait_for("#new-tenant-name").await.send_keys("carol").await.unwrap();
    let spec = browser.eval("document.getElementById('new-tenant-spec').value").await;
    assert!(spec.as_str().unwrap().contains("carol.localhost"), "{spec}");
    browser.wait_for("#create-tenant-button").await.click().await.unwrap();
    browser.wait_for(&section("carol")).await;
    let admin = plain();
    let r = admin.get(server.admin_url("/v1/tenants/carol")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let delete = browser.wait_for(&format!("{} .delete-tenant", section("carol"))).await;
    delete.click().await.unwrap();
    delete.click().await.unwrap();
    browser.wait_until("carol gone", &format!("!document.querySelector('{}')", section("carol"))).await;
    let r = admin.get(server.admin_url("/v1/tenants/carol")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // A token for alice, shown once.
    browser.wait_for(&format!("{} .issue-token", section("alice"))).await.click().await.unwrap();
    let shown = format!("document.querySelector('{} input.new-token')", section("alice"));
    browser.wait_until("the new token", &format!("{shown} && {shown}.value.length > 20")).await;
    let alice_token = browser.eval(&format!("{shown}.value")).await.as_str().unwrap().to_string();
    browser.wait_for(&format!("{} tr[data-token]", section("alice"))).await;
    let token_ids = || async {
        let alice = json_of(admin.get(server.admin_url("/v1/tenants/alice")).bearer_auth(TOKEN)).await;
        alice["tokens"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let kept = token_ids().await;
    assert_eq!(kept.len(), 1);

    // A second token, revoked from the console (a second click confirms).
    browser.wait_for(&format!("{} .issue-token", section("alice"))).await.click().await.unwrap();
    let rows = format!("document.querySelectorAll('{} tr[data-token]').length", section("alice"));
    browser.wait_until("two tokens", &format!("{rows} === 2")).await;
    let second = token_ids().await.into_iter().find(|id| *id != kept[0]).unwrap();
    let revoke = browser.wait_for(&format!("{} tr[data-token=\"{second}\"] .revoke-token", section("alice"))).await;
    revoke.click().await.unwrap();
    revoke.click().await.unwrap();
    browser.wait_until("one token again", &format!("{rows} === 1")).await;
    assert_eq!(token_ids().await, kept, "the other token is the one revoked");

    // Removing the app (a second click confirms) stops serving it.
    let remove = browser.wait_for(&format!("{app_row} .remove-app")).await;
    remove.click().await.unwrap();
    remove.click().await.unwrap();
    browser.wait_until("the app gone", &format!("!document.querySelector('{app_row}')")).await;
    let r = alice.get(server.url("alice.localhost", "/hello")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Nothing went wrong in the page all along.
    let log = browser.console_log().await;
    assert_eq!(errors(&log, &[]), Vec::<String>::new(), "browser console: {log:?}");

    // Signing out clears the page.
    browser.wait_for("#signout").await.click().await.unwrap();
    browser.wait_until("signed out", "!document.getElementById('signin').hidden").await;
    assert_eq!(browser.eval("document.getElementById('tenants').textContent.includes('alice')").await, json!(false));

    // alice's token: alice alone, no operator's forms, and the API refuses the rest.
    let token = browser.wait_for("#token").await;
    token.clear().await.unwrap();
    token.send_keys(&alice_token).await.unwrap();
    browser.wait_for("#signin-button").await.click().await.unwrap();
    browser.wait_until("signed in as alice", "document.getElementById('whoami').textContent.includes('alice')").await;
    browser.wait_for(&section("alice")).await;
    assert_eq!(browser.eval("document.querySelectorAll('.tenant').length").await, json!(1));
    assert_eq!(
        browser
            .eval(
                "document.getElementById('create-tenant') === null || document.getElementById('create-tenant').hidden"
            )
            .await,
        json!(true)
    );
    let status = b
        .execute_async("const done = arguments[0]; fetch('/v1/tenants/bob').then(r => done(r.status));", vec![])
        .await
        .unwrap();
    assert_eq!(status, json!(403));

    // Revoked by the operator: the console goes back to its sign-in form.
    let tokens = json_of(admin.get(server.admin_url("/v1/tenants/alice")).bearer_auth(TOKEN)).await;
    for t in tokens["tokens"].as_array().unwrap() {
        let id = t["id"].as_str().unwrap();
        let r = admin.delete(server.admin_url(&format!("/v1/tenants/alice/tokens/{id}"))).bearer_auth(TOKEN).send();
        assert_eq!(r.await.unwrap().status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    browser.wait_until("back to sign-in", "!document.getElementById('signin').hidden").await;
    b.clone().close().await.unwrap();
}
