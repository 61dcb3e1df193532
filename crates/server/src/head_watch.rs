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
//! Anything the watch cannot follow (an HTTP/2 preface, a head it cannot parse, a malformed chunk) stops it:
//! hyper then refuses the bytes itself or the connection leaves HTTP/1. A request asking for an upgrade, or
//! CONNECT, is followed like any other: it leaves HTTP/1 only if it is answered so (101, or 2xx to CONNECT),
//! which the dispatcher reports ([`Framing::switched_protocols`]); until then, every head is timed. A head the
//! watch cannot parse is one hyper refuses too: both parse with httparse's defaults, and the watch takes at least
//! as many fields as hyper is configured to.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use palisade_http::Activity;

/// Header fields parsed on the stack; a head with more is parsed again into a buffer of the configured limit.
const STACK_FIELDS: usize = 256;

/// [`Framing`]'s `head_since_ms` while no head is arriving.
const NO_HEAD: u64 = u64::MAX;

/// What a connection's watch found: read by the dispatcher (the ambiguous message) and by the connection's
/// timer (how long the head now arriving has taken).
#[derive(Debug)]
pub(crate) struct Framing {
    /// The index of the first message with both `Content-Length` and `Transfer-Encoding` (`u64::MAX`: none).
    ambiguous: AtomicU64,
    /// Requests dispatched so far.
    dispatched: AtomicU64,
    /// When the head now arriving started, in milliseconds on the connection's [`Activity`] clock; `NO_HEAD`
    /// between heads and once the watch has stopped. The first head is awaited from the connection's start.
    head_since_ms: AtomicU64,
    /// Set once the connection has left HTTP/1 for another protocol: its bytes are no heads any more.
    switched: AtomicBool,
    /// Requests whose response head is not out yet: while any is, the connection is not idle, however long
    /// its handler takes (the route's `timeout` bounds that).
    answering: AtomicU64,
}

impl Framing {
    pub(crate) fn new() -> Framing {
        Framing {
            ambiguous: AtomicU64::new(u64::MAX),
            dispatched: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(0),
            switched: AtomicBool::new(false),
            answering: AtomicU64::new(0),
        }
    }

    /// A request is being answered until the returned guard is dropped (with its response head, or with the
    /// request if it is abandoned).
    pub(crate) fn answering(self: &Arc<Self>) -> Answering {
        self.answering.fetch_add(1, Ordering::AcqRel);
        Answering(self.clone())
    }

    /// Whether some request is waiting for its response head.
    pub(crate) fn is_answering(&self) -> bool {
        self.answering.load(Ordering::Acquire) > 0
    }

    /// The connection has been answered 101 (or 2xx to CONNECT): what follows is another protocol's, the
    /// watch stops and no head is timed any more.
    pub(crate) fn switched_protocols(&self) {
        self.switched.store(true, Ordering::Release);
        self.head_since_ms.store(NO_HEAD, Ordering::Relaxed);
    }

    /// Counts one dispatched request; true if it is the ambiguous one.
    pub(crate) fn next_request_is_ambiguous(&self) -> bool {
        let index = self.dispatched.fetch_add(1, Ordering::AcqRel);
        self.ambiguous.load(Ordering::Acquire) == index
    }

    /// Requests dispatched so far.
    pub(crate) fn dispatched(&self) -> u64 {
        self.dispatched.load(Ordering::Acquire)
    }

    /// When the head now arriving started (milliseconds on the connection's clock), if one is.
    pub(crate) fn head_pending_since(&self) -> Option<u64> {
        let since = self.head_since_ms.load(Ordering::Relaxed);
        (since != NO_HEAD).then_some(since)
    }
}

/// One request being answered (see [`Framing::answering`]).
pub(crate) struct Answering(Arc<Framing>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::AcqRel);
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
    /// The start of a head that spans reads; empty while heads arrive whole, as they usually do.
    head: Vec<u8>,
    max_head: usize,
    /// The most fields a head may have (more: the watch stops; hyper answers 431).
    max_fields: usize,
    message: u64,
    found: Arc<Framing>,
    /// The connection's clock, read when a head starts.
    clock: Arc<Activity>,
}

