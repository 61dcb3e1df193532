//! The shared registry against a real redis-server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_kv::test_support::RedisServer;
use palisade_registry::{RedisRegistry, RegistryError};

#[tokio::test]
async fn put_fetch_list_remove_and_watch() {
    let server = RedisServer::start();
    let registry = RedisRegistry::connect(&server.url()).expect("connect");
    let changes = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (registry, changes) = (registry.clone(), changes.clone());
        tokio::spawn(async move {
            registry
                .watch(|| {
                    changes.fetch_add(1, Ordering::SeqCst);
                })
                .await
        })
    };
    // The subscription announces itself once.
    wait_for(|| changes.load(Ordering::SeqCst) >= 1).await;

    let v1 = registry.put("alice", "hello", "/hello", b"one").await.expect("put v1");
    let v2 = registry.put("alice", "hello", "/hello", b"two").await.expect("put v2");
    assert!(v2.version > v1.version && v1.version > 0, "{v1:?} {v2:?}");
    let (record, bytes) = registry.fetch("alice/hello").await.expect("fetch").expect("present");
    assert_eq!((record, bytes), (v2.clone(), b"two".to_vec()));
    assert_eq!(registry.list().await.expect("list"), (v2.version, vec![v2.clone()]));
    wait_for(|| changes.load(Ordering::SeqCst) >= 3).await;

    assert!(registry.remove("alice", "hello").await.expect("remove"));
    assert!(!registry.remove("alice", "hello").await.expect("remove again"));
    assert!(registry.fetch("alice/hello").await.expect("fetch").is_none());
    let (version, records) = registry.list().await.expect("list");
    assert!(records.is_empty() && version > v2.version, "a removal is a new version too");
    wait_for(|| changes.load(Ordering::SeqCst) >= 4).await;
    watcher.abort();

    drop(server);
    let down = registry.list().await;
    assert!(matches!(down, Err(RegistryError::Unavailable(_))), "{down:?}");
}

async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting");
}
