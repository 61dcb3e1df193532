//! The shared registry on a Sentinel URL, against real servers: after the master dies and the Sentinels
//! promote its replica, reads, writes and the change subscription work again by themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use palisade_kv::test_support::SentinelSet;
use palisade_registry::RedisRegistry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_follows_the_master_across_a_failover() {
    let mut set = SentinelSet::start();
    let registry = RedisRegistry::connect(&set.url()).expect("connect");
    let changes = Arc::new(AtomicUsize::new(0));
    let mark = tempfile::tempdir().expect("tempdir");
    let watcher = {
        let (registry, changes, mark) = (registry.clone(), changes.clone(), mark.path().join("last-purge"));
        tokio::spawn(async move {
            registry
                .watch(
                    &mark,
                    || {
                        changes.fetch_add(1, Ordering::SeqCst);
                    },
                    |_purge| {},
                    |_acme| {},
                )
                .await
        })
    };
    wait_for("the first subscription", || changes.load(Ordering::SeqCst) >= 1).await;
    let v1 = registry.put("alice", "one", "/one", false, b"one").await.expect("put before");
    wait_for("the change announced", || changes.load(Ordering::SeqCst) >= 2).await;

    set.sync_replica();
    set.kill_master();
    let started = Instant::now();
    let v2 = loop {
        match registry.put("alice", "two", "/two", false, b"two").await {
            Ok(record) => break record,
            Err(e) => assert!(started.elapsed() < Duration::from_secs(15), "no write after the failover: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(v2.version > v1.version, "the version counter was replicated: {v1:?} {v2:?}");
    let snapshot = registry.list().await.expect("list after the failover");
    assert_eq!(snapshot.apps, vec![v1, v2.clone()]);
    assert_eq!(registry.fetch("alice/two").await.expect("fetch").map(|(_, bytes)| bytes), Some(b"two".to_vec()));

    // The watch subscribed again, on the new master (counted once), and hears the changes made there.
    let seen = changes.load(Ordering::SeqCst);
    wait_for("the subscription on the new master", || changes.load(Ordering::SeqCst) > seen).await;
    let seen = changes.load(Ordering::SeqCst);
    registry.remove("alice", "one").await.expect("remove on the new master");
    wait_for("the removal announced", || changes.load(Ordering::SeqCst) > seen).await;
    watcher.abort();

    let status = registry.link_status();
    assert_eq!(status.master, Some(format!("127.0.0.1:{}", set.replica_port())), "{status:?}");
    assert_eq!(status.failovers, 1, "{status:?}");
}

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(15), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
