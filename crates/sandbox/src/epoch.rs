//! Time for guests: the thread that advances the engine's epoch, and the deadlines stores keep against it.
//!
//! The epoch only matters to a store with a deadline armed, so the ticker runs only while there is one. A
//! server with no guest alive (a static-only site, or one whose apps have been idle for longer than a warm
//! instance waits) has a thread asleep instead of one waking a thousand times a second and taking a core from
//! the connections.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::limits::{LimitExceeded, LimitKind};

/// How often the epoch advances: guests yield to other work this often, and deadlines and CPU time are
/// counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Calls a tick function every [`EPOCH_TICK`] while any [`Ticking`] is held; sleeps otherwise.
pub(crate) struct EpochTicker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    /// [`Ticking`]s alive.
    held: AtomicUsize,
    /// Whether the thread is (about to be) waiting for a holder.
    parked: AtomicBool,
    stop: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

/// Keeps the epoch advancing while alive: one per store with a deadline armed.
pub(crate) struct Ticking(Arc<Shared>);

impl Drop for Ticking {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochTicker {
    /// Starts the thread; `tick` is the engine's `increment_epoch`.
    pub(crate) fn start(tick: impl Fn() + Send + 'static) -> std::io::Result<EpochTicker> {
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        let thread = std::thread::Builder::new().name("palisade-epoch".into()).spawn(move || {
            while !state.stop.load(Ordering::SeqCst) {
                if state.held.load(Ordering::SeqCst) == 0 {
                    state.park();
                    continue;
                }
                std::thread::sleep(EPOCH_TICK);
                tick();
            }
        })?;
        Ok(EpochTicker { shared, thread: Some(thread) })
    }

    /// Keeps the epoch advancing until the returned value is dropped.
    pub(crate) fn hold(&self) -> Ticking {
        let shared = &self.shared;
        shared.held.fetch_add(1, Ordering::SeqCst);
        // Only a parked thread needs waking: a request on a busy server pays one atomic, not a lock.
        if shared.parked.load(Ordering::SeqCst) {
            let _lock = shared.lock.lock().unwrap_or_else(PoisonError::into_inner);
            shared.wake.notify_one();
        }
        Ticking(shared.clone())
    }
}

impl Shared {
    /// Waits until something is held or the ticker stops. `parked` is set before `held` is read again, and
    /// a holder increments `held` before it reads `parked` (both sequentially consistent): either the holder
    /// sees `parked` and wakes the thread under the lock, or the thread sees the holder and does not wait.
    fn park(&self) {
        let mut lock = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.parked.store(true, Ordering::SeqCst);
        while self.held.load(Ordering::SeqCst) == 0 && !self.stop.load(Ordering::SeqCst) {
            lock = self.wake.wait(lock).unwrap_or_else(PoisonError::into_inner);
        }
        self.parked.store(false, Ordering::SeqCst);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _lock = self.shared.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.shared.wake.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Makes a store's guest yield to the async runtime at every epoch tick, trap once `deadline` has passed, and
/// trap once it has run for `cpu_time`. The store keeps `ticking` (and so the epoch advancing) until it is
/// dropped or armed again.
///
/// Yielding matters as much as the deadline: a guest spinning in a loop would otherwise hold its thread until
/// the deadline. Each yield is where the scheduler may move a guest that runs long out of the foreground, and
/// where the background lane hands the next turn to the tenant furthest behind.
///
/// CPU time is counted in epoch ticks: the callback runs only when the guest is executing as a tick passes
/// (a guest waiting for I/O is not running wasm and is not charged), so `cpu_time` is exceeded after that
/// many ticks in which the guest ran. A spinning guest is stopped at its CPU budget, not at the (usually
/// longer) wall-clock deadline, and its worker thread is free for others from then on.
pub(crate) fn arm_deadline<T: 'static>(
    store: &mut wasmtime::Store<T>,
    ticking: Ticking,
    deadline: tokio::time::Instant,
    cpu_time: Duration,
) {
    let budget = cpu_time.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    let mut ticks: u128 = 0;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        // Mentioned so that the callback owns it (and the store, the callback): not a no-op.
        let _ = &ticking;
        ticks += 1;
        if tokio::time::Instant::now() >= deadline {
            Ok(wasmtime::UpdateDeadline::Interrupt)
        } else if ticks > budget {
            Err(LimitExceeded(LimitKind::CpuTime).into())
        } else {
            // Gives way to the worker's connections (in the foreground) or to the next tenant in line (in the
            // background lane): see `palisade_sched::tick_yield`.
            Ok(wasmtime::UpdateDeadline::YieldCustom(1, Box::pin(palisade_sched::tick_yield())))
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks_during(ticks: &AtomicUsize, wait: Duration) -> usize {
        let before = ticks.load(Ordering::SeqCst);
        std::thread::sleep(wait);
        ticks.load(Ordering::SeqCst) - before
    }

    #[test]
    fn ticks_only_while_held() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let counter = ticks.clone();
        let ticker = EpochTicker::start(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .expect("ticker thread");
        assert_eq!(ticks_during(&ticks, Duration::from_millis(50)), 0, "nothing held: no ticks");
        for _ in 0..3 {
            let held = ticker.hold();
            assert!(ticks_during(&ticks, Duration::from_millis(100)) >= 5, "held: the epoch advances");
            drop(held);
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(ticks_during(&ticks, Duration::from_millis(50)), 0, "released: the ticker parks again");
        }
        let (a, b) = (ticker.hold(), ticker.hold());
        drop(a);
        assert!(ticks_during(&ticks, Duration::from_millis(100)) >= 5, "one holder is enough");
        drop(b);
        drop(ticker);
    }
}