impl HeadWatch {
    /// A watch reporting to `found`; heads longer than `max_head` bytes or with more than `max_fields` fields
    /// stop it (hyper refuses them anyway: `max_fields` must be at least hyper's limit). `clock` is the
    /// connection's activity, touched by each read before the watch sees its bytes.
    pub(crate) fn new(max_head: usize, max_fields: usize, found: Arc<Framing>, clock: Arc<Activity>) -> HeadWatch {
        HeadWatch { phase: Phase::Head, head: Vec::new(), max_head, max_fields, message: 0, found, clock }
    }

    /// Follows `bytes`, the next ones read from the connection.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        if self.found.switched.load(Ordering::Acquire) {
            self.phase = Phase::Off;
        }
        while !bytes.is_empty() {
            match &mut self.phase {
                Phase::Off => return,
                Phase::Head => bytes = self.step_head(bytes),
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

    /// Takes head bytes from `bytes`; returns what follows the head, if it ended.
    fn step_head<'b>(&mut self, mut bytes: &'b [u8]) -> &'b [u8] {
        if self.head.is_empty() {
            // Empty lines before a request line are skipped, as hyper does.
            let skip = bytes.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(bytes.len());
            bytes = &bytes[skip..];
            if bytes.is_empty() {
                return bytes;
            }
            // The first head's time runs from the connection's start (`Framing::new`), a later one's from
            // its first byte.
            let _ = self.found.head_since_ms.compare_exchange(
                NO_HEAD,
                self.clock.last_moved_ms(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        let Some(end) = head_end(&self.head, bytes) else {
            self.head.extend_from_slice(bytes);
            if self.head.len() > self.max_head {
                self.phase = Phase::Off;
                self.found.head_since_ms.store(NO_HEAD, Ordering::Relaxed);
            }
            return &[];
        };
        self.phase = if self.head.is_empty() {
            // The usual case: the whole head in one read, looked at where it lies.
            let head = &bytes[..end.at];
            self.read_head(head, end.framing_field || !plain_request_line(head))
        } else {
            let mut head = std::mem::take(&mut self.head);
            head.extend_from_slice(&bytes[..end.at]);
            let phase = self.read_head(&head, has_framing_field(&head) || !plain_request_line(&head));
            head.clear();
            self.head = head;
            phase
        };
        self.found.head_since_ms.store(NO_HEAD, Ordering::Relaxed);
        &bytes[end.at..]
    }

    fn end_message(&mut self) {
        self.message += 1;
        self.phase = Phase::Head;
    }

    /// Reads a complete head: marks it if ambiguous, and says how its body is framed. A head that cannot
    /// frame a body (`may_frame` false: an HTTP/1 request line, not CONNECT, no framing field) needs no parse.
    fn read_head(&mut self, head: &[u8], may_frame: bool) -> Phase {
        if !may_frame {
            self.message += 1;
            return Phase::Head;
        }
        // Left uninitialised: zeroing STACK_FIELDS fields for every request cost more than parsing a typical head.
        let mut fields = [const { std::mem::MaybeUninit::uninit() }; STACK_FIELDS];
        let mut many = Vec::new();
        let mut request = httparse::Request::new(&mut []);
        let mut parsed = request.parse_with_uninit_headers(head, &mut fields);
        if matches!(parsed, Err(httparse::Error::TooManyHeaders)) && self.max_fields > STACK_FIELDS {
            many.resize_with(self.max_fields, std::mem::MaybeUninit::uninit);
            request = httparse::Request::new(&mut []);
            parsed = request.parse_with_uninit_headers(head, &mut many);
        }
        if !matches!(parsed, Ok(httparse::Status::Complete(_))) {
            return Phase::Off;
        }
        let named = |name: &'static str| request.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name));
        let length = named("content-length").next();
        let coding = named("transfer-encoding").next_back();
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

/// Where a head ends, and what its lines looked like on the way.
struct HeadEnd {
    /// Just after the head's empty line.
    at: usize,
    /// Whether a line (in the bytes scanned) starts like a framing field.
    framing_field: bool,
}

/// Finds the empty line ending a head in `bytes`, given the `head` bytes earlier reads left. Only line ends can
/// finish a head: the scan jumps from one to the next, and looks at the start of each line on the way.
fn head_end(head: &[u8], bytes: &[u8]) -> Option<HeadEnd> {
    let mut framing_field = false;
    for nl in memchr::memchr_iter(b'\n', bytes) {
        // The bytes before this line feed, looking back into what earlier reads left in `head`.
        let before = |back: usize| match nl.checked_sub(back) {
            Some(i) => Some(bytes[i]),
            None => head.len().checked_sub(back - nl).map(|i| head[i]),
        };
        if before(1) == Some(b'\n') || (before(1) == Some(b'\r') && before(2) == Some(b'\n')) {
            return Some(HeadEnd { at: nl + 1, framing_field });
        }
        framing_field |= starts_framing_field(&bytes[nl + 1..]);
    }
    None
}

/// Whether `line` starts with `Content-Length` or `Transfer-Encoding`, in any case. Matching a
/// prefix errs on the side of parsing; a field line cannot start anywhere else, since hyper refuses folded
/// lines.
fn starts_framing_field(line: &[u8]) -> bool {
    let name: &[u8] = match line.first().map(u8::to_ascii_lowercase) {
        Some(b'c') => b"content-length",
        Some(b't') => b"transfer-encoding",
        _ => return false,
    };
    line.get(..name.len()).is_some_and(|p| p.eq_ignore_ascii_case(name))
}

/// Whether any line of a whole head starts like a framing field (for heads that spanned reads).
fn has_framing_field(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|nl| starts_framing_field(&head[nl + 1..]))
}

/// Whether a head starts with an HTTP/1 request line (an HTTP/2 preface is not).
fn plain_request_line(head: &[u8]) -> bool {
    let line = memchr::memchr(b'\n', head).map_or(head, |nl| &head[..nl]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0")
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
        let mut w = HeadWatch::new(64 * 1024, 1000, found.clone(), Arc::new(Activity::new()));
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
    fn heads_with_more_fields_than_the_stack_takes_are_followed_up_to_the_limit() {
        let fields = |n: usize| (0..n).map(|i| format!("X-F{i}: v\r\n")).collect::<String>();
        let smuggle = |n: usize| SMUGGLE.replace("Host: a\r\n", &format!("Host: a\r\n{}", fields(n)));
        assert_eq!(watch(&smuggle(STACK_FIELDS + 50), 4096), Some(0));
        let earlier = format!("POST / HTTP/1.1\r\nHost: a\r\n{}Content-Length: 2\r\n\r\nhi", fields(300));
        assert_eq!(watch(&format!("{earlier}{SMUGGLE}"), 4096), Some(1));
        // Beyond the limit, hyper answers 431 and closes: the watch stops.
        assert_eq!(watch(&smuggle(1000), 4096), None);
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
        assert_eq!(after("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), None);
    }

    #[test]
    fn follows_upgrade_requests_and_connect_until_told_the_protocol_switched() {
        let after = |first: &str| watch(&format!("{first}{SMUGGLE}"), 8);
        assert_eq!(after("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"), Some(1));
        assert_eq!(after("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"), Some(1));

        let found = Arc::new(Framing::new());
        let mut w = HeadWatch::new(64 * 1024, 1000, found.clone(), Arc::new(Activity::new()));
        w.feed(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
        w.feed(b"GET / HTTP/1.1\r\nHost:");
        assert!(found.head_pending_since().is_some(), "the next head is timed");
        found.switched_protocols();
        w.feed(b" a\r\n\r\n");
        w.feed(SMUGGLE.as_bytes());
        assert_eq!(found.head_pending_since(), None, "after 101 the bytes are another protocol's");
        assert_eq!(found.ambiguous.load(Ordering::Acquire), u64::MAX);
    }
}
