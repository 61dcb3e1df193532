//! The shared registry against a real redis-server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_kv::test_support::RedisServer;
use palisade_registry::{RedisRegistry, RegistryError, TokenRecord};

#[tokio::test]
async fn put_fetch_list_remove_and_watch() {
    let server = RedisServer::start();
    let registry = RedisRegistry::connect(&server.url()).expect("connect");
    let changes = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (registry, changes) = (registry.clone(), changes.clone());
        let mark = tempfile::tempdir().expect("tempdir");
        tokio::spawn(async move {
            registry
                .watch(
                    &mark.path().join("last-purge"),
                    || {
                        changes.fetch_add(1, Ordering::SeqCst);
                    },
                    |_purge| {},
                    |_acme| {},
                )
                .await
        })
    };
    // The subscription announces itself once.
    wait_for(|| changes.load(Ordering::SeqCst) >= 1).await;

    let v1 = registry.put("alice", "hello", "/hello", false, b"one").await.expect("put v1");
    let v2 = registry.put("alice", "hello", "/hello", true, b"two").await.expect("put v2");
    assert!(v2.version > v1.version && v1.version > 0, "{v1:?} {v2:?}");
    let (record, bytes) = registry.fetch("alice/hello").await.expect("fetch").expect("present");
    assert_eq!((record, bytes), (v2.clone(), b"two".to_vec()));
    let snapshot = registry.list().await.expect("list");
    assert_eq!((snapshot.version, snapshot.apps), (v2.version, vec![v2.clone()]));
    wait_for(|| changes.load(Ordering::SeqCst) >= 3).await;

    assert!(registry.remove("alice", "hello").await.expect("remove"));
    assert!(!registry.remove("alice", "hello").await.expect("remove again"));
    assert!(registry.fetch("alice/hello").await.expect("fetch").is_none());
    let snapshot = registry.list().await.expect("list");
    assert!(snapshot.apps.is_empty() && snapshot.version > v2.version, "a removal is a new version too");
    wait_for(|| changes.load(Ordering::SeqCst) >= 4).await;
    watcher.abort();

    drop(server);
    let down = registry.list().await;
    assert!(matches!(down, Err(RegistryError::Unavailable(_))), "{down:?}");
}

#[tokio::test]
async fn tenants_and_tokens_are_versioned_with_the_apps_and_removed_together() {
    let server = RedisServer::start();
    let registry = RedisRegistry::connect(&server.url()).expect("connect");
    // A document Lua's JSON would change (an empty array, a large number) is stored as it was given.
    let spec = serde_json::json!({"hosts": ["acme.example"], "outbound": [], "max_request_body": 9007199254740993u64});
    let first = registry.put_tenant("acme", spec.clone(), None).await.expect("put tenant");
    assert!(first.version > 0);
    let app = registry.put("acme", "site", "/", false, b"wasm").await.expect("put app");
    registry.put("acme-two", "site", "/", false, b"other").await.expect("another tenant's app");
    let second = registry.put_tenant("acme", spec.clone(), Some(&first)).await.expect("replace");
    assert!(second.version > app.version && second.created_at == first.created_at);
    registry.add_token("acme", &TokenRecord::new("t1", "secret-1")).await.expect("token 1");
    registry.add_token("acme", &TokenRecord::new("t2", "secret-2")).await.expect("token 2");
    let snapshot = registry.list().await.expect("list");
    assert_eq!(snapshot.tenants, vec![second.clone()]);
    assert_eq!(snapshot.tenants[0].spec, spec);
    let ids: Vec<&str> = snapshot.tokens[0].1.iter().map(|t| t.id.as_str()).collect();
    assert_eq!((snapshot.tokens[0].0.as_str(), ids), ("acme", vec!["t1", "t2"]));
    assert!(snapshot.tokens[0].1[1].matches("secret-2"));

    assert!(registry.remove_token("acme", "t1").await.expect("revoke"));
    assert!(!registry.remove_token("acme", "t1").await.expect("revoke again"));
    assert!(registry.remove_token("acme", "t2").await.expect("revoke the last"));
    assert!(registry.list().await.expect("list").tokens.is_empty());

    registry.add_token("acme", &TokenRecord::new("t3", "secret-3")).await.expect("token 3");
    let before = registry.list().await.expect("list").version;
    assert!(registry.remove_tenant("acme").await.expect("remove tenant"));
    assert!(!registry.remove_tenant("acme").await.expect("remove again"));
    let snapshot = registry.list().await.expect("list");
    assert!(snapshot.version > before);
    assert!(snapshot.tenants.is_empty() && snapshot.tokens.is_empty(), "{snapshot:?}");
    let apps: Vec<String> = snapshot.apps.iter().map(|a| a.key()).collect();
    assert_eq!(apps, ["acme-two/site"], "the tenant's apps went with it, not another's with a longer name");
    assert!(registry.fetch("acme/site").await.expect("fetch").is_none());
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
