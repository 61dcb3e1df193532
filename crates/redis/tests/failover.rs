//! A Sentinel link against real servers (a master, its replica and three Sentinels, from palisade-kv's test
//! support): commands and pub/sub follow the master when the Sentinels promote the replica.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use palisade_kv::test_support::{RedisServer, SentinelSet};
use palisade_redis::{Link, LinkError, LinkKind};
use redis::aio::ConnectionManagerConfig;

fn config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
}

/// Runs `attempt` every 100 ms until it succeeds; fails the test after 15 s.
async fn within_15s<T, F: std::future::Future<Output = redis::RedisResult<T>>>(
    what: &str,
    attempt: impl Fn() -> F,
) -> T {
    let started = Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) => assert!(started.elapsed() < Duration::from_secs(15), "{what}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_subscriptions_follow_the_master() {
    let mut set = SentinelSet::start();
    let link = Link::open(&set.url(), config()).unwrap();
    assert_eq!(link.status().master, None, "nothing is asked before the first command");
    let () = redis::cmd("SET").arg("k").arg("before").query_async(&mut link.connection()).await.unwrap();
    assert_eq!(link.status().master, Some(format!("127.0.0.1:{}", set.master_port())));

    let mut moves = link.master_moves();
    set.sync_replica();
    set.kill_master();
    set.wait_for_promotion();
    let value: String = within_15s("GET after the failover", || async {
        redis::cmd("GET").arg("k").query_async(&mut link.connection()).await
    })
    .await;
    assert_eq!(value, "before");
    let () = redis::cmd("SET").arg("k").arg("after").query_async(&mut link.connection()).await.unwrap();

    let status = link.status();
    assert_eq!(status.kind, LinkKind::Sentinel);
    assert_eq!(status.master_name.as_deref(), Some(palisade_kv::test_support::SENTINEL_MASTER_NAME));
    assert_eq!(status.master, Some(format!("127.0.0.1:{}", set.replica_port())));
    assert_eq!((status.failovers, status.last_error.as_deref()), (1, None), "{status:?}");

    tokio::time::timeout(Duration::from_secs(1), moves.moved()).await.expect("subscribers are told the master moved");

    // A subscription opened now is on the new master: it hears what is published there.
    let mut pubsub = link.pubsub().await.unwrap();
    pubsub.subscribe("news").await.unwrap();
    let receivers: i64 =
        redis::cmd("PUBLISH").arg("news").arg("hello").query_async(&mut link.connection()).await.unwrap();
    assert_eq!(receivers, 1);
    let message = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next()).await.unwrap().unwrap();
    assert_eq!(message.get_payload::<String>().unwrap(), "hello");
}

#[tokio::test]
async fn unreachable_sentinels_fail_commands_quickly_and_show_why() {
    let link = Link::open("redis+sentinel://127.0.0.1:1,127.0.0.1:2/nobody", config()).unwrap();
    let started = Instant::now();
    let result: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut link.connection()).await;
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(6), "bounded by the lookup's timeout");
    let status = link.status();
    assert_eq!((status.master.as_deref(), status.failovers), (None, 0));
    assert!(status.last_error.is_some(), "{status:?}");
}

#[tokio::test]
async fn a_plain_link_is_one_server() {
    let server = RedisServer::start();
    let link = Link::open(&server.url(), config()).unwrap();
    let () = redis::cmd("SET").arg("k").arg("v").query_async(&mut link.connection()).await.unwrap();
    let (value, size): (String, i64) =
        redis::pipe().get("k").cmd("DBSIZE").query_async(&mut link.connection()).await.unwrap();
    assert_eq!((value.as_str(), size), ("v", 1));
    let status = link.status();
    assert_eq!(
        (status.kind, status.master, status.failovers),
        (LinkKind::Plain, Some(format!("127.0.0.1:{}", server.port())), 0)
    );
    assert!(matches!(Link::open("127.0.0.1:6379", config()), Err(LinkError::Scheme(_))));
}
