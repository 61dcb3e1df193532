//! palisade's HTTP front: listeners, connections, dispatch to handlers, graceful shutdown.
//!
//! Every listener speaks HTTP/1.1 and HTTP/2 through hyper-util's auto builder: plain listeners h2c by prior
//! knowledge, TLS listeners after a handshake by [`palisade_tls::TlsTerminator`] (ALPN `h2` or `http/1.1`).
//! On TLS connections a request whose host is not the SNI name is answered 421; tenants may add HSTS to their
//! HTTPS responses and redirect their plain-HTTP requests to HTTPS. ACME HTTP-01 answers are served on any
//! listener, before routing.
//! Each request is dispatched by host to a tenant and by longest path prefix to a route ([`router`]); the
//! route's [`Handler`](palisade_http::Handler) answers it. The server never inspects what kind of handler it
//! is calling.
//!
//! Threads: one single-threaded async runtime per core ("worker"), each accepting on its own handle to the same
//! listening sockets. The worker that accepts a connection keeps it unless it already serves more than the
//! least loaded worker, which it then hands the connection to ([`balance`]). From there a connection, its
//! requests and the guests they run all stay on one worker: no request crosses threads, and no task is woken
//! from another core. Guests yield at every epoch tick, so a spinning guest cannot hold its worker for long.
//!
//! Shutdown: when the future given to [`Server::run`] completes, listeners close at once, open connections
//! are asked to finish (HTTP/2 GOAWAY, HTTP/1 close after the current response), and `run` returns when they
//! have, or when the grace period is over.

mod balance;
mod connection;
mod dispatch;
mod head_watch;
pub mod host;
mod normalise;
mod observe;
mod quic;
pub mod router;
mod sidelined;
mod stats;
mod strict;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use palisade_config::TrafficLimits;
use palisade_http::Handler;
use palisade_tls::{Challenges, TlsTerminator};
use tokio::net::TcpListener;
use tokio::sync::watch;

use balance::Balance;
use connection::{Admission, Arrival, Connections};
use dispatch::Dispatcher;
pub use observe::ACCESS_TARGET;
use quic::{Quic, QuicListener};
pub use router::{Route, Router, TenantRoutes};
pub use stats::{LATENCY_BUCKETS, RequestStats, RouteStats, TenantTotals};

/// Entry points for the fuzz targets in `fuzz/` (built only by `cargo fuzz`).
#[cfg(fuzzing)]
pub mod fuzzing {
    /// Everything palisade checks in a request head outside hyper: the strict target and framing rules, the
    /// host, and host and route matching.
    pub fn request_head(req: &http::Request<()>, route_path: &str) {
        let _ = crate::strict::refuse(req);
        if let Ok(host) = crate::host::request_host(req) {
            let mut router = crate::Router::default();
            router.add(
                &["alice.test".into(), "*.bob.test".into()],
                crate::TenantRoutes::new("t", vec![("/app".into(), 1)]),
            );
            let _ = router.tenant(host.as_deref()).and_then(|t| t.route(route_path));
        }
    }
}

/// The router a [`Server`] dispatches with: handlers of any route kind behind one trait.
pub type Routes = Router<Arc<dyn Handler>>;

/// The routes a running [`Server`] dispatches with, swapped whole by deploys and reloads: a request in
/// flight keeps the handler it was routed to, every later request sees the new routes.
pub type LiveRoutes = arc_swap::ArcSwap<Routes>;

/// Connections waiting to be accepted, per listener.
const LISTEN_BACKLOG: u32 = 1024;

/// How many workers a [`Server`] runs unless told otherwise: one per available core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// How long clients may remember that HTTPS ports answer HTTP/3 (`Alt-Svc`'s `ma`), in seconds.
const ALT_SVC_MAX_AGE: u32 = 86_400;

/// Bound listeners plus everything needed to serve them.
pub struct Server {
    listeners: Vec<Listener>,
    dispatcher: Dispatcher,
    traffic: TrafficLimits,
    tls: Option<Arc<TlsTerminator>>,
    /// HTTP/3 beside the TLS listeners, if asked for: their UDP sockets and the QUIC TLS configuration.
    http3: Option<(Vec<QuicListener>, Arc<rustls::ServerConfig>, bool)>,
    shutdown_timeout: Duration,
    workers: usize,
}

