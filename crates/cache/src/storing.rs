//! A response body passed on to the client as it arrives and kept, up to a bound, to be stored once it is
//! complete: a large miss reaches its client at the origin's pace instead of after the whole body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use palisade_http::{Body, BoxError};

use crate::collapse::Leader;

/// What to do with the whole body once it has passed.
pub(crate) type OnComplete = Box<dyn FnOnce(Bytes) + Send>;

/// `inner`, passed through; kept while it stays within `limit` bytes, and handed to `on_complete` at its end.
/// A body that grows past the limit, fails, or is dropped before its end (the client went away) is not
/// stored. The fetch's [`Leader`] is held until then, so that requests waiting for it find it stored.
pub(crate) struct StoringBody {
    inner: Body,
    kept: Option<BytesMut>,
    limit: usize,
    on_complete: Option<OnComplete>,
    leader: Option<Leader>,
}

impl StoringBody {
    pub(crate) fn new(inner: Body, limit: usize, leader: Option<Leader>, on_complete: OnComplete) -> StoringBody {
        StoringBody { inner, kept: Some(BytesMut::new()), limit, on_complete: Some(on_complete), leader }
    }

    /// The body has ended: stored if it was kept whole.
    fn complete(&mut self) {
        if let (Some(kept), Some(on_complete)) = (self.kept.take(), self.on_complete.take()) {
            on_complete(kept.freeze());
        }
        self.leader = None;
    }

    /// Stops keeping: nothing will be stored, and waiting requests go on their own.
    fn give_up(&mut self) {
        self.kept = None;
        self.on_complete = None;
        self.leader = None;
    }
}

impl HttpBody for StoringBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                match (frame.data_ref(), &mut this.kept) {
                    (Some(data), Some(kept)) if kept.len() + data.len() <= this.limit => kept.extend_from_slice(data),
                    (Some(_), Some(_)) => this.give_up(),
                    // Trailers are not stored; the body is.
                    _ => {}
                }
                // A body that knows it has ended is not polled again (hyper stops at `is_end_stream`).
                if this.inner.is_end_stream() {
                    this.complete();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.give_up();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.complete();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
