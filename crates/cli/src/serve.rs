//! `palisade serve`: load everything, bind, serve until a signal, drain, exit 0.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use palisade_config::Config;
use palisade_server::{Routes, Server};

use crate::apps;
use crate::https::Https;

pub(crate) fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    block_on(serve(config))
}

/// Runs `future` (start-up, then waiting for a signal) on the main thread. Requests are served by the
/// server's worker threads, one single-threaded runtime per core (see `palisade_server`).
pub(crate) fn block_on<F: Future<Output = anyhow::Result<()>>>(future: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let sandbox = apps::runtime(&config)?;
    let kv = apps::kv_store(&config)?;
    let (router, loaded) = apps::build_router(&config, &sandbox, Some(&kv))
        .map_err(|errors| anyhow::anyhow!("{}", apps::describe(&errors)))?;
    for app in &loaded {
        if let Some(info) = &app.info {
            tracing::info!(tenant = %app.tenant, route = %app.path, "{info}");
        }
    }
    for t in &config.tenants {
        tracing::info!(tenant = %t.name, routes = t.routes.len(), "tenant ready");
    }
    let https = Https::load(&config)?;
    let mut server = Server::bind(&config.server.listen, router, config.server.shutdown_timeout)
        .await?
        .with_traffic_limits(config.server.traffic.clone());
    if let Some(workers) = config.server.workers {
        server = server.with_workers(workers);
    }
    let reload = Arc::new(tokio::sync::Notify::new());
    if let Some((https, _)) = https {
        server = server
            .with_tls(&config.server.tls_listen, https.terminator.clone())?
            .with_acme_challenges(https.challenges.clone());
        https.keep_fresh(reload.clone());
    }
    tokio::spawn(reload_on_sighup(reload));
    serve_until_signal(server).await
}

/// SIGHUP reloads every certificate (an unchanged file is simply loaded again).
async fn reload_on_sighup(reload: Arc<tokio::sync::Notify>) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => return tracing::warn!(error = %e, "cannot listen for SIGHUP"),
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading certificates");
        reload.notify_one();
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
