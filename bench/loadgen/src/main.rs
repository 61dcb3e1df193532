//! `palisade-loadgen`: an open-loop HTTP/1.1 load generator for the benchmark scripts.
//!
//! wrk is a closed loop: each connection sends its next request when the previous answer arrives. A server's
//! latency is then measured at whatever rate that server reaches, so a faster server is measured under more
//! load than a slower one. This generator sends at a rate fixed in advance, whatever the server does:
//! - each of the N connections keeps its own timetable, one request every N/rate seconds, and the connections
//!   are staggered so that the requests are evenly spaced;
//! - a request the server kept waiting (the previous answer on its connection came after it was due) counts
//!   its latency from its due time, so a stall is not hidden by the requests it held back (coordinated
//!   omission);
//! - a request sent on time counts from the moment it was written, so the generator's own wake-up delay is not
//!   counted against the server.
//!
//! One thread drives every connection, as `wrk -t1` does, with one epoll loop whose timeouts resolve
//! nanoseconds. An async runtime's timer ticks in milliseconds: requests would leave in bursts, and the latency
//! measured would be the time to drain a burst.
//!
//! Prints one line: `answered_per_second p50 p90 p99 p99.9 max late_percent`, latencies in µs. `late_percent`
//! is the share of requests the server kept waiting: above a few percent, the server is saturated.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::num::NonZeroU64;

use anyhow::{Context, bail};
use clap::Parser;
use rustix::event::epoll;
use rustix::time::{ClockId, Timespec, clock_gettime};

/// How long the server may leave every request in flight unanswered before the run fails (nanoseconds).
const STALL: u64 = 10_000_000_000;

/// Command-line arguments.
#[derive(Parser)]
#[command(about = "Open-loop HTTP/1.1 load: a fixed request rate, latency from each request's due time")]
struct Args {
    /// The URL to request, `http://HOST:PORT/PATH`.
    url: String,
    /// Requests per second, over all connections.
    #[arg(long)]
    rate: f64,
    /// Keep-alive connections, each with one request in flight at most.
    #[arg(long, default_value_t = 32)]
    connections: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The `Host` header to send (the URL's authority by default), for a virtual host on a loopback address.
    #[arg(long)]
    host: Option<String>,
}

/// One keep-alive connection and its next request. Times are nanoseconds of the monotonic clock.
struct Connection {
    stream: TcpStream,
    /// What has arrived of the answer in flight.
    buf: Vec<u8>,
    /// When the next request is (or the one in flight was) due.
    due: u64,
    /// Where the latency of the request in flight counts from.
    origin: u64,
    /// Whether the request in flight left late because the server had not answered the previous one.
    late: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(args.rate > 0.0 && args.connections > 0 && args.seconds > 0.0 && args.warmup >= 0.0) {
        bail!("--rate, --connections and --seconds must be positive, --warmup not negative");
    }
    let (authority, path) = split_url(&args.url)?;
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))?;
    let host = args.host.as_deref().unwrap_or(authority);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
    rustix::thread::set_current_timer_slack(NonZeroU64::new(1))?;

    let nanos = |s: f64| (s * 1e9) as u64;
    let period = nanos(args.connections as f64 / args.rate);
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    let mut connections = Vec::new();
    for k in 0..args.connections {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        epoll::add(&epoll, &stream, epoll::EventData::new_u64(k), epoll::EventFlags::IN)?;
        connections.push(Connection { stream, buf: Vec::with_capacity(64 * 1024), due: 0, origin: 0, late: false });
    }
    // The clock starts once every connection is open, so that no first request is late for it.
    let start = now() + nanos(0.05);
    let measure_from = start + nanos(args.warmup);
    let end = measure_from + nanos(args.seconds);
    // Connections waiting for their next due time, earliest first; the others have a request in flight.
    let mut waiting = BinaryHeap::new();
    for (k, connection) in connections.iter_mut().enumerate() {
        connection.due = start + nanos(k as f64 / args.rate);
        waiting.push(Reverse((connection.due, k)));
    }

    let mut latencies = Vec::with_capacity((args.rate * args.seconds * 1.1) as usize);
    let mut late = 0u64;
    let mut in_flight = 0usize;
    let mut events = Vec::with_capacity(connections.len());
    // When a request was last sent or an answer last arrived.
    let mut heard = now();
    while in_flight > 0 || !waiting.is_empty() {
        let t = now();
        while let Some(&Reverse((due, k))) = waiting.peek() {
            if due > t {
                break;
            }
            waiting.pop();
            let connection = &mut connections[k];
            if !connection.late {
                connection.origin = now();
            }
            send(&mut connection.stream, &request)?;
            in_flight += 1;
            heard = now();
        }
        // Until the next request is due, or at most STALL: a server that answers nothing for that long ends
        // the run.
        let wait = waiting.peek().map_or(STALL, |&Reverse((due, _))| due.saturating_sub(now()).min(STALL));
        let timeout = Timespec { tv_sec: (wait / 1_000_000_000) as _, tv_nsec: (wait % 1_000_000_000) as _ };
        events.clear();
        epoll::wait(&epoll, rustix::buffer::spare_capacity(&mut events), Some(&timeout))?;
        if !events.is_empty() {
            heard = now();
        } else if in_flight > 0 && now().saturating_sub(heard) >= STALL {
            bail!("no answer for {} s", STALL / 1_000_000_000);
        }
        for event in &events {
            let k = event.data.u64() as usize;
            let connection = &mut connections[k];
            if !receive(connection)? {
                continue;
            }
            let done = now();
            in_flight -= 1;
            if connection.due >= measure_from {
                latencies.push(done.saturating_sub(connection.origin));
                late += u64::from(connection.late);
            }
            connection.due += period;
            if connection.due < end {
                // Sent at once if the server kept this request waiting: its latency then counts from its due time.
                connection.late = done >= connection.due;
                connection.origin = connection.due;
                waiting.push(Reverse((connection.due, k)));
            }
        }
    }

    report(latencies, late, args.seconds)
}

