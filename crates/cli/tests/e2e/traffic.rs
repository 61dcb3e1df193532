//! Hostile traffic: slow clients, connection floods, oversized heads, and HTTP/2 protocol attacks, each against
//! a running server while a well-behaved client keeps getting correct answers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{Running, Site, read_until_closed, status_line};

/// A site with short timeouts and small connection limits, so every defence fires within a test.
fn guarded_site(server_keys: &str) -> Site {
    let site = Site::new();
    site.write("www/index.html", "calm\n");
    site.write("www/big.bin", vec![7u8; 16 << 20]);
    let cgi = site.guest("probe-cgi.wasm");
    site.config_with(
        &format!("listen = [\"127.0.0.1:0\"]\ndata_dir = \"data\"\n{server_keys}"),
        &format!(
            r#"
[tenants.calm]
hosts = ["*"]

[[tenants.calm.routes]]
path = "/"
static = "www"

[[tenants.calm.routes]]
path = "/cgi-bin/probe"
cgi = "{cgi}"
"#
        ),
    );
    site
}

/// A well-behaved request on a new connection: must be answered 200 with the index page.
fn well_behaved(server: &Running) {
    let raw = server.raw("GET / HTTP/1.1\r\nHost: calm.test\r\nConnection: close\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 200") && raw.ends_with("calm\n"), "well-behaved client failed: {raw}");
}

/// The server's open file descriptors.
fn open_fds(server: &Running) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", server.pid())).map_or(0, |d| d.count())
}

#[test]
fn slowloris_heads_are_cut_off() {
    let site = guarded_site("header_timeout = \"1s\"");
    let server = site.start();
    // Fifty clients each trickle a request head and never finish it.
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: calm.test\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    well_behaved(&server);
    let start = Instant::now();
    for s in &mut slow {
        let _ = s.write_all(b"a");
        let (_, closed) = read_until_closed(s, Duration::from_secs(5));
        assert!(closed, "a slow head was not cut off");
    }
    assert!(start.elapsed() < Duration::from_secs(5), "cut off after {:?}", start.elapsed());
    well_behaved(&server);
}

#[test]
fn a_slow_head_after_a_first_request_is_cut_off_but_an_idle_connection_is_not() {
    let site = guarded_site("header_timeout = \"1s\"\nkeepalive_timeout = \"30s\"");
    let server = site.start();
    let mut s = TcpStream::connect(server.addr).unwrap();
    let ask = |s: &mut TcpStream| {
        s.write_all(b"GET / HTTP/1.1\r\nHost: calm.test\r\n\r\n").unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    };
    ask(&mut s);
    // Between requests, a keep-alive connection is held to keepalive_timeout, not header_timeout.
    std::thread::sleep(Duration::from_millis(2500));
    ask(&mut s);
    // A head that starts and then stalls is cut off header_timeout after its first byte.
    s.write_all(b"GET / HTTP/1.1\r\nHost: calm.test\r\nX-Slow: ").unwrap();
    let start = Instant::now();
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(10));
    assert!(closed && out.is_empty(), "a slow head was not cut off ({} bytes)", out.len());
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "cut off after {took:?}");
    well_behaved(&server);
}

#[test]
fn heads_after_an_upgrade_refused_or_a_connect_are_still_timed() {
    let site = guarded_site("header_timeout = \"1s\"\nkeepalive_timeout = \"30s\"");
    let server = site.start();
    for (first, answer) in [
        ("GET / HTTP/1.1\r\nHost: calm.test\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n", "HTTP/1.1 200"),
        ("CONNECT calm.test:443 HTTP/1.1\r\nHost: calm.test:443\r\n\r\n", "HTTP/1.1 4"),
    ] {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(first.as_bytes()).unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(answer.as_bytes()), "{first:?}: {}", String::from_utf8_lossy(&buf[..n]));
        // Still HTTP/1: a head sent a byte now and then must be cut off at header_timeout.
        let start = Instant::now();
        let mut closed = false;
        for b in b"GET / HTTP/1.1\r\nHost: calm.test\r\nX-Slow: aaaaaaaaaaaaaaaaaa" {
            if s.write_all(&[*b]).is_err() {
                closed = true;
                break;
            }
            let (_, gone) = read_until_closed(&mut s, Duration::from_millis(250));
            if gone {
                closed = true;
                break;
            }
        }
        let took = start.elapsed();
        assert!(closed, "{first:?}: a slow head was never cut off ({took:?})");
        assert!(took < Duration::from_secs(5), "{first:?}: cut off after {took:?}");
    }
    well_behaved(&server);
}

