//! The shared store: Redis, so that several palisade nodes see the same data. Each write is one Lua script
//! (atomic on the server) that also keeps the bucket's key index and the tenant's usage and checks its quota.
//! The connection reconnects by itself, and with a Sentinel URL follows the master across failovers; while
//! Redis is down (or no master is known), operations fail with [`KvError::Unavailable`].

use std::time::Duration;

use palisade_redis::{Link, LinkConnection, LinkStatus};
use redis::aio::ConnectionManagerConfig;
use redis::{Script, ScriptInvocation};

use crate::scope::{redis_tenant_patterns, redis_usage};
use crate::{KeyPage, KvError, KvFuture, KvStore, LIST_PAGE, Quota, Scope, Usage};

/// Keys asked of each `SCAN` step (a hint to the server), so at most about this many per `UNLINK`.
const SCAN_BATCH: usize = 500;

/// Tenants' key-value data in a Redis database.
#[derive(Clone)]
pub struct RedisStore {
    link: Link,
    scripts: std::sync::Arc<Scripts>,
}

struct Scripts {
    write: Script,
    increment: Script,
}

/// Sets or deletes one entry. KEYS: value, index, usage. ARGV: mode ("set", "delete" or "cas"), key name,
/// new value, max_keys, max_total, expected value ("cas"), whether one is expected ("1"/"0").
/// Returns 1 if written, 0 if a compare-and-swap found another value; errors start with "QUOTA".
const WRITE: &str = r#"
local mode, member, value = ARGV[1], ARGV[2], ARGV[3]
local max_keys, max_total = tonumber(ARGV[4]), tonumber(ARGV[5])
local old = redis.call('GET', KEYS[1])
if mode == 'cas' then
  local want = ARGV[7] == '1'
  if (want and old ~= ARGV[6]) or (not want and old) then return 0 end
end
local keys = tonumber(redis.call('HGET', KEYS[3], 'keys') or '0')
local bytes = tonumber(redis.call('HGET', KEYS[3], 'bytes') or '0')
local old_size = old and (#member + #old) or 0
if mode == 'delete' then
  if old then
    redis.call('DEL', KEYS[1])
    redis.call('ZREM', KEYS[2], member)
    redis.call('HINCRBY', KEYS[3], 'keys', -1)
    redis.call('HINCRBY', KEYS[3], 'bytes', -old_size)
  end
  return 1
end
local new_size = #member + #value
if not old and keys + 1 > max_keys then return redis.error_reply('QUOTA max_keys') end
if new_size > old_size and bytes - old_size + new_size > max_total then return redis.error_reply('QUOTA max_total') end
redis.call('SET', KEYS[1], value)
if not old then
  redis.call('ZADD', KEYS[2], 0, member)
  redis.call('HINCRBY', KEYS[3], 'keys', 1)
end
redis.call('HINCRBY', KEYS[3], 'bytes', new_size - old_size)
return 1
"#;

/// Adds to a decimal counter. KEYS: value, index, usage. ARGV: key name, delta, max_keys, max_total.
/// Returns the new value as a string (Redis counters are signed 64-bit).
const INCREMENT: &str = r#"
local member = ARGV[1]
local old = redis.call('GET', KEYS[1])
local keys = tonumber(redis.call('HGET', KEYS[3], 'keys') or '0')
local bytes = tonumber(redis.call('HGET', KEYS[3], 'bytes') or '0')
if not old and keys + 1 > tonumber(ARGV[3]) then return redis.error_reply('QUOTA max_keys') end
local new = redis.call('INCRBY', KEYS[1], ARGV[2])
local old_size = old and (#member + #old) or 0
local new_size = #member + #tostring(new)
if new_size > old_size and bytes - old_size + new_size > tonumber(ARGV[4]) then
  if old then redis.call('SET', KEYS[1], old) else redis.call('DEL', KEYS[1]) end
  return redis.error_reply('QUOTA max_total')
end
if not old then
  redis.call('ZADD', KEYS[2], 0, member)
  redis.call('HINCRBY', KEYS[3], 'keys', 1)
end
redis.call('HINCRBY', KEYS[3], 'bytes', new_size - old_size)
return tostring(new)
"#;

impl RedisStore {
    /// A store on the Redis server at `url` (`redis://host:port/db`), or on the master the Sentinels at
    /// `redis+sentinel://host:port,.../master[/db]` name. Connecting is lazy: this only fails for a malformed URL, and a server that is down now is simply an [`KvError::Unavailable`] for each operation
    /// until it is back (see [`RedisStore::ping`]). Must be called inside a tokio runtime, which then drives
    /// the connection.
    pub fn connect(url: &str) -> Result<RedisStore, KvError> {
        // Fail fast while Redis is away (a guest waits on each call); reconnect on the next call.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let link = Link::open(url, config).map_err(|e| KvError::Unavailable(e.to_string()))?;
        let scripts = Scripts { write: Script::new(WRITE), increment: Script::new(INCREMENT) };
        Ok(RedisStore { link, scripts: std::sync::Arc::new(scripts) })
    }

    /// The link's kind, the master in use, the failovers seen and the last failure (for readiness and
    /// metrics).
    pub fn link_status(&self) -> LinkStatus {
        self.link.status()
    }

    /// Whether the server answers now.
    pub async fn ping(&self) -> Result<(), KvError> {
        let mut connection = self.link.connection();
        redis::cmd("PING").query_async::<String>(&mut connection).await.map(drop).map_err(redis_error)
    }

    async fn run<T: redis::FromRedisValue>(&self, invocation: ScriptInvocation<'_>) -> Result<T, KvError> {
        let mut connection = self.link.connection();
        invocation.invoke_async(&mut connection).await.map_err(redis_error)
    }

    fn write_script<'s>(&'s self, scope: &Scope, key: &str, mode: &str) -> Result<ScriptInvocation<'s>, KvError> {
        let mut invocation = self.scripts.write.prepare_invoke();
        invocation.key(scope.redis_key(key)?).key(scope.redis_index()).key(redis_usage(scope.tenant()));
        invocation.arg(mode).arg(key);
        Ok(invocation)
    }
}

