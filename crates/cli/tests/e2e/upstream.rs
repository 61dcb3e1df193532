//! Upstream servers for the proxy tests: a small hyper server (HTTP/1.1 and h2c) that reports what reached
//! it, and a raw TCP listener that records every byte.
//!
//! [`Upstream`] answers by path:
//! - `/healthz`: 200, or 503 while [`Upstream::set_healthy`] says so;
//! - `/upload`: reads the body as it arrives and answers with its length (never holding it whole);
//! - `/download?N`: streams N bytes in 64 KiB chunks;
//! - `/slow-head`: answers after 5 s; `/three-seconds`: after 3 s; `/stall`: sends its head and one chunk, then nothing for 30 s;
//! - `/ws`: accepts an upgrade and echoes bytes on the upgraded connection;
//! - anything else: its name, the request line and version, then every header, one per line, plus hop-by-hop
//!   headers of its own that the proxy must drop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Body = BoxBody<Bytes, std::io::Error>;

/// A running upstream; stops (closing every connection) when dropped or [`Upstream::stop`]ped.
pub struct Upstream {
    pub addr: SocketAddr,
    name: &'static str,
    state: Arc<State>,
    task: Option<tokio::task::JoinHandle<()>>,
}

struct State {
    healthy: AtomicBool,
    /// Requests answered, health checks excluded.
    requests: AtomicUsize,
    /// Every connection accepted, open or not.
    connections: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Upstream {
    /// Starts `name` on a free loopback port.
    pub fn start(name: &'static str) -> Upstream {
        Upstream::start_on(name, "127.0.0.1:0".parse().unwrap())
    }

    /// Starts `name` on `addr` (to bring a stopped upstream back on its port).
    pub fn start_on(name: &'static str, addr: SocketAddr) -> Upstream {
        let state = Arc::new(State {
            healthy: AtomicBool::new(true),
            requests: AtomicUsize::new(0),
            connections: std::sync::Mutex::new(Vec::new()),
        });
        let mut upstream = Upstream { addr, name, state, task: None };
        upstream.listen();
        upstream
    }

    /// Listens on `self.addr`, on a runtime of its own: tests may block on sockets meanwhile.
    fn listen(&mut self) {
        static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
        let runtime = RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
        });
        let _entered = runtime.enter();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener = socket.listen(1024).unwrap();
        self.addr = listener.local_addr().unwrap();
        let (name, state) = (self.name, self.state.clone());
        self.task = Some(runtime.spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let serving = state.clone();
                let connection = connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(name, serving.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
                state.connections.lock().unwrap().push(connection);
            }
        }));
    }

    /// Stops listening and drops every open connection.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// What `/healthz` answers from now on.
    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Requests answered so far, health checks excluded.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.lock().unwrap().len()
    }

    /// Closes every connection open now, idle or not, and goes on listening: what an upstream's idle timeout
    /// or a restart behind the same address does to a proxy's pooled connections.
    pub fn close_connections(&self) {
        for connection in self.state.connections.lock().unwrap().iter() {
            connection.abort();
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn answer(
    name: &'static str,
    state: Arc<State>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let text = |status: StatusCode, body: String| {
        let mut r = Response::new(full(body));
        *r.status_mut() = status;
        r.headers_mut().insert("x-upstream", name.parse().unwrap());
        r
    };
    if req.uri().path() == "/healthz" {
        let healthy = state.healthy.load(Ordering::SeqCst);
        let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        return Ok(text(status, format!("{name} healthy={healthy}\n")));
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    Ok(match req.uri().path() {
        "/upload" => {
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => total += f.data_ref().map_or(0, Bytes::len),
                    Err(e) => return Ok(text(StatusCode::BAD_REQUEST, format!("body failed: {e}\n"))),
                }
            }
            text(StatusCode::OK, format!("{name} received {total} bytes\n"))
        }
        "/download" => {
            let total: usize = req.uri().query().and_then(|q| q.parse().ok()).unwrap_or(0);
            let chunk = Bytes::from(vec![b'd'; 64 * 1024]);
            let frames = (0..total.div_ceil(chunk.len())).map(move |i| {
                let len = chunk.len().min(total - i * chunk.len());
                Ok::<_, std::io::Error>(Frame::data(chunk.slice(..len)))
            });
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(futures::stream::iter(frames))));
            r.headers_mut().insert("x-upstream", name.parse().unwrap());
            r
        }
        "/slow-head" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            text(StatusCode::OK, "late\n".into())
        }
        "/three-seconds" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            text(StatusCode::OK, "three seconds later\n".into())
        }
        "/stall" => {
            let first = futures::stream::iter([Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"first\n")))]);
            let never = futures::stream::once(async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(Frame::data(Bytes::from_static(b"too late\n")))
            });
            Response::new(BodyExt::boxed(StreamBody::new(futures::StreamExt::chain(first, never))))
        }
        "/ws" => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            let mut r = text(StatusCode::SWITCHING_PROTOCOLS, String::new());
            r.headers_mut().insert("connection", "upgrade".parse().unwrap());
            r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
            r
        }
        _ => {
            let mut report = format!("{name} {} {} {:?}\n", req.method(), req.uri(), req.version());
            for (k, v) in req.headers() {
                report.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
            }
            let mut r = text(StatusCode::OK, report);
            r.headers_mut().insert("connection", "x-hop".parse().unwrap());
            r.headers_mut().insert("x-hop", "dropped by the proxy".parse().unwrap());
            r.headers_mut().insert("keep-alive", "timeout=5".parse().unwrap());
            r
        }
    })
}

fn full(text: String) -> Body {
    http_body_util::Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed()
}

/// A listener that records every byte sent to it and never answers: proof that nothing reached it.
pub struct Recorder {
    pub addr: SocketAddr,
    bytes: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let bytes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = bytes.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let sink = sink.clone();
                std::thread::spawn(move || {
                    use std::io::Read;
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        sink.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Recorder { addr, bytes }
    }

    /// Everything received so far.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

/// Opens a WebSocket tunnel through the server at `addr` to an [`Upstream`]'s `/ws` (proxied for `host`):
/// the connection, once the `101` head has been read (returned, lower-cased).
pub fn websocket(addr: std::net::SocketAddr, host: &str) -> (std::net::TcpStream, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    (s, head)
}
