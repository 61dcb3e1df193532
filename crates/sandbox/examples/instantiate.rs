//! Micro-benchmark (P3): one request through a component app, in process and without a network: a new store,
//! instantiation, the call to `wasi:http/incoming-handler`, and the response body read to its end.
//!
//! `cargo run --release --example instantiate -p palisade-sandbox -- target/guests/hello.wasm [ITERATIONS]`
//!
//! Prints two figures, as median and 99th percentile:
//! - all the work per request, back to back (batches of 1000): what bounds throughput;
//! - the request path alone, one request at a time with the worker idle in between, as a server between
//!   requests is: the instance was made warm after the previous response, and is torn down after this one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use palisade_http::{Handler, RequestContext, empty_body};
use palisade_sandbox::{GuestDirs, Limits, Runtime, RuntimeOptions};

const BATCH: u32 = 1000;

fn main() -> Result<(), palisade_http::BoxError> {
    let mut args = std::env::args().skip(1);
    let guest = PathBuf::from(args.next().ok_or("usage: instantiate GUEST.wasm [ITERATIONS]")?);
    let iterations: u32 = args.next().map_or(Ok(20_000), |n| n.parse())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let sandbox = Runtime::new(&RuntimeOptions::default());
        let tenant = sandbox.sandbox("bench", Limits::default(), Vec::new(), GuestDirs::default(), None);
        let app = sandbox.load_component(&guest, tenant)?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let context = RequestContext {
            request_id: 1,
            tenant: "bench".into(),
            route: "/".into(),
            remote_addr: addr,
            local_addr: addr,
            secure: false,
        };
        let one = || async {
            let request = http::Request::builder().uri("http://bench.localhost/hello").body(empty_body())?;
            let response = app.handle(request, context.clone()).await?;
            response.into_body().collect().await?;
            Ok::<_, palisade_http::BoxError>(())
        };
        for _ in 0..BATCH {
            one().await?; // warm up: pool slots, caches, allocator
        }
        let mut per_request = Vec::new();
        for _ in 0..iterations.div_ceil(BATCH) {
            let start = Instant::now();
            for _ in 0..BATCH {
                one().await?;
            }
            per_request.push(start.elapsed() / BATCH);
        }
        let batches = format!("{} batches of {BATCH}", per_request.len());
        report(&guest, "instantiate + call + response, per request", per_request, &batches);

        let mut latencies = Vec::with_capacity(iterations as usize);
        for _ in 0..iterations {
            let start = Instant::now();
            one().await?;
            latencies.push(start.elapsed());
            // Idle: the request's task tears its instance down and makes the next one warm.
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
        }
        let requests = format!("{} requests", latencies.len());
        report(&guest, "request path with a warm instance, one at a time", latencies, &requests);
        Ok::<_, palisade_http::BoxError>(())
    })?;
    Ok(())
}

/// Prints the median and the 99th percentile of `samples`.
fn report(guest: &std::path::Path, what: &str, mut samples: Vec<Duration>, of: &str) {
    if samples.is_empty() {
        return;
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!("{}: {what}: median {:?}, p99 {:?} ({of})", guest.display(), at(0.5), at(0.99));
}
