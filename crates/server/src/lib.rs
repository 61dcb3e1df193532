//! palisade's HTTP front: listeners, connections, dispatch to handlers, graceful shutdown.
//!
//! Every listener speaks HTTP/1.1 and cleartext HTTP/2 (prior knowledge) through hyper-util's auto builder.
//! Each request is dispatched by host to a tenant and by longest path prefix to a route ([`router`]); the
//! route's [`Handler`](palisade_http::Handler) answers it. The server never inspects what kind of handler it
//! is calling.
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

use dispatch::Dispatcher;
pub use router::{Router, TenantRoutes};

/// The router a [`Server`] dispatches with: handlers of any route kind behind one trait.
pub type Routes = Router<Arc<dyn Handler>>;

/// How long a client may take to send a request head before the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound listeners plus everything needed to serve them.
pub struct Server {
    listeners: Vec<TcpListener>,
    dispatcher: Arc<Dispatcher>,
    shutdown_timeout: Duration,
}

impl Server {
    /// Binds every address in `listen` (so a port conflict is reported before anything is served).
    pub async fn bind(listen: &[SocketAddr], router: Routes, shutdown_timeout: Duration) -> std::io::Result<Server> {
        let mut listeners = Vec::with_capacity(listen.len());
        for addr in listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            listeners.push(listener);
        }
        Ok(Server { listeners, dispatcher: Arc::new(Dispatcher::new(router)), shutdown_timeout })
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    /// Serves until `shutdown` completes, then drains connections for at most the shutdown timeout.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let graceful = Arc::new(GracefulShutdown::new());
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut accept_loops = Vec::new();
        for listener in self.listeners {
            accept_loops.push(tokio::spawn(accept_loop(
                listener,
                self.dispatcher.clone(),
                builder.clone(),
                graceful.clone(),
                stop_rx.clone(),
            )));
        }

        shutdown.await;
        tracing::info!(
            "shutting down: no new connections; waiting up to {:?} for requests in flight",
            self.shutdown_timeout
        );
        let _ = stop_tx.send(true);
        for l in accept_loops {
            let _ = l.await;
        }
        let Ok(graceful) = Arc::try_unwrap(graceful) else {
            tracing::warn!("connections still being accepted at shutdown");
            return;
        };
        match tokio::time::timeout(self.shutdown_timeout, graceful.shutdown()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!("shutdown timeout reached; closing remaining connections"),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    dispatcher: Arc<Dispatcher>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: Arc<GracefulShutdown>,
    mut stop: tokio::sync::watch::Receiver<bool>,
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
