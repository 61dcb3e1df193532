//! palisade's HTTP stack answering `hello` with no WebAssembly at all: the benchmarks' physical limit (P2).
//!
//! `cargo run --release --example hello -p palisade-server -- 127.0.0.1:8090`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use palisade_http::{Body, Handler, HandlerError, RequestBody, RequestContext, full_body};
use palisade_server::{Router, Server, TenantRoutes};

/// Answers every request with `hello`.
struct Hello;

impl Handler for Hello {
    fn handle(
        &self,
        _request: http::Request<RequestBody>,
        _context: RequestContext,
    ) -> BoxFuture<'static, Result<http::Response<Body>, HandlerError>> {
        Box::pin(async { Ok(http::Response::new(full_body("hello"))) })
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut router = Router::default();
    router.add(
        &["*".to_string()],
        TenantRoutes::new("hello", vec![("/".to_string(), Arc::new(Hello) as Arc<dyn Handler>)]),
    );
    let server = Server::bind(&[addr], router, Duration::from_secs(1)).await?;
    println!("serving hello on http://{addr}/");
    server.run(async { tokio::signal::ctrl_c().await.unwrap_or_default() }).await
}
