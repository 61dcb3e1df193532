//! Guests that trap, loop, eat memory or never answer get a clear status within their deadline, and
//! nothing they do affects other requests or tenants.

use std::time::{Duration, Instant};

use crate::harness::Site;
use crate::{HOSTS, two_tenants};

/// alice's timeout in `two_tenants`.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Generous allowance for a slow, shared CI machine on top of the deadline.
const MARGIN: Duration = Duration::from_secs(4);

async fn expect(client: &reqwest::Client, url: String, status: u16, reason: &str) -> Duration {
    let start = Instant::now();
    let r = client.get(&url).send().await.unwrap();
    let took = start.elapsed();
    assert_eq!(r.status(), status, "{url}");
    let body = r.text().await.unwrap();
    assert!(body.contains(reason), "{url}: {body}");
    took
}

#[tokio::test]
async fn component_trap_loop_membomb_and_no_response() {
    let site = two_tenants();
    let server = site.start();
    let client = server.client(HOSTS);
    let url = |p| server.url("alice.localhost", p);

    expect(&client, url("/app/trap"), 500, "guest failed").await;
    let took = expect(&client, url("/app/loop"), 504, "deadline").await;
    assert!(took >= TIMEOUT && took < TIMEOUT + MARGIN, "loop stopped after {took:?}");
    expect(&client, url("/app/membomb"), 500, "memory limit").await;
    expect(&client, url("/app/noresponse"), 500, "no response").await;

    // The server, the tenant and its neighbour are all fine afterwards.
    expect(&client, url("/app/echo"), 200, "method=GET").await;
    expect(&client, server.url("bob.localhost", "/"), 200, "bob").await;
    assert!(
        server.log_contains("wasm trap: wasm `unreachable` instruction executed"),
        "trap is logged with its message"
    );
    assert!(server.log_contains("tenant=alice"), "failures are logged with the tenant");
}

#[tokio::test]
async fn cgi_trap_loop_membomb() {
    let site = two_tenants();
    let server = site.start();
    let client = server.client(HOSTS);
    let url = |p| server.url("alice.localhost", p);
    expect(&client, url("/cgi-bin/probe/trap"), 500, "guest failed").await;
    let took = expect(&client, url("/cgi-bin/probe/loop"), 504, "deadline").await;
    assert!(took >= TIMEOUT && took < TIMEOUT + MARGIN, "loop stopped after {took:?}");
    expect(&client, url("/cgi-bin/probe/membomb"), 500, "memory limit").await;
    expect(&client, url("/cgi-bin/probe"), 200, "probe ok").await;
}

#[tokio::test]
async fn loops_in_parallel_do_not_starve_others() {
    let site = two_tenants();
    let server = site.start();
    let client = server.client(HOSTS);
    // Four spinning guests (more than the machine's cores) while a neighbour is served.
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let c = client.clone();
            let u = server.url("alice.localhost", "/app/loop");
            tokio::spawn(async move { c.get(u).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let took = expect(&client, server.url("bob.localhost", "/cgi-bin/probe"), 200, "probe ok").await;
    assert!(took < TIMEOUT + MARGIN, "neighbour waited {took:?}");
    for s in spinners {
        assert_eq!(s.await.unwrap().unwrap(), 504);
    }
}

#[tokio::test]
async fn concurrency_limit_answers_503_with_retry_after() {
    let site = Site::new();
    let component = site.guest("probe-component.wasm");
    site.config(&format!(
        "[tenants.t]\nhosts = [\"t.localhost\"]\ntimeout = \"2s\"\nmax_concurrency = 1\n\
         [[tenants.t.routes]]\npath = \"/\"\ncomponent = \"{component}\"\n"
    ));
    let server = site.start();
    let client = server.client(&["t.localhost"]);
    let busy = {
        let c = client.clone();
        let u = server.url("t.localhost", "/loop");
        tokio::spawn(async move { c.get(u).send().await.map(|r| r.status().as_u16()) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = client.get(server.url("t.localhost", "/echo")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(busy.await.unwrap().unwrap(), 504);
    // The slot is free again once the looping guest is stopped.
    let r = client.get(server.url("t.localhost", "/echo")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(server.log_contains("max_concurrency"));
}

/// A guest frees its slot just after its response has gone out: a client that sends its next request as soon
/// as it has read one, or a few clients sharing one slot, wait for the slot instead of being refused.
#[tokio::test]
async fn requests_queue_briefly_for_a_slot_instead_of_being_refused() {
    let site = Site::new();
    let component = site.guest("hello.wasm");
    site.config(&format!(
        "[tenants.t]\nhosts = [\"t.localhost\"]\nmax_concurrency = 1\n\
         [[tenants.t.routes]]\npath = \"/\"\ncomponent = \"{component}\"\n"
    ));
    let server = site.start();
    let client = server.client(&["t.localhost"]);
    let url = server.url("t.localhost", "/");
    for i in 0..1000 {
        let status = client.get(&url).send().await.unwrap().status();
        assert_eq!(status, 200, "request {i} one after another");
    }
    let together = (0..4).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..50 {
                statuses.push(client.get(&url).send().await.map(|r| r.status().as_u16()));
            }
            statuses
        })
    });
    for task in together {
        let statuses = task.await.unwrap();
        assert!(statuses.iter().all(|s| matches!(s, Ok(200))), "{statuses:?}");
    }
    assert!(!server.log_contains("max_concurrency"), "{}", server.log());
}
