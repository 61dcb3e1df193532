//! HTTP/3: QUIC connections (quinn, on rustls) on the UDP ports of the TLS listeners, each request stream
//! handed to the same [`Dispatcher`] as HTTP/1.1 and HTTP/2, its body streamed both ways. Every worker runs
//! a QUIC endpoint of its own on its own socket for each port, so a connection and its requests stay on one
//! worker, as TCP connections do.
//!
//! The defences are QUIC's and quinn's, set from the same `[server]` limits as TCP: the connection limits
//! (total and per client address, counted together with TCP connections), `h2_max_concurrent_streams`
//! request streams at once per connection, `keepalive_timeout` as the idle timeout, 3x anti-amplification
//! until an address is validated, a Retry (address validation) for every new connection while many
//! handshakes are under way (or always, with `quic_retry`), and no 0-RTT (replayable) data. Connections are
//! counted in `palisade_quic_connections_total` by result: `ok`, `failed`, `refused`, `retry`. Datagrams
//! that are not QUIC are dropped by quinn before any state is made for them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use h3::error::Code;
use h3::server::{RequestResolver, RequestStream};
use http::{Method, Response, header};
use http_body::{Body as _, Frame};
use palisade_config::TrafficLimits;
use palisade_http::{Activity, BoxError, Fault};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::connection::Admission;
use crate::dispatch::{Dispatcher, Peer};
use crate::head_watch::Framing;

/// Handshakes under way above which a new connection must first prove its address (a Retry round trip).
const RETRY_ABOVE: usize = 64;

/// Unidirectional streams a client may open: HTTP/3 needs three (control, QPACK encoder and decoder).
const MAX_UNI_STREAMS: u32 = 8;

/// Fields that belong to one HTTP/1.1 connection and are malformed in HTTP/3 (RFC 9114 §4.2).
const CONNECTION_FIELDS: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HeaderName::from_static("keep-alive"),
    header::HeaderName::from_static("proxy-connection"),
];

/// A bound UDP socket answering HTTP/3 beside a TLS listener, on the same port.
pub(crate) struct QuicListener {
    socket: std::net::UdpSocket,
}

impl QuicListener {
    /// Binds UDP `addr` (a TLS listener's address, its port resolved), shared with the other workers' sockets
    /// on it (`SO_REUSEPORT`: the kernel keeps each client address on one socket, so each connection on one
    /// worker; a client that moves to another address loses its connection and opens another).
    pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<QuicListener> {
        let bound = || {
            let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)?;
            socket.set_reuse_port(true)?;
            socket.bind(&addr.into())?;
            std::io::Result::Ok(std::net::UdpSocket::from(socket))
        };
        let socket = bound()
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen for HTTP/3 on UDP {addr}: {e}")))?;
        Ok(QuicListener { socket })
    }

    /// The address bound.
    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

/// What the QUIC endpoints share.
pub(crate) struct Quic {
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) admission: Arc<Admission>,
    pub(crate) traffic: TrafficLimits,
    pub(crate) tls: Arc<rustls::ServerConfig>,
    /// Whether every new connection must answer a Retry, not only under a flood of handshakes.
    pub(crate) always_retry: bool,
    /// Handshakes under way on every worker's endpoints together, for the Retry threshold.
    pub(crate) handshaking: Arc<AtomicUsize>,
    pub(crate) stop: watch::Receiver<bool>,
}

