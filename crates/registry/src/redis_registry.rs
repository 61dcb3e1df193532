//! The shared app registry of a cluster, in Redis.
//!
//! - `palisade:apps`: a hash from `tenant/name` to the app's record (JSON);
//! - `palisade:app-wasm:tenant/name`: the app's bytes;
//! - `palisade:apps:version`: the counter that versions every deploy;
//! - channel `palisade:apps`: a message after every change.
//!
//! A deploy or removal is one Lua script, so the record, the bytes and the message change together.

use std::time::Duration;

use futures::StreamExt as _;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::record::verify;
use crate::{AppRecord, RegistryError};

/// The pub/sub channel that announces changes.
pub const CHANNEL: &str = "palisade:apps";
const RECORDS: &str = "palisade:apps";
const VERSION: &str = "palisade:apps:version";

fn wasm_key(key: &str) -> String {
    format!("palisade:app-wasm:{key}")
}

/// KEYS: records, wasm, version. ARGV: app key, record JSON (its version is replaced), bytes, channel.
const PUT: &str = r#"
local version = redis.call('INCR', KEYS[3])
local record = cjson.decode(ARGV[2])
record['version'] = version
local encoded = cjson.encode(record)
redis.call('SET', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], encoded)
redis.call('PUBLISH', ARGV[4], ARGV[1])
return encoded
"#;

/// KEYS: records, wasm, version. ARGV: app key, channel. Returns 1 if the app was there.
const REMOVE: &str = r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1
"#;

/// Deployed apps shared by every node of a cluster.
#[derive(Clone)]
pub struct RedisRegistry {
    client: redis::Client,
    connection: ConnectionManager,
    scripts: std::sync::Arc<Scripts>,
}

/// The Lua scripts that change the registry, each in one atomic step.
struct Scripts {
    put: Script,
    remove: Script,
}

fn unavailable(e: redis::RedisError) -> RegistryError {
    RegistryError::Unavailable(e.to_string())
}

impl RedisRegistry {
    /// The registry on the Redis server at `url`. Connecting is lazy (call inside a tokio runtime): while
    /// Redis is down, each operation fails with [`RegistryError::Unavailable`].
    pub fn connect(url: &str) -> Result<RedisRegistry, RegistryError> {
        let client = redis::Client::open(url).map_err(|e| RegistryError::Unavailable(format!("{url}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| RegistryError::Unavailable(format!("{url}: {e}")))?;
        let scripts = std::sync::Arc::new(Scripts { put: Script::new(PUT), remove: Script::new(REMOVE) });
        Ok(RedisRegistry { client, connection, scripts })
    }

    /// The registry's version (the latest deploy's or removal's) and every app's record, read together. A
    /// record that cannot be parsed is logged and skipped.
    pub async fn list(&self) -> Result<(u64, Vec<AppRecord>), RegistryError> {
        let mut connection = self.connection.clone();
        let (version, all): (Option<u64>, Vec<(String, String)>) = redis::pipe()
            .atomic()
            .get(VERSION)
            .hgetall(RECORDS)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let mut records: Vec<AppRecord> = all
            .into_iter()
            .filter_map(|(key, text)| match serde_json::from_str(&text) {
                Ok(record) => Some(record),
                Err(e) => {
                    tracing::warn!("skipping app {key} in Redis: {e}");
                    None
                }
            })
            .collect();
        records.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
        Ok((version.unwrap_or(0), records))
    }

    /// The current record and bytes of the app `key` (`tenant/name`), read together; `None` if it is gone.
    pub async fn fetch(&self, key: &str) -> Result<Option<(AppRecord, Vec<u8>)>, RegistryError> {
        let mut connection = self.connection.clone();
        let (text, bytes): (Option<String>, Option<Vec<u8>>) = redis::pipe()
            .atomic()
            .hget(RECORDS, key)
            .get(wasm_key(key))
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let (Some(text), Some(bytes)) = (text, bytes) else { return Ok(None) };
        let record: AppRecord =
            serde_json::from_str(&text).map_err(|e| RegistryError::Corrupt(format!("app {key} in Redis: {e}")))?;
        verify(&record, &bytes)?;
        Ok(Some((record, bytes)))
    }

    /// Stores `bytes` as `tenant/name` at `route` with a new version, and tells every node.
    pub async fn put(&self, tenant: &str, name: &str, route: &str, bytes: &[u8]) -> Result<AppRecord, RegistryError> {
        // The script sets the version from the registry's counter.
        let record = AppRecord::describe(tenant, name, route, bytes, 0);
        let key = record.key();
        let json = serde_json::to_string(&record).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        let mut connection = self.connection.clone();
        let stored: String = self
            .scripts
            .put
            .key(RECORDS)
            .key(wasm_key(&key))
            .key(VERSION)
            .arg(&key)
            .arg(json)
            .arg(bytes)
            .arg(CHANNEL)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        serde_json::from_str(&stored).map_err(|e| RegistryError::Corrupt(format!("app {key} in Redis: {e}")))
    }

    /// Removes `tenant/name` and tells every node; whether it was there.
    pub async fn remove(&self, tenant: &str, name: &str) -> Result<bool, RegistryError> {
        let key = format!("{tenant}/{name}");
        let mut connection = self.connection.clone();
        let removed: i64 = self
            .scripts
            .remove
            .key(RECORDS)
            .key(wasm_key(&key))
            .key(VERSION)
            .arg(&key)
            .arg(CHANNEL)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(removed == 1)
    }

    /// Calls `on_change` for every change announced on [`CHANNEL`], and each time the subscription is
    /// (re)established (changes may have been missed while it was not). Runs until the task is dropped;
    /// while Redis is away it retries every second.
    pub async fn watch(&self, on_change: impl Fn()) {
        let mut warned = false;
        loop {
            match self.client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(CHANNEL).await {
                    Ok(()) => {
                        if warned {
                            tracing::info!("app registry: subscribed to Redis again");
                        }
                        warned = false;
                        on_change();
                        let mut messages = pubsub.on_message();
                        while messages.next().await.is_some() {
                            on_change();
                        }
                    }
                    Err(e) => warn_once(&mut warned, &e),
                },
                Err(e) => warn_once(&mut warned, &e),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn warn_once(warned: &mut bool, e: &redis::RedisError) {
    if !*warned {
        tracing::warn!("app registry: cannot subscribe to changes in Redis ({e}); serving the apps known so far");
        *warned = true;
    }
}
