//! Connections to upstreams, kept alive and reused: one pool per worker thread.
//!
//! A connection runs as a task on the runtime that opened it, so each worker keeps its own: a request never
//! waits on another thread's event loop. An HTTP/1.1 connection carries one request at a time and goes back to
//! its pool when the response body has been read to the end (a response dropped half-read closes it). An h2c
//! connection is shared by all of the thread's requests to that upstream. Idle connections are closed after
//! [`IDLE_TIMEOUT`]; one the upstream closed is skipped at checkout.
//!
//! An upstream's idle list is kept in the order the connections went idle, so a checkout cleans its two ends
//! only: expired ones are at the front, the most recently used at the back, and closed ones are dropped from
//! either end. Its cost does not grow with the number of idle connections (scanning them all took about 600
//! instructions a request at 32 client connections).
//!
//! Each HTTP/1.1 connection keeps the timer for its answers' deadline from one request to the next. Moving an
//! armed tokio timer later is one atomic update; arming a new one, and dropping it after the answer, each
//! lock and change the timer wheel (about 550 instructions a request in all). A kept timer that comes due while
//! its connection is idle wakes the task of the request that used it last, once, for nothing.
//!
//! (Driving an HTTP/1.1 connection from the request's own task instead of a task of its own was measured
//! twice. Naively it costs more: every step of the connection wakes the whole client connection's task. With
//! the connection polled without a waker wherever its progress would wake the request's own task, it took two
//! task polls per request instead of five and 4 % fewer instructions, but was no faster: rate, median and p99
//! latency stayed within the noise, the median slightly worse.)

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::Either;
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use palisade_http::RequestBody;
use thread_local::ThreadLocal;
use tokio::time::Sleep;

/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle HTTP/1.1 connections kept per upstream and thread; beyond it the oldest is closed.
const MAX_IDLE: usize = 256;

/// Every thread's pools for one proxy route, one list of idle connections per upstream.
pub(crate) struct Pools {
    per_thread: ThreadLocal<RefCell<Vec<VecDeque<Idle>>>>,
    upstreams: usize,
    connect_timeout: Duration,
    h2c: bool,
}

/// What sending a request gave: the response head, or the error and the request back if it was never sent.
pub(crate) type Sent = Result<Response<Incoming>, (hyper::Error, Option<Box<Request<RequestBody>>>)>;

/// No response head came within the deadline [`Conn::send`] was given.
pub(crate) struct TimedOut;

/// A connection ready to carry a request.
pub(crate) struct Conn {
    sender: Sender,
    /// It carried a request before: the upstream may have closed it meanwhile.
    pub(crate) reused: bool,
    /// When it was taken for this request: its answer's deadline counts from here.
    taken: Instant,
    /// The timer for the answer's deadline: kept from request to request on an HTTP/1.1 connection, new for
    /// every request on a shared h2c one.
    timer: Option<Pin<Box<Sleep>>>,
}

enum Sender {
    Http1(http1::SendRequest<RequestBody>),
    Http2(http2::SendRequest<RequestBody>),
}

struct Idle {
    sender: Sender,
    since: Instant,
    /// An HTTP/1.1 connection's [`Conn::timer`], kept for its next request.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Pools {
    pub(crate) fn new(upstreams: usize, connect_timeout: Duration, h2c: bool) -> Pools {
        Pools { per_thread: ThreadLocal::new(), upstreams, connect_timeout, h2c }
    }

    fn local(&self) -> &RefCell<Vec<VecDeque<Idle>>> {
        self.per_thread.get_or(|| RefCell::new((0..self.upstreams).map(|_| VecDeque::new()).collect()))
    }

    /// A connection to upstream `index` at `authority`: an idle one that is ready now, or (always if `fresh`) a
    /// new one. An error is a failure to connect, worth trying another upstream for.
    pub(crate) async fn get(&self, index: usize, authority: &Authority, fresh: bool) -> Result<Conn, String> {
        match self.take_idle(index, fresh) {
            Some(conn) => Ok(conn),
            // Boxed: the rare way, and a future ten times the size of the rest.
            None => Box::pin(self.connect(index, authority)).await,
        }
    }

