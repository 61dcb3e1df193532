//! One client connection, from accept to close: admission against the connection limits, the TLS handshake,
//! the HTTP connection, and the timeouts hyper does not enforce itself (slow heads, slow readers, idle
//! connections).

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::Either;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use palisade_config::TrafficLimits;
use palisade_tls::TlsTerminator;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Sleep;
use tokio_util::task::TaskTracker;

use http::Response;
use palisade_http::Activity;

use crate::balance::{Balance, Share};
use crate::dispatch::{Dispatcher, Peer};
use crate::head_watch::{Framing, HeadWatch};
use crate::observe::Served;
use crate::sidelined::Sidelined;

/// The most header fields hyper's HTTP/1 parser takes when not told otherwise.
const HYPER_MAX_HEADERS: usize = 100;

/// How long a stopping server waits for an HTTP/1 connection to be quiet before closing it.
const DRAIN_QUIET: Duration = Duration::from_millis(500);
/// The longest it waits for that quiet: a connection that never rests is closed after its current request.
const DRAIN_QUIET_WAIT: Duration = Duration::from_secs(2);

/// The answer to a plain-HTTP client over the connection limits, written without waiting.
const TOO_MANY_CONNECTIONS: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 21\r\n\r\ntoo many connections\n";

/// Open connections, in total and per client address, shared by every worker.
pub(crate) struct Admission {
    total: AtomicU32,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    max_total: u32,
    max_per_ip: u32,
}

impl Admission {
    pub(crate) fn new(limits: &TrafficLimits) -> Admission {
        Admission {
            total: AtomicU32::new(0),
            per_ip: Mutex::new(HashMap::new()),
            max_total: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
        }
    }

    /// Counts a new connection from `ip`, or refuses it if either limit is reached.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            drop(per_ip);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        *count += 1;
        Some(Admitted { admission: self.clone(), ip })
    }
}

