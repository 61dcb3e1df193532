//! One guest in the background lane: its future, its state, and one slice of running it.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use crate::clock::thread_cpu_time;
use crate::guest::{runs_long, take_yielded};
use crate::history::AppHistory;
use crate::lane::Lane;
use crate::reaper::InSlice;
use crate::share::Share;

/// A guest's work as the lane runs it: it delivers its own output (through a channel) when it ends.
pub(crate) type Run = BoxFuture<'static, ()>;

/// State bits. No bit: waiting for a wake (its I/O). The thread that moves a guest into `QUEUED` sends it to
/// the lane; the thread running it owns it while `RUNNING`.
const QUEUED: u8 = 1;
const RUNNING: u8 = 2;
/// Woken while running: it is queued again when its slice ends.
const NOTIFIED: u8 = 4;
const DONE: u8 = 8;

/// A guest in the background lane.
pub(crate) struct Job {
    pub(crate) share: Arc<Share>,
    lane: Arc<Lane>,
    run: Mutex<Option<Run>>,
    state: AtomicU8,
    cancelled: AtomicBool,
    /// Epoch ticks at which it gave way in this lane, and the CPU it used here since the first, in nanoseconds.
    ticks: AtomicU32,
    cpu_since_tick: AtomicU64,
    /// When it was last queued.
    queued_at: Mutex<Instant>,
    history: Arc<AppHistory>,
    /// Ticks that make a run long, for its app's history.
    long_after: u32,
}

impl Job {
    /// A guest, not yet in the lane (see [`Lane::enter`]); counted in its share's guests in the lane.
    pub(crate) fn new(
        lane: &Arc<Lane>,
        share: &Arc<Share>,
        history: &Arc<AppHistory>,
        run: Run,
        long_after: u32,
    ) -> Arc<Job> {
        share.entered_lane();
        Arc::new(Job {
            share: share.clone(),
            lane: lane.clone(),
            run: Mutex::new(Some(run)),
            state: AtomicU8::new(QUEUED),
            cancelled: AtomicBool::new(false),
            ticks: AtomicU32::new(0),
            cpu_since_tick: AtomicU64::new(0),
            queued_at: Mutex::new(Instant::now()),
            history: history.clone(),
            long_after,
        })
    }

    pub(crate) fn mark_queued_now(&self) {
        *self.queued_at.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// How long it has waited since it was last queued.
    pub(crate) fn queued_for(&self) -> Duration {
        self.queued_at.lock().unwrap_or_else(PoisonError::into_inner).elapsed()
    }

    /// Charges `slice` of background CPU to the guest's tenant.
    pub(crate) fn charge(&self, slice: Duration) {
        self.share.charge_background(slice);
    }

    /// Stops the guest: dropped by the next thread that picks it, or when the slice running now ends.
    pub(crate) fn cancel(self: &Arc<Self>) {
        self.cancelled.store(true, Ordering::Release);
        self.wake_by_ref();
    }

    /// Drops the guest's future (it finished, was stopped, or the lane stopped), on the reaper's thread: a
    /// stopped guest's future still holds its instance.
    pub(crate) fn drop_run(&self) {
        if self.state.swap(DONE, Ordering::AcqRel) & DONE == 0 {
            self.share.left_lane();
            self.lane.leave();
        }
        let run = self.run.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(run) = run {
            self.lane.reaper.take(run, &self.share);
        }
    }

    /// Runs one slice of the guest on this thread (a lane runner, or a connection worker lending one): until it
    /// gives way at an epoch tick, waits for I/O, or ends. Its CPU is charged to its tenant. A guest that
    /// panics is dropped like one that was stopped, and its caller hears that it was lost. Returns the slice's
    /// wall-clock time and CPU time: far apart, they say the thread was kept from its core.
    pub(crate) fn run_slice(self: &Arc<Self>) -> (Duration, Duration) {
        self.state.store(RUNNING, Ordering::Release);
        let taken = self.run.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(mut run) = taken.filter(|_| !self.cancelled.load(Ordering::Acquire)) else {
            self.drop_run();
            return (Duration::ZERO, Duration::ZERO);
        };
        let waker = Waker::from(self.clone());
        take_yielded();
        let started = Instant::now();
        let start = thread_cpu_time();
        let polled = {
            let _io = self.lane.io.enter();
            let _in_slice = InSlice::enter(&self.lane.reaper, &self.share);
            std::panic::catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(&mut Context::from_waker(&waker))))
        };
        let slice = thread_cpu_time().saturating_sub(start);
        let wall = started.elapsed();
        let yielded = take_yielded();
        self.charge(slice);
        if self.ticks.load(Ordering::Relaxed) > 0 {
            self.cpu_since_tick.fetch_add(u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        let ticks = self.ticks.fetch_add(u32::from(yielded), Ordering::Relaxed) + u32::from(yielded);
        match polled {
            Ok(Poll::Pending) if !self.cancelled.load(Ordering::Acquire) => {
                *self.run.lock().unwrap_or_else(PoisonError::into_inner) = Some(run);
                self.park(yielded);
            }
            Ok(Poll::Pending) => {
                self.lane.reaper.take(run, &self.share);
                self.drop_run();
            }
            Ok(Poll::Ready(())) => {
                let cpu = Duration::from_nanos(self.cpu_since_tick.load(Ordering::Relaxed));
                self.history.record(runs_long(ticks, self.long_after, cpu));
                drop(run);
                self.drop_run();
            }
            Err(_) => {
                tracing::error!(tenant = %self.share.name(), "a guest panicked in the background lane; it was dropped");
                self.lane.reaper.take(run, &self.share);
                self.drop_run();
            }
        }
        (wall, slice)
    }

    /// After a slice that left the guest pending: ready again at once if it gave way at a tick (or was woken
    /// meanwhile), else waiting for its wake.
    fn park(self: &Arc<Self>, yielded: bool) {
        if yielded || self.state.compare_exchange(RUNNING, 0, Ordering::AcqRel, Ordering::Acquire).is_err() {
            self.state.store(QUEUED, Ordering::Release);
            self.lane.send(self.clone());
        }
    }
}

impl Wake for Job {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & (DONE | QUEUED | NOTIFIED) != 0 {
                return;
            }
            let next = if state & RUNNING != 0 { state | NOTIFIED } else { QUEUED };
            match self.state.compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if next == QUEUED {
                        self.lane.send(self.clone());
                    }
                    return;
                }
                Err(actual) => state = actual,
            }
        }
    }
}
