//! The shared app registry of a cluster, in Redis.
//!
//! - `palisade:apps`: a hash from `tenant/name` to the app's record (JSON);
//! - `palisade:app-wasm:tenant/name`: the app's bytes;
//! - `palisade:tenants`: a hash from a tenant's name to its record (JSON), for tenants created through the API;
//! - `palisade:tokens`: a hash from a tenant's name to its tokens' records (a JSON array of hashes);
//! - `palisade:apps:version`: the counter that versions every change;
//! - channel `palisade:apps`: a message after every change.
//!
//! Every change is one Lua script, so the records, the bytes and the message change together; removing a
//! tenant removes its tokens and apps in the same step.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt as _;
use palisade_redis::{Link, LinkStatus};
use redis::Script;
use redis::aio::ConnectionManagerConfig;

use crate::record::verify;
use crate::{AppRecord, RegistryError, TenantRecord, TokenRecord};

/// The pub/sub channel that announces changes.
pub const CHANNEL: &str = "palisade:apps";
/// The channel cache purges are announced on, so that every node purges its own copy.
pub const PURGE_CHANNEL: &str = "palisade:purge";
/// The channel ACME challenge answers are announced on, so that every node answers the CA for the one that
/// ordered (its validation may reach any of them).
pub const ACME_CHANNEL: &str = "palisade:acme";
/// The stream every purge is also added to (the last [`PURGE_LOG_LENGTH`] or so), so that a node whose
/// subscription was cut applies the purges it missed when it subscribes again.
const PURGE_LOG: &str = "palisade:purges";
/// About how many purges the log keeps.
const PURGE_LOG_LENGTH: u64 = 10_000;
const RECORDS: &str = "palisade:apps";
const TENANTS: &str = "palisade:tenants";
const TOKENS: &str = "palisade:tokens";
const VERSION: &str = "palisade:apps:version";

/// How a tenant record's JSON starts before Redis gives it its version (serde writes `version` first).
const UNVERSIONED: &str = "{\"version\":0,";

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

/// KEYS: tenants, version. ARGV: name, record JSON starting with `{"version":0,`, channel. The record is
/// stored with the next version spliced in (its document is not parsed: Lua's JSON would change it).
const PUT_TENANT: &str = r#"
local version = redis.call('INCR', KEYS[2])
local encoded = '{"version":' .. version .. ',' .. string.sub(ARGV[2], 14)
redis.call('HSET', KEYS[1], ARGV[1], encoded)
redis.call('PUBLISH', ARGV[3], ARGV[1])
return encoded
"#;

/// KEYS: tenants, tokens, apps, version. ARGV: name, channel. Removes the tenant, its tokens and its apps (their
/// bytes under `palisade:app-wasm:NAME/...`); returns 1 if the tenant was there.
const REMOVE_TENANT: &str = r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local prefix = ARGV[1] .. '/'
for _, key in ipairs(redis.call('HKEYS', KEYS[3])) do
  if string.sub(key, 1, string.len(prefix)) == prefix then
    redis.call('HDEL', KEYS[3], key)
    redis.call('DEL', 'palisade:app-wasm:' .. key)
  end
end
redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1
"#;

/// KEYS: tokens, version. ARGV: tenant, token record JSON, channel. Adds one token to the tenant's array.
const ADD_TOKEN: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
local tokens = {}
if current then tokens = cjson.decode(current) end
table.insert(tokens, cjson.decode(ARGV[2]))
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(tokens))
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
"#;

/// KEYS: tokens, version. ARGV: tenant, token id, channel. Returns 1 if the token was there. An empty array is
/// removed (Lua's JSON would write it as an object).
const REMOVE_TOKEN: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local kept, found = {}, 0
for _, token in ipairs(cjson.decode(current)) do
  if token['id'] == ARGV[2] then found = 1 else table.insert(kept, token) end
end
if found == 0 then return 0 end
if #kept == 0 then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(kept)) end
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
"#;

/// Everything a cluster shares, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The registry's version: that of its latest change.
    pub version: u64,
    /// Every app's record, sorted by tenant and name.
    pub apps: Vec<AppRecord>,
    /// Every tenant created through the API, sorted by name.
    pub tenants: Vec<TenantRecord>,
    /// Every tenant's tokens, by tenant name.
    pub tokens: Vec<(String, Vec<TokenRecord>)>,
}

