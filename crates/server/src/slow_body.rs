//! The request body, with a limit on how long the client may pause while sending it (slow POST).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use palisade_http::BoxError;
use tokio::time::Sleep;

/// A request body that fails once the client has sent nothing for `timeout` while the handler waits for it.
/// The clock starts when the handler first waits, not when the request arrives: a handler may read late,
/// and a client expecting `100 Continue` only sends once it does.
pub(crate) struct PatientBody {
    inner: Incoming,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl PatientBody {
    /// Wraps `inner`; `timed_out` is set if the timeout fires.
    pub(crate) fn new(inner: Incoming, timeout: Duration, timed_out: Arc<AtomicBool>) -> PatientBody {
        PatientBody { inner, timeout, timer: None, timed_out }
    }
}

impl Body for PatientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if timer.as_mut().poll(cx).is_ready() {
                    self.timed_out.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err("the client paused too long while sending the body".into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
