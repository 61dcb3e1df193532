//! One guest's run: in the foreground until it has run through its ticks there, then in the background lane.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::clock::thread_cpu_time;
use crate::history::AppHistory;
use crate::job::Job;
use crate::scheduler::Inner;
use crate::share::Share;

thread_local! {
    /// Set by [`tick_yield`] while a guest is being polled, so the scheduler can tell a guest that gave way at an
    /// epoch tick (it is running long, and wants to go on) from one waiting for I/O.
    static YIELDED: Cell<bool> = const { Cell::new(false) };
}

/// Whether a guest polled on this thread gave way at an epoch tick since the last call.
pub(crate) fn take_yielded() -> bool {
    YIELDED.with(|y| y.replace(false))
}

/// What a guest awaits at an epoch tick to give way to other work. It wakes the guest's task only after the
/// runtime has looked for I/O (tokio's `yield_now`): a plain re-queue would run a spinning guest again before
/// its worker's connections. It also tells the scheduler that the guest is running long.
pub fn tick_yield() -> impl Future<Output = ()> + Send + 'static {
    YIELDED.with(|y| y.set(true));
    tokio::task::yield_now()
}

/// CPU a guest must use after the first tick it gives way at before it counts as long.
///
/// Ticks are wall-clock: a short guest whose thread the system preempted (a busy machine, a neighbour's burst)
/// runs into ticks having used microseconds of CPU. Counted as long, it would be moved to the background lane,
/// and its app's next requests would start there: a hello answered in 50 microseconds then waits for turns
/// behind a flood, and its tenant sees stalls of hundreds of milliseconds. Half a tick of CPU after the first
/// one tells a guest that runs long from one that was only kept from its core.
pub(crate) const LONG_CPU: Duration = Duration::from_micros(500);

/// Whether a run that gave way at `ticks` ticks, and used `cpu` since the first, is long: `after` ticks, and
/// at least [`LONG_CPU`].
pub(crate) fn runs_long(ticks: u32, after: u32, cpu: Duration) -> bool {
    ticks >= after && (after <= 1 || cpu >= LONG_CPU)
}

/// The guest's run ended without an answer: it panicked, or the scheduler stopped (the server is shutting
/// down).
#[derive(Debug, thiserror::Error)]
#[error("the guest's run ended without an answer (it panicked, or the server is stopping)")]
pub struct GuestLost;

/// A guest's future as the scheduler runs it (see [`crate::Scheduler::run`]); resolves to the guest's output.
/// Dropping it stops the guest wherever it runs.
#[must_use = "a guest runs only while its Guest is polled"]
pub struct Guest<T> {
    state: State<T>,
    share: Arc<Share>,
    history: Arc<AppHistory>,
    scheduler: Arc<Inner>,
}

enum State<T> {
    /// Polled by the task that awaits it, on the caller's thread; `ticks`: epoch ticks at which it gave way;
    /// `cpu`: the CPU its polls used since the first of them (measured only from then on).
    Foreground {
        future: BoxFuture<'static, T>,
        ticks: u32,
        cpu: Duration,
    },
    /// In the background lane, which sends the output when the guest ends.
    Background {
        output: oneshot::Receiver<T>,
        job: Arc<Job>,
    },
    Finished,
}

impl<T: Send + 'static> Guest<T> {
    pub(crate) fn new(
        scheduler: Arc<Inner>,
        share: &Arc<Share>,
        history: &Arc<AppHistory>,
        future: BoxFuture<'static, T>,
    ) -> Guest<T> {
        let (share, history) = (share.clone(), history.clone());
        scheduler.ensure_lender();
        let state = if history.runs_long() && share.moves_long_guests() {
            scheduler.submit(&share, &history, future)
        } else {
            State::Foreground { future, ticks: 0, cpu: Duration::ZERO }
        };
        Guest { state, share, history, scheduler }
    }

    /// Whether the guest has been moved to (or started in) the background lane.
    pub fn in_background(&self) -> bool {
        matches!(self.state, State::Background { .. })
    }

    /// Stops the guest and returns once it is gone (its future dropped, wherever it ran). Dropping a `Guest`
    /// stops it too, but a guest in the middle of a background slice is then dropped when the slice ends.
    pub async fn stop(mut self) {
        if let State::Background { output, job } = std::mem::replace(&mut self.state, State::Finished) {
            job.cancel();
            // The sender lives in the guest's future: the channel closes when that is dropped.
            let _ = output.await;
        }
    }
}

impl Inner {
    /// Hands `future` to the background lane.
    fn submit<T: Send + 'static>(
        &self,
        share: &Arc<Share>,
        history: &Arc<AppHistory>,
        future: BoxFuture<'static, T>,
    ) -> State<T> {
        let (sender, output) = oneshot::channel();
        let run = Box::pin(async move {
            let _ = sender.send(future.await);
        });
        State::Background { output, job: self.spawn(share, history, run) }
    }
}

impl<T: Send + 'static> Future for Guest<T> {
    type Output = Result<T, GuestLost>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let State::Foreground { future, ticks, cpu } = &mut this.state {
            // Only a tick inside this poll counts: code outside any `Guest` (a warm instance being made) may
            // have left the flag set.
            take_yielded();
            // The thread's CPU clock costs a system call, so only a guest that has already run into a tick
            // reads it: a short guest never does.
            let cpu_start = (*ticks > 0).then(thread_cpu_time);
            let start = Instant::now();
            let poll = future.as_mut().poll(cx);
            this.share.charge_foreground(start.elapsed());
            if let Some(cpu_start) = cpu_start {
                *cpu += thread_cpu_time().saturating_sub(cpu_start);
            }
            *ticks += u32::from(take_yielded());
            let long = runs_long(*ticks, this.scheduler.foreground_ticks, *cpu);
            match poll {
                Poll::Ready(output) => {
                    this.history.record(long);
                    this.state = State::Finished;
                    return Poll::Ready(Ok(output));
                }
                // A light tenant's long guest beside others goes on here, giving way at every tick.
                Poll::Pending if !long || !this.share.moves_long_guests() => return Poll::Pending,
                Poll::Pending => {
                    let State::Foreground { future, .. } = std::mem::replace(&mut this.state, State::Finished) else {
                        unreachable!("matched above")
                    };
                    this.history.record(true);
                    this.state = this.scheduler.submit(&this.share, &this.history, future);
                }
            }
        }
        match &mut this.state {
            State::Background { output, .. } => {
                let received = std::task::ready!(Pin::new(output).poll(cx));
                this.state = State::Finished;
                Poll::Ready(received.map_err(|_| GuestLost))
            }
            _ => Poll::Ready(Err(GuestLost)),
        }
    }
}

impl<T> Drop for Guest<T> {
    fn drop(&mut self) {
        if let State::Background { job, .. } = &self.state {
            job.cancel();
        }
    }
}
