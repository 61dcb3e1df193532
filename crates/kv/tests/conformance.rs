//! One conformance suite, run against both stores: the embedded redb file and a real redis-server started
//! here on a free loopback port (installed by `scripts/setup.sh`).

#![allow(clippy::unwrap_used, reason = "a failed step is a failed test")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_kv::test_support::RedisServer as Redis;
use palisade_kv::{KvError, KvStore, LIST_PAGE, MAX_BUCKET_NAME, Quota, RedbStore, RedisStore, Scope, Usage};

const ROOMY: Quota = Quota { max_keys: 1_000_000, max_value: 1 << 20, max_total: 1 << 30 };

fn scope(tenant: &str, bucket: &str) -> Scope {
    Scope::new(tenant, bucket).unwrap()
}

async fn basics(store: &dyn KvStore) {
    let s = scope("basics", "default");
    assert_eq!(store.get(&s, "k").await.unwrap(), None);
    assert!(!store.exists(&s, "k").await.unwrap());
    store.set(&s, "k", b"v1", &ROOMY).await.unwrap();
    store.set(&s, "k", b"v2", &ROOMY).await.unwrap();
    assert_eq!(store.get(&s, "k").await.unwrap().as_deref(), Some(&b"v2"[..]));
    assert!(store.exists(&s, "k").await.unwrap());
    store.set(&s, "empty", b"", &ROOMY).await.unwrap();
    assert_eq!(store.get(&s, "empty").await.unwrap().as_deref(), Some(&b""[..]));
    store.delete(&s, "k").await.unwrap();
    store.delete(&s, "k").await.unwrap();
    assert_eq!(store.get(&s, "k").await.unwrap(), None);
    let binary: Vec<u8> = (0..=255).collect();
    store.set(&s, "binary", &binary, &ROOMY).await.unwrap();
    assert_eq!(store.get(&s, "binary").await.unwrap(), Some(binary));
}

async fn isolation(store: &dyn KvStore) {
    let alice = scope("iso-alice", "default");
    let bob = scope("iso-bob", "default");
    store.set(&alice, "secret", b"alice's", &ROOMY).await.unwrap();
    assert_eq!(store.get(&bob, "secret").await.unwrap(), None);
    store.set(&bob, "secret", b"bob's", &ROOMY).await.unwrap();
    assert_eq!(store.get(&alice, "secret").await.unwrap().as_deref(), Some(&b"alice's"[..]));
    // Names that would collide under a naive encoding each stay their own.
    let tricky = ["", "..", "../default", "default/..", "a:b", "a", "a\0", "default:secret", "ünïcødé", "*", "?"];
    for (i, bucket) in tricky.iter().enumerate() {
        store.set(&scope("iso-alice", bucket), "k:x", i.to_string().as_bytes(), &ROOMY).await.unwrap();
    }
    for (i, bucket) in tricky.iter().enumerate() {
        let got = store.get(&scope("iso-alice", bucket), "k:x").await.unwrap();
        assert_eq!(got, Some(i.to_string().into_bytes()), "bucket {bucket:?}");
        assert_eq!(store.get(&scope("iso-bob", bucket), "k:x").await.unwrap(), None, "bucket {bucket:?}");
    }
    store.set(&scope("iso-alice", "a"), "b:k", b"1", &ROOMY).await.unwrap();
    assert_eq!(store.get(&scope("iso-alice", "a:b"), "k").await.unwrap(), None);
    let keys = store.list_keys(&scope("iso-alice", "a"), 0).await.unwrap().keys;
    assert_eq!(keys, ["b:k", "k:x"]);
    assert!(matches!(Scope::new("iso-alice", &"x".repeat(MAX_BUCKET_NAME + 1)), Err(KvError::InvalidName(_))));
    assert!(matches!(store.get(&alice, &"k".repeat(70_000)).await, Err(KvError::InvalidName(_))));
}

