//! wasi:keyvalue through real components (`kv-probe`, `kv-counter`): tenants' buckets apart, quotas as WASI
//! errors, exact concurrent counters, acknowledged writes surviving `kill -9` (redb), and two nodes sharing a
//! real redis-server, through its outage.

use std::time::{Duration, Instant};

use futures::StreamExt;
use palisade_kv::test_support::RedisServer;

use crate::harness::{Running, Site};

/// alice and bob, each with the probe at `/` and the counter at `/count`; `alice_keys` go into alice's table.
fn kv_site(head: &str, alice_keys: &str) -> Site {
    let site = Site::new();
    let probe = site.guest("kv-probe.wasm");
    let counter = site.guest("kv-counter.wasm");
    let tenant = |name: &str, keys: &str| {
        format!(
            "[tenants.{name}]\nhosts = [\"{name}.localhost\"]\n{keys}\n\
             [[tenants.{name}.routes]]\npath = \"/\"\ncomponent = \"{probe}\"\n\
             [[tenants.{name}.routes]]\npath = \"/count\"\ncomponent = \"{counter}\"\n"
        )
    };
    site.config(&format!("{head}\n{}\n{}", tenant("alice", alice_keys), tenant("bob", "")));
    site
}

/// One probe call: (status, body).
async fn kv(server: &Running, tenant: &str, query: &str) -> (u16, String) {
    let host = format!("{tenant}.localhost");
    let r = server.client(&[&host]).get(server.url(&host, &format!("/?{query}"))).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn each_tenant_has_its_own_buckets() {
    let site = kv_site("", "");
    let server = site.start();
    assert_eq!(kv(&server, "alice", "op=set&key=secret&value=alice%27s").await, (200, "ok\n".into()));
    assert_eq!(kv(&server, "alice", "op=get&key=secret").await, (200, "alice's".into()));
    assert_eq!(kv(&server, "bob", "op=get&key=secret").await, (404, "absent\n".into()));
    // Bucket names that would escape under a naive encoding reach nothing of anyone else's.
    for (i, bucket) in
        ["..", "..%2Fdefault", "default%2F..", "a:b", "%00", "default%00", "%C3%BCn%C3%AFc%C3%B8d%C3%A9", "*"]
            .iter()
            .enumerate()
    {
        let set = kv(&server, "alice", &format!("op=set&bucket={bucket}&key=secret&value={i}")).await;
        assert_eq!(set, (200, "ok\n".into()), "{bucket}");
        assert_eq!(kv(&server, "bob", &format!("op=get&bucket={bucket}&key=secret")).await.0, 404, "{bucket}");
        assert_eq!(kv(&server, "alice", &format!("op=get&bucket={bucket}&key=secret")).await, (200, i.to_string()));
    }
    assert_eq!(kv(&server, "alice", "op=get&key=secret").await, (200, "alice's".into()));
    let (status, body) = kv(&server, "alice", &format!("op=set&bucket={}&key=k&value=v", "b".repeat(300))).await;
    assert_eq!((status, body.starts_with("kv error: invalid name")), (503, true), "{body}");
    assert_eq!(kv(&server, "bob", "op=list").await, (200, String::new()));
}

#[tokio::test]
async fn quotas_are_errors_the_guest_sees() {
    let site = kv_site("", "kv = { max_keys = 3, max_value = 8, max_total = 64 }");
    let server = site.start();
    let (status, body) = kv(&server, "alice", "op=set&key=big&value=123456789").await;
    assert_eq!(status, 503);
    assert!(body.contains("quota exceeded: value of 9 bytes; max_value is 8"), "{body}");
    for k in ["a", "b", "c"] {
        assert_eq!(kv(&server, "alice", &format!("op=set&key={k}&value=1")).await.0, 200);
    }
    let (status, body) = kv(&server, "alice", "op=set&key=d&value=1").await;
    assert_eq!((status, body.contains("quota exceeded: max_keys is 3")), (503, true), "{body}");
    assert_eq!(kv(&server, "alice", "op=delete&key=a").await.0, 200);
    assert_eq!(kv(&server, "alice", "op=set&key=d&value=1").await.0, 200);
    // bob's own quota is the default: alice's limits are hers.
    for k in 0..10 {
        assert_eq!(kv(&server, "bob", &format!("op=set&key=k{k}&value=1")).await.0, 200);
    }
    assert!(!server.log_contains("trap"), "a quota is an error value, never a trap");
}

#[tokio::test]
async fn concurrent_increments_count_exactly() {
    let site = kv_site("", "");
    let server = site.start();
    let client = server.client(&["alice.localhost"]);
    let url = server.url("alice.localhost", "/count");
    let answers: Vec<String> = futures::stream::iter(0..300)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            async move { client.get(url).send().await.unwrap().text().await.unwrap() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut numbers: Vec<u64> = answers
        .iter()
        .map(|a| a.trim_start_matches("You are visitor number ").trim_end_matches(".\n").parse().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=300).collect::<Vec<u64>>(), "every visit counted once");
    assert_eq!(kv(&server, "alice", "op=get&key=visits").await, (200, "300".into()));
    assert_eq!(kv(&server, "bob", "op=get&key=visits").await.0, 404);
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let site = kv_site("", "");
    let server = site.start();
    let client = server.client(&["alice.localhost"]);
    let url = server.url("alice.localhost", "/");
    let killer = {
        let pid = server.pid();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        })
    };
    let acknowledged: Vec<u32> = futures::stream::iter(0..10_000u32)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let r = client.get(format!("{url}?op=set&bucket=durable&key=k{i}&value=v{i}")).send().await.ok()?;
                let ok = r.status() == 200 && r.text().await.ok()? == "ok\n";
                ok.then_some(i)
            }
        })
        .buffer_unordered(16)
        .filter_map(|i| async move { i })
        .collect()
        .await;
    killer.await.unwrap();
    drop(server);
    assert!(acknowledged.len() > 10, "only {} writes before the kill", acknowledged.len());
    assert!(acknowledged.len() < 10_000, "the server was killed mid-way");
    let server = site.start();
    let missing: Vec<u32> = futures::stream::iter(acknowledged.iter().copied())
        .map(|i| {
            let server = &server;
            async move {
                let (status, body) = kv(server, "alice", &format!("op=get&bucket=durable&key=k{i}")).await;
                (status != 200 || body != format!("v{i}")).then_some(i)
            }
        })
        .buffer_unordered(16)
        .filter_map(|i| async move { i })
        .collect()
        .await;
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(10)]
    );
}

