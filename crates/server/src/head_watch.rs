//! The raw bytes of HTTP/1 messages, watched for the one ambiguity hyper normalises away before a handler
//! can see it: `Content-Length` beside `Transfer-Encoding`.
//!
//! hyper follows RFC 9112 §6.3 there: chunked wins, the `Content-Length` field is dropped and the connection
//! is closed after the response, so nothing smuggled behind the body is ever read. That is safe, but such a
//! request is an attack or a broken client, and the request itself must not reach a guest or an upstream
//! either: like nginx, palisade answers it 400. Since the field is gone by the time a handler runs, a
//! [`HeadWatch`] reads the same bytes hyper reads, finds each message's head and steps over its body, and
//! marks which message (counted from 0 on the connection) was ambiguous. The dispatcher counts requests the
//! same way and refuses the marked one.
//!
//! Anything the watch cannot follow (an HTTP/2 preface, an upgrade, CONNECT, a head it cannot parse, a
//! malformed chunk) stops it: hyper then refuses the bytes itself or the connection leaves HTTP/1.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The most header fields a head the watch parses may have (more: the watch stops; hyper answers 431).
const MAX_FIELDS: usize = 256;

/// What a connection's watch found, read by the dispatcher.
#[derive(Debug)]
pub(crate) struct Framing {
    /// The index of the first message with both `Content-Length` and `Transfer-Encoding` (`u64::MAX`: none).
    ambiguous: AtomicU64,
    /// Requests dispatched so far.
    dispatched: AtomicU64,
}

impl Framing {
    pub(crate) fn new() -> Framing {
        Framing { ambiguous: AtomicU64::new(u64::MAX), dispatched: AtomicU64::new(0) }
    }

    /// Counts one dispatched request; true if it is the ambiguous one.
    pub(crate) fn next_request_is_ambiguous(&self) -> bool {
        let index = self.dispatched.fetch_add(1, Ordering::AcqRel);
        self.ambiguous.load(Ordering::Acquire) == index
    }
}

/// Where in the byte stream the watch is.
#[derive(Debug)]
enum Phase {
    /// Collecting a head until its empty line.
    Head,
    /// Stepping over `n` more body bytes.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Not following any more.
    Off,
}

/// Position in chunked framing (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Reading the hex size, `size` so far.
    Size { size: u64, digits: u32 },
    /// Skipping a chunk extension up to the line end.
    Extension { size: u64 },
    /// Stepping over data, then its line end.
    Data { left: u64 },
    /// Expecting the line end after a chunk's data.
    DataEnd { seen_cr: bool },
    /// After the last chunk: trailer lines until an empty one; `line` counts bytes on the current line.
    Trailers { line: usize },
}

/// Follows the bytes read from one connection (fed through tokio-util's `InspectReader`, which passes
/// everything through unchanged).
pub(crate) struct HeadWatch {
    phase: Phase,
    head: Vec<u8>,
    max_head: usize,
    message: u64,
    found: Arc<Framing>,
}

impl HeadWatch {
    /// A watch reporting to `found`; heads longer than `max_head` bytes stop it (hyper refuses them anyway).
    pub(crate) fn new(max_head: usize, found: Arc<Framing>) -> HeadWatch {
        HeadWatch { phase: Phase::Head, head: Vec::new(), max_head, message: 0, found }
    }