/// Deployed apps shared by every node of a cluster.
#[derive(Clone)]
pub struct RedisRegistry {
    link: Link,
    scripts: std::sync::Arc<Scripts>,
}

/// The Lua scripts that change the registry, each in one atomic step.
struct Scripts {
    put: Script,
    remove: Script,
    put_tenant: Script,
    remove_tenant: Script,
    add_token: Script,
    remove_token: Script,
}

fn unavailable(e: redis::RedisError) -> RegistryError {
    RegistryError::Unavailable(e.to_string())
}

impl RedisRegistry {
    /// The registry on the Redis server at `url` (`redis://host:port/db`), or on the master the Sentinels at
    /// `redis+sentinel://host:port,.../master[/db]` name (followed across failovers). Connecting is lazy (call
    /// inside a tokio runtime): while Redis is down, each operation fails with [`RegistryError::Unavailable`].
    pub fn connect(url: &str) -> Result<RedisRegistry, RegistryError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let link = Link::open(url, config).map_err(|e| RegistryError::Unavailable(e.to_string()))?;
        let scripts = std::sync::Arc::new(Scripts {
            put: Script::new(PUT),
            remove: Script::new(REMOVE),
            put_tenant: Script::new(PUT_TENANT),
            remove_tenant: Script::new(REMOVE_TENANT),
            add_token: Script::new(ADD_TOKEN),
            remove_token: Script::new(REMOVE_TOKEN),
        });
        Ok(RedisRegistry { link, scripts })
    }

    /// The link's kind, the master in use, the failovers seen and the last failure (for readiness and
    /// metrics).
    pub fn link_status(&self) -> LinkStatus {
        self.link.status()
    }

    /// The registry's version, every app's record, every API tenant and every tenant's tokens, read together.
    /// A record that cannot be parsed is logged and skipped.
    pub async fn list(&self) -> Result<Snapshot, RegistryError> {
        let mut connection = self.link.connection();
        type Hash = Vec<(String, String)>;
        let (version, apps, tenants, tokens): (Option<u64>, Hash, Hash, Hash) = redis::pipe()
            .atomic()
            .get(VERSION)
            .hgetall(RECORDS)
            .hgetall(TENANTS)
            .hgetall(TOKENS)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let mut apps: Vec<AppRecord> = parsed("app", apps).map(|(_, record)| record).collect();
        apps.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
        let mut tenants: Vec<TenantRecord> = parsed("tenant", tenants).map(|(_, record)| record).collect();
        tenants.sort_by(|a, b| a.name.cmp(&b.name));
        let mut tokens: Vec<(String, Vec<TokenRecord>)> = parsed("tokens of", tokens).collect();
        tokens.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Snapshot { version: version.unwrap_or(0), apps, tenants, tokens })
    }

    /// Stores `spec` as the API tenant `name` with a new version (replacing `previous`, whose creation time it
    /// keeps), and tells every node.
    pub async fn put_tenant(
        &self,
        name: &str,
        spec: serde_json::Value,
        previous: Option<&TenantRecord>,
    ) -> Result<TenantRecord, RegistryError> {
        let record = TenantRecord::new(name, spec, 0, previous);
        let json = serde_json::to_string(&record).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        if !json.starts_with(UNVERSIONED) {
            return Err(RegistryError::Corrupt(format!("tenant {name}: its record does not start with its version")));
        }
        let stored: String = self
            .invoke(
                &self.scripts.put_tenant,
                &[TENANTS, VERSION],
                &[name.as_bytes(), json.as_bytes(), CHANNEL.as_bytes()],
            )
            .await?;
        serde_json::from_str(&stored).map_err(|e| RegistryError::Corrupt(format!("tenant {name} in Redis: {e}")))
    }

    /// Removes the API tenant `name`, its tokens and its apps, and tells every node; whether it was there.
    pub async fn remove_tenant(&self, name: &str) -> Result<bool, RegistryError> {
        let removed: i64 = self
            .invoke(
                &self.scripts.remove_tenant,
                &[TENANTS, TOKENS, RECORDS, VERSION],
                &[name.as_bytes(), CHANNEL.as_bytes()],
            )
            .await?;
        Ok(removed == 1)
    }

    /// Adds `token` to `tenant`'s tokens, and tells every node.
    pub async fn add_token(&self, tenant: &str, token: &TokenRecord) -> Result<(), RegistryError> {
        let json = serde_json::to_string(token).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        let _: i64 = self
            .invoke(
                &self.scripts.add_token,
                &[TOKENS, VERSION],
                &[tenant.as_bytes(), json.as_bytes(), CHANNEL.as_bytes()],
            )
            .await?;
        Ok(())
    }

    /// Removes `tenant`'s token `id`, and tells every node; whether it was there.
    pub async fn remove_token(&self, tenant: &str, id: &str) -> Result<bool, RegistryError> {
        let removed: i64 = self
            .invoke(
                &self.scripts.remove_token,
                &[TOKENS, VERSION],
                &[tenant.as_bytes(), id.as_bytes(), CHANNEL.as_bytes()],
            )
            .await?;
        Ok(removed == 1)
    }

    /// The current record and bytes of the app `key` (`tenant/name`), read together; `None` if it is gone.
    pub async fn fetch(&self, key: &str) -> Result<Option<(AppRecord, Vec<u8>)>, RegistryError> {
        let mut connection = self.link.connection();
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

    /// Stores `bytes` as `tenant/name` at `route` (cached or not) with a new version, and tells every node.
    pub async fn put(
        &self,
        tenant: &str,
        name: &str,
        route: &str,
        cache: bool,
        bytes: &[u8],
    ) -> Result<AppRecord, RegistryError> {
        // The script sets the version from the registry's counter.
        let record = AppRecord::describe(tenant, name, route, cache, bytes, 0);
        let key = record.key();
        let json = serde_json::to_string(&record).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        let stored: String = self
            .invoke(
                &self.scripts.put,
                &[RECORDS, &wasm_key(&key), VERSION],
                &[key.as_bytes(), json.as_bytes(), bytes, CHANNEL.as_bytes()],
            )
            .await?;
        serde_json::from_str(&stored).map_err(|e| RegistryError::Corrupt(format!("app {key} in Redis: {e}")))
    }

    /// Removes `tenant/name` and tells every node; whether it was there.
    pub async fn remove(&self, tenant: &str, name: &str) -> Result<bool, RegistryError> {
        let key = format!("{tenant}/{name}");
        let removed: i64 = self
            .invoke(&self.scripts.remove, &[RECORDS, &wasm_key(&key), VERSION], &[key.as_bytes(), CHANNEL.as_bytes()])
            .await?;
        Ok(removed == 1)
    }

    /// Announces a cache purge (`message`, JSON) to every node: logged in a stream (for nodes that are
    /// cut off now), then published as `ID MESSAGE`.
    pub async fn announce_purge(&self, message: &str) -> Result<(), RegistryError> {
        let mut connection = self.link.connection();
        let id: String = redis::cmd("XADD")
            .arg(PURGE_LOG)
            .arg("MAXLEN")
            .arg("~")
            .arg(PURGE_LOG_LENGTH)
            .arg("*")
            .arg("purge")
            .arg(message)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        redis::cmd("PUBLISH")
            .arg(PURGE_CHANNEL)
            .arg(format!("{id} {message}"))
            .query_async::<i64>(&mut connection)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    /// Announces an ACME challenge answer (`message`, JSON) to every node listening now. Not logged: an answer
    /// matters only while its order is under way.
    pub async fn announce_acme(&self, message: &str) -> Result<(), RegistryError> {
        redis::cmd("PUBLISH")
            .arg(ACME_CHANNEL)
            .arg(message)
            .query_async::<i64>(&mut self.link.connection())
            .await
            .map(drop)
            .map_err(unavailable)
    }

    /// The purges logged after `last` (a stream ID), oldest first, as (ID, message); with `last` `None`, none,
    /// and the ID to start from.
    async fn purges_since(&self, last: Option<&str>) -> Result<(Vec<(String, String)>, String), redis::RedisError> {
        let mut connection = self.link.connection();
        let Some(last) = last else {
            let newest: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
                .arg(PURGE_LOG)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut connection)
                .await?;
            return Ok((Vec::new(), newest.into_iter().next().map_or_else(|| "0-0".to_string(), |(id, _)| id)));
        };
        let entries: Vec<(String, Vec<String>)> =
            redis::cmd("XRANGE").arg(PURGE_LOG).arg(format!("({last}")).arg("+").query_async(&mut connection).await?;
        let newest = entries.last().map_or_else(|| last.to_string(), |(id, _)| id.clone());
        let purges = entries.into_iter().filter_map(|(id, fields)| Some((id, fields.get(1)?.clone()))).collect();
        Ok((purges, newest))
    }

    /// Calls `on_change` for every change announced on [`CHANNEL`], and each time the subscription is
    /// (re)established (changes may have been missed while it was not), and `on_purge` with every purge
    /// announced on [`PURGE_CHANNEL`], and, when the subscription is established again, with those logged
    /// while it was not (one may come twice: purging is idempotent). The last purge applied is kept in
    /// `purge_mark`, so that a node started again (whose cache's disk tier outlived it) applies those logged
    /// while it was down; without one, a first start begins with the newest. Runs until the task is dropped;
    /// while Redis is away it retries every second. Through a Sentinel link it subscribes again, on the new
    /// master, whenever the master moves. `on_acme` gets every ACME answer announced on [`ACME_CHANNEL`].
    pub async fn watch(
        &self,
        purge_mark: &Path,
        on_change: impl Fn(),
        on_purge: impl Fn(&str),
        on_acme: impl Fn(&str),
    ) {
        let mut warned = false;
        let mut last: Option<String> = std::fs::read_to_string(purge_mark).ok().map(|m| m.trim().to_string());
        let mark = |id: &str| {
            let written = purge_mark.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| {
                let temporary = purge_mark.with_extension("tmp");
                std::fs::write(&temporary, id).and_then(|()| std::fs::rename(&temporary, purge_mark))
            });
            if let Err(e) = written {
                tracing::warn!(file = %purge_mark.display(), "the last cache purge applied not recorded: {e}");
            }
        };
        loop {
            // Made before subscribing, so that a move while subscribing is seen too.
            let mut moves = self.link.master_moves();
            match self.link.pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&[CHANNEL, PURGE_CHANNEL, ACME_CHANNEL]).await {
                    Ok(()) => {
                        if warned {
                            tracing::info!("app registry: subscribed to Redis again");
                        }
                        warned = false;
                        on_change();
                        match self.purges_since(last.as_deref()).await {
                            Ok((missed, newest)) => {
                                if !missed.is_empty() {
                                    tracing::info!(purges = missed.len(), "applying cache purges missed while cut off");
                                }
                                for (_, message) in &missed {
                                    on_purge(message);
                                }
                                if last.as_deref() != Some(newest.as_str()) {
                                    mark(&newest);
                                }
                                last = Some(newest);
                            }
                            Err(e) => tracing::warn!("cache purges missed while cut off, if any, not read: {e}"),
                        }
                        let mut messages = pubsub.on_message();
                        loop {
                            let message = tokio::select! {
                                message = messages.next() => message,
                                // The old master may live on as a replica, its channel silent: changes are
                                // published on the new one.
                                () = moves.moved() => {
                                    tracing::info!("app registry: the Redis master moved; subscribing on the new one");
                                    None
                                }
                            };
                            let Some(message) = message else { break };
                            if message.get_channel_name() == PURGE_CHANNEL {
                                let Ok(text) = message.get_payload::<String>() else { continue };
                                let Some((id, purge)) = text.split_once(' ') else { continue };
                                on_purge(purge);
                                mark(id);
                                last = Some(id.to_string());
                            } else if message.get_channel_name() == ACME_CHANNEL {
                                if let Ok(text) = message.get_payload::<String>() {
                                    on_acme(&text);
                                }
                            } else {
                                on_change();
                            }
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

impl RedisRegistry {
    /// Runs `script` with `keys` and `args` in one atomic step.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, RegistryError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let mut connection = self.link.connection();
        invocation.invoke_async(&mut connection).await.map_err(unavailable)
    }
}

/// The entries of a hash whose JSON values parse as `T`; the others are logged (as `what KEY`) and skipped.
fn parsed<T: serde::de::DeserializeOwned>(what: &str, all: Vec<(String, String)>) -> impl Iterator<Item = (String, T)> {
    all.into_iter().filter_map(move |(key, text)| match serde_json::from_str(&text) {
        Ok(value) => Some((key, value)),
        Err(e) => {
            tracing::warn!("skipping {what} {key} in Redis: {e}");
            None
        }
    })
}

fn warn_once(warned: &mut bool, e: &redis::RedisError) {
    if !*warned {
        tracing::warn!("app registry: cannot subscribe to changes in Redis ({e}); serving the apps known so far");
        *warned = true;
    }
}