/// Unlinks every key matching `pattern`, a batch per `SCAN` step (never all of them in one command, which would
/// hold the server up); how many existed. Keys `SCAN` returns twice count once, since the second `UNLINK` finds
/// nothing.
async fn unlink_matching(connection: &mut LinkConnection, pattern: &str) -> Result<u64, KvError> {
    let mut cursor = 0u64;
    let mut removed = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_BATCH)
            .query_async(connection)
            .await
            .map_err(redis_error)?;
        if !keys.is_empty() {
            // UNLINK frees the memory in the background: large values do not stall the server.
            let unlinked: u64 = redis::cmd("UNLINK").arg(&keys).query_async(connection).await.map_err(redis_error)?;
            removed += unlinked;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}

fn redis_error(e: redis::RedisError) -> KvError {
    if e.code() == Some("QUOTA") {
        return KvError::Quota(format!("{} reached", e.detail().unwrap_or("a limit")));
    }
    let text = e.to_string();
    if text.contains("not an integer") || text.contains("overflow") {
        return KvError::NotACounter(text);
    }
    KvError::Unavailable(text)
}

impl KvStore for RedisStore {
    fn get<'a>(&'a self, scope: &'a Scope, key: &'a str) -> KvFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let mut connection = self.link.connection();
            redis::cmd("GET").arg(scope.redis_key(key)?).query_async(&mut connection).await.map_err(redis_error)
        })
    }

    fn set<'a>(&'a self, scope: &'a Scope, key: &'a str, value: &'a [u8], quota: &'a Quota) -> KvFuture<'a, ()> {
        Box::pin(async move {
            quota.check_value(value)?;
            let mut invocation = self.write_script(scope, key, "set")?;
            invocation.arg(value).arg(quota.max_keys).arg(quota.max_total);
            self.run::<i64>(invocation).await.map(drop)
        })
    }

    fn delete<'a>(&'a self, scope: &'a Scope, key: &'a str) -> KvFuture<'a, ()> {
        Box::pin(async move {
            let mut invocation = self.write_script(scope, key, "delete")?;
            invocation.arg("").arg(u64::MAX).arg(u64::MAX);
            self.run::<i64>(invocation).await.map(drop)
        })
    }

    fn exists<'a>(&'a self, scope: &'a Scope, key: &'a str) -> KvFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.link.connection();
            redis::cmd("EXISTS").arg(scope.redis_key(key)?).query_async(&mut connection).await.map_err(redis_error)
        })
    }

    fn list_keys<'a>(&'a self, scope: &'a Scope, cursor: u64) -> KvFuture<'a, KeyPage> {
        Box::pin(async move {
            let mut connection = self.link.connection();
            let start = i64::try_from(cursor).unwrap_or(i64::MAX);
            // One more than a page, to know whether another follows.
            let stop = start.saturating_add(LIST_PAGE as i64);
            let mut keys: Vec<String> = redis::cmd("ZRANGE")
                .arg(scope.redis_index())
                .arg(start)
                .arg(stop)
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            let more = keys.len() > LIST_PAGE;
            keys.truncate(LIST_PAGE);
            let next = more.then(|| cursor + keys.len() as u64);
            Ok(KeyPage { keys, cursor: next })
        })
    }

    fn increment<'a>(&'a self, scope: &'a Scope, key: &'a str, delta: u64, quota: &'a Quota) -> KvFuture<'a, u64> {
        Box::pin(async move {
            let delta = i64::try_from(delta).map_err(|_| KvError::NotACounter("the counter would overflow".into()))?;
            let mut invocation = self.scripts.increment.prepare_invoke();
            invocation.key(scope.redis_key(key)?).key(scope.redis_index()).key(redis_usage(scope.tenant()));
            invocation.arg(key).arg(delta).arg(quota.max_keys).arg(quota.max_total);
            let value: String = self.run(invocation).await?;
            value.parse().map_err(|_| KvError::NotACounter(format!("the counter is {value}")))
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        scope: &'a Scope,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: &'a [u8],
        quota: &'a Quota,
    ) -> KvFuture<'a, bool> {
        Box::pin(async move {
            quota.check_value(new)?;
            let mut invocation = self.write_script(scope, key, "cas")?;
            invocation.arg(new).arg(quota.max_keys).arg(quota.max_total);
            invocation.arg(expected.unwrap_or_default()).arg(if expected.is_some() { "1" } else { "0" });
            Ok(self.run::<i64>(invocation).await? == 1)
        })
    }

    fn usage<'a>(&'a self, tenant: &'a str) -> KvFuture<'a, Usage> {
        Box::pin(async move {
            let mut connection = self.link.connection();
            let (keys, bytes): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
                .arg(redis_usage(tenant))
                .arg("keys")
                .arg("bytes")
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            Ok(Usage { keys: keys.unwrap_or(0), bytes: bytes.unwrap_or(0) })
        })
    }

    /// Not atomic here, unlike the embedded store: a tenant's data may be too large for one script without
    /// blocking every other tenant, so it goes in batches. Stop the tenant's guests first: a write racing the
    /// removal may survive it, or leave its usage off by that write. A failure midway leaves part removed;
    /// calling again finishes the job.
    fn remove_tenant<'a>(&'a self, tenant: &'a str) -> KvFuture<'a, u64> {
        Box::pin(async move {
            let [values, indexes] = redis_tenant_patterns(tenant)?;
            let mut connection = self.link.connection();
            let removed = unlink_matching(&mut connection, &values).await?;
            unlink_matching(&mut connection, &indexes).await?;
            // Last: until the values are gone the counts still describe what is stored. Absent reads as 0 keys,
            // 0 bytes, and the next write starts the counts afresh.
            redis::cmd("DEL")
                .arg(redis_usage(tenant))
                .query_async::<u64>(&mut connection)
                .await
                .map_err(redis_error)?;
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::RedisServer;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn remove_tenant_removes_only_that_tenant() {
        let redis = RedisServer::start();
        let store = RedisStore::connect(&redis.url()).unwrap();
        crate::tests::remove_tenant_removes_only_that_tenant(&store).await;
        // Nothing of `a`'s buckets is left behind, not even an index (the scenario's last write aside).
        let mut connection = store.link.connection();
        let mut left: Vec<String> =
            redis::cmd("KEYS").arg("palisade:kv*:a:*").query_async(&mut connection).await.unwrap();
        left.sort();
        assert_eq!(left, ["palisade:kv-index:a:3:one", "palisade:kv:a:3:one:k"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn remove_tenant_goes_in_batches() {
        let redis = RedisServer::start();
        let store = RedisStore::connect(&redis.url()).unwrap();
        let quota = Quota::UNLIMITED;
        let total = SCAN_BATCH * 3 + 7;
        for i in 0..total {
            store
                .set(&Scope::new("many", &format!("b{}", i % 3)).unwrap(), &i.to_string(), b"x", &quota)
                .await
                .unwrap();
        }
        store.set(&Scope::new("many-more", "b0").unwrap(), "kept", b"x", &quota).await.unwrap();
        assert_eq!(store.remove_tenant("many").await.unwrap(), total as u64);
        assert_eq!(store.usage("many").await.unwrap(), Usage::default());
        assert_eq!(store.usage("many-more").await.unwrap(), Usage { keys: 1, bytes: 5 });
        let mut connection = store.link.connection();
        let size: u64 = redis::cmd("DBSIZE").query_async(&mut connection).await.unwrap();
        assert_eq!(size, 3, "many-more's value, index and usage");
    }
}