    /// Follows `bytes`, the next ones read from the connection.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.phase {
                Phase::Off => return,
                Phase::Head => {
                    let (used, complete) = take_head(&mut self.head, bytes);
                    bytes = &bytes[used..];
                    if complete {
                        self.phase = self.parse_head();
                        self.head.clear();
                    } else if self.head.len() > self.max_head {
                        self.phase = Phase::Off;
                    }
                }
                Phase::Body(left) => {
                    let step = usize::try_from(*left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[step..];
                    *left -= step as u64;
                    if *left == 0 {
                        self.end_message();
                    }
                }
                Phase::Chunked(chunk) => {
                    let (used, next) = step_chunked(*chunk, bytes);
                    bytes = &bytes[used..];
                    match next {
                        Some(Some(c)) => *chunk = c,
                        Some(None) => self.end_message(),
                        None => self.phase = Phase::Off,
                    }
                }
            }
        }
    }

    fn end_message(&mut self) {
        self.message += 1;
        self.phase = Phase::Head;
    }

    /// Reads a complete head: marks it if ambiguous, and says how its body is framed.
    fn parse_head(&mut self) -> Phase {
        if !may_frame(&self.head) {
            self.message += 1;
            return Phase::Head;
        }
        // Left uninitialised: zeroing MAX_FIELDS fields for every request cost more than parsing a typical head.
        let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_FIELDS];
        let mut request = httparse::Request::new(&mut []);
        if !matches!(request.parse_with_uninit_headers(&self.head, &mut fields), Ok(httparse::Status::Complete(_))) {
            return Phase::Off;
        }
        if request.method.is_some_and(|m| m.eq_ignore_ascii_case("CONNECT")) {
            return Phase::Off;
        }
        let named = |name: &'static str| request.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name));
        let length = named("content-length").next();
        let coding = named("transfer-encoding").next_back();
        let upgrade = named("upgrade").next().is_some()
            && named("connection")
                .any(|h| String::from_utf8_lossy(h.value).split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
        if upgrade {
            return Phase::Off;
        }
        match (length, coding) {
            (Some(_), Some(_)) => {
                // hyper closes the connection after this message: nothing after it needs following.
                let _ =
                    self.found.ambiguous.compare_exchange(u64::MAX, self.message, Ordering::AcqRel, Ordering::Acquire);
                Phase::Off
            }
            (None, Some(te)) => {
                let last = String::from_utf8_lossy(te.value);
                let chunked = last.rsplit(',').next().is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
                if chunked { Phase::Chunked(Chunk::Size { size: 0, digits: 0 }) } else { Phase::Off }
            }
            (Some(cl), None) => match std::str::from_utf8(cl.value).ok().and_then(|v| v.trim().parse::<u64>().ok()) {
                Some(0) => {
                    self.message += 1;
                    Phase::Head
                }
                Some(n) => Phase::Body(n),
                None => Phase::Off,
            },
            (None, None) => {
                self.message += 1;
                Phase::Head
            }
        }
    }
}

/// Whether a head needs parsing: it is not an HTTP/1 request line (an HTTP/2 preface, say), is a CONNECT, or
/// has a field line starting with `Content-Length`, `Transfer-Encoding` or `Upgrade` (in any case). Most heads
/// (a GET without a body) are none of these: they need no parse, and the next message starts right after them.
/// Matching a prefix errs on the side of parsing; a field line cannot start anywhere else, since hyper
/// refuses folded lines.
fn may_frame(head: &[u8]) -> bool {
    const NAMES: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"upgrade"];
    let starts_with = |line: &[u8], name: &[u8]| line.get(..name.len()).is_some_and(|p| p.eq_ignore_ascii_case(name));
    let request_line = memchr::memchr(b'\n', head).map_or(head, |nl| &head[..nl]);
    let request_line = request_line.strip_suffix(b"\r").unwrap_or(request_line);
    !(request_line.ends_with(b" HTTP/1.1") || request_line.ends_with(b" HTTP/1.0"))
        || starts_with(head, b"CONNECT")
        || memchr::memchr_iter(b'\n', head).any(|nl| NAMES.iter().any(|name| starts_with(&head[nl + 1..], name)))
}

/// Moves bytes into `head` up to and including the empty line ending it; returns how many were taken and
/// whether the head is complete. Empty lines before a request line are skipped, as hyper does.
fn take_head(head: &mut Vec<u8>, bytes: &[u8]) -> (usize, bool) {
    let mut start = 0;
    if head.is_empty() {
        start = bytes.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(bytes.len());
    }
    // Only line ends can finish a head: jump from one to the next.
    let mut from = start;
    while let Some(offset) = memchr::memchr(b'\n', &bytes[from..]) {
        let nl = from + offset;
        // The bytes before this line feed, looking back into what earlier reads left in `head`.
        let before = |back: usize| match nl.checked_sub(back) {
            Some(i) if i >= start => Some(bytes[i]),
            Some(_) | None => head.len().checked_sub(back - (nl - start)).map(|i| head[i]),
        };
        if before(1) == Some(b'\n') || (before(1) == Some(b'\r') && before(2) == Some(b'\n')) {
            head.extend_from_slice(&bytes[start..=nl]);
            return (nl + 1, true);
        }
        from = nl + 1;
    }
    head.extend_from_slice(&bytes[start..]);
    (bytes.len(), false)
}

