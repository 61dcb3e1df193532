//! The least a hyper-based HTTP/1.1 reverse proxy does: one single-threaded runtime per core, a per-thread
//! pool of keep-alive connections to one upstream, no header rewriting, limits, routing or logging. The
//! benchmark's floor for this stack (P6): how close palisade's proxy is to what hyper itself costs.
//!
//! `cargo run --release --example bare_proxy -p palisade-proxy -- 127.0.0.1:18081 127.0.0.1:18090 [WORKERS]`
//! (one worker per core unless WORKERS is given). With `FLOOR_SPIN_NS=N` set, every request first spins for N
//! nanoseconds: a calibration, to see what a given amount of extra CPU per request does to the latency.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Request, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

thread_local! {
    static IDLE: RefCell<Vec<SendRequest<Incoming>>> = const { RefCell::new(Vec::new()) };
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let invalid = |e: &dyn std::fmt::Display| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string());
    let parse = |a: Option<String>, default: &str| -> std::io::Result<SocketAddr> {
        a.unwrap_or_else(|| default.into()).parse().map_err(|e| invalid(&e))
    };
    let listen = parse(args.next(), "127.0.0.1:18081")?;
    let upstream = parse(args.next(), "127.0.0.1:18090")?;
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let workers = match args.next() {
        Some(n) => n.parse().map_err(|e| invalid(&e))?,
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let listener = listener.try_clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(async { serve(tokio::net::TcpListener::from_std(listener?)?, upstream).await })
            })
        })
        .collect();
    println!("proxying http://{listen}/ to {upstream}");
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

async fn serve(listener: tokio::net::TcpListener, upstream: SocketAddr) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| forward(req, upstream));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// Sends `req` upstream on an idle connection of this thread, or a new one.
async fn forward(mut req: Request<Incoming>, upstream: SocketAddr) -> Result<http::Response<Incoming>, BoxError> {
    spin();
    let idle = IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        idle.retain(|s| !s.is_closed());
        idle.iter().rposition(SendRequest::is_ready).map(|i| idle.swap_remove(i))
    });
    let mut sender = match idle {
        Some(s) => s,
        None => {
            let stream = tokio::net::TcpStream::connect(upstream).await?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            sender
        }
    };
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str()).to_string();
    *req.uri_mut() = Uri::try_from(path)?;
    let response = sender.send_request(req).await;
    // Busy until its body is read; it is taken again only once it reports ready.
    IDLE.with(|idle| idle.borrow_mut().push(sender));
    Ok(response?)
}

/// Burns `FLOOR_SPIN_NS` nanoseconds of CPU (none when unset).
fn spin() {
    static SPIN: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    let spin = *SPIN.get_or_init(|| {
        Duration::from_nanos(std::env::var("FLOOR_SPIN_NS").ok().and_then(|v| v.parse().ok()).unwrap_or(0))
    });
    if spin.is_zero() {
        return; // the floor as it is: not even a clock read
    }
    let start = Instant::now();
    while start.elapsed() < spin {}
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