impl Server {
    /// Binds every address in `listen` (so a port conflict is reported before anything is served). Connections
    /// are served by one worker thread per available core, unless [`Server::with_workers`] says otherwise.
    pub async fn bind(listen: &[SocketAddr], router: Routes, shutdown_timeout: Duration) -> std::io::Result<Server> {
        Server::bind_live(listen, Arc::new(LiveRoutes::from_pointee(router)), shutdown_timeout).await
    }

    /// Like [`Server::bind`], dispatching with `routes` as whoever else holds them swaps them.
    pub async fn bind_live(
        listen: &[SocketAddr],
        routes: Arc<LiveRoutes>,
        shutdown_timeout: Duration,
    ) -> std::io::Result<Server> {
        let sockets = listen.iter().map(|a| bind_listener(*a)).collect::<Result<_, _>>()?;
        Server::on_listeners(sockets, routes, shutdown_timeout)
    }

    /// Like [`Server::bind_live`], on sockets already listening: bound with [`bind_listener`], or handed over
    /// by the process this one replaces.
    pub fn on_listeners(
        sockets: Vec<std::net::TcpListener>,
        routes: Arc<LiveRoutes>,
        shutdown_timeout: Duration,
    ) -> std::io::Result<Server> {
        let listeners = sockets.into_iter().map(|s| Listener::adopt(s, false)).collect::<Result<_, _>>()?;
        Ok(Server {
            listeners,
            dispatcher: Dispatcher::new(routes),
            traffic: TrafficLimits::default(),
            tls: None,
            http3: None,
            shutdown_timeout,
            workers: default_workers(),
        })
    }

    /// Holds clients to `traffic` instead of the defaults: timeouts, connection and header limits.
    pub fn with_traffic_limits(mut self, traffic: TrafficLimits) -> Server {
        self.traffic = traffic;
        self
    }

    /// Also serves HTTPS on every address in `listen`, with `tls` terminating each connection. Tenants with
    /// `https_redirect` are redirected to the first of these ports.
    pub fn with_tls(self, listen: &[SocketAddr], tls: Arc<TlsTerminator>) -> std::io::Result<Server> {
        let sockets = listen.iter().map(|a| bind_listener(*a)).collect::<Result<_, _>>()?;
        self.with_tls_listeners(sockets, tls)
    }

    /// Like [`Server::with_tls`], on sockets already listening.
    pub fn with_tls_listeners(
        mut self,
        sockets: Vec<std::net::TcpListener>,
        tls: Arc<TlsTerminator>,
    ) -> std::io::Result<Server> {
        for socket in sockets {
            self.listeners.push(Listener::adopt(socket, true)?);
        }
        self.dispatcher.https_port = self.listeners.iter().find(|l| l.tls).map(|l| l.local_addr.port());
        self.tls = Some(tls);
        Ok(self)
    }

    /// Also answers HTTP/3 on the UDP port of every HTTPS address (call after [`Server::with_tls`]), with the
    /// same certificates, and advertises it in `Alt-Svc` on the HTTPS responses of those ports. With
    /// `always_retry`, every new QUIC connection must first answer a Retry (address validation); otherwise
    /// only while many handshakes are under way.
    pub fn with_http3(mut self, always_retry: bool) -> std::io::Result<Server> {
        let Some(tls) = &self.tls else {
            return Err(std::io::Error::other("HTTP/3 needs HTTPS listeners"));
        };
        let config = tls.quic_config().map_err(std::io::Error::other)?;
        let mut sockets = Vec::new();
        for addr in self.tls_local_addrs() {
            sockets.push(QuicListener::bind(addr)?);
            let value = format!("h3=\":{}\"; ma={ALT_SVC_MAX_AGE}", addr.port());
            self.dispatcher
                .alt_svc
                .push((addr.port(), http::HeaderValue::from_str(&value).map_err(std::io::Error::other)?));
        }
        self.http3 = Some((sockets, config, always_retry));
        Ok(self)
    }

    /// Serves the ACME HTTP-01 answers published in `challenges` (at `/.well-known/acme-challenge/`).
    pub fn with_acme_challenges(mut self, challenges: Arc<Challenges>) -> Server {
        self.dispatcher.challenges = Some(challenges);
        self
    }

