//! The admin listener wired to the live site: [`Control`] for [`Site`], the Prometheus recorder, the token.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use palisade_admin::{Admin, AdminLimits, Control, ControlError, ControlResult, KvCall, KvReply, PurgeRequest};
use palisade_config::{AdminConfig, TrafficLimits};
use palisade_sandbox::LimitKind;
use palisade_sched::Share;
use palisade_server::RequestStats;
use serde_json::json;

use crate::site::{Site, describe_tenant};

/// The environment variable holding the admin token when `[admin]` has no `token_file`.
pub(crate) const TOKEN_ENV: &str = "PALISADE_ADMIN_TOKEN";

/// What `/metrics` shows: the recorder behind the `metrics::` calls, and the request counters the server
/// keeps itself (per route, cheaper than the recorder's lookup by labels on every request).
pub(crate) struct Metrics {
    recorder: PrometheusHandle,
    /// Requests by tenant, route and status, with durations and bytes.
    pub(crate) requests: Arc<RequestStats>,
}

/// Installs the process's metrics recorder; `metrics::` calls anywhere in palisade are recorded from now on.
pub(crate) fn install_metrics() -> anyhow::Result<Metrics> {
    let handle = PrometheusBuilder::new().install_recorder().context("installing the metrics recorder")?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(Metrics { recorder: handle, requests: Arc::default() })
}

/// The token in `file` (trimmed), else in `PALISADE_ADMIN_TOKEN`; `None` when neither is given.
pub(crate) fn read_token(file: Option<&Path>) -> anyhow::Result<Option<String>> {
    match file {
        Some(file) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let token = text.trim().to_string();
            anyhow::ensure!(!token.is_empty(), "{}: the admin token file is empty", file.display());
            Ok(Some(token))
        }
        None => Ok(std::env::var(TOKEN_ENV).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())),
    }
}

/// The admin API's bearer token ([`read_token`] of `token_file`). Without one the API is open, which is
/// refused on anything but a loopback address.
pub(crate) fn token(admin: &AdminConfig) -> anyhow::Result<Option<String>> {
    let token = read_token(admin.token_file.as_deref())?;
    if token.is_none() && !admin.listen.ip().is_loopback() {
        anyhow::bail!(
            "{}: the admin API on {} would be open to the network: set `token_file` or {TOKEN_ENV}, or listen on a \
             loopback address",
            admin.location,
            admin.listen
        );
    }
    Ok(token)
}

/// The admin listener's TLS acceptor, if `[admin] tls` is set: its certificate loaded and checked.
pub(crate) fn tls_acceptor(admin: &AdminConfig) -> anyhow::Result<Option<palisade_tls::TlsAcceptor>> {
    let Some(tls) = &admin.tls else { return Ok(None) };
    let cert = palisade_tls::LoadedCert::from_files(&tls.cert, &tls.key, &[])
        .with_context(|| format!("{}: the admin listener's `tls`", admin.location))?;
    palisade_tls::warn_if_expiring("(the admin listener)", &tls.cert, &cert);
    let acceptor = palisade_tls::single_cert_acceptor(&cert).context("setting up TLS for the admin listener")?;
    Ok(Some(acceptor))
}

/// Binds the admin listener (requiring `token`, from [`token`]) and serves it on the current runtime.
/// Serves the admin API on `listener` (bound for `admin.listen`); the task stops accepting when aborted.
pub(crate) fn start(
    admin: &AdminConfig,
    listener: std::net::TcpListener,
    token: Option<String>,
    traffic: &TrafficLimits,
    site: Arc<Site>,
    metrics: Metrics,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let limits = AdminLimits {
        header_timeout: traffic.header_timeout,
        max_connections: usize::try_from(traffic.max_connections_per_ip).unwrap_or(usize::MAX),
    };
    let mut listener = Admin::on_listener(listener, token.clone(), limits)?;
    let scheme = match tls_acceptor(admin)? {
        Some(acceptor) => {
            listener = listener.with_tls(acceptor);
            "https"
        }
        None => "http",
    };
    tracing::info!(
        "admin API on {scheme}://{}{}",
        listener.local_addr()?,
        if token.is_some() { " (bearer token required)" } else { " (no token: loopback only)" }
    );
    Ok(tokio::spawn(listener.serve(Arc::new(Operator { site, metrics }))))
}

