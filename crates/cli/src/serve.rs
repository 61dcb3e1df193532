//! `palisade serve`: load everything, bind, serve until a signal, drain, exit 0.

use std::path::Path;

use anyhow::Context as _;
use palisade_config::Config;
use palisade_server::Server;

use crate::apps;

pub(crate) fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("palisade-worker")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let sandbox = apps::runtime(&config)?;
    let router =
        apps::build_router(&config, &sandbox).map_err(|errors| anyhow::anyhow!("{}", apps::describe(&errors)))?;
    let server = Server::bind(&config.server.listen, router, config.server.shutdown_timeout).await?;
    for t in &config.tenants {
        tracing::info!(tenant = %t.name, routes = t.routes.len(), "tenant ready");
    }
    for addr in server.local_addrs() {
        tracing::info!("palisade listening on http://{addr}");
    }
    server.run(shutdown_signal()).await;
    Ok(())
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
