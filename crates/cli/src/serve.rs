//! `palisade serve`: load everything, bind, serve until a signal, drain, exit 0.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use palisade_config::Config;
use palisade_server::{Routes, Server};

use crate::apps::KvBackendStore;
use crate::handover::{self, Binary, Listening, Predecessor};
use crate::https::Https;
use crate::process::{self, PidFile};
use crate::site::Site;
use crate::{admin, apps, cluster, machine, preflight};

pub(crate) fn run(path: &Path, pid_file: PidFile) -> anyhow::Result<()> {
    // Read first: once the file is replaced, this process's own path names the binary it was started from.
    let binary = Binary::this()?;
    let config = Config::load(path)?;
    block_on(serve(config, binary, pid_file))
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

async fn serve(config: Config, binary: Binary, pid_file: PidFile) -> anyhow::Result<()> {
    // Listened for first: a SIGUSR2 while loading (whose default action would end the process) is kept, and
    // acted on once this process serves.
    let upgrades = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
        .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for SIGUSR2: no binary hand-over"))
        .ok();
    // A process started by a hand-over takes its predecessor's sockets before it binds anything.
    let mut listening = Listening::default();
    let predecessor = Predecessor::connect(&mut listening)?;
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
    // Guests wait for the file as long as the previous process may take to finish its own.
    let taking_over = predecessor.as_ref().map(|_| config.server.shutdown_timeout + Duration::from_secs(5));
    let (kv, kv_backend) = apps::kv_store(&config, taking_over)?;
    // The previous process lets go of the cache files as the hand-over starts; reads under way may hold one
    // a moment longer.
    let caches = palisade_cache::Caches::on_disk(config.server.data_dir.join("http-cache"))
        .with_patience(if predecessor.is_some() { Duration::from_secs(10) } else { Duration::ZERO });
    let caches = Arc::new(caches);
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
    let site =
        Arc::new(Site::load(config.clone(), runtime, Some((kv, kv_backend)), caches.clone(), tenants, https.clone())?);
    let plain = config.server.listen.iter().map(|a| listening.take_or_bind("http", *a)).collect::<Result<_, _>>()?;
    let mut server = Server::on_listeners(plain, site.routes(), config.server.shutdown_timeout)?
        .with_traffic_limits(traffic.clone());
    if let Some(workers) = config.server.workers {
        server = server.with_workers(workers);
    }
    if let Some((_, _, metrics)) = &admin {
        server = server.with_stats(metrics.requests.clone());
    }
    let certificates = Arc::new(tokio::sync::Notify::new());
    if let Some(https) = https {
        let secure =
            config.server.tls_listen.iter().map(|a| listening.take_or_bind("https", *a)).collect::<Result<_, _>>()?;
        server =
            server.with_tls_listeners(secure, https.terminator.clone())?.with_acme_challenges(https.challenges.clone());
        if config.server.http3 {
            server = server.with_http3(config.server.quic_retry)?;
        }
        https.keep_fresh(certificates.clone());
    }
    let admin_api = match admin {
        Some((admin, token, metrics)) => {
            let listener = listening.take_or_bind("admin", admin.listen)?;
            Some(admin::start(admin, listener, token, &traffic, site.clone(), metrics)?)
        }
        None => None,
    };
    listening.close_unclaimed();
    if let (Some(cluster), Some(shared)) = (&config.cluster, site.shared.clone()) {
        tracing::info!("cluster: apps shared through Redis at {}", cluster.redis);
        let purge_mark = config.server.data_dir.join("http-cache/last-purge");
        tokio::spawn(cluster::keep_in_step(site.clone(), shared, cluster.reconcile_interval, purge_mark));
    }
    tokio::spawn(reload_on_sighup(site.clone(), certificates));
    announce(&server);
    let running = server.start().context("starting the server's workers")?;
    if let Some(predecessor) = predecessor {
        predecessor.ready();
    }
    pid_file.write();
    process::notify_systemd(&process::ready_message());

    let handed_over = until_stopped(&site, &listening, &binary, &pid_file, upgrades).await;
    // No more admin connections: a change made here now would be lost to the new process.
    if let Some(api) = admin_api {
        api.abort();
    }
    if handed_over {
        // The key-value file goes to the new process once the guests here are done with it; the connections
        // (tunnels included) drain meanwhile.
        let drained = tokio::spawn(running.stop());
        release_embedded_files(&site).await;
        drained.await.ok();
    } else {
        process::notify_systemd("STOPPING=1\n");
        running.stop().await;
        pid_file.remove();
    }
    // What the disk tiers were last sent goes to disk before the process ends.
    tokio::task::spawn_blocking(move || caches.flush(Duration::from_secs(5))).await.ok();
    Ok(())
}

/// Waits for SIGINT or SIGTERM (`false`), or for a hand-over to a new binary to succeed (`true`). SIGUSR2
/// starts one; one that fails is logged and this process goes on serving. SIGINT or SIGTERM during a
/// hand-over stops it (the new process is stopped too) and then this process.
async fn until_stopped(
    site: &Site,
    listening: &Listening,
    binary: &Binary,
    pid_file: &PidFile,
    mut upgrades: Option<tokio::signal::unix::Signal>,
) -> bool {
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let upgrade = async {
            match &mut upgrades {
                Some(usr2) => usr2.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut shutdown => return false,
            _ = upgrade => {}
        }
        tracing::info!("SIGUSR2 received: handing over to the binary at this process's path");
        site.hand_over(true).await;
        // The new process opens the caches' disk files as it starts: they are let go first (the memory tiers
        // go on meanwhile) and taken back if it fails.
        let caches = site.caches.clone();
        tokio::task::spawn_blocking(move || caches.release_disk(Duration::from_secs(5))).await.ok();
        let (binary, sockets, cancel) = (binary.clone(), listening.to_hand_over(), Arc::new(AtomicBool::new(false)));
        let cancelled = cancel.clone();
        let mut handing = tokio::task::spawn_blocking(move || {
            handover::hand_over(&binary, sockets?, HAND_OVER_READY_WITHIN, &cancelled)
        });
        let mut stopping = false;
        let outcome = loop {
            tokio::select! {
                outcome = &mut handing => {
                    break outcome.unwrap_or_else(|e| Err(anyhow::anyhow!("the hand-over task failed: {e}")));
                }
                () = &mut shutdown, if !stopping => {
                    tracing::info!("stopping: the hand-over under way is given up");
                    cancel.store(true, Ordering::Relaxed);
                    stopping = true;
                }
            }
        };
        match (outcome, stopping) {
            (Ok(pid), false) => {
                tracing::info!(pid, "the new process serves; this one stops accepting and finishes its requests");
                return true;
            }
            (Ok(pid), true) => {
                // Ready just as the stop came: the stop is passed on, and this process stops too.
                tracing::info!(pid, "the new process was ready as the stop came; stopping it too");
                process::signal(pid, rustix::process::Signal::TERM);
                return true;
            }
            (Err(e), stopping) => {
                if !stopping {
                    tracing::error!("upgrade failed, still serving with this process: {e:#}");
                }
                let caches = site.caches.clone();
                tokio::task::spawn_blocking(move || caches.reacquire_disk()).await.ok();
                site.hand_over(false).await;
                if stopping {
                    return false;
                }
                // Written again, so that `palisade upgrade` knows the new binary did not take over.
                pid_file.write();
            }
        }
    }
}

/// How long a new binary has to load everything and start serving.
const HAND_OVER_READY_WITHIN: Duration = Duration::from_secs(60);

/// After a hand-over: waits until no guest runs here any more, then closes the embedded key-value file, which
/// the new process is waiting to open. (Connections that were busy have had their last request by then: the
/// one after `Connection: close`, or an idle one's, within a moment.)
async fn release_embedded_files(site: &Site) {
    let Some(KvBackendStore::Redb(kv)) = site.kv_backend.clone() else { return };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let limit = site.state.lock().await.config.server.shutdown_timeout;
    loop {
        let running: u32 =
            site.state.lock().await.tenants.values().map(|t| t.loaded.sandbox.instances_in_flight()).sum();
        if running == 0 || started.elapsed() >= limit {
            if running > 0 {
                tracing::warn!(guests = running, "handing the key-value file over with guests still running");
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::spawn_blocking(move || kv.close()).await.ok();
    tracing::info!("key-value file handed over to the new process");
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
    announce(&server);
    server.run(shutdown_signal()).await.context("starting the server's workers")
}

/// Logs each address the server listens on (the end-to-end tests read them from the log).
fn announce(server: &Server) {
    for addr in server.local_addrs() {
        tracing::info!("palisade listening on http://{addr}");
    }
    for addr in server.tls_local_addrs() {
        tracing::info!("palisade listening on https://{addr}");
    }
    for addr in server.http3_local_addrs() {
        tracing::info!("palisade listening on https://{addr} (HTTP/3, UDP)");
    }
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
