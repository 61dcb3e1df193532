//! Two futures driven together where one of them (timers, a stop signal) rarely has anything to do.
//!
//! `tokio::select!` polls every branch each time its task wakes. A connection's task wakes several times per
//! request, and polling its timer and stop signal each time costs a look into the timer wheel and the
//! channel, though neither has fired. [`Sidelined`] gives the side future a waker of its own and polls it only
//! when that waker was used.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::future::Either;
use futures::task::AtomicWaker;

/// Completes with whichever of `main` and `side` completes first. `main` is polled every time; `side` on the
/// first poll, then only after it woke the task.
pub(crate) struct Sidelined<M, S> {
    main: M,
    side: Pin<Box<S>>,
    side_waker: Arc<SideWaker>,
}

/// The side future's waker: notes that it was used and wakes the task.
struct SideWaker {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for SideWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<M: Future + Unpin, S: Future> Sidelined<M, S> {
    pub(crate) fn new(main: M, side: S) -> Sidelined<M, S> {
        let side_waker = Arc::new(SideWaker { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        Sidelined { main, side: Box::pin(side), side_waker }
    }
}

impl<M: Future + Unpin, S: Future> Future for Sidelined<M, S> {
    type Output = Either<M::Output, S::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(out) = Pin::new(&mut self.main).poll(cx) {
            return Poll::Ready(Either::Left(out));
        }
        // Registered before the side is polled, so a wake-up from it can never be lost.
        self.side_waker.task.register(cx.waker());
        if self.side_waker.woken.swap(false, Ordering::AcqRel) {
            let waker = Waker::from(self.side_waker.clone());
            if let Poll::Ready(out) = self.side.as_mut().poll(&mut Context::from_waker(&waker)) {
                return Poll::Ready(Either::Right(out));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn the_side_completes_when_it_fires_and_the_main_when_it_is_done() {
        let never = std::future::pending::<()>();
        let side = tokio::time::sleep(Duration::from_millis(20));
        assert!(matches!(Sidelined::new(never, side).await, Either::Right(())));

        let (send, receive) = tokio::sync::oneshot::channel::<u8>();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = send.send(7);
        });
        let side = tokio::time::sleep(Duration::from_secs(60));
        assert!(matches!(Sidelined::new(receive, side).await, Either::Left(Ok(7))));
    }
}
