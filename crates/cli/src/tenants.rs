//! Tenants as data: tenants created, replaced and removed through the admin API, and tenant-scoped tokens.
//!
//! A tenant document (the keys of a `[tenants.NAME]` table, as JSON) is validated by the configuration's own
//! code ([`palisade_config::tenant_from_json`]), loaded beside the file's tenants, stored in
//! `data_dir/tenants` before it is served, and swapped in like a deploy. The configuration file stays
//! authoritative for its tenants: the API cannot replace or remove them, nor take their hosts.
//!
//! Tokens are random, shown once, and kept only as SHA-256 hashes; [`TokenIndex`] answers "whose token is
//! this" without the site's lock, so a long deploy never holds up authentication.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use palisade_admin::{ControlError, KvCall, KvReply, PurgeRequest, Refusal};
use palisade_cache::{Caches, Purge};
use palisade_config::{HostPattern, KeyProblem, tenant_from_json};
use palisade_kv::{KvError, KvStore, Scope};
use palisade_registry::{Snapshot, TenantRecord, TokenRecord, sha256_hex, valid_name};
use palisade_sandbox::{Runtime, kv_quota};
use serde_json::json;

use crate::apps::{self, LoadedTenant};
use crate::https::inline_certificate;
use crate::site::{Site, Source, State, TenantState, describe_tenant, internal, no_tenant, refuse};

/// How a cluster node takes the API's tenants and every tenant's tokens from a snapshot of Redis (before its
/// apps, so that apps of a new tenant find it), counting each tenant changed in `changes`.
pub(crate) async fn apply_snapshot(
    site: &Site,
    state: &mut State,
    snapshot: &Snapshot,
    changes: &mut usize,
) -> Result<(), ControlError> {
    let gone: Vec<String> = state
        .tenants
        .iter()
        .filter(|(name, t)| matches!(t.source, Source::Api(_)) && !snapshot.tenants.iter().any(|r| &r.name == *name))
        .map(|(name, _)| name.clone())
        .collect();
    for name in gone {
        site.uninstall_tenant(state, &name)?;
        tracing::info!(tenant = %name, "tenant removed by the cluster");
        *changes += 1;
    }
    for record in &snapshot.tenants {
        match state.tenants.get(&record.name).map(|t| &t.source) {
            Some(Source::Api(current)) if current.version >= record.version => continue,
            Some(Source::File) => {
                tracing::debug!(tenant = %record.name, "the cluster's API tenant is a tenant of this node's file; the file's is served");
                continue;
            }
            _ => {}
        }
        match load_api_tenant(&site.runtime, site.kv.as_ref(), &site.caches, state, &record.name, &record.spec) {
            Ok(loaded) => {
                site.install_tenant(state, loaded, record.clone()).await?;
                tracing::info!(tenant = %record.name, version = record.version, "tenant stored by the cluster");
                *changes += 1;
            }
            Err(e) => tracing::warn!(tenant = %record.name, "tenant from the cluster not served: {}", e.message),
        }
    }
    // Every sync brings every token: the files are written only when the tokens changed.
    if site.tokens.replace_all(&snapshot.tokens) {
        site.tenant_store.replace_tokens(&snapshot.tokens).map_err(internal)?;
    }
    Ok(())
}

/// Tenants' tokens by hash: `sha256 → (tenant, id)`.
#[derive(Default)]
pub(crate) struct TokenIndex(RwLock<HashMap<String, (String, String)>>);

impl TokenIndex {
    /// The index of every stored token.
    pub(crate) fn of(all: &[(String, Vec<TokenRecord>)]) -> TokenIndex {
        TokenIndex(RwLock::new(by_hash(all)))
    }