#[test]
fn the_admin_listener_cuts_off_half_sent_requests_and_the_descriptor_limit_is_raised() {
    let site = guarded_site("header_timeout = \"1s\"");
    let config = site.path("palisade.toml");
    let with_admin = std::fs::read_to_string(&config).unwrap() + "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    site.write("palisade.toml", with_admin);
    // Started with a soft limit of 256 open descriptors, as a careless unit file would.
    let server = Running::spawn_limited(Some("-Sn 256"), &["serve".as_ref(), "--config".as_ref(), config.as_os_str()]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let files: Vec<&str> =
        limits.lines().find(|l| l.starts_with("Max open files")).unwrap().split_whitespace().collect();
    assert_eq!(files[3], files[4], "the soft limit is raised to the hard one:\n{limits}");

    let admin = server.admin_url("");
    let admin: std::net::SocketAddr = admin.trim_start_matches("http://").parse().unwrap();
    let mut slow: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect(admin).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    let start = Instant::now();
    for s in &mut slow {
        let (_, closed) = read_until_closed(s, Duration::from_secs(5));
        assert!(closed, "a half-sent admin request was not cut off");
    }
    assert!(start.elapsed() < Duration::from_secs(5), "cut off after {:?}", start.elapsed());
    let mut s = TcpStream::connect(admin).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").unwrap();
    let (out, _) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(out.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&out));
    well_behaved(&server);
}

#[test]
fn a_request_still_running_outlives_keepalive_timeout() {
    let site = Site::new();
    let probe = site.guest("probe-component.wasm");
    site.config_with(
        "listen = [\"127.0.0.1:0\"]\ndata_dir = \"data\"\nkeepalive_timeout = \"1s\"",
        &format!(
            "[tenants.t]\nhosts = [\"*\"]\ntimeout = \"3s\"\n\n[[tenants.t.routes]]\npath = \"/\"\ncomponent = \"{probe}\"\n"
        ),
    );
    let server = site.start();
    let start = Instant::now();
    // The guest sleeps past keepalive_timeout: the client still gets the route's answer (504 at its timeout),
    // not a connection dropped without one.
    let raw = server.raw("GET /sleep HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 504"), "after {:?}: {raw:?}", start.elapsed());
    assert!(start.elapsed() >= Duration::from_millis(2500));
}

#[test]
fn slow_request_bodies_get_408() {
    let site = guarded_site("body_timeout = \"1s\"");
    let server = site.start();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"POST /cgi-bin/probe/body HTTP/1.1\r\nHost: calm.test\r\nContent-Length: 100\r\n\r\nonly ten..")
        .unwrap();
    let start = Instant::now();
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(10));
    let out = String::from_utf8_lossy(&out);
    assert!(status_line(&out).starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.to_ascii_lowercase().contains("connection: close"), "{out}");
    assert!(closed, "the connection stays open after 408");
    assert!(start.elapsed() >= Duration::from_millis(900), "408 before the timeout: {:?}", start.elapsed());
    well_behaved(&server);
}

#[test]
fn slow_readers_are_disconnected() {
    let site = guarded_site("send_timeout = \"1s\"");
    let server = site.start();
    let mut s = TcpStream::connect(server.addr).unwrap();
    // Ask for 16 MiB and read nothing: the server's writes stall once the socket buffers are full.
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: calm.test\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(10));
    assert!(closed, "a reader that stopped reading still holds the connection");
    assert!(out.len() < 16 << 20, "the whole file arrived: the write never stalled");
    well_behaved(&server);
}

