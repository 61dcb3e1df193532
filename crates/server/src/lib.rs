//! palisade's HTTP front: listeners, connections, dispatch to handlers, graceful shutdown.
//!
//! Every listener speaks HTTP/1.1 and cleartext HTTP/2 (prior knowledge) through hyper-util's auto builder.
//! Each request is dispatched by host to a tenant and by longest path prefix to a route ([`router`]); the
//! route's [`Handler`](palisade_http::Handler) answers it. The server never inspects what kind of handler it
//! is calling.
//!
//! Threads: one single-threaded async runtime per core ("worker"), each accepting on its own handle to the same
//! listening sockets. A connection, its requests and the guests they run all stay on the worker that accepted
//! it: no request crosses threads, and no task is woken from another core. An idle worker tends to win the
//! race to accept, which spreads connections by load. Guests yield at every epoch tick, so a spinning guest
//! cannot hold its worker for long.
//!
//! Shutdown: when the future given to [`Server::run`] completes, listeners close at once, open connections
//! are asked to finish (HTTP/2 GOAWAY, HTTP/1 close after the current response), and `run` returns when they
//! have, or when the grace period is over.

mod dispatch;
pub mod host;
pub mod router;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use palisade_http::Handler;
use tokio::net::TcpListener;
use tokio::sync::watch;

use dispatch::Dispatcher;
pub use router::{Router, TenantRoutes};

/// The router a [`Server`] dispatches with: handlers of any route kind behind one trait.
pub type Routes = Router<Arc<dyn Handler>>;

/// How long a client may take to send a request head before the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections waiting to be accepted, per listener.
const LISTEN_BACKLOG: u32 = 1024;

/// Bound listeners plus everything needed to serve them.
pub struct Server {
    listeners: Vec<std::net::TcpListener>,
    local_addrs: Vec<SocketAddr>,
    dispatcher: Arc<Dispatcher>,
    shutdown_timeout: Duration,
    workers: usize,
}

impl Server {
    /// Binds every address in `listen` (so a port conflict is reported before anything is served). Connections
    /// are served by one worker thread per available core, unless [`Server::with_workers`] says otherwise.
    pub async fn bind(listen: &[SocketAddr], router: Routes, shutdown_timeout: Duration) -> std::io::Result<Server> {
        let mut listeners = Vec::with_capacity(listen.len());
        let mut local_addrs = Vec::with_capacity(listen.len());
        for addr in listen {
            let listener =
                bind(*addr).map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            local_addrs.push(listener.local_addr()?);
            listeners.push(listener);
        }
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Server { listeners, local_addrs, dispatcher: Arc::new(Dispatcher::new(router)), shutdown_timeout, workers })
    }

    /// Serves with `workers` threads (at least one) instead of one per core.
    pub fn with_workers(mut self, workers: usize) -> Server {
        self.workers = workers.max(1);
        self
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.local_addrs.clone()
    }

    /// Serves until `shutdown` completes, then drains connections for at most the shutdown timeout.
    ///
    /// The workers run on their own threads; the future calling this only waits for `shutdown` and for them.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut workers = Vec::with_capacity(self.workers);
        for index in 0..self.workers {
            let listeners = self.listeners.iter().map(std::net::TcpListener::try_clone).collect::<Result<_, _>>()?;
            let worker = Worker {
                listeners,
                dispatcher: self.dispatcher.clone(),
                stop: stop_rx.clone(),
                shutdown_timeout: self.shutdown_timeout,
            };
            workers.push(worker.spawn(index)?);
        }
        // The workers hold their own handles; this one would keep the sockets open after they stop.
        drop(self.listeners);

        shutdown.await;
        tracing::info!(
            "shutting down: no new connections; waiting up to {:?} for requests in flight",
            self.shutdown_timeout
        );
        let _ = stop_tx.send(true);
        let mut drained = true;
        for worker in workers {
            drained &= worker.await.unwrap_or(false);
        }
        if drained {
            tracing::info!("all connections closed");
        } else {
            tracing::warn!("shutdown timeout reached; remaining connections were closed");
        }
        Ok(())
    }
}

/// Binds a listening socket that each worker can take a handle to (call within a tokio runtime).
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // Deregistered from this runtime: each worker registers its own handle with its own runtime.
    socket.listen(LISTEN_BACKLOG)?.into_std()
}

/// One thread with a single-threaded runtime, serving the connections it accepts until told to stop.
struct Worker {
    listeners: Vec<std::net::TcpListener>,
    dispatcher: Arc<Dispatcher>,
    stop: watch::Receiver<bool>,
    shutdown_timeout: Duration,
}

impl Worker {
    /// Starts the worker's thread; the receiver completes when the worker has stopped, with whether all its
    /// connections finished within the shutdown timeout.
    fn spawn(self, index: usize) -> std::io::Result<tokio::sync::oneshot::Receiver<bool>> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new().name(format!("palisade-worker-{index}")).spawn(move || {
            let drained = runtime.block_on(self.serve());
            let _ = done_tx.send(drained);
        })?;
        Ok(done_rx)
    }

    async fn serve(self) -> bool {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);
        let graceful = Arc::new(GracefulShutdown::new());

        let mut accept_loops = Vec::new();
        for listener in self.listeners {
            let listener = match TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "cannot register a listener with a worker");
                    continue;
                }
            };
            accept_loops.push(tokio::spawn(accept_loop(
                listener,
                self.dispatcher.clone(),
                builder.clone(),
                graceful.clone(),
                self.stop.clone(),
            )));
        }
        for l in accept_loops {
            let _ = l.await;
        }
        let Ok(graceful) = Arc::try_unwrap(graceful) else {
            tracing::warn!("connections still being accepted at shutdown");
            return false;
        };
        tokio::time::timeout(self.shutdown_timeout, graceful.shutdown()).await.is_ok()
    }
}

async fn accept_loop(
    listener: TcpListener,
    dispatcher: Arc<Dispatcher>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(local) = listener.local_addr() else { return };
    loop {
        let (stream, remote) = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually EMFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Guests often write small body chunks; Nagle would add up to 40 ms to each.
        let _ = stream.set_nodelay(true);
        let dispatcher = dispatcher.clone();
        let service = hyper::service::service_fn(move |req| {
            let dispatcher = dispatcher.clone();
            async move { Ok::<_, std::convert::Infallible>(dispatcher.dispatch(req, remote, local).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
}