    fn insert(&self, tenant: &str, token: &TokenRecord) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.sha256.clone(), (tenant.to_string(), token.id.clone()));
    }

    fn remove(&self, token: &TokenRecord) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).remove(&token.sha256);
    }

    fn forget_tenant(&self, tenant: &str) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).retain(|_, (t, _)| t != tenant);
    }

    /// Makes the index exactly `all` (a cluster's tokens, from Redis); whether that changed it.
    pub(crate) fn replace_all(&self, all: &[(String, Vec<TokenRecord>)]) -> bool {
        let fresh = by_hash(all);
        let mut index = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if *index == fresh {
            return false;
        }
        *index = fresh;
        true
    }

    /// The tenant whose token `token` is.
    pub(crate) fn tenant_of(&self, token: &str) -> Option<String> {
        let index = self.0.read().unwrap_or_else(PoisonError::into_inner);
        index.get(&sha256_hex(token.as_bytes())).map(|(tenant, _)| tenant.clone())
    }
}

/// `all`'s tokens by hash: `sha256 → (tenant, id)`.
fn by_hash(all: &[(String, Vec<TokenRecord>)]) -> HashMap<String, (String, String)> {
    all.iter()
        .flat_map(|(tenant, tokens)| tokens.iter().map(move |t| (t.sha256.clone(), (tenant.clone(), t.id.clone()))))
        .collect()
}

/// Why the tenant document could not be accepted: 422, with each problem by its JSON key.
fn invalid(name: &str, problems: &[KeyProblem]) -> ControlError {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    refuse(Refusal::Invalid, format!("tenant {name}: {}", lines.join("; "))).with_details(json!({
        "problems": problems.iter().map(|p| json!({ "key": p.key, "message": p.message })).collect::<Vec<_>>(),
    }))
}

/// The tenant (other than `except`) that already answers for one of `hosts`, and that host.
pub(crate) fn host_taken<'a>(
    tenants: impl Iterator<Item = &'a palisade_config::Tenant>,
    hosts: &[HostPattern],
    except: &str,
) -> Option<(String, HostPattern)> {
    tenants
        .filter(|t| t.name != except)
        .find_map(|t| hosts.iter().find(|h| t.hosts.contains(h)).map(|h| (t.name.clone(), h.clone())))
}