#[test]
fn connection_limits_per_client_and_in_total() {
    let site = guarded_site("max_connections_per_ip = 5");
    let server = site.start();
    let mut held: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    // Each held connection is live (a request answered on it), so all five are counted.
    for s in &mut held {
        s.write_all(b"GET / HTTP/1.1\r\nHost: calm.test\r\n\r\n").unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    let raw = server.raw("GET / HTTP/1.1\r\nHost: calm.test\r\nConnection: close\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 503") && raw.contains("too many connections"), "{raw}");
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(200));
    well_behaved(&server);

    let site = guarded_site("max_connections = 3");
    let server = site.start();
    let _held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: calm.test\r\n\r\n").unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).unwrap();
            s
        })
        .collect();
    let raw = server.raw("GET / HTTP/1.1\r\nHost: calm.test\r\nConnection: close\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 503"), "{raw}");
}

#[test]
fn oversized_heads_get_414_and_431() {
    let site = guarded_site("max_uri_length = 1024\nmax_header_count = 20\nmax_header_size = \"16 KiB\"");
    let server = site.start();
    let long = "a".repeat(2000);
    let raw = server.raw(&format!("GET /{long} HTTP/1.1\r\nHost: calm.test\r\nConnection: close\r\n\r\n"));
    assert_eq!(status_line(&raw), "HTTP/1.1 414 URI Too Long", "{raw}");
    // A target longer than the whole header section may be is still a target too long, not a head too large.
    let longer = "a".repeat(16_900);
    let raw = server.raw(&format!("GET /{longer} HTTP/1.1\r\nHost: calm.test\r\nConnection: close\r\n\r\n"));
    assert_eq!(status_line(&raw), "HTTP/1.1 414 URI Too Long", "{raw}");
    // And the room a long target may take is not the header section's: 16.5 KiB of fields are too many.
    let over = "c".repeat(16_500);
    let raw = server.raw(&format!("GET / HTTP/1.1\r\nHost: calm.test\r\nX-Big: {over}\r\nConnection: close\r\n\r\n"));
    assert!(status_line(&raw).starts_with("HTTP/1.1 431"), "{raw}");
    let many: String = (0..30).map(|i| format!("X-H{i}: v\r\n")).collect();
    let raw = server.raw(&format!("GET / HTTP/1.1\r\nHost: calm.test\r\n{many}Connection: close\r\n\r\n"));
    assert!(status_line(&raw).starts_with("HTTP/1.1 431"), "{raw}");
    let huge = "b".repeat(20 << 10);
    let raw = server.raw(&format!("GET / HTTP/1.1\r\nHost: calm.test\r\nX-Big: {huge}\r\nConnection: close\r\n\r\n"));
    assert!(status_line(&raw).starts_with("HTTP/1.1 431"), "{raw}");
    well_behaved(&server);
}

/// Raw HTTP/2 frames, enough to misbehave on purpose.
mod h2 {
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const HEADERS: u8 = 1;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    pub const CONTINUATION: u8 = 9;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An HPACK integer with an `n`-bit prefix whose high bits are `first`.
    fn integer(first: u8, n: u32, mut value: usize, out: &mut Vec<u8>) {
        let max = (1usize << n) - 1;
        if value < max {
            out.push(first | value as u8);
            return;
        }
        out.push(first | max as u8);
        value -= max;
        while value >= 128 {
            out.push((value % 128 + 128) as u8);
            value /= 128;
        }
        out.push(value as u8);
    }

    /// A literal header field; `index` adds it to the dynamic table.
    pub fn literal(name: &str, value: &str, index: bool, out: &mut Vec<u8>) {
        out.push(if index { 0x40 } else { 0x00 });
        integer(0, 7, name.len(), out);
        out.extend_from_slice(name.as_bytes());
        integer(0, 7, value.len(), out);
        out.extend_from_slice(value.as_bytes());
    }

    /// An indexed header field (static table 1-61, dynamic from 62).
    pub fn indexed(index: usize, out: &mut Vec<u8>) {
        integer(0x80, 7, index, out);
    }