/// The site as the admin API sees it.
struct Operator {
    site: Arc<Site>,
    metrics: Metrics,
}

impl Operator {
    /// `tenant` (as described) with what is read outside the state's lock: its tokens (ids and dates, never
    /// the secrets), its key-value usage and its HTTP cache's size.
    async fn with_usage(&self, mut tenant: serde_json::Value) -> serde_json::Value {
        let Some(name) = tenant.get("name").and_then(|n| n.as_str()).map(str::to_string) else { return tenant };
        let tokens: Vec<_> = self
            .site
            .tenant_store
            .tokens(&name)
            .unwrap_or_default()
            .into_iter()
            .map(|t| json!({ "id": t.id, "created_at": t.created_at }))
            .collect();
        let kv = match &self.site.kv {
            Some(kv) => kv.usage(&name).await.ok().map(|u| json!({ "keys": u.keys, "bytes": u.bytes })),
            None => None,
        };
        let cache = self.site.caches.get(&name).map(|c| json!({ "bytes": c.bytes(), "max_size": c.max_size() }));
        if let Some(fields) = tenant.as_object_mut() {
            fields.insert("tokens".into(), json!(tokens));
            fields.insert("kv".into(), json!(kv));
            fields.insert("cache".into(), json!(cache));
        }
        tenant
    }
}

impl Control for Operator {
    async fn tenants(&self) -> serde_json::Value {
        let described: Vec<_> = {
            let state = self.site.state.lock().await;
            state.tenants.values().map(|t| describe_tenant(t, self.site.https.as_deref())).collect()
        };
        let mut tenants = Vec::with_capacity(described.len());
        for tenant in described {
            tenants.push(self.with_usage(tenant).await);
        }
        json!({ "tenants": tenants })
    }

    async fn tenant(&self, name: &str) -> Option<serde_json::Value> {
        let described =
            self.site.state.lock().await.tenants.get(name).map(|t| describe_tenant(t, self.site.https.as_deref()))?;
        Some(self.with_usage(described).await)
    }

    async fn stats(&self, tenant: Option<&str>) -> serde_json::Value {
        let wanted = |name: &str| tenant.is_none_or(|t| t == name);
        self.metrics.requests.prune(&self.site.routes().load());
        let requests = self.metrics.requests.tenants();
        let mut tenants = serde_json::Map::new();
        let mut upstreams = Vec::new();
        {
            let state = self.site.state.lock().await;
            for (name, t) in state.tenants.iter().filter(|(name, _)| wanted(name)) {
                let totals = requests.get(name.as_str()).cloned().unwrap_or_default();
                let counters = t.loaded.sandbox.limit_counters();
                let limits: serde_json::Map<_, _> =
                    LimitKind::ALL.iter().map(|&kind| (kind.name().to_string(), json!(counters.get(kind)))).collect();
                let cache = self.site.caches.get(name).map(|c| {
                    let counts = c.counts();
                    json!({ "hit": counts.hit, "stale": counts.stale, "miss": counts.miss, "pass": counts.pass,
                            "revalidated": counts.revalidated })
                });
                tenants.insert(
                    name.clone(),
                    json!({
                        "requests": totals.requests,
                        "errors": totals.errors,
                        "bytes": totals.bytes,
                        "latency": totals.latency,
                        "limits": limits,
                        "cache": cache,
                    }),
                );
                for (route, proxy) in &t.loaded.proxies {
                    for u in proxy.health() {
                        upstreams.push(json!({
                            "tenant": name, "route": route, "upstream": u.upstream, "healthy": u.healthy,
                            "ejected": u.ejected, "in_flight": u.in_flight,
                        }));
                    }
                }
            }
        }
        let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
        json!({
            "at_ms": u64::try_from(at_ms).unwrap_or(u64::MAX),
            "latency_buckets": palisade_server::LATENCY_BUCKETS,
            "tenants": tenants,
            "upstreams": upstreams,
        })
    }

    async fn deploy(&self, tenant: &str, name: &str, route: Option<&str>, cache: bool, wasm: Bytes) -> ControlResult {
        let record = self.site.deploy(tenant, name, route, cache, wasm).await?;
        Ok(serde_json::to_value(record).unwrap_or_default())
    }