#[tokio::test]
async fn two_nodes_share_redis_and_survive_its_outage() {
    let redis = RedisServer::start();
    let port = redis.port();
    let head = format!(
        "[kv]\nbackend = \"{}\"\n\n[tenants.plain]\nhosts = [\"plain.localhost\"]\n\
         [[tenants.plain.routes]]\npath = \"/\"\nstatic = \"www\"\n",
        redis.url()
    );
    let (site_a, site_b) = (kv_site(&head, ""), kv_site(&head, ""));
    for site in [&site_a, &site_b] {
        site.write("www/index.html", "no storage needed\n");
    }
    let (a, b) = (site_a.start(), site_b.start());
    assert_eq!(kv(&a, "alice", "op=set&key=shared&value=from-a").await.0, 200);
    assert_eq!(kv(&b, "alice", "op=get&key=shared").await, (200, "from-a".into()));
    assert_eq!(kv(&b, "bob", "op=get&key=shared").await.0, 404);

    // Increments from both nodes at once add up exactly.
    let count = |node: &Running| {
        let (client, url) = (node.client(&["alice.localhost"]), node.url("alice.localhost", "/count"));
        futures::stream::iter(0..100)
            .map(move |_| {
                let (client, url) = (client.clone(), url.clone());
                async move { assert_eq!(client.get(url).send().await.unwrap().status(), 200) }
            })
            .buffer_unordered(8)
            .collect::<Vec<()>>()
    };
    tokio::join!(count(&a), count(&b));
    assert_eq!(kv(&a, "alice", "op=get&key=visits").await, (200, "200".into()));

    // Redis goes away under load: every answer is the counter's or a clear 503, never a hang or a 500.
    let loader = {
        let (client, url) = (a.client(&["alice.localhost"]), a.url("alice.localhost", "/count"));
        tokio::spawn(async move {
            let started = Instant::now();
            let mut statuses = Vec::new();
            while started.elapsed() < Duration::from_millis(1500) {
                statuses.push(client.get(&url).send().await.map(|r| r.status().as_u16()).unwrap_or(0));
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(redis);
    let statuses = loader.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    assert!(statuses.contains(&200) && statuses.contains(&503), "{statuses:?}");
    let started = Instant::now();
    let (status, body) = kv(&a, "alice", "op=get&key=shared").await;
    assert_eq!((status, body.as_str()), (503, "kv error: storage unavailable\n"));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(kv(&b, "bob", "op=incr&key=n").await.0, 503);
    let plain = a.client(&["plain.localhost"]).get(a.url("plain.localhost", "/")).send().await.unwrap();
    assert_eq!(plain.text().await.unwrap(), "no storage needed\n", "other routes keep serving");
    // Redis is back (empty: this one keeps nothing on disk): both nodes recover by themselves.
    let _redis = RedisServer::start_on(port);
    let started = Instant::now();
    while kv(&a, "alice", "op=set&key=after&value=1").await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "node a never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(kv(&b, "alice", "op=get&key=after").await, (200, "1".into()));
}

#[tokio::test]
async fn operators_read_and_change_buckets_with_palisade_kv() {
    let site = kv_site("", "");
    let mut server = site.start();
    assert_eq!(kv(&server, "alice", "op=set&bucket=mail&key=inbox&value=hello").await.0, 200);
    // The embedded file is the server's while it runs: the command says so rather than waiting.
    let (code, _, err) = site.run(&["kv", "--tenant", "alice", "--bucket", "mail", "list"]);
    assert_ne!(code, 0);
    assert!(err.contains("kv.redb"), "{err}");
    assert_eq!(server.terminate(Duration::from_secs(10)), Some(0));

    let kv_cmd = |args: &[&str]| {
        let mut all = vec!["kv", "--tenant", "alice", "--bucket", "mail"];
        all.extend_from_slice(args);
        site.run(&all)
    };
    assert_eq!(kv_cmd(&["get", "inbox"]), (0, "hello".into(), String::new()));
    assert_eq!(kv_cmd(&["set", "outbox", "bye"]).0, 0);
    let (code, out, err) = kv_cmd(&["list"]);
    assert_eq!((code, out.as_str()), (0, "inbox\noutbox\n"), "{err}");
    assert!(err.contains("tenant alice: 2 keys"), "{err}");
    assert_eq!(kv_cmd(&["delete", "inbox"]).0, 0);
    let (code, _, err) = kv_cmd(&["get", "inbox"]);
    assert!(code != 0 && err.contains("is not in bucket"), "{err}");
    let (code, _, err) = site.run(&["kv", "--tenant", "carol", "list"]);
    assert!(code != 0 && err.contains("no tenant \"carol\""), "{err}");
    // Flags after the operation, as people type them.
    let (code, out, err) = site.run(&["kv", "set", "--tenant", "alice", "--bucket", "mail", "late", "flags"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert_eq!(kv_cmd(&["get", "late"]), (0, "flags".into(), String::new()));

    let server = site.start();
    assert_eq!(kv(&server, "alice", "op=get&bucket=mail&key=outbox").await, (200, "bye".into()));
    assert_eq!(kv(&server, "bob", "op=get&bucket=mail&key=outbox").await.0, 404);
}