    /// `GET /` for `calm.test`.
    pub fn get_root() -> Vec<u8> {
        let mut block = Vec::new();
        indexed(2, &mut block); // :method GET
        indexed(6, &mut block); // :scheme http
        indexed(4, &mut block); // :path /
        literal(":authority", "calm.test", false, &mut block);
        block
    }

    /// Preface and an empty SETTINGS frame: a client's opening.
    pub fn opening() -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        out
    }

    /// Whether `bytes` (what the server sent) contain a GOAWAY frame; returns its error code.
    pub fn goaway(bytes: &[u8]) -> Option<u32> {
        let mut at = 0;
        while at + 9 <= bytes.len() {
            let len = (bytes[at] as usize) << 16 | (bytes[at + 1] as usize) << 8 | bytes[at + 2] as usize;
            if bytes[at + 3] == GOAWAY && at + 9 + 8 <= bytes.len() {
                let p = &bytes[at + 9..];
                return Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
            }
            at += 9 + len;
        }
        None
    }
}

/// Runs `attack` against an h2c connection, then checks the server closed it (GOAWAY or reset) within
/// `limit`, stayed small, and still answers a well-behaved client. Returns the GOAWAY code, if any.
fn h2_attack(server: &Running, limit: Duration, attack: impl FnOnce(&mut TcpStream)) -> Option<u32> {
    well_behaved(server); // whatever a first request opens lazily is open before counting
    let fds_before = open_fds(server);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&h2::opening()).unwrap();
    attack(&mut s);
    let (out, closed) = read_until_closed(&mut s, limit);
    assert!(closed, "the attacking connection was not closed");
    well_behaved(server);
    assert!(server.rss_kib() < 256 * 1024, "RSS grew to {} KiB", server.rss_kib());
    drop(s);
    let start = Instant::now();
    while open_fds(server) > fds_before + 4 && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(open_fds(server) <= fds_before + 4, "descriptors leaked: {} -> {}", fds_before, open_fds(server));
    h2::goaway(&out)
}

/// Writes frames until the server stops accepting them (it closed the connection) or `count` were sent.
fn flood(s: &mut TcpStream, count: usize, mut next: impl FnMut(usize) -> Vec<u8>) -> usize {
    for i in 0..count {
        if s.write_all(&next(i)).is_err() {
            return i;
        }
    }
    count
}

#[test]
fn h2_rapid_reset_gets_goaway() {
    let site = guarded_site("");
    let server = site.start();
    let code = h2_attack(&server, Duration::from_secs(10), |s| {
        // CVE-2023-44487: open a stream and cancel it at once, as fast as possible.
        flood(s, 20_000, |i| {
            let stream = 1 + 2 * i as u32;
            let mut f = h2::frame(h2::HEADERS, h2::END_HEADERS | h2::END_STREAM, stream, &h2::get_root());
            f.extend(h2::frame(h2::RST_STREAM, 0, stream, &8u32.to_be_bytes())); // CANCEL
            f
        });
    });
    assert_eq!(code, Some(0xb), "GOAWAY ENHANCE_YOUR_CALM expected");
}

#[test]
fn h2_continuation_flood_is_cut_off() {
    let site = guarded_site("max_header_size = \"16 KiB\"");
    let server = site.start();
    let mut sent = 0;
    h2_attack(&server, Duration::from_secs(10), |s| {
        let mut first = h2::get_root();
        h2::literal("x-pad", &"p".repeat(1000), false, &mut first);
        s.write_all(&h2::frame(h2::HEADERS, 0, 1, &first)).unwrap();
        // CONTINUATION frames that never end the header block.
        sent = flood(s, 100_000, |_| {
            let mut block = Vec::new();
            h2::literal("x-more", &"c".repeat(1000), false, &mut block);
            h2::frame(h2::CONTINUATION, 0, 1, &block)
        });
    });
    assert!(sent < 100_000, "the server read 100 MB of CONTINUATION frames");
}