/// A counted connection; dropping it uncounts it.
pub(crate) struct Admitted {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_ip = self.admission.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        self.admission.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection one worker accepted for another to serve (see [`crate::balance`]).
pub(crate) struct Arrival {
    stream: std::net::TcpStream,
    peer: Peer,
    tls: Option<Arc<TlsTerminator>>,
    counted: Counted,
}

/// What a connection is counted in while it is open: the connection limits and its worker's share.
type Counted = (Admitted, Share<Arrival>);

/// What one worker's accept loops share to serve the connections they accept.
pub(crate) struct Connections {
    dispatcher: Arc<Dispatcher>,
    admission: Arc<Admission>,
    /// This worker's index in `balance`.
    worker: usize,
    balance: Arc<Balance<Arrival>>,
    /// HTTP/1.1, or HTTP/2 when the connection starts with its preface (h2c with prior knowledge).
    builder: auto::Builder<TokioExecutor>,
    /// HTTP/2 only: for TLS connections where ALPN chose `h2` (RFC 9113 section 3.3), so that one not starting
    /// with the HTTP/2 preface is a connection error, never read as an HTTP/1.1 request.
    h2_only: auto::Builder<TokioExecutor>,
    /// The most header fields hyper takes in a head (its own limit, or the configured one above it): the
    /// smuggling watch takes as many, so that whatever hyper accepts the watch reads.
    hyper_max_fields: usize,
    limits: TrafficLimits,
    tasks: TaskTracker,
    stop: watch::Receiver<bool>,
}

impl Connections {
    pub(crate) fn new(
        dispatcher: Arc<Dispatcher>,
        admission: Arc<Admission>,
        (worker, balance): (usize, Arc<Balance<Arrival>>),
        limits: &TrafficLimits,
        stop: watch::Receiver<bool>,
    ) -> Connections {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The head timeout is the connection's own (`Expiry`): hyper's arms a new timer for every request.
        builder.http1().header_read_timeout(None).max_buf_size(max_head(limits));
        // hyper parses into a buffer on the stack for up to HYPER_MAX_HEADERS fields, and into one it allocates
        // and fills for every request once given any limit of its own. A lower limit is enforced by the
        // dispatcher (431) after hyper's parse; only a higher one needs hyper's setting.
        let hyper_max_fields = usize::try_from(limits.max_header_count).unwrap_or(usize::MAX).max(HYPER_MAX_HEADERS);
        if hyper_max_fields > HYPER_MAX_HEADERS {
            builder.http1().max_headers(hyper_max_fields);
        }
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX));
        Connections {
            dispatcher,
            admission,
            worker,
            balance,
            h2_only: builder.clone().http2_only(),
            builder,
            hyper_max_fields,
            limits: limits.clone(),
            tasks: TaskTracker::new(),
            stop,
        }
    }

    /// Makes this worker's tracker the one lingering work (proxied tunnels) is spawned on, so that a drain waits
    /// for it as it waits for connections. Call on the worker's thread.
    pub(crate) fn track_lingering_work(&self) {
        palisade_http::lingering::install(self.tasks.clone());
    }

    /// Stops tracking new connections and waits (at most `limit`) for the open ones to finish.
    pub(crate) async fn drain(&self, limit: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(limit, self.tasks.wait()).await.is_ok()
    }

    /// Accepts on `listener` until told to stop; each connection is served on its own task of this worker.
    pub(crate) async fn accept_loop(self: Arc<Self>, listener: TcpListener, tls: Option<Arc<TlsTerminator>>) {
        let Ok(local) = listener.local_addr() else { return };
        let mut stop = self.stop.clone();
        // Failed accepts in a row: said once when they start and once when they end, not every 50 ms.
        let mut failing = 0u64;
        loop {
            let (stream, remote) = tokio::select! {
                _ = stop.changed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Usually EMFILE: back off briefly instead of spinning.
                        if failing == 0 {
                            tracing::warn!(error = %e, %local, "cannot accept connections (new ones wait in the \
                                listen queue until descriptors free up)");
                        }
                        failing += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if failing > 0 {
                tracing::info!(%local, "accepting connections again (after {failing} failed tries)");
                failing = 0;
            }
            let Some(admitted) = self.admission.admit(remote.ip()) else {
                tracing::debug!(%remote, "connection refused: connection limit reached");
                if tls.is_none() {
                    let _ = stream.try_write(TOO_MANY_CONNECTIONS);
                }
                continue;
            };
            // Guests often write small body chunks; Nagle would add up to 40 ms to each.
            let _ = stream.set_nodelay(true);
            // Made here so that the first head's timeout counts from the accept, wherever it is served.
            let peer = Peer {
                remote,
                local,
                tls: None,
                framing: Arc::new(Framing::new()),
                activity: Arc::new(Activity::new()),
            };
            let share = self.balance.assign(self.worker);
            let worker = share.worker();
            if worker == self.worker {
                self.start(stream, peer, tls.clone(), (admitted, share));
                continue;
            }
            match stream.into_std() {
                Ok(stream) => {
                    let arrival = Arrival { stream, peer, tls: tls.clone(), counted: (admitted, share) };
                    // Refused only by a worker that has stopped taking connections: this one serves it then
                    // (it was accepted, and after a hand-over no other process will).
                    if let Err(arrival) = self.balance.hand_over(worker, arrival) {
                        self.take(arrival);
                    }
                }
                Err(e) => tracing::debug!(%remote, error = %e, "cannot hand a connection to another worker"),
            }
        }
    }

    /// Serves the connections other workers hand over, until told to stop; those already handed over then are
    /// served too (later ones are served by the worker that accepted them).
    pub(crate) async fn arrivals(self: Arc<Self>, mut inbox: tokio::sync::mpsc::UnboundedReceiver<Arrival>) {
        let mut stop = self.stop.clone();
        loop {
            let arrival = tokio::select! {
                _ = stop.changed() => {
                    inbox.close();
                    while let Ok(arrival) = inbox.try_recv() {
                        self.take(arrival);
                    }
                    return;
                }
                arrival = inbox.recv() => match arrival {
                    Some(a) => a,
                    None => return,
                },
            };
            self.take(arrival);
        }
    }

    /// Serves a connection accepted on another thread.
    fn take(self: &Arc<Self>, arrival: Arrival) {
        match TcpStream::from_std(arrival.stream) {
            Ok(stream) => self.start(stream, arrival.peer, arrival.tls, arrival.counted),
            Err(e) => tracing::warn!(error = %e, "cannot take over a connection from another worker"),
        }
    }

    /// Serves one connection on its own task of this worker; it is uncounted when done.
    fn start(self: &Arc<Self>, stream: TcpStream, peer: Peer, tls: Option<Arc<TlsTerminator>>, counted: Counted) {
        let this = self.clone();
        self.tasks.spawn(async move {
            this.serve(stream, peer, tls).await;
            drop(counted);
        });
    }

    /// Serves one connection: TLS handshake if `tls`, then HTTP until the client is done, the connection has
    /// been idle for `keepalive_timeout`, or the server stops (then in-flight requests finish first).
    async fn serve(&self, stream: TcpStream, mut peer: Peer, tls: Option<Arc<TlsTerminator>>) {
        let io = Guarded::new(stream, peer.activity.clone(), self.limits.send_timeout);
        match tls {
            None => self.serve_http(false, io, peer).await,
            Some(tls) => match tokio::time::timeout(self.limits.tls_handshake_timeout, tls.accept(io)).await {
                Ok(Ok(Some(conn))) => {
                    peer.tls = Some(conn.server_name);
                    let h2 = conn.stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    self.serve_http(h2, conn.stream, peer).await;
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::debug!(remote = %peer.remote, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(remote = %peer.remote, "TLS handshake timed out"),
            },
        }
    }

    /// Serves HTTP on `io`: HTTP/2 alone if `h2_only`, else HTTP/1.1 or HTTP/2 by the first bytes.
    async fn serve_http<IO>(&self, h2_only: bool, io: IO, peer: Peer)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let dispatcher = self.dispatcher.clone();
        let remote = peer.remote;
        let mut watch =
            HeadWatch::new(max_head(&self.limits), self.hyper_max_fields, peer.framing.clone(), peer.activity.clone());
        let io = tokio_util::io::InspectReader::new(io, move |bytes: &[u8]| watch.feed(bytes));
        let activity = peer.activity.clone();
        let framing = peer.framing.clone();
        let peer = Arc::new(peer);
        let service = hyper::service::service_fn(move |req| dispatcher.dispatch(req, &peer).map(infallible));
        // With upgrades: a proxied WebSocket handshake hands the connection over to its tunnel. (hyper-util
        // reads the protocol from the first bytes there whatever the builder says, so HTTP/2 alone is served
        // without: HTTP/2 needs no HTTP/1 upgrade.)
        let connection = if h2_only {
            Either::Left(self.h2_only.serve_connection(TokioIo::new(io), service))
        } else {
            Either::Right(self.builder.serve_connection_with_upgrades(TokioIo::new(io), service))
        };
        tokio::pin!(connection);
        // (A macro: a closure's argument type would have to be named before the calls below could infer it.)
        macro_rules! graceful_shutdown {
            ($connection:expr) => {
                match $connection.as_pin_mut() {
                    Either::Left(h2) => h2.graceful_shutdown(),
                    Either::Right(auto) => auto.graceful_shutdown(),
                }
            };
        }
        let mut stop = self.stop.clone();
        let keepalive = self.limits.keepalive_timeout;
        let header_timeout = self.limits.header_timeout;
        // `None`: the server is stopping. HTTP/2 is told at once (GOAWAY names the last stream served, so a
        // client knows what to send again elsewhere). HTTP/1 has no such word: a keep-alive connection closed
        // while idle may cross a request already on its way, so the server waits for a quiet moment (a busy
        // connection ends sooner, after an answer that says `Connection: close`).
        let side = async {
            tokio::select! {
                _ = stop.changed() => {
                    if !h2_only {
                        tokio::select! {
                            () = activity.idle_for(DRAIN_QUIET) => {}
                            () = tokio::time::sleep(DRAIN_QUIET_WAIT) => {}
                        }
                    }
                    None
                }
                expiry = Expiry::wait(&activity, &framing, keepalive, header_timeout) => Some(expiry),
            }
        };
        let result = match Sidelined::new(connection.as_mut(), side).await {
            Either::Left(r) => r,
            Either::Right(None) => {
                graceful_shutdown!(connection.as_mut());
                connection.await
            }
            Either::Right(Some(expiry)) => {
                match expiry {
                    Expiry::Idle => tracing::debug!(%remote, "closing a connection idle for {keepalive:?}"),
                    // Before the first request, hyper would wait for the head to finish: nothing is lost by
                    // dropping the connection at once. Later, hyper closes at once if no request is in
                    // flight, or after the one that is.
                    Expiry::SlowHead => {
                        tracing::debug!(%remote, "closing a connection whose request head is late");
                        if framing.dispatched() == 0 {
                            return;
                        }
                    }
                }
                graceful_shutdown!(connection.as_mut());
                activity.touch();
                // HTTP/2 says goodbye with a PING round trip; a client that stays silent through another
                // idle period is simply dropped.
                tokio::select! {
                    r = connection.as_mut() => r,
                    () = activity.idle_for(keepalive) => Ok(()),
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(%remote, error = %e, "connection ended with an error");
        }
    }
}

/// A response as hyper's service wants it. (A named function: with a closure or `Ok` itself, the compiler
/// cannot show that the connection's future is `Send`.)
fn infallible(response: Response<Served>) -> Result<Response<Served>, std::convert::Infallible> {
    Ok(response)
}

/// Why a connection's own timer ends it.
enum Expiry {
    /// No byte moved either way for `keepalive_timeout`.
    Idle,
    /// A request head took longer than `header_timeout` to arrive (slowloris), counted for the first head
    /// from the connection's start and for later ones from their first byte.
    SlowHead,
}

impl Expiry {
    /// Completes when the connection expires. One timer serves the whole connection: it is armed again only
    /// when it fires, at most every `header` apart, so a head that starts while it sleeps has its deadline
    /// after the next look. (hyper's own head timer is allocated and armed for every request.)
    async fn wait(activity: &Activity, framing: &Framing, keepalive: Duration, header: Duration) -> Expiry {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (keepalive, header) = (millis(keepalive), millis(header));
        loop {
            let now = activity.now_ms();
            // A request still being answered is no idleness: a guest or an upstream may think for longer than
            // `keepalive_timeout` (the route's own `timeout` bounds it).
            let last_moved = if framing.is_answering() { now } else { activity.last_moved_ms() };
            let idle_at = last_moved.saturating_add(keepalive);
            if now >= idle_at {
                return Expiry::Idle;
            }
            let head_at = framing.head_pending_since().map_or(u64::MAX, |since| since.saturating_add(header));
            if now >= head_at {
                return Expiry::SlowHead;
            }
            let look_at = idle_at.min(head_at).min(now.saturating_add(header));
            tokio::time::sleep_until(activity.instant_at(look_at).into()).await;
        }
    }
}

/// A socket that records activity, and fails a write the client has not let through for `send_timeout`: a
/// client that stops reading cannot hold a response (and whatever produces it) for longer. (A client that
/// keeps reading a byte at a time is not caught by this, as with nginx's `send_timeout`: the kernel's send
/// buffer accepts data in large steps whatever the client reads. The connection limits bound what such
/// clients can hold.)
pub(crate) struct Guarded {
    io: TcpStream,
    activity: Arc<Activity>,
    send_timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl Guarded {
    fn new(io: TcpStream, activity: Arc<Activity>, send_timeout: Duration) -> Guarded {
        Guarded { io, activity, send_timeout, stalled: None }
    }

    /// Called when a write is pending: starts the stall timer, or fails once it has run out.
    fn write_stalled(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let timeout = self.send_timeout;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                // Reset rather than close: a graceful close would leave the unsent response in the kernel's
                // buffers for as long as the client keeps trickling (nginx's `reset_timedout_connection`).
                // With a zero linger time, closing does not block.
                let _ = socket2::SockRef::from(&self.io).set_linger(Some(Duration::ZERO));
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client did not read the response in time",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Guarded {
    /// Records a finished write: the stall, if any, is over.
    fn wrote(&mut self, result: &Poll<std::io::Result<usize>>) {
        if let Poll::Ready(Ok(_)) = result {
            self.activity.touch();
            self.stalled = None;
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending => self.write_stalled(cx),
            ready => {
                self.wrote(&ready);
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.write_stalled(cx),
            ready => {
                self.wrote(&ready);
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The longest HTTP/1 head hyper reads: the longest request target and the largest header section, so that a
/// target too long is parsed and answered 414 by the dispatcher (which enforces both limits), not 431 by
/// hyper for overflowing its buffer.
fn max_head(limits: &TrafficLimits) -> usize {
    usize::try_from(limits.max_uri_length.saturating_add(limits.max_header_size)).unwrap_or(usize::MAX)
}