/// Prints the answered rate, the latency percentiles (µs) and the share of requests sent late.
fn report(mut latencies: Vec<u64>, late: u64, seconds: f64) -> anyhow::Result<()> {
    if latencies.is_empty() {
        bail!("no request was measured");
    }
    latencies.sort_unstable();
    let at = |p: f64| latencies[((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1] / 1000;
    println!(
        "{:.0} {} {} {} {} {} {:.2}",
        latencies.len() as f64 / seconds,
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        at(1.0),
        late as f64 * 100.0 / latencies.len() as f64
    );
    Ok(())
}

/// `http://HOST:PORT/PATH` → (`HOST:PORT`, `/PATH`).
fn split_url(url: &str) -> anyhow::Result<(&str, &str)> {
    let rest = url.strip_prefix("http://").context("the URL must start with http://")?;
    Ok(match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    })
}

/// The monotonic clock, in nanoseconds.
fn now() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Writes a request whole. The connection has nothing else in flight, so its send buffer has room.
fn send(stream: &mut TcpStream, request: &[u8]) -> anyhow::Result<()> {
    match stream.write(request) {
        Ok(n) if n == request.len() => Ok(()),
        Ok(_) => bail!("a request was only partly written"),
        Err(e) => Err(e).context("sending a request"),
    }
}

/// Reads what the socket has; returns whether an answer (status 2xx or 3xx, framed by Content-Length or chunked)
/// is now complete, and removes it from the buffer.
fn receive(connection: &mut Connection) -> anyhow::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match connection.stream.read(&mut chunk) {
            Ok(0) => bail!("the server closed the connection"),
            Ok(n) => connection.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e).context("reading an answer"),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(&connection.buf)? else {
        return Ok(false);
    };
    let status = response.code.unwrap_or(0);
    if !(200..400).contains(&status) {
        bail!("the server answered {status}");
    }
    let header = |name: &str| response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name));
    let total = match (header("content-length"), header("transfer-encoding")) {
        (Some(length), _) => head + std::str::from_utf8(length.value)?.trim().parse::<usize>()?,
        (None, Some(coding)) if coding.value.eq_ignore_ascii_case(b"chunked") => {
            match chunked_end(&connection.buf, head)? {
                Some(total) => total,
                None => return Ok(false),
            }
        }
        _ => bail!("an answer framed neither by Content-Length nor chunked"),
    };
    if connection.buf.len() < total {
        return Ok(false);
    }
    if connection.buf.len() > total {
        bail!("the server sent more than one answer");
    }
    connection.buf.clear();
    Ok(true)
}