    /// Counts requests in `stats` (by tenant, route and status, with their durations and bytes): what
    /// `/metrics` shows as `palisade_requests_total` and `palisade_request_duration_seconds`.
    pub fn with_stats(mut self, stats: Arc<RequestStats>) -> Server {
        self.dispatcher.observers.stats = Some(stats);
        self
    }

    /// Serves with `workers` threads (at least one) instead of one per core.
    pub fn with_workers(mut self, workers: usize) -> Server {
        self.workers = workers.max(1);
        self
    }

    /// The plain-HTTP addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter(|l| !l.tls).map(|l| l.local_addr).collect()
    }

    /// The HTTPS addresses actually bound (port 0 resolved).
    pub fn tls_local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter(|l| l.tls).map(|l| l.local_addr).collect()
    }

    /// The UDP addresses answering HTTP/3.
    pub fn http3_local_addrs(&self) -> Vec<SocketAddr> {
        self.http3.iter().flat_map(|(sockets, _, _)| sockets.iter().filter_map(|s| s.local_addr().ok())).collect()
    }

    /// Serves until `shutdown` completes, then drains connections for at most the shutdown timeout.
    ///
    /// The workers run on their own threads; the future calling this only waits for `shutdown` and for them.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let running = self.start()?;
        shutdown.await;
        running.stop().await;
        Ok(())
    }

    /// Starts the workers: when this returns, every listener is being accepted on. The server serves until
    /// [`Running::stop`].
    pub fn start(self) -> std::io::Result<Running> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let tls_addrs = self.tls_local_addrs();
        let mut dispatcher = self.dispatcher;
        dispatcher.limit_requests(&self.traffic);
        let dispatcher = Arc::new(dispatcher);
        let admission = Arc::new(Admission::new(&self.traffic));
        let (balance, inboxes) = Balance::new(self.workers);
        let mut workers = Vec::with_capacity(self.workers);
        // HTTP/3: a socket per worker on each port (SO_REUSEPORT), each worker's QUIC endpoint on its own runtime.
        let mut http3 = self.http3.map(|(first, tls, always_retry)| (Some(first), tls, always_retry));
        let handshaking = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for (index, inbox) in inboxes.into_iter().enumerate() {
            let listeners = self.listeners.iter().map(Listener::try_clone).collect::<Result<_, _>>()?;
            let quic = match &mut http3 {
                Some((first, tls, always_retry)) => {
                    let sockets = match first.take() {
                        Some(sockets) => sockets,
                        None => tls_addrs.iter().map(|a| QuicListener::bind(*a)).collect::<Result<_, _>>()?,
                    };
                    let quic = Quic {
                        dispatcher: dispatcher.clone(),
                        admission: admission.clone(),
                        traffic: self.traffic.clone(),
                        tls: tls.clone(),
                        always_retry: *always_retry,
                        handshaking: handshaking.clone(),
                        stop: stop_rx.clone(),
                    };
                    Some((quic, sockets))
                }
                None => None,
            };
            let worker = Worker {
                listeners,
                index,
                balance: balance.clone(),
                inbox,
                dispatcher: dispatcher.clone(),
                admission: admission.clone(),
                traffic: self.traffic.clone(),
                tls: self.tls.clone(),
                quic,
                stop: stop_rx.clone(),
                shutdown_timeout: self.shutdown_timeout,
            };
            workers.push(worker.spawn()?);
        }
        // The workers hold their own handles; this one would keep the sockets open after they stop.
        drop(self.listeners);
        Ok(Running { stop: stop_tx, workers, shutdown_timeout: self.shutdown_timeout, draining: dispatcher.draining() })
    }
}

/// A started [`Server`]: its workers accept and serve until [`Running::stop`].
pub struct Running {
    stop: watch::Sender<bool>,
    workers: Vec<tokio::sync::oneshot::Receiver<bool>>,
    shutdown_timeout: Duration,
    draining: Arc<AtomicBool>,
}

