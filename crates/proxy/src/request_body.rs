//! The request body on its way upstream: size-limited, and for HTTP/1 clients read ahead a little first.
//!
//! Reading up to [`READ_AHEAD`] before contacting the upstream means a malformed or oversized small body
//! (a bad chunk size, a body over the limit) is answered 400/413 with nothing sent upstream. Larger bodies
//! stream on after that prefix, with backpressure. A body read whole can be sent any number of times; a
//! streaming one once (or again if it comes back unsent, see [`Outgoing::put_back`]). HTTP/2 bodies stream at once: their framing cannot be
//! malformed the way chunked encoding can, and gRPC-style clients wait for the response while still sending.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use palisade_http::{BodyTooLarge, BoxError, Fault, HandlerError, LimitedBody, RequestBody, empty_body};

/// How much of an HTTP/1 request body is read before the upstream is contacted.
pub(crate) const READ_AHEAD: usize = 64 * 1024;

/// A request body ready to send.
pub(crate) struct Outgoing {
    body: Prepared,
    /// Set once a streaming body passes the size limit; `None` for a body with nothing to read.
    exceeded: Option<Arc<AtomicBool>>,
}

enum Prepared {
    /// Read in full: can be sent more than once.
    Whole { data: Bytes, trailers: Option<HeaderMap> },
    /// Still arriving from the client: sent once.
    Streaming(RequestBody),
    /// A streaming body an earlier attempt took.
    Taken,
}

impl Outgoing {
    fn whole(data: Bytes, trailers: Option<HeaderMap>, exceeded: Option<Arc<AtomicBool>>) -> Outgoing {
        Outgoing { body: Prepared::Whole { data, trailers }, exceeded }
    }

    /// The body for one attempt; `None` if a streaming body was already taken by an earlier attempt.
    pub(crate) fn take(&mut self) -> Option<RequestBody> {
        match &mut self.body {
            // Boxing an empty body allocates nothing.
            Prepared::Whole { data, trailers: None } if data.is_empty() => Some(empty_body()),
            Prepared::Whole { data, trailers } => {
                let body = Full::new(data.clone()).map_err(|never| match never {});
                Some(match trailers.clone() {
                    Some(t) => body.with_trailers(async move { Some(Ok(t)) }).boxed_unsync(),
                    None => body.boxed_unsync(),
                })
            }
            Prepared::Streaming(_) | Prepared::Taken => match std::mem::replace(&mut self.body, Prepared::Taken) {
                Prepared::Streaming(body) => Some(body),
                _ => None,
            },
        }
    }

    /// Takes back a body an attempt did not send.
    pub(crate) fn put_back(&mut self, body: RequestBody) {
        if let Prepared::Taken = self.body {
            self.body = Prepared::Streaming(body);
        }
    }

    /// Whether the body passed the size limit while streaming (what made sending it fail).
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.as_ref().is_some_and(|flag| flag.load(Ordering::Acquire))
    }
}

/// Limits `body` to `limit` bytes and, if `read_ahead`, reads up to [`READ_AHEAD`] of it now. Errors are the
/// client's: 413 for a body over the limit, 400 for a malformed one.
pub(crate) async fn prepare(body: RequestBody, limit: u64, read_ahead: bool) -> Result<Outgoing, HandlerError> {
    if body.is_end_stream() {
        return Ok(Outgoing::whole(Bytes::new(), None, None));
    }
    let exceeded = Arc::new(AtomicBool::new(false));
    let flag = exceeded.clone();
    let mut body = LimitedBody::new(body, limit, move || flag.store(true, Ordering::Release)).boxed_unsync();
    let exceeded = Some(exceeded);
    if !read_ahead {
        return Ok(Outgoing { body: Prepared::Streaming(body), exceeded });
    }
    let mut data = BytesMut::new();
    while data.len() < READ_AHEAD {
        match body.frame().await {
            None => return Ok(Outgoing::whole(data.freeze(), None, exceeded)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(frame) => {
                    let trailers = frame.into_trailers().ok();
                    return Ok(Outgoing::whole(data.freeze(), trailers, exceeded));
                }
            },
            Some(Err(e)) if e.is::<BodyTooLarge>() => {
                return Err(HandlerError::new(Fault::PayloadTooLarge, "request body too large", e.to_string()));
            }
            Some(Err(e)) => {
                return Err(HandlerError::new(Fault::BadRequest, "malformed request body", e.to_string()));
            }
        }
    }
    let body = Prefixed { prefix: Some(data.freeze()), rest: body }.boxed_unsync();
    Ok(Outgoing { body: Prepared::Streaming(body), exceeded })
}