async fn listing(store: &dyn KvStore) {
    let s = scope("listing", "many");
    let total = LIST_PAGE * 2 + 500;
    for i in 0..total {
        store.set(&s, &format!("key-{i:05}"), b"", &ROOMY).await.unwrap();
    }
    store.set(&scope("listing", "many-more"), "other", b"", &ROOMY).await.unwrap();
    let mut all = Vec::new();
    let mut cursor = 0;
    loop {
        let page = store.list_keys(&s, cursor).await.unwrap();
        assert!(page.keys.len() <= LIST_PAGE);
        all.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let expected: Vec<String> = (0..total).map(|i| format!("key-{i:05}")).collect();
    assert_eq!(all, expected);
    assert!(store.list_keys(&s, u64::MAX).await.unwrap().keys.is_empty());
    assert!(store.list_keys(&scope("listing", "empty"), 0).await.unwrap().keys.is_empty());
}

async fn quotas(store: &dyn KvStore) {
    let s = scope("quota", "q");
    let quota = Quota { max_keys: 3, max_value: 10, max_total: 40 };
    assert!(matches!(store.set(&s, "big", &[0; 11], &quota).await, Err(KvError::Quota(_))));
    for k in ["a", "b", "c"] {
        store.set(&s, k, b"1234", &quota).await.unwrap();
    }
    let r = store.set(&s, "d", b"1", &quota).await;
    assert!(matches!(r, Err(KvError::Quota(_))), "max_keys: {r:?}");
    store.set(&s, "a", b"0123456789", &quota).await.unwrap(); // an overwrite is not a new key
    assert_eq!(store.usage("quota").await.unwrap(), Usage { keys: 3, bytes: 3 + 10 + 4 + 4 });
    // In another bucket, the same tenant's limits apply.
    assert!(matches!(store.set(&scope("quota", "other"), "x", b"1", &quota).await, Err(KvError::Quota(_))));
    let tight = Quota { max_total: 20, ..quota };
    assert!(matches!(store.set(&s, "b", b"123456789", &tight).await, Err(KvError::Quota(_))), "max_total");
    assert_eq!(store.get(&s, "b").await.unwrap().as_deref(), Some(&b"1234"[..]), "nothing written");
    store.set(&s, "a", b"1", &tight).await.unwrap(); // shrinking is allowed over the limit
    store.delete(&s, "b").await.unwrap();
    store.set(&s, "d", b"1", &quota).await.unwrap();
    assert_eq!(store.usage("quota").await.unwrap(), Usage { keys: 3, bytes: 2 + 5 + 2 });
    assert!(matches!(store.increment(&s, "e", 1, &quota).await, Err(KvError::Quota(_))));
}

async fn counters(store: Arc<dyn KvStore>) {
    let s = scope("counters", "c");
    assert_eq!(store.increment(&s, "n", 5, &ROOMY).await.unwrap(), 5);
    assert_eq!(store.get(&s, "n").await.unwrap().as_deref(), Some(&b"5"[..]));
    store.set(&s, "text", b"hello", &ROOMY).await.unwrap();
    assert!(matches!(store.increment(&s, "text", 1, &ROOMY).await, Err(KvError::NotACounter(_))));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, s) = (store.clone(), s.clone());
            tokio::spawn(async move {
                for _ in 0..25 {
                    store.increment(&s, "shared", 1, &ROOMY).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.get(&s, "shared").await.unwrap().as_deref(), Some(&b"500"[..]));
    store.set(&s, "max", (i64::MAX as u64).to_string().as_bytes(), &ROOMY).await.unwrap();
    assert!(matches!(store.increment(&s, "max", u64::MAX, &ROOMY).await, Err(KvError::NotACounter(_))));
}

async fn compare_and_swap(store: &dyn KvStore) {
    let s = scope("cas", "c");
    assert!(store.compare_and_swap(&s, "k", None, b"first", &ROOMY).await.unwrap());
    assert!(!store.compare_and_swap(&s, "k", None, b"again", &ROOMY).await.unwrap());
    assert!(!store.compare_and_swap(&s, "k", Some(b"wrong"), b"x", &ROOMY).await.unwrap());
    assert!(store.compare_and_swap(&s, "k", Some(b"first"), b"second", &ROOMY).await.unwrap());
    assert_eq!(store.get(&s, "k").await.unwrap().as_deref(), Some(&b"second"[..]));
    assert_eq!(store.usage("cas").await.unwrap(), Usage { keys: 1, bytes: 1 + 6 });
}

async fn conformance(store: Arc<dyn KvStore>) {
    basics(store.as_ref()).await;
    isolation(store.as_ref()).await;
    listing(store.as_ref()).await;
    quotas(store.as_ref()).await;
    counters(store.clone()).await;
    compare_and_swap(store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Arc::new(RedbStore::open(&dir.path().join("kv.redb")).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let redis = Redis::start();
    conformance(Arc::new(RedisStore::connect(&redis.url()).unwrap())).await;
}

#[tokio::test]
async fn redb_keeps_acknowledged_writes_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    let s = scope("durable", "d");
    {
        let store = RedbStore::open(&path).unwrap();
        for i in 0..100 {
            store.set(&s, &i.to_string(), b"x", &ROOMY).await.unwrap();
        }
    }
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.usage("durable").await.unwrap().keys, 100);
    assert_eq!(store.get(&s, "99").await.unwrap().as_deref(), Some(&b"x"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_an_error_then_heals() {
    let redis = Redis::start();
    let port = redis.port();
    let store = RedisStore::connect(&redis.url()).unwrap();
    let s = scope("outage", "o");
    store.set(&s, "before", b"1", &ROOMY).await.unwrap();
    drop(redis);
    let err = store.get(&s, "before").await.unwrap_err();
    assert!(matches!(err, KvError::Unavailable(_)), "{err}");
    let _redis = Redis::start_on(port);
    let started = Instant::now();
    // The data was not persisted (no RDB/AOF here); what matters is that the store serves again by itself.
    loop {
        match store.set(&s, "after", b"2", &ROOMY).await {
            Ok(()) => break,
            Err(e) => assert!(started.elapsed() < Duration::from_secs(15), "never reconnected: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.get(&s, "after").await.unwrap().as_deref(), Some(&b"2"[..]));
}