impl Running {
    /// Stops accepting (the listening sockets close here; a process they were handed to goes on accepting
    /// on them), lets open connections finish what they are doing, and returns when they have, or when the
    /// shutdown timeout is over. HTTP/2 connections get a GOAWAY at once. An HTTP/1 connection answers its
    /// next request with `Connection: close` and is closed after it, or once it has been idle for a moment:
    /// closing an idle keep-alive connection at once would race a request the client is sending on it.
    pub async fn stop(self) -> bool {
        tracing::info!(
            "shutting down: no new connections; waiting up to {:?} for requests in flight",
            self.shutdown_timeout
        );
        self.draining.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let mut drained = true;
        for worker in self.workers {
            drained &= worker.await.unwrap_or(false);
        }
        if drained {
            tracing::info!("all connections closed");
        } else {
            tracing::warn!("shutdown timeout reached; remaining connections were closed");
        }
        drained
    }
}

/// Binds a listening socket on `addr` (with `SO_REUSEADDR`, so a restarted server binds while the previous
/// one's connections linger in `TIME_WAIT`), for [`Server::on_listeners`] and [`Server::with_tls_listeners`].
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let bound = || {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        // Deregistered from this runtime: each worker registers its own handle with its own runtime.
        socket.listen(LISTEN_BACKLOG)?.into_std()
    };
    bound().map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// A bound listening socket that each worker can take a handle to.
struct Listener {
    socket: std::net::TcpListener,
    local_addr: SocketAddr,
    tls: bool,
}

impl Listener {
    /// Takes `socket`, listening already (and non-blocking, as every worker's runtime wants it).
    fn adopt(socket: std::net::TcpListener, tls: bool) -> std::io::Result<Listener> {
        socket.set_nonblocking(true)?;
        Ok(Listener { local_addr: socket.local_addr()?, socket, tls })
    }

    fn try_clone(&self) -> std::io::Result<Listener> {
        Ok(Listener { socket: self.socket.try_clone()?, local_addr: self.local_addr, tls: self.tls })
    }
}

/// One thread with a single-threaded runtime, serving the connections it accepts (or another worker hands it)
/// until told to stop.
struct Worker {
    listeners: Vec<Listener>,
    index: usize,
    balance: Arc<Balance<Arrival>>,
    /// Connections other workers accepted for this one.
    inbox: tokio::sync::mpsc::UnboundedReceiver<Arrival>,
    dispatcher: Arc<Dispatcher>,
    admission: Arc<Admission>,
    traffic: TrafficLimits,
    tls: Option<Arc<TlsTerminator>>,
    /// HTTP/3 on this worker: its QUIC sockets, one per HTTPS port.
    quic: Option<(Quic, Vec<QuicListener>)>,
    stop: watch::Receiver<bool>,
    shutdown_timeout: Duration,
}

impl Worker {
    /// Starts the worker's thread; the receiver completes when the worker has stopped, with whether all its
    /// connections finished within the shutdown timeout.
    fn spawn(self) -> std::io::Result<tokio::sync::oneshot::Receiver<bool>> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new().name(format!("palisade-worker-{}", self.index)).spawn(move || {
            let drained = runtime.block_on(self.serve());
            let _ = done_tx.send(drained);
        })?;
        Ok(done_rx)
    }

    async fn serve(self) -> bool {
        // Drains at the same time as the TCP connections, within the same shutdown timeout.
        let quic = self.quic.map(|(quic, sockets)| tokio::spawn(quic.serve(sockets, self.shutdown_timeout)));
        let connections = Arc::new(Connections::new(
            self.dispatcher,
            self.admission,
            (self.index, self.balance),
            &self.traffic,
            self.stop,
        ));
        connections.track_lingering_work();

        let mut accept_loops = vec![tokio::spawn(connections.clone().arrivals(self.inbox))];
        for listener in self.listeners {
            let socket = match TcpListener::from_std(listener.socket) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "cannot register a listener with a worker");
                    continue;
                }
            };
            let tls = if listener.tls { self.tls.clone() } else { None };
            accept_loops.push(tokio::spawn(connections.clone().accept_loop(socket, tls)));
        }
        for l in accept_loops {
            let _ = l.await;
        }
        let drained = connections.drain(self.shutdown_timeout).await;
        match quic {
            Some(quic) => quic.await.unwrap_or(false) && drained,
            None => drained,
        }
    }
}