/// The bytes already read, then the rest of the body.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: RequestBody,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.prefix.take() {
            Some(prefix) => Poll::Ready(Some(Ok(Frame::data(prefix)))),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(prefix));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(prefix));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::StreamBody;

    use super::*;

    fn chunks(parts: Vec<Result<Bytes, &'static str>>) -> RequestBody {
        let frames = parts.into_iter().map(|p| p.map(Frame::data).map_err(BoxError::from));
        StreamBody::new(futures::stream::iter(frames.collect::<Vec<_>>())).boxed_unsync()
    }

    #[tokio::test]
    async fn small_bodies_are_read_whole_and_can_be_sent_again() {
        let body = chunks(vec![Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"cd"))]);
        let mut out = prepare(body, 10, true).await.unwrap();
        for _ in 0..2 {
            let sent = out.take().unwrap().collect().await.unwrap().to_bytes();
            assert_eq!(&sent[..], b"abcd");
        }
    }

    #[tokio::test]
    async fn faults_in_the_first_bytes_are_the_clients() {
        let body = chunks(vec![Ok(Bytes::from_static(b"ab")), Err("invalid chunk size")]);
        let err = prepare(body, 10, true).await.err().unwrap();
        assert_eq!(err.fault, Fault::BadRequest);
        let body = chunks(vec![Ok(Bytes::from(vec![0; 11]))]);
        let err = prepare(body, 10, true).await.err().unwrap();
        assert_eq!(err.fault, Fault::PayloadTooLarge);
    }

    #[tokio::test]
    async fn large_bodies_stream_on_after_the_prefix() {
        let big = Bytes::from(vec![7; READ_AHEAD]);
        let body = chunks(vec![Ok(big.clone()), Ok(Bytes::from_static(b"tail"))]);
        let mut out = prepare(body, u64::MAX, true).await.unwrap();
        let body = out.take().unwrap();
        assert!(out.take().is_none(), "a streaming body is sent once");
        out.put_back(body);
        let sent = out.take().unwrap().collect().await.unwrap().to_bytes();
        assert_eq!(sent.len(), READ_AHEAD + 4);
    }

    #[tokio::test]
    async fn a_streaming_body_passing_the_limit_is_flagged() {
        let big = Bytes::from(vec![7; READ_AHEAD]);
        let body = chunks(vec![Ok(big.clone()), Ok(Bytes::from_static(b"tail"))]);
        let mut out = prepare(body, READ_AHEAD as u64 + 2, true).await.unwrap();
        assert!(!out.exceeded(), "nothing passed the limit yet");
        let err = out.take().unwrap().collect().await.err().unwrap();
        assert!(err.is::<BodyTooLarge>(), "{err}");
        assert!(out.exceeded(), "the failure is the body's size, not the upstream's");

        let body = chunks(vec![Ok(big), Ok(Bytes::from_static(b"tail"))]);
        let mut out = prepare(body, READ_AHEAD as u64 + 4, true).await.unwrap();
        assert_eq!(out.take().unwrap().collect().await.unwrap().to_bytes().len(), READ_AHEAD + 4);
        assert!(!out.exceeded());
        let empty = prepare(empty_body(), 0, true);
        assert!(!empty.await.unwrap().exceeded());
    }
}
