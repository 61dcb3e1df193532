//! A body that fails once more than a set number of bytes has passed through it.
//!
//! Bodies are streamed, never buffered, so a size limit can only be enforced as bytes pass: the stream is
//! cut with an error at the limit (the guest sees a failed read, the client a cut-off response), and the
//! owner is told once through `on_exceeded`.

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::{BoxError, RequestBody};
use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// The body length a message declares in `Content-Length`, if it declares a valid one.
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The error a [`LimitedBody`] fails with at its limit.
#[derive(Debug, thiserror::Error)]
#[error("body is larger than {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// `inner`, cut off with an error after `limit` bytes.
pub struct LimitedBody<B: http_body::Body> {
    inner: B,
    limit: u64,
    seen: u64,
    exceeded: Option<Box<dyn FnOnce() -> B::Error + Send>>,
}

impl LimitedBody<RequestBody> {
    /// Cut off with [`BodyTooLarge`]; `on_exceeded` runs once when that happens.
    pub fn new(inner: RequestBody, limit: u64, on_exceeded: impl FnOnce() + Send + 'static) -> Self {
        LimitedBody::failing_with(inner, limit, move || -> BoxError {
            on_exceeded();
            Box::new(BodyTooLarge(limit))
        })
    }
}

impl<B: http_body::Body> LimitedBody<B> {
    /// Cut off with the error `exceeded` makes (called once).
    pub fn failing_with(inner: B, limit: u64, exceeded: impl FnOnce() -> B::Error + Send + 'static) -> Self {
        LimitedBody { inner, limit, seen: 0, exceeded: Some(Box::new(exceeded)) }
    }
}

impl<B: http_body::Body<Data = Bytes> + Unpin> http_body::Body for LimitedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if this.seen > this.limit {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            this.seen = this.seen.saturating_add(data.len() as u64);
            if this.seen > this.limit
                && let Some(exceeded) = this.exceeded.take()
            {
                return Poll::Ready(Some(Err(exceeded())));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    fn chunks(parts: &[&'static str]) -> RequestBody {
        let frames = parts.iter().map(|p| Ok::<_, BoxError>(Frame::data(Bytes::from_static(p.as_bytes()))));
        StreamBody::new(futures::stream::iter(frames.collect::<Vec<_>>())).boxed_unsync()
    }

    #[tokio::test]
    async fn passes_up_to_the_limit_and_fails_past_it() {
        let fired = Arc::new(AtomicUsize::new(0));
        let f = fired.clone();
        let ok = LimitedBody::new(chunks(&["ab", "cd"]), 4, move || {
            f.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(&ok.collect().await.unwrap().to_bytes()[..], b"abcd");
        assert_eq!(fired.load(Ordering::SeqCst), 0);

        let f = fired.clone();
        let over = LimitedBody::new(chunks(&["ab", "cde", "f"]), 4, move || {
            f.fetch_add(1, Ordering::SeqCst);
        });
        let err = over.collect().await.err().unwrap();
        assert!(err.downcast_ref::<BodyTooLarge>().is_some(), "{err}");
        assert_eq!(fired.load(Ordering::SeqCst), 1);
    }
}