impl Quic {
    /// Serves HTTP/3 on `listeners` until the server stops, then lets connections finish their requests for
    /// at most `grace`; whether they did. Runs on the worker's runtime, as its TCP connections do.
    pub(crate) async fn serve(self, listeners: Vec<QuicListener>, grace: Duration) -> bool {
        let config = match self.server_config() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot serve HTTP/3");
                return true;
            }
        };
        let tasks = TaskTracker::new();
        let quic = Arc::new(self);
        let mut endpoints = Vec::new();
        for listener in listeners {
            let runtime = Arc::new(quinn::TokioRuntime);
            match quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(config.clone()), listener.socket, runtime)
            {
                Ok(endpoint) => {
                    tasks.spawn(quic.clone().accept_loop(endpoint.clone(), tasks.clone()));
                    endpoints.push(endpoint);
                }
                Err(e) => tracing::error!(error = %e, "cannot serve HTTP/3 on a UDP socket"),
            }
        }
        let mut stop = quic.stop.clone();
        let _ = stop.wait_for(|stopping| *stopping).await;
        tasks.close();
        let drained = tokio::time::timeout(grace, tasks.wait()).await.is_ok();
        if !drained {
            tracing::warn!("HTTP/3 connections still open at the end of the shutdown timeout were closed");
        }
        for endpoint in endpoints {
            // 0x100: H3_NO_ERROR (RFC 9114 §8.1).
            endpoint.close(quinn::VarInt::from_u32(0x100), b"shutting down");
            let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        }
        drained
    }

    fn server_config(&self) -> Result<quinn::ServerConfig, BoxError> {
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(self.tls.clone())?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(self.traffic.h2_max_concurrent_streams.into())
            .max_concurrent_uni_streams(MAX_UNI_STREAMS.into())
            .max_idle_timeout(Some(self.traffic.keepalive_timeout.try_into()?));
        config.transport_config(Arc::new(transport));
        Ok(config)
    }

    /// Accepts connections on `endpoint` until the server stops.
    async fn accept_loop(self: Arc<Self>, endpoint: quinn::Endpoint, tasks: TaskTracker) {
        let local = endpoint.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let mut stop = self.stop.clone();
        loop {
            let incoming = tokio::select! {
                incoming = endpoint.accept() => incoming,
                _ = stop.changed() => None,
            };
            let Some(incoming) = incoming else { break };
            let flooded = self.handshaking.load(Ordering::Relaxed) >= RETRY_ABOVE;
            if (self.always_retry || flooded) && !incoming.remote_address_validated() {
                // Spend nothing on an address until it has answered a Retry.
                metrics::counter!("palisade_quic_connections_total", "result" => "retry").increment(1);
                let _ = incoming.retry();
                continue;
            }
            let Some(admitted) = self.admission.admit(incoming.remote_address().ip()) else {
                tracing::debug!(remote = %incoming.remote_address(), "QUIC connection refused: connection limit reached");
                metrics::counter!("palisade_quic_connections_total", "result" => "refused").increment(1);
                incoming.refuse();
                continue;
            };
            let (quic, requests) = (self.clone(), tasks.clone());
            tasks.spawn(async move {
                quic.handshaking.fetch_add(1, Ordering::Relaxed);
                let connecting = incoming.await;
                quic.handshaking.fetch_sub(1, Ordering::Relaxed);
                match connecting {
                    Ok(connection) => {
                        metrics::counter!("palisade_quic_connections_total", "result" => "ok").increment(1);
                        quic.connection(connection, local, &requests).await;
                    }
                    Err(e) => {
                        metrics::counter!("palisade_quic_connections_total", "result" => "failed").increment(1);
                        tracing::debug!(error = %e, "QUIC handshake failed");
                    }
                }
                drop(admitted);
            });
        }
        // No new connections from here on; those open finish through their own tasks.
        endpoint.set_server_config(None);
    }

    /// Serves one connection's requests, each on its own task in `requests` (so that a stopping server waits
    /// for them), until the client or the server ends it.
    async fn connection(&self, connection: quinn::Connection, local: SocketAddr, requests: &TaskTracker) {
        let sni = connection
            .handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|d| d.server_name)
            .map(|n| Arc::from(n.trim_end_matches('.').to_ascii_lowercase()));
        let peer = Peer {
            remote: connection.remote_address(),
            local,
            tls: Some(sni),
            framing: Arc::new(Framing::new()),
            activity: Arc::new(Activity::new()),
        };
        let built = h3::server::builder()
            .max_field_section_size(self.traffic.max_header_size)
            .build::<_, Bytes>(h3_quinn::Connection::new(connection))
            .await;
        let mut h3 = match built {
            Ok(h3) => h3,
            Err(e) => return tracing::debug!(error = %e, "HTTP/3 connection setup failed"),
        };
        let limits = StreamLimits { header: self.traffic.header_timeout, send: self.traffic.send_timeout };
        let mut stop = self.stop.clone();
        let mut stopping = *stop.borrow();
        loop {
            tokio::select! {
                accepted = h3.accept() => match accepted {
                    Ok(Some(resolver)) => {
                        requests.spawn(request(resolver, self.dispatcher.clone(), peer.clone(), limits));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        if !e.is_h3_no_error() {
                            tracing::debug!(error = %e, "HTTP/3 connection ended");
                        }
                        break;
                    }
                },
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                    // GOAWAY: no new requests; those already sent are answered.
                    if h3.shutdown(0).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

/// The time limits of one request stream: `[server]` `header_timeout` for its head, `send_timeout` for each
/// write of its response (QUIC PINGs keep a connection from idling out, so the idle timeout alone would let a
/// stream hold its slot, and what it reads from, for ever).
#[derive(Debug, Clone, Copy)]
struct StreamLimits {
    header: Duration,
    send: Duration,
}

/// One request stream: its request dispatched, its response head and body sent back.
async fn request(
    resolver: RequestResolver<h3_quinn::Connection, Bytes>,
    dispatcher: Arc<Dispatcher>,
    peer: Peer,
    limits: StreamLimits,
) {
    let (request, stream) = match tokio::time::timeout(limits.header, resolver.resolve_request()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return tracing::debug!(error = %e, "HTTP/3 request refused"),
        Err(_) => return tracing::debug!("HTTP/3 request head not received within header_timeout; stream closed"),
    };
    let head_only = request.method() == Method::HEAD;
    let (mut send, recv) = stream.split();
    let response = match malformed(request.headers()) {
        Some(reason) => Fault::BadRequest.response(reason).map(crate::observe::Served::plain),
        None => {
            let expected = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
            let body = StreamBody { stream: recv, expected, received: 0 };
            dispatcher.dispatch(request.map(|()| body), &peer).await
        }
    };
    let (mut head, body) = response.into_parts();
    for name in &CONNECTION_FIELDS {
        head.headers.remove(name);
    }
    // hyper adds `Date` to HTTP/1.1 and HTTP/2 responses; h3 leaves it to the server.
    if !head.headers.contains_key(header::DATE) {
        head.headers.insert(header::DATE, palisade_http::http_date(std::time::SystemTime::now()));
    }
    // Each write may wait for the client's flow-control window at most `send_timeout`, as over TCP.
    let within = |sent: Result<Result<(), h3::error::StreamError>, tokio::time::error::Elapsed>| match sent {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(None),
        Err(_) => Err(Some(Code::H3_REQUEST_CANCELLED)),
    };
    let mut sent = within(tokio::time::timeout(limits.send, send.send_response(Response::from_parts(head, ()))).await);
    let mut body = std::pin::pin!(body);
    while sent.is_ok()
        && !head_only
        && let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await
    {
        sent = match frame.map(Frame::into_data) {
            Ok(Ok(data)) => within(tokio::time::timeout(limits.send, send.send_data(data)).await),
            Ok(Err(frame)) => match frame.into_trailers() {
                Ok(trailers) => within(tokio::time::timeout(limits.send, send.send_trailers(trailers)).await),
                Err(_) => Ok(()),
            },
            Err(e) => {
                tracing::debug!(error = %e, "response body failed; HTTP/3 stream reset");
                Err(Some(Code::H3_INTERNAL_ERROR))
            }
        };
    }
    match sent {
        Ok(()) => {
            let _ = tokio::time::timeout(limits.send, send.finish()).await;
        }
        Err(Some(code)) => {
            if code == Code::H3_REQUEST_CANCELLED {
                tracing::debug!("HTTP/3 client did not read for send_timeout; stream reset");
            }
            send.stop_stream(code);
        }
        Err(None) => {}
    }
}

/// Why a request is malformed in HTTP/3 (RFC 9114 §4.2): a field that belongs to one HTTP/1.1 connection,
/// or `TE` other than `trailers`.
fn malformed(headers: &http::HeaderMap) -> Option<&'static str> {
    if CONNECTION_FIELDS.iter().any(|name| headers.contains_key(name)) {
        return Some("connection-specific header fields are not allowed in HTTP/3");
    }
    let te_ok = headers.get_all(header::TE).iter().all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_ok {
        return Some("TE other than \"trailers\" is not allowed in HTTP/3");
    }
    None
}

/// A request body as its QUIC stream delivers it, held to its `Content-Length` when it has one (RFC 9114
/// §4.1.2: a body longer or shorter than it says is malformed).
struct StreamBody {
    stream: RequestStream<h3_quinn::RecvStream, Bytes>,
    expected: Option<u64>,
    received: u64,
}

impl http_body::Body for StreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(match ready!(self.stream.poll_recv_data(cx)) {
            Ok(Some(mut data)) => {
                let data = data.copy_to_bytes(data.remaining());
                self.received += data.len() as u64;
                match self.expected {
                    Some(expected) if self.received > expected => {
                        Some(Err("the request body is longer than its Content-Length".into()))
                    }
                    _ => Some(Ok(Frame::data(data))),
                }
            }
            Ok(None) => match self.expected {
                Some(expected) if self.received != expected => {
                    Some(Err("the request body is shorter than its Content-Length".into()))
                }
                _ => None,
            },
            Err(e) => Some(Err(e.into())),
        })
    }
}
