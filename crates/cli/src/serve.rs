//! `palisade serve`: load everything, bind, serve until a signal, drain, exit 0.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use palisade_config::Config;
use palisade_server::{Routes, Server};

use crate::https::Https;
use crate::site::Site;
use crate::{admin, apps, cluster, machine, preflight};

pub(crate) fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    block_on(serve(config))
}

/// Runs `future` (start-up, then waiting for a signal) on the main thread. Requests are served by the
/// server's worker threads, one single-threaded runtime per core (see `palisade_server`).
pub(crate) fn block_on<T, F: Future<Output = anyhow::Result<T>>>(future: F) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Fitted apart from the configuration, which a reload compares with the file as it is written.
    let descriptors = machine::raise_descriptor_limit();
    let mut traffic = config.server.traffic.clone();
    for note in machine::fit_connections(&mut traffic, descriptors) {
        if note.warning {
            tracing::warn!("{}", note.text);
        } else {
            tracing::info!("{}", note.text);
        }
    }
    // Checked before anything is loaded (an admin API open to the network is refused at once), as `check` does.
    let token = preflight::check(&config)?;
    let admin = match &config.admin {
        Some(admin) => Some((admin, token, admin::install_metrics()?)),
        None => None,
    };
    let runtime = apps::runtime(&config);
    let kv = apps::kv_store(&config)?;
    let caches = Arc::new(palisade_cache::Caches::on_disk(config.server.data_dir.join("http-cache")));
    let (tenants, loaded) = apps::load_tenants(&config, &runtime, Some(&kv), &caches)
        .map_err(|errors| anyhow::anyhow!("{}", apps::describe(&errors)))?;
    for app in &loaded {
        if let Some(info) = &app.info {
            tracing::info!(tenant = %app.tenant, route = %app.path, "{info}");
        }
    }
    for t in &config.tenants {
        tracing::info!(tenant = %t.name, routes = t.routes.len(), "tenant ready");
    }
    let https = Https::load(&config)?.map(|(https, _)| Arc::new(https));
    let site = Arc::new(Site::load(config.clone(), runtime, Some(kv), caches.clone(), tenants, https.clone())?);
    let mut server = Server::bind_live(&config.server.listen, site.routes(), config.server.shutdown_timeout)
        .await?
        .with_traffic_limits(traffic.clone());
    if let Some(workers) = config.server.workers {
        server = server.with_workers(workers);
    }
    if let Some((_, _, metrics)) = &admin {
        server = server.with_stats(metrics.requests.clone());
    }
    let certificates = Arc::new(tokio::sync::Notify::new());
    if let Some(https) = https {
        server = server
            .with_tls(&config.server.tls_listen, https.terminator.clone())?
            .with_acme_challenges(https.challenges.clone());
        if config.server.http3 {
            server = server.with_http3(config.server.quic_retry)?;
        }
        https.keep_fresh(certificates.clone());
    }
    if let Some((admin, token, metrics)) = admin {
        admin::start(admin, token, &traffic, site.clone(), metrics).await?;
    }
    if let (Some(cluster), Some(shared)) = (&config.cluster, site.shared.clone()) {
        tracing::info!("cluster: apps shared through Redis at {}", cluster.redis);
        let purge_mark = config.server.data_dir.join("http-cache/last-purge");
        tokio::spawn(cluster::keep_in_step(site.clone(), shared, cluster.reconcile_interval, purge_mark));
    }
    tokio::spawn(reload_on_sighup(site, certificates));
    let served = serve_until_signal(server).await;
    // What the disk tiers were last sent goes to disk before the process ends.
    tokio::task::spawn_blocking(move || caches.flush(Duration::from_secs(5))).await.ok();
    served
}

/// SIGHUP reloads the configuration (as `POST /v1/reload` does) and every certificate (an unchanged file is
/// simply loaded again).
async fn reload_on_sighup(site: Arc<Site>, certificates: Arc<tokio::sync::Notify>) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => return tracing::warn!(error = %e, "cannot listen for SIGHUP"),
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the configuration and certificates");
        if let Err(e) = site.reload().await {
            tracing::error!("configuration not reloaded; still serving the previous one:\n{}", e.message);
        }
        certificates.notify_one();
    }
}

/// Binds `listen` for `router` (used by `palisade run`).
pub(crate) async fn bind(listen: &[SocketAddr], router: Routes, shutdown_timeout: Duration) -> anyhow::Result<Server> {
    Ok(Server::bind(listen, router, shutdown_timeout).await?)
}

/// Announces each bound address and serves until SIGINT/SIGTERM.
pub(crate) async fn serve_until_signal(server: Server) -> anyhow::Result<()> {
    for addr in server.local_addrs() {
        tracing::info!("palisade listening on http://{addr}");
    }
    for addr in server.tls_local_addrs() {
        tracing::info!("palisade listening on https://{addr}");
    }
    for addr in server.http3_local_addrs() {
        tracing::info!("palisade listening on https://{addr} (HTTP/3, UDP)");
    }
    server.run(shutdown_signal()).await.context("starting the server's workers")
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}