    async fn put_tenant(&self, name: &str, spec: serde_json::Value) -> Result<(bool, serde_json::Value), ControlError> {
        self.site.put_tenant(name, spec).await
    }

    async fn delete_tenant(&self, name: &str) -> ControlResult {
        let deleted = self.site.delete_tenant(name).await?;
        // A tenant created later under this name starts its counters afresh. (Nodes told through Redis
        // forget at their next scrape, which prunes against the routes served.)
        self.metrics.requests.forget(name);
        Ok(deleted)
    }

    async fn issue_token(&self, tenant: &str) -> ControlResult {
        self.site.issue_token(tenant).await
    }

    async fn revoke_token(&self, tenant: &str, id: &str) -> ControlResult {
        self.site.revoke_token(tenant, id).await
    }

    async fn purge(&self, tenant: &str, purge: PurgeRequest) -> ControlResult {
        self.site.purge(tenant, purge).await
    }

    async fn kv(&self, tenant: &str, bucket: &str, call: KvCall) -> Result<KvReply, ControlError> {
        self.site.kv(tenant, bucket, call).await
    }

    fn token_tenant(&self, token: &str) -> Option<String> {
        self.site.tokens.tenant_of(token)
    }

    async fn remove(&self, tenant: &str, name: &str) -> ControlResult {
        let record = self.site.remove(tenant, name).await?;
        Ok(json!({ "removed": record }))
    }

    async fn reload(&self) -> ControlResult {
        self.site.reload().await
    }

    fn readiness(&self) -> Result<Vec<String>, String> {
        self.site.readiness()
    }

    fn metrics(&self) -> String {
        // Gauges read at scrape time; skipped for this scrape if a change holds the state.
        for (role, status) in self.site.redis_links() {
            let up = if status.last_error.is_none() { 1.0 } else { 0.0 };
            metrics::gauge!("palisade_redis_up", "link" => role).set(up);
        }
        if let Ok(state) = self.site.state.try_lock() {
            for (name, t) in &state.tenants {
                let in_flight = f64::from(t.loaded.sandbox.instances_in_flight());
                metrics::gauge!("palisade_instances_in_flight", "tenant" => name.clone()).set(in_flight);
                metrics::gauge!("palisade_deployed_apps", "tenant" => name.clone()).set(t.apps.len() as f64);
            }
        }
        metrics::gauge!("palisade_ready").set(if self.site.readiness().is_ok() { 1.0 } else { 0.0 });
        metrics::gauge!("palisade_guest_memory_bytes").set(self.site.runtime.guest_memory_in_use() as f64);
        let mut text = self.metrics.recorder.render();
        self.metrics.requests.prune(&self.site.routes().load());
        self.metrics.requests.render(&mut text);
        text.push('\n');
        text.push_str(&scheduler_metrics(&self.site.runtime.shares()));
        text
    }
}

/// What each tenant's guests used of the CPU and waited for it, in Prometheus text format. These are written
/// here rather than through the `metrics` facade, whose counters hold whole numbers and would lose the
/// fractions of a second.
fn scheduler_metrics(shares: &[Arc<Share>]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    type Family = (&'static str, &'static str, fn(&Share) -> String);
    let families: [Family; 3] = [
        ("palisade_guest_cpu_seconds_total", "CPU time the tenant's guests ran, in both lanes.", |s| {
            s.cpu_time().as_secs_f64().to_string()
        }),
        (
            "palisade_guest_wait_seconds_total",
            "Time the tenant's long-running guests waited for a turn in the background lane.",
            |s| s.waited().as_secs_f64().to_string(),
        ),
        (
            "palisade_guest_demotions_total",
            "Guests that ran long enough to be moved to the background lane (or started there).",
            |s| s.demotions().to_string(),
        ),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for share in shares {
            let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {}", share.name(), value(share));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_metrics_are_prometheus_counters() {
        let shares = palisade_sched::Shares::default();
        let a = shares.share("alice", 1);
        let text = scheduler_metrics(&[a]);
        assert!(text.contains("# TYPE palisade_guest_cpu_seconds_total counter\n"));
        assert!(text.contains("palisade_guest_cpu_seconds_total{tenant=\"alice\"} 0\n"), "{text}");
        assert!(text.contains("palisade_guest_demotions_total{tenant=\"alice\"} 0\n"), "{text}");
    }
}
