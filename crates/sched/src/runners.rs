//! The threads that run the background lane's slices: its own runners, and connection workers lending one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lane::Lane;

/// A runner judges whether it gets the CPU over its slices of this much wall-clock time.
const WINDOW: Duration = Duration::from_millis(50);
/// Slices that got less than one part in this many of their wall-clock time as CPU ran on a thread kept from its
/// core: the foreground keeps the cores busy, and leaves the runners next to nothing.
const KEPT_FROM_CPU: u32 = 10;
/// How long runners then leave the lane to the lenders before they look again.
const BACK_OFF: Duration = Duration::from_millis(20);
/// How a backed-off runner sees whether it gets the CPU again: a nap that ends on time.
const NAP: Duration = Duration::from_millis(5);

/// Waits while the runners leave the lane to the lenders; takes it back if this thread gets the CPU on time.
fn back_off(lane: &Lane) {
    let start = Instant::now();
    std::thread::sleep(NAP);
    if start.elapsed() < NAP + Duration::from_millis(1) {
        lane.runners_uncontended();
    }
}

/// Starts the lane's runners, which run until it stops: `count` threads at the lowest priority the system
/// allows (what that is, or why it could not be lowered, is logged once), which run the guests of tenants
/// beside others, and `count` at normal priority, which run a tenant's alone (see [`alone_runner`]).
pub(crate) fn start(lane: &Arc<Lane>, count: usize) -> std::io::Result<()> {
    for i in 0..count.max(1) {
        let lane = lane.clone();
        std::thread::Builder::new().name(format!("palisade-alone-{i}")).spawn(move || alone_runner(&lane))?;
    }
    let logged = Arc::new(std::sync::Once::new());
    for i in 0..count.max(1) {
        let (lane, logged) = (lane.clone(), logged.clone());
        std::thread::Builder::new().name(format!("palisade-guest-{i}")).spawn(move || {
            let lowered = crate::priority::lower_current_thread();
            logged.call_once(|| match lowered {
                Ok(how) => tracing::debug!("background guest threads run at the lowest priority ({how})"),
                Err(e) => tracing::warn!(
                    "background guest threads run at normal priority, so long guests compete with connections \
                     for the CPU: {e}"
                ),
            });
            lowest_priority_runner(&lane);
        })?;
    }
    Ok(())
}

/// A runner of the lowest priority: it runs the guests of tenants beside others. When its slices get next to
/// no CPU (the foreground keeps the cores busy), it leaves the lane to the lenders for a while.
fn lowest_priority_runner(lane: &Lane) {
    let (mut wall, mut cpu) = (Duration::ZERO, Duration::ZERO);
    while !lane.is_stopping() {
        if lane.contended() {
            back_off(lane);
            continue;
        }
        match lane.pick_beside_others() {
            Some(job) => {
                let (w, c) = job.run_slice();
                lane.progressed();
                (wall, cpu) = (wall + w, cpu + c);
                if wall >= WINDOW {
                    if cpu * KEPT_FROM_CPU < wall {
                        lane.runners_contended(BACK_OFF);
                    }
                    (wall, cpu) = (Duration::ZERO, Duration::ZERO);
                }
            }
            // Nothing ready: wait for a guest, looking now and then whether the lane stopped.
            None => {
                let _ = lane.signals.recv_timeout(Duration::from_millis(250));
            }
        }
    }
}

/// A runner of normal priority: it runs the guests of a tenant alone (no other tenant was there at the
/// accountant's last look). Its long guests leave the connection worker they started on as a heavy tenant's
/// do, but keep the worker's priority: a worker keeps its connections to itself, so a guest that stayed on it
/// could use only that worker's core, and a tenant alone with four long guests on a two-core machine could find
/// three on one worker and the other core idle. Here they take whichever core is free. Once another tenant is
/// there, the tenant's guests in the lane go to the lowest-priority runners (and the lenders), as before: a
/// tenant that is light only for a moment, between two looks that found it heavy, must not take whole cores
/// from its neighbours at normal priority (ten tenants flooding together did that to half the neighbour's rate).
fn alone_runner(lane: &Lane) {
    while !lane.is_stopping() {
        match lane.pick_alone() {
            Some(job) => {
                job.run_slice();
                lane.progressed();
            }
            None => {
                let _ = lane.alone_signals.recv_timeout(Duration::from_millis(250));
            }
        }
    }
}

thread_local! {
    /// The lanes this thread already lends to (one entry per scheduler; a server has one).
    static LENDING: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Makes sure the calling thread's async runtime lends slices to `lane` (see [`lend`]): the first guest a
/// connection worker runs starts its lender.
pub(crate) fn ensure_lender(lane: &Arc<Lane>) {
    let key = Arc::as_ptr(lane) as usize;
    let new = LENDING.with(|l| {
        let mut l = l.borrow_mut();
        let new = !l.contains(&key);
        if new {
            l.push(key);
        }
        new
    });
    if new && let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(lend(lane.clone()));
    }
}

/// How long a connection worker goes on starting slices when it lends the lane CPU. A slice ends at the next
/// epoch tick (or sooner), so a lend lasts at most this and one tick: a slice started later than this could
/// make it last up to two ticks, and the worker's connections wait for all of it.
const LEND_STARTS: Duration = Duration::from_micros(250);
/// How long it then serves its connections before it lends again, for each unit of time lent: the lane's floor
/// is about a quarter of each worker.
const LEND_PAUSE_PER_LENT: u32 = 3;
/// How often a lender looks whether the lane needs it, besides when a guest becomes ready while it starves.
const LOOK_EVERY: Duration = Duration::from_millis(2);

/// A connection worker's part in the lane: while guests are there, it looks every [`LOOK_EVERY`] (and
/// whenever a guest becomes ready meanwhile) whether the runners have left the lane to the lenders or run
/// nothing lately (they get no CPU because the foreground keeps every core busy), and if so runs guests' slices
/// itself for up to about one tick (see [`LEND_STARTS`]), at the worker's priority, as it would have before they
/// were moved. So a tenant's long guests keep a share of the CPU however much short work others send, at the
/// cost of about one tick's wait for the worker's connections, only while that lasts.
async fn lend(lane: Arc<Lane>) {
    while !lane.is_stopping() {
        if lane.is_empty() {
            let nonempty = lane.nonempty.notified();
            tokio::pin!(nonempty);
            nonempty.as_mut().enable();
            if lane.is_empty() && !lane.is_stopping() {
                nonempty.await;
            }
            continue;
        }
        tokio::select! {
            () = lane.starving.notified() => {}
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
        if !lane.needs_lenders() {
            continue;
        }
        let start = Instant::now();
        while start.elapsed() < LEND_STARTS {
            match lane.pick() {
                Some(job) => drop(job.run_slice()),
                None => break,
            }
        }
        let lent = start.elapsed();
        if lent >= LEND_STARTS {
            tokio::time::sleep(lent * LEND_PAUSE_PER_LENT).await;
        }
    }
}
