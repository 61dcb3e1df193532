//! A body with a limit on how long its sender may pause: a client's slow POST, an upstream's stalled response.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::BoxError;

/// A body that fails once its sender has sent nothing for `timeout` while the reader waits for it.
/// The clock starts when the reader first waits, not when the body is made: a handler may read late, and a
/// client expecting `100 Continue` only sends once it does.
pub struct PatientBody<B> {
    inner: B,
    timeout: Duration,
    /// Allocated on the first wait, then re-armed: a long body pauses many times.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    message: &'static str,
    timed_out: Option<Arc<AtomicBool>>,
}

impl<B> PatientBody<B> {
    /// Wraps `inner`; at the timeout the body fails with `message`.
    pub fn new(inner: B, timeout: Duration, message: &'static str) -> PatientBody<B> {
        PatientBody { inner, timeout, timer: None, waiting: false, message, timed_out: None }
    }

    /// Also sets `flag` when the timeout fires, for whoever answers the request.
    pub fn flagging(mut self, flag: Arc<AtomicBool>) -> PatientBody<B> {
        self.timed_out = Some(flag);
        self
    }
}

impl<B> Body for PatientBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = tokio::time::Instant::now() + self.timeout;
                let starting = !std::mem::replace(&mut self.waiting, true);
                let timer = match &mut self.timer {
                    Some(timer) => {
                        if starting {
                            timer.as_mut().reset(deadline);
                        }
                        timer
                    }
                    None => self.timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                if timer.as_mut().poll(cx).is_ready() {
                    if let Some(flag) = &self.timed_out {
                        flag.store(true, Ordering::Release);
                    }
                    return Poll::Ready(Some(Err(self.message.into())));
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