/// Where a chunked body starting at `from` ends (after its last chunk and an empty trailer), once it has all
/// arrived.
fn chunked_end(buf: &[u8], mut from: usize) -> anyhow::Result<Option<usize>> {
    loop {
        let Some(rest) = buf.get(from..) else { return Ok(None) };
        let httparse::Status::Complete((read, size)) =
            httparse::parse_chunk_size(rest).map_err(|_| anyhow::anyhow!("a malformed chunk size"))?
        else {
            return Ok(None);
        };
        from += read;
        if size == 0 {
            return Ok((buf.len() >= from + 2).then_some(from + 2));
        }
        from += usize::try_from(size)? + 2;
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(split_url("http://127.0.0.1:18080/1k.bin").ok(), Some(("127.0.0.1:18080", "/1k.bin")));
        assert_eq!(split_url("http://localhost:80").ok(), Some(("localhost:80", "/")));
        let refused = split_url("https://localhost/").err().map(|e| e.to_string());
        assert_eq!(refused.as_deref(), Some("the URL must start with http://"));
    }

    /// A client connection, non-blocking as in a run, and its server side.
    fn pair() -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        stream.set_nonblocking(true).expect("nonblocking");
        (Connection { stream, buf: Vec::new(), due: 0, origin: 0, late: false }, server)
    }

    /// Writes `bytes` from the server side and gives them time to arrive.
    fn send_from(server: &mut TcpStream, bytes: &[u8]) {
        server.write_all(bytes).expect("write");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    /// What `receive` makes of `answer`, the server keeping the connection open.
    fn outcome(answer: &[u8]) -> Result<bool, String> {
        let (mut connection, mut server) = pair();
        send_from(&mut server, answer);
        receive(&mut connection).map_err(|e| e.to_string())
    }

    #[test]
    fn answers_are_framed_by_content_length_and_bad_ones_fail_the_run() {
        assert_eq!(outcome(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), Ok(true));
        assert_eq!(
            outcome(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            Err("the server answered 404".into())
        );
        assert_eq!(
            outcome(b"HTTP/1.1 200 OK\r\n\r\n"),
            Err("an answer framed neither by Content-Length nor chunked".into())
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        assert_eq!(outcome(chunked), Ok(true));
        assert_eq!(outcome(&chunked[..chunked.len() - 2]), Ok(false));
        let twice = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(outcome(twice), Err("the server sent more than one answer".into()));
        let (mut closed, server) = pair();
        drop(server);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let closed = receive(&mut closed).map_err(|e| e.to_string());
        assert_eq!(closed, Err("the server closed the connection".into()));
    }

    #[test]
    fn a_partial_answer_waits_for_more() {
        let (mut connection, mut server) = pair();
        send_from(&mut server, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab");
        assert!(!receive(&mut connection).expect("partial"));
        send_from(&mut server, b"cd");
        assert!(receive(&mut connection).expect("whole"));
        assert!(connection.buf.is_empty(), "the answer is taken out of the buffer");
    }
}