/// `n` random bytes in lower-case hex, from the operating system's generator.
fn random_hex(n: usize) -> Result<String, ControlError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| internal(format!("no random numbers: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Validates and loads `spec` as the API tenant `name` beside the other tenants of `state`.
pub(crate) fn load_api_tenant(
    runtime: &Runtime,
    kv: Option<&Arc<dyn KvStore>>,
    caches: &Caches,
    state: &State,
    name: &str,
    spec: &serde_json::Value,
) -> Result<LoadedTenant, ControlError> {
    if state.tenants.get(name).is_some_and(|t| matches!(t.source, Source::File)) {
        return Err(refuse(
            Refusal::Conflict,
            format!("tenant {name} is defined in the configuration file, which stays authoritative for it"),
        ));
    }
    let tenant = tenant_from_json(name, spec, &state.config.server).map_err(|problems| invalid(name, &problems))?;
    if let Err(e) = inline_certificate(&tenant) {
        return Err(invalid(name, &[KeyProblem { key: "tls".into(), message: e.to_string() }]));
    }
    if tenant.limits.memory > runtime.max_memory() {
        let problem = KeyProblem {
            key: "memory".into(),
            message: format!(
                "at most {} bytes on this server (the largest `memory` of its tenants at start-up)",
                runtime.max_memory()
            ),
        };
        return Err(invalid(name, &[problem]));
    }
    if let Some((owner, host)) = host_taken(state.tenants.values().map(|t| &t.loaded.tenant), &tenant.hosts, name) {
        return Err(refuse(Refusal::Conflict, format!("host {host} belongs to tenant {owner}")));
    }
    let mut errors = Vec::new();
    let (loaded, _) = apps::load_tenant(&tenant, runtime, kv, caches, &mut errors);
    if !errors.is_empty() {
        let problems: Vec<KeyProblem> = errors
            .iter()
            .map(|e| KeyProblem { key: format!("routes ({})", e.route.path), message: e.message.clone() })
            .collect();
        return Err(invalid(name, &problems));
    }
    Ok(loaded)
}

impl Site {
    /// Creates or replaces the API tenant `name` from `spec`; whether it is new, and its description.
    pub(crate) async fn put_tenant(
        &self,
        name: &str,
        spec: serde_json::Value,
    ) -> Result<(bool, serde_json::Value), ControlError> {
        if !valid_name(name) {
            return Err(refuse(
                Refusal::BadRequest,
                format!("tenant name {name:?} may only use letters, digits, '-' and '_' (at most 64)"),
            ));
        }
        let mut state = self.change().await?;
        let loaded = load_api_tenant(&self.runtime, self.kv.as_ref(), &self.caches, &state, name, &spec)?;
        let previous = state.tenants.get(name).and_then(|t| match &t.source {
            Source::Api(record) => Some(record.clone()),
            Source::File => None,
        });
        let record = match &self.shared {
            Some(shared) => shared
                .put_tenant(name, spec, previous.as_ref())
                .await
                .map_err(|e| refuse(Refusal::Unavailable, e.to_string()))?,
            None => {
                let version = self.tenant_store.next_version().map_err(internal)?;
                TenantRecord::new(name, spec, version, previous.as_ref())
            }
        };
        let version = record.version;
        let description = self.install_tenant(&mut state, loaded, record).await?;
        self.publish(&state);
        tracing::info!(tenant = name, version, created = previous.is_none(), "tenant stored through the API");
        Ok((previous.is_none(), description))
    }

    /// Keeps `record` on this node and serves `loaded` as its tenant in `state` (not published yet), with the
    /// tenant's apps bound to its new sandbox (each loads at its next request: nothing compiles); its
    /// description.
    pub(crate) async fn install_tenant(
        &self,
        state: &mut State,
        loaded: LoadedTenant,
        record: TenantRecord,
    ) -> Result<serde_json::Value, ControlError> {
        let mut apps = BTreeMap::new();
        for app in state.tenants.get(&record.name).map(|t| t.apps.values()).into_iter().flatten() {
            apps.insert(app.record.name.clone(), self.bind(&loaded, app.record.clone(), None));
        }
        self.tenant_store.put(&record).map_err(internal)?;
        let name = record.name.clone();
        if let Some(https) = &self.https {
            https.set_tenant(&loaded.tenant);
        }
        let t = TenantState { loaded, apps, source: Source::Api(record) };
        let description = describe_tenant(&t, self.https.as_deref());
        state.tenants.insert(name, t);
        Ok(description)
    }

    /// Stops serving the API tenant `name` on this node and forgets it, its tokens and its apps (but not its
    /// key-value data, which the node that took the call removes); the names of its apps.
    pub(crate) fn uninstall_tenant(&self, state: &mut State, name: &str) -> Result<Vec<String>, ControlError> {
        self.tenant_store.remove(name).map_err(internal)?;
        self.tokens.forget_tenant(name);
        if let Some(https) = &self.https {
            https.forget_tenant(name);
        }
        self.caches.remove(name);
        let Some(gone) = state.tenants.remove(name) else { return Ok(Vec::new()) };
        for app in gone.apps.values() {
            if let Err(e) = self.local.remove(name, &app.record.name) {
                tracing::warn!(app = %app.record.key(), "removed tenant's app left on disk: {e}");
            }
        }
        Ok(gone.apps.into_keys().collect())
    }

    /// Removes the API tenant `name`: it stops being served at once; then its apps, tokens and key-value data
    /// are removed.
    pub(crate) async fn delete_tenant(&self, name: &str) -> Result<serde_json::Value, ControlError> {
        let mut state = self.change().await?;
        match state.tenants.get(name).map(|t| &t.source) {
            None => return Err(no_tenant(name)),
            Some(Source::File) => {
                return Err(refuse(
                    Refusal::Conflict,
                    format!("tenant {name} is defined in the configuration file: remove it there and reload"),
                ));
            }
            Some(Source::Api(_)) => {}
        }
        // In a cluster, Redis removes the tenant with its apps and tokens in one step, and tells the others.
        if let Some(shared) = &self.shared {
            shared.remove_tenant(name).await.map_err(|e| refuse(Refusal::Unavailable, e.to_string()))?;
        }
        let apps = self.uninstall_tenant(&mut state, name)?;
        self.publish(&state);
        drop(state);
        let keys = match &self.kv {
            Some(kv) => kv.remove_tenant(name).await.map_err(|e| {
                refuse(Refusal::Unavailable, format!("tenant {name} removed, but not its key-value data: {e}"))
            })?,
            None => 0,
        };
        tracing::info!(tenant = name, apps = apps.len(), keys, "tenant removed through the API");
        Ok(json!({ "removed": name, "apps": apps, "keys": keys }))
    }

    /// Purges what `purge` names from `tenant`'s HTTP cache, on this node and (announced through Redis) on
    /// every other node of the cluster: `{"purged": N}`, the URLs touched here.
    pub(crate) async fn purge(&self, tenant: &str, purge: PurgeRequest) -> Result<serde_json::Value, ControlError> {
        // Refused during a hand-over, like any change: the new process would not know what was purged here.
        // Held until the purge is applied, so that a hand-over starting meanwhile lets go of the cache's files
        // only after it.
        let state = self.change().await?;
        if !state.tenants.contains_key(tenant) {
            return Err(no_tenant(tenant));
        }
        let purged = self.apply_purge(tenant, &purge).await;
        drop(state);
        if let Some(shared) = &self.shared {
            let message = json!({ "tenant": tenant, "purge": purge }).to_string();
            shared.announce_purge(&message).await.map_err(|e| {
                refuse(
                    Refusal::Unavailable,
                    format!("purged on this node ({purged} URLs), not announced to the others: {e}"),
                )
            })?;
        }
        Ok(json!({ "purged": purged, "soft": purge.soft }))
    }

    /// Purges what `purge` names from `tenant`'s cache on this node (on a blocking thread: a disk tier is read
    /// and written); how many URLs it touched.
    pub(crate) async fn apply_purge(&self, tenant: &str, purge: &PurgeRequest) -> usize {
        let Some(cache) = self.caches.get(tenant) else { return 0 };
        let (purge, soft) = (purge.clone(), purge.soft);
        let purged = tokio::task::spawn_blocking(move || {
            let mut purged = 0;
            if purge.all {
                purged += cache.purge(Purge::All, soft);
            }
            for tag in &purge.keys {
                purged += cache.purge(Purge::Tag(tag), soft);
            }
            // Paths as requests' are after normalisation (`/%7Eu` is `/~u`), all in one pass over the keys.
            let (paths, absolute): (Vec<&String>, Vec<&String>) = purge.urls.iter().partition(|u| u.starts_with('/'));
            if !absolute.is_empty() {
                let absolute: Vec<String> = absolute.into_iter().cloned().collect();
                purged += cache.purge(Purge::Urls(&absolute), soft);
            }
            let paths: HashSet<String> = paths
                .into_iter()
                .map(|p| palisade_config::decode_unreserved(p).map_or_else(|_| p.clone(), |d| d.into_owned()))
                .collect();
            if !paths.is_empty() {
                purged += cache.purge(Purge::Paths(&paths), soft);
            }
            purged
        })
        .await
        .unwrap_or_default();
        tracing::info!(tenant, purged, soft, "cache purged");
        purged
    }

    /// Applies a purge another node announced (`{"tenant", "purge"}`); this node's own comes back too and
    /// changes nothing more.
    pub(crate) async fn apply_announced_purge(&self, message: &str) {
        #[derive(serde::Deserialize)]
        struct Announced {
            tenant: String,
            purge: PurgeRequest,
        }
        match serde_json::from_str::<Announced>(message) {
            Ok(a) => {
                self.apply_purge(&a.tenant, &a.purge).await;
            }
            Err(e) => tracing::warn!("ignoring a purge announced in Redis: {e}"),
        }
    }

    /// Issues a new token for `tenant`, stored as its hash: `{"tenant", "id", "token"}`.
    pub(crate) async fn issue_token(&self, tenant: &str) -> Result<serde_json::Value, ControlError> {
        let state = self.change().await?;
        if !state.tenants.contains_key(tenant) {
            return Err(no_tenant(tenant));
        }
        let (id, token) = (random_hex(8)?, format!("pal_{}", random_hex(32)?));
        let record = TokenRecord::new(&id, &token);
        if let Some(shared) = &self.shared {
            shared.add_token(tenant, &record).await.map_err(|e| refuse(Refusal::Unavailable, e.to_string()))?;
        }
        let mut tokens = self.tenant_store.tokens(tenant).map_err(internal)?;
        tokens.push(record.clone());
        self.tenant_store.put_tokens(tenant, &tokens).map_err(internal)?;
        self.tokens.insert(tenant, &record);
        tracing::info!(tenant, token_id = %id, "tenant token issued");
        Ok(json!({ "tenant": tenant, "id": id, "token": token }))
    }

    /// Revokes `tenant`'s token `id`.
    pub(crate) async fn revoke_token(&self, tenant: &str, id: &str) -> Result<serde_json::Value, ControlError> {
        let _state = self.change().await?;
        let mut tokens = self.tenant_store.tokens(tenant).map_err(internal)?;
        let Some(at) = tokens.iter().position(|t| t.id == id) else {
            return Err(refuse(Refusal::NotFound, format!("tenant {tenant} has no token {id:?}")));
        };
        let record = tokens.remove(at);
        if let Some(shared) = &self.shared {
            shared.remove_token(tenant, id).await.map_err(|e| refuse(Refusal::Unavailable, e.to_string()))?;
        }
        self.tenant_store.put_tokens(tenant, &tokens).map_err(internal)?;
        self.tokens.remove(&record);
        tracing::info!(tenant, token_id = %id, "tenant token revoked");
        Ok(json!({ "tenant": tenant, "revoked": id }))
    }

    /// Runs `call` on `tenant`'s bucket `bucket`, within the tenant's key-value quota.
    pub(crate) async fn kv(&self, tenant: &str, bucket: &str, call: KvCall) -> Result<KvReply, ControlError> {
        let quota = {
            let state = self.state.lock().await;
            let t = state.tenants.get(tenant).ok_or_else(|| no_tenant(tenant))?;
            kv_quota(&t.loaded.tenant.limits.kv)
        };
        let store =
            self.kv.as_ref().ok_or_else(|| refuse(Refusal::Unavailable, "this server has no key-value store"))?;
        let scope = Scope::new(tenant, bucket).map_err(kv_refusal)?;
        Ok(match call {
            KvCall::List { cursor } => {
                let page = store.list_keys(&scope, cursor).await.map_err(kv_refusal)?;
                KvReply::Json(json!({ "keys": page.keys, "cursor": page.cursor }))
            }
            KvCall::Get(key) => KvReply::Value(store.get(&scope, &key).await.map_err(kv_refusal)?.map(Bytes::from)),
            KvCall::Put(key, value) => {
                store.set(&scope, &key, &value, &quota).await.map_err(kv_refusal)?;
                KvReply::Json(json!({ "stored": key, "bytes": value.len() }))
            }
            KvCall::Delete(key) => {
                store.delete(&scope, &key).await.map_err(kv_refusal)?;
                KvReply::Json(json!({ "deleted": key }))
            }
        })
    }
}

/// A key-value failure as the API answers it.
fn kv_refusal(e: KvError) -> ControlError {
    let refusal = match e {
        KvError::InvalidName(_) => Refusal::BadRequest,
        KvError::Quota(_) | KvError::NotACounter(_) => Refusal::Invalid,
        KvError::Unavailable(_) => Refusal::Unavailable,
    };
    refuse(refusal, e.to_string())
}