#[test]
fn h2_hpack_bomb_is_refused() {
    let site = guarded_site("max_header_size = \"16 KiB\"");
    let server = site.start();
    h2_attack(&server, Duration::from_secs(10), |s| {
        // One 4 KiB header in the dynamic table, then referenced 10,000 times: 40 MB decoded from 10 KB.
        let mut block = h2::get_root();
        h2::literal("x-bomb", &"b".repeat(4000), true, &mut block);
        for _ in 0..10_000 {
            h2::indexed(62, &mut block);
        }
        for (i, chunk) in block.chunks(16_000).enumerate() {
            let kind = if i == 0 { h2::HEADERS } else { h2::CONTINUATION };
            let last = (i + 1) * 16_000 >= block.len();
            let flags = if last { h2::END_HEADERS | h2::END_STREAM } else { 0 };
            if s.write_all(&h2::frame(kind, flags, 1, chunk)).is_err() {
                break;
            }
        }
        // The stream is refused (431 or a reset); the connection then idles until it is closed.
        let _ = s.write_all(&h2::frame(h2::GOAWAY, 0, 0, &[0; 8]));
    });
}

#[test]
fn h2_ping_and_settings_floods_stay_bounded() {
    let site = guarded_site("keepalive_timeout = \"2s\"");
    let server = site.start();
    for kind in [h2::PING, h2::SETTINGS] {
        h2_attack(&server, Duration::from_secs(20), |s| {
            // Never read the PONGs or SETTINGS acknowledgements the server owes.
            flood(s, 200_000, |_| match kind {
                h2::PING => h2::frame(h2::PING, 0, 0, &[1; 8]),
                _ => h2::frame(h2::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]), // MAX_CONCURRENT_STREAMS 100
            });
            let _ = s.write_all(&h2::frame(h2::GOAWAY, 0, 0, &[0; 8]));
        });
    }
}

#[test]
fn h2_window_update_overflow_is_a_connection_error() {
    let site = guarded_site("");
    let server = site.start();
    let code = h2_attack(&server, Duration::from_secs(10), |s| {
        let grow = h2::frame(h2::WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes());
        s.write_all(&grow).unwrap();
        s.write_all(&grow).unwrap();
    });
    assert_eq!(code, Some(0x3), "GOAWAY FLOW_CONTROL_ERROR expected");
}

#[test]
fn idle_h2_connections_are_closed() {
    let site = guarded_site("keepalive_timeout = \"1s\"");
    let server = site.start();
    // A client that sends nothing after its opening, and does not even answer the server's goodbye PING, is
    // sent GOAWAY after one idle period and dropped after a second.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(&h2::opening()).unwrap();
    let start = Instant::now();
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(10));
    assert!(closed, "an idle HTTP/2 connection stays open (GOAWAY: {:?}, {} bytes)", h2::goaway(&out), out.len());
    assert_eq!(h2::goaway(&out), Some(0), "GOAWAY NO_ERROR expected");
    assert!(start.elapsed() >= Duration::from_millis(1900) && start.elapsed() < Duration::from_secs(6));
}

#[test]
fn malformed_chunked_bodies_get_400_and_end_the_connection() {
    let site = guarded_site("");
    let server = site.start();
    for chunk in ["zz\r\nabc\r\n0\r\n\r\n", "fffffffffffffffffff\r\nabc\r\n0\r\n\r\n", "3\r\nabcX\r\n0\r\n\r\n"] {
        // A route that reads the body (the CGI probe), and a request pipelined behind the broken body.
        let raw = server.raw(&format!(
            "POST /cgi-bin/probe/body HTTP/1.1\r\nHost: calm.test\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}\
             GET / HTTP/1.1\r\nHost: calm.test\r\nConnection: close\r\n\r\n"
        ));
        assert!(status_line(&raw).starts_with("HTTP/1.1 400"), "{chunk:?}: {raw}");
        assert_eq!(raw.matches("HTTP/1.1 ").count(), 1, "the request after a broken body was answered: {raw}");
    }
    well_behaved(&server);
}