/// Steps through chunked framing: bytes used, and then `Some(Some(next))` to go on, `Some(None)` at the end
/// of the body, `None` on bytes hyper will refuse.
fn step_chunked(chunk: Chunk, bytes: &[u8]) -> (usize, Option<Option<Chunk>>) {
    let mut state = chunk;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        state = match state {
            Chunk::Size { size, digits } => match (b as char).to_digit(16) {
                Some(d) if digits < 16 => Chunk::Size { size: size * 16 + u64::from(d), digits: digits + 1 },
                Some(_) => return (i, None),
                None if digits == 0 => return (i, None),
                None if b == b';' || b == b' ' || b == b'\t' => Chunk::Extension { size },
                None if b == b'\r' => Chunk::Extension { size },
                None if b == b'\n' => after_size_line(size),
                None => return (i, None),
            },
            Chunk::Extension { size } if b == b'\n' => after_size_line(size),
            Chunk::Extension { size } => Chunk::Extension { size },
            Chunk::Data { left } => {
                let step = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len() - i);
                i += step;
                let left = left - step as u64;
                state = if left == 0 { Chunk::DataEnd { seen_cr: false } } else { Chunk::Data { left } };
                continue;
            }
            Chunk::DataEnd { seen_cr: false } if b == b'\r' => Chunk::DataEnd { seen_cr: true },
            Chunk::DataEnd { .. } if b == b'\n' => Chunk::Size { size: 0, digits: 0 },
            Chunk::DataEnd { .. } => return (i, None),
            Chunk::Trailers { line } if b == b'\n' => {
                if line == 0 {
                    return (i + 1, Some(None));
                }
                Chunk::Trailers { line: 0 }
            }
            Chunk::Trailers { line } if b == b'\r' => Chunk::Trailers { line },
            Chunk::Trailers { line } => Chunk::Trailers { line: line + 1 },
        };
        i += 1;
    }
    (i, Some(Some(state)))
}

/// After a size line: the data, or the trailers after the last chunk.
fn after_size_line(size: u64) -> Chunk {
    if size == 0 { Chunk::Trailers { line: 0 } } else { Chunk::Data { left: size } }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns the ambiguous message's index, if any.
    fn watch(input: &str, step: usize) -> Option<u64> {
        let found = Arc::new(Framing::new());
        let mut w = HeadWatch::new(64 * 1024, found.clone());
        for piece in input.as_bytes().chunks(step) {
            w.feed(piece);
        }
        let index = found.ambiguous.load(Ordering::Acquire);
        (index != u64::MAX).then_some(index)
    }

    const SMUGGLE: &str =
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

    #[test]
    fn finds_the_ambiguous_message_after_others_in_any_split() {
        let earlier = concat!(
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            "\r\nPOST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n10\r\n",
            "0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n",
            "GET /c HTTP/1.1\nHost: a\n\n",
        );
        let input = format!("{earlier}{SMUGGLE}");
        for step in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(watch(&input, step), Some(4), "step {step}");
        }
        assert_eq!(watch(SMUGGLE, 5), Some(0));
        let reversed = SMUGGLE.replace(
            "Content-Length: 4\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: chunked\r\nContent-Length: 4",
        );
        assert_eq!(watch(&reversed, 1), Some(0));
    }

    #[test]
    fn plain_traffic_is_never_marked() {
        let input = "GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 41\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n";
        assert_eq!(watch(input, 3), None);
    }

    #[test]
    fn stops_where_it_cannot_follow() {
        let after = |first: &str| watch(&format!("{first}{SMUGGLE}"), 8);
        assert_eq!(after("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), None);
        assert_eq!(after("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"), None);
        assert_eq!(after("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), None);
        assert_eq!(after("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"), None);
    }
}
