//! The Redis store on a Sentinel URL, against real servers: a master, its replica and three Sentinels. When
//! the master dies and the Sentinels promote the replica, the store serves again by itself, with the data
//! written before (replicated).

use std::time::{Duration, Instant};

use palisade_kv::test_support::SentinelSet;
use palisade_kv::{KvError, KvStore, Quota, RedisStore, Scope, Usage};
use palisade_redis::LinkKind;

const ROOMY: Quota = Quota { max_keys: 1000, max_value: 1000, max_total: 1 << 20 };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_follows_the_master_across_a_failover() {
    let mut set = SentinelSet::start();
    let store = RedisStore::connect(&set.url()).unwrap();
    let s = Scope::new("failover", "f").unwrap();
    store.set(&s, "before", b"1", &ROOMY).await.unwrap();
    assert_eq!(store.increment(&s, "counter", 5, &ROOMY).await.unwrap(), 5);
    let status = store.link_status();
    assert_eq!(status.kind, LinkKind::Sentinel);
    assert_eq!(status.master, Some(format!("127.0.0.1:{}", set.master_port())));
    assert_eq!((status.failovers, status.last_error), (0, None));

    set.sync_replica();
    set.kill_master();
    let down = store.get(&s, "before").await.unwrap_err();
    assert!(matches!(down, KvError::Unavailable(_)), "{down}");
    assert!(store.link_status().last_error.is_some(), "the failure shows in the status");

    let started = Instant::now();
    loop {
        match store.set(&s, "after", b"2", &ROOMY).await {
            Ok(()) => break,
            Err(e) => assert!(started.elapsed() < Duration::from_secs(15), "no write after the failover: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.get(&s, "before").await.unwrap().as_deref(), Some(&b"1"[..]), "replicated before the failover");
    assert_eq!(store.get(&s, "after").await.unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(store.increment(&s, "counter", 1, &ROOMY).await.unwrap(), 6);
    assert_eq!(store.list_keys(&s, 0).await.unwrap().keys, ["after", "before", "counter"]);
    assert_eq!(store.usage("failover").await.unwrap(), Usage { keys: 3, bytes: 7 + 6 + 8 });

    let status = store.link_status();
    assert_eq!(status.master, Some(format!("127.0.0.1:{}", set.replica_port())), "{status:?}");
    assert_eq!((status.failovers, status.last_error.as_deref()), (1, None), "{status:?}");
}

/// A failover the Sentinels are asked for: the old master stays up, first answering writes, then refusing
/// them as a replica (`READONLY`). Writes end up on the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_follows_a_requested_failover() {
    let set = SentinelSet::start();
    let store = RedisStore::connect(&set.url()).unwrap();
    let s = Scope::new("switch", "s").unwrap();
    store.set(&s, "k", b"0", &ROOMY).await.unwrap();
    set.sync_replica();
    set.fail_over();
    set.wait_for_promotion();

    let new_master = redis::Client::open(format!("redis://127.0.0.1:{}/0", set.replica_port())).unwrap();
    let mut new_master = new_master.get_multiplexed_async_connection().await.unwrap();
    let started = Instant::now();
    for i in 1.. {
        // Written through the store, read straight from the new master.
        let written = i.to_string();
        let stored = store.set(&s, "k", written.as_bytes(), &ROOMY).await;
        let there: Option<String> =
            redis::cmd("GET").arg("palisade:kv:switch:1:s:k").query_async(&mut new_master).await.unwrap();
        if stored.is_ok() && there.as_deref() == Some(written.as_str()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "writes do not reach the new master: {stored:?} {there:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = store.link_status();
    assert_eq!(status.master, Some(format!("127.0.0.1:{}", set.replica_port())), "{status:?}");
    assert_eq!(status.failovers, 1, "{status:?}");
}

#[tokio::test]
async fn a_plain_url_reports_its_server() {
    let store = RedisStore::connect("redis://127.0.0.1:1/0").unwrap();
    let status = store.link_status();
    assert_eq!((status.kind, status.master.as_deref(), status.failovers), (LinkKind::Plain, Some("127.0.0.1:1"), 0));
    assert!(store.ping().await.is_err());
    assert!(store.link_status().last_error.is_some());
}

#[tokio::test]
async fn malformed_sentinel_urls_are_refused() {
    for url in ["redis+sentinel://127.0.0.1:26379", "redis+sentinel:///m", "redis+sentinel://h:x/m"] {
        let error = RedisStore::connect(url).err().expect(url);
        assert!(error.to_string().contains(url), "{error}");
    }
}