    /// The most recently used idle connection that is ready, unless `fresh`. Expired and closed connections
    /// are dropped from the front, closed ones from the back; one in between is skipped until it reaches an
    /// end.
    fn take_idle(&self, index: usize, fresh: bool) -> Option<Conn> {
        if fresh {
            return None;
        }
        let mut local = self.local().borrow_mut();
        let idle = local.get_mut(index)?;
        let now = Instant::now();
        while idle.front().is_some_and(|c| c.sender.is_closed() || now.duration_since(c.since) >= IDLE_TIMEOUT) {
            idle.pop_front();
        }
        while idle.back().is_some_and(|c| c.sender.is_closed()) {
            idle.pop_back();
        }
        let ready = idle.iter().rposition(|c| c.sender.is_ready())?;
        let (sender, timer) = match &mut idle[ready] {
            // Shared: it stays in the pool, now the most recently used.
            Idle { sender: Sender::Http2(s), since, .. } => {
                *since = now;
                let shared = Sender::Http2(s.clone());
                if let Some(moved) = idle.remove(ready) {
                    idle.push_back(moved);
                }
                (shared, None)
            }
            Idle { sender: Sender::Http1(_), .. } => idle.remove(ready).map(|i| (i.sender, i.timer))?,
        };
        Some(Conn { sender, reused: true, taken: now, timer })
    }

    /// Returns an HTTP/1.1 connection whose exchange is complete, with its timer.
    fn put_back(&self, index: usize, sender: Sender, timer: Option<Pin<Box<Sleep>>>) {
        let mut local = self.local().borrow_mut();
        if let Some(idle) = local.get_mut(index) {
            if idle.len() >= MAX_IDLE {
                idle.pop_front();
            }
            idle.push_back(Idle { sender, since: Instant::now(), timer });
        }
    }

    async fn connect(&self, index: usize, authority: &Authority) -> Result<Conn, String> {
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let stream =
            match tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect((host, port))).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(format!("connect: {e}")),
                Err(_) => return Err(format!("connect: no answer within {:?}", self.connect_timeout)),
            };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        if self.h2c {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            tokio::spawn(connection);
            let mut local = self.local().borrow_mut();
            if let Some(idle) = local.get_mut(index) {
                idle.push_back(Idle { sender: Sender::Http2(sender.clone()), since: Instant::now(), timer: None });
            }
            Ok(Conn { sender: Sender::Http2(sender), reused: false, taken: Instant::now(), timer: None })
        } else {
            let (sender, connection) = http1::handshake(io).await.map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(connection.with_upgrades());
            Ok(Conn { sender: Sender::Http1(sender), reused: false, taken: Instant::now(), timer: None })
        }
    }
}

impl Conn {
    /// Sends `request` (origin-form URI and `Host` for HTTP/1.1, absolute URI for HTTP/2), waiting for the
    /// response head at most `within` from when the connection was taken. On failure, the request comes back
    /// if it was never sent (the connection had closed).
    pub(crate) fn send(
        &mut self,
        request: Request<RequestBody>,
        within: Duration,
    ) -> impl Future<Output = Result<Sent, TimedOut>> + '_ {
        let sending = match &mut self.sender {
            Sender::Http1(s) => Either::Left(s.try_send_request(request)),
            Sender::Http2(s) => Either::Right(s.try_send_request(request)),
        };
        let sending = sending.map(|result| {
            result.map_err(|mut e| {
                let unsent = e.take_message().map(Box::new);
                (e.into_error(), unsent)
            })
        });
        let timer = self.arm(within);
        async move {
            match futures::future::select(std::pin::pin!(sending), timer.as_mut()).await {
                Either::Left((sent, _)) => Ok(sent),
                Either::Right(((), _)) => Err(TimedOut),
            }
        }
    }

    /// The timer, set to `within` from when the connection was taken. A kept timer still armed for an earlier
    /// deadline is moved in place; one that fired while the connection was idle is armed again.
    fn arm(&mut self, within: Duration) -> &mut Pin<Box<Sleep>> {
        // A deadline past what `Instant` holds is as good as none (as for tokio's own timeouts).
        const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
        let deadline = self.taken.checked_add(within).unwrap_or_else(|| self.taken + FAR).into();
        let kept = self.timer.is_some();
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if kept {
            timer.as_mut().reset(deadline);
        }
        timer
    }

    /// Hands an HTTP/1.1 connection back to this thread's pool once its response has been read in full (an
    /// h2c connection never left it).
    pub(crate) fn release(self, pools: &Pools, index: usize) {
        if let Sender::Http1(_) = self.sender
            && !self.sender.is_closed()
        {
            pools.put_back(index, self.sender, self.timer);
        }
    }
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }

    fn is_ready(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_ready(),
            Sender::Http2(s) => s.is_ready(),
        }
    }
}
