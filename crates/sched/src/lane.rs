//! The background lane: guests ready to run, handed to whichever thread is free in fair order.
//!
//! Start-time fair queuing between tenants: each tenant has a virtual time that grows by the CPU its guests use
//! (in both lanes) divided by its weight, and the next slice goes to a ready guest of the tenant whose virtual
//! time is lowest (a tenant's own guests take turns). A tenant that comes back to the lane after a pause starts
//! at the lane's current virtual time, so being idle earns no credit to starve the others with later.
//!
//! Threads that run slices: the lane's own runners (lowest priority, see `runners`), and connection workers
//! lending some when the runners have made no progress for a while.
//!
//! There is no lock a runner holds while the others wait: ready guests wait in their tenant's lock-free queue,
//! virtual times are atomic, and a slice is picked by looking at the tenants' queues. A runner at the lowest
//! priority can be preempted anywhere for as long as the system likes; a thread of normal priority (a
//! connection worker waking a guest, or lending a slice) never waits for it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};

use crate::job::Job;
use crate::reaper::Reaper;
use crate::share::Share;

/// How long the lane's runners may go without starting or ending a slice, while guests are in the lane, before
/// connection workers lend it CPU: the floor long guests get however busy the foreground is.
///
/// A runner at the lowest priority that gets some of the CPU is slow, not starved: beside a busy neighbour it
/// may get half a core, so its slices of up to a tick take two or three milliseconds of wall-clock time. Ten
/// milliseconds without progress means its runners got less than about a tenth of a core. Lending sooner took
/// connection workers from their connections for no more CPU to the lane: with lending off, an attacker's
/// guests got the same CPU (BENCHMARKS.md, "The machine's floor").
pub(crate) const STARVED_AFTER: Duration = Duration::from_millis(10);

/// The lane: which tenants have queues in it, and how it is doing.
pub(crate) struct Lane {
    /// Tenants that have had guests here; read on every pick, added to on a tenant's first guest.
    tenants: ArcSwap<Vec<Arc<Share>>>,
    adding: Mutex<()>,
    /// One message per guest of a tenant beside others made ready (dropped when runners are already told
    /// enough): the lowest-priority runners wait here when they have nothing to run.
    signal: Sender<()>,
    pub(crate) signals: Receiver<()>,
    /// The same for guests of tenants alone, which the runners of normal priority wait for. A guest wakes only
    /// the runners that may take it; should its tenant change kind before it is picked, the accountant's nudge
    /// after that look wakes the others (see [`Lane::nudge_runners`]).
    alone_signal: Sender<()>,
    pub(crate) alone_signals: Receiver<()>,
    /// The lane's virtual time: the highest virtual time of a tenant given a slice.
    clock: AtomicU64,
    /// Guests in the lane, in any state.
    jobs: AtomicUsize,
    /// Lenders wait here while the lane is empty.
    pub(crate) nonempty: tokio::sync::Notify,
    /// Lenders are told here when a guest becomes ready while the lane starves.
    pub(crate) starving: tokio::sync::Notify,
    /// When a runner last started or ended a slice (or the lane last became non-empty), in nanoseconds since
    /// `epoch`. Lenders' slices do not count: while the runners are starved, the lenders go on.
    progress: AtomicU64,
    /// Until when the runners leave the lane to the lenders (they found themselves kept from the CPU), in
    /// nanoseconds since `epoch`.
    contended_until: AtomicU64,
    epoch: Instant,
    stopping: AtomicBool,
    /// The runtime guests' I/O and timers belong to while the lane polls them.
    pub(crate) io: tokio::runtime::Handle,
    /// Where guests' remains are dropped.
    pub(crate) reaper: Reaper,
}

impl Lane {
    pub(crate) fn new(io: tokio::runtime::Handle, runners: usize, reaper: Reaper) -> Lane {
        let (signal, signals) = crossbeam_channel::bounded(runners.max(1) * 2);
        let (alone_signal, alone_signals) = crossbeam_channel::bounded(runners.max(1) * 2);
        Lane {
            tenants: ArcSwap::default(),
            adding: Mutex::new(()),
            signal,
            signals,
            alone_signal,
            alone_signals,
            clock: AtomicU64::new(0),
            jobs: AtomicUsize::new(0),
            nonempty: tokio::sync::Notify::new(),
            starving: tokio::sync::Notify::new(),
            progress: AtomicU64::new(0),
            contended_until: AtomicU64::new(0),
            epoch: Instant::now(),
            stopping: AtomicBool::new(false),
            io,
            reaper,
        }
    }

    /// A guest enters the lane, ready to run (called from the thread that moves it there). A tenant coming back
    /// (this is its only guest here) starts no further behind than the lane's clock.
    pub(crate) fn enter(&self, job: Arc<Job>) {
        let share = &job.share;
        if share.lane_jobs() == 1 {
            share.lift_to(self.clock.load(Ordering::Acquire));
        }
        if !share.in_lane.load(Ordering::Acquire) {
            let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
            if !share.in_lane.swap(true, Ordering::AcqRel) {
                self.tenants.rcu(|tenants| {
                    let mut tenants = Vec::clone(tenants);
                    tenants.retain(|t| Arc::strong_count(t) > 1);
                    tenants.push(share.clone());
                    tenants
                });
            }
        }
        if self.jobs.fetch_add(1, Ordering::AcqRel) == 0 {
            // Starvation counts from when there is something to run.
            self.progressed();
            self.nonempty.notify_waiters();
        }
        self.send(job);
    }

    /// A guest leaves the lane (it finished or was stopped).
    pub(crate) fn leave(&self) {
        self.jobs.fetch_sub(1, Ordering::AcqRel);
    }

    /// Queues a guest that is ready (its state says so already), and wakes a runner. If the lane starves, a
    /// lender is told at once: a guest that waits for I/O between slices would otherwise wait for the lenders'
    /// next look every time. (A runner that queues a guest has just run a slice, so the lane is not starving
    /// then, and runners never touch the lenders' `Notify`, whose lock a thread of normal priority may want.)
    pub(crate) fn send(&self, job: Arc<Job>) {
        if self.stopping.load(Ordering::Acquire) {
            job.drop_run();
            return;
        }
        job.mark_queued_now();
        let runners = if job.share.alone() { &self.alone_signal } else { &self.signal };
        job.share.queue(job.clone());
        let _ = runners.try_send(());
        if self.needs_lenders() {
            self.starving.notify_one();
        }
    }

    /// Wakes a runner of each priority if guests are in the lane: after the accountant's look, a tenant whose
    /// guests were queued for one kind of runner may now be the other kind's (it is alone now, or no longer).
    pub(crate) fn nudge_runners(&self) {
        if !self.is_empty() {
            let _ = self.signal.try_send(());
            let _ = self.alone_signal.try_send(());
        }
    }

    /// Whether any guest is in the lane.
    pub(crate) fn is_empty(&self) -> bool {
        self.jobs.load(Ordering::Acquire) == 0
    }

    /// The next guest to run: one of the tenant's that is furthest behind; `None` when none is ready. What a
    /// lender takes: it is not the runners' progress.
    pub(crate) fn pick(&self) -> Option<Arc<Job>> {
        self.pick_among(|_| true)
    }

    /// The next guest of a tenant alone to run: what a runner of normal priority takes.
    pub(crate) fn pick_alone(&self) -> Option<Arc<Job>> {
        self.pick_among(Share::alone).inspect(|_| self.progressed())
    }

    /// The next guest of a tenant beside others to run, in fair order: what a runner of the lowest priority
    /// takes. Never a tenant's alone: such a runner gives way to every busy process on the machine.
    pub(crate) fn pick_beside_others(&self) -> Option<Arc<Job>> {
        self.pick_among(|t| !t.alone()).inspect(|_| self.progressed())
    }

    fn pick_among(&self, eligible: impl Fn(&Share) -> bool) -> Option<Arc<Job>> {
        // Two threads may go for the same tenant's last guest; the one that misses looks again.
        for _ in 0..4 {
            let tenants = self.tenants.load();
            let best = tenants.iter().filter(|t| t.has_queued() && eligible(t)).min_by_key(|t| t.vtime())?;
            if let Some(job) = best.dequeue() {
                self.clock.fetch_max(best.vtime(), Ordering::AcqRel);
                job.share.waited_for_turn(job.queued_for());
                return Some(job);
            }
        }
        None
    }

    /// Whether the lane's runners have started or ended no slice for [`STARVED_AFTER`]: they get (next to) no
    /// CPU.
    pub(crate) fn starved(&self) -> bool {
        let last = Duration::from_nanos(self.progress.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last) >= STARVED_AFTER
    }

    /// A runner started or ended a slice.
    pub(crate) fn progressed(&self) {
        self.progress.store(self.now(), Ordering::Relaxed);
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the runners have left the lane to the lenders for now.
    pub(crate) fn contended(&self) -> bool {
        self.now() < self.contended_until.load(Ordering::Acquire)
    }

    /// A runner found itself kept from the CPU: runners start no slice for `how_long`, in which the lenders run
    /// the lane. (A slice a starved runner starts may wait long for its thread to run again, and nothing can
    /// take it over meanwhile.)
    pub(crate) fn runners_contended(&self, how_long: Duration) {
        let until = self.now().saturating_add(u64::try_from(how_long.as_nanos()).unwrap_or(u64::MAX));
        self.contended_until.fetch_max(until, Ordering::AcqRel);
    }

    /// A runner got the CPU on time again: runners take the lane back.
    pub(crate) fn runners_uncontended(&self) {
        self.contended_until.store(0, Ordering::Release);
    }

    /// Whether lenders should run slices now: the runners left the lane to them, or have run nothing lately.
    pub(crate) fn needs_lenders(&self) -> bool {
        self.contended() || self.starved()
    }

    /// Stops the lane: runners and lenders return, ready guests are dropped.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        for tenant in self.tenants.load().iter() {
            while let Some(job) = tenant.dequeue() {
                job.drop_run();
            }
        }
        self.nonempty.notify_waiters();
        self.starving.notify_waiters();
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::AppHistory;
    use crate::share::Shares;

    const MS: Duration = Duration::from_millis(1);

    fn lane() -> Arc<Lane> {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let lane = Arc::new(Lane::new(rt.handle().clone(), 1, Reaper::start().expect("reaper thread")));
        std::mem::forget(rt);
        lane
    }

    fn job(lane: &Arc<Lane>, share: &Arc<Share>) -> Arc<Job> {
        let job = Job::new(lane, share, &Arc::new(AppHistory::default()), Box::pin(async {}), 2);
        lane.enter(job.clone());
        job
    }

    /// Runs `slices` slices of `each`, every guest ready again at once; how many each got.
    fn contend(lane: &Arc<Lane>, jobs: &[&Arc<Job>], each: Duration, slices: usize) -> Vec<usize> {
        let mut got = vec![0; jobs.len()];
        for _ in 0..slices {
            let next = lane.pick().expect("a ready guest");
            let i = jobs.iter().position(|j| Arc::ptr_eq(j, &next)).expect("one of ours");
            got[i] += 1;
            next.charge(each);
            lane.send(next);
        }
        got
    }

    #[test]
    fn slices_go_to_the_tenant_furthest_behind() {
        let lane = lane();
        let shares = Shares::default();
        let (a, b) = (shares.share("a", 1), shares.share("b", 1));
        let (ja, jb) = (job(&lane, &a), job(&lane, &b));
        let first = lane.pick().expect("ready");
        first.charge(5 * MS);
        let other = if Arc::ptr_eq(&first, &ja) { &jb } else { &ja };
        lane.send(first.clone());
        assert!(Arc::ptr_eq(&lane.pick().expect("ready"), other), "the first used 5 ms: the other goes");
        other.charge(MS);
        lane.send(other.clone());
        assert!(Arc::ptr_eq(&lane.pick().expect("ready"), other), "still behind: the other again");
        assert!(Arc::ptr_eq(&lane.pick().expect("ready"), &first), "the other is not ready: the first goes");
        assert!(lane.pick().is_none());
    }

    #[test]
    fn shares_follow_weights() {
        let lane = lane();
        let shares = Shares::default();
        let (one, three) = (shares.share("one", 1), shares.share("three", 3));
        let (j1, j3) = (job(&lane, &one), job(&lane, &three));
        let got = contend(&lane, &[&j1, &j3], MS, 400);
        assert!((98..=102).contains(&got[0]), "one slice in four for weight 1 against 3: {got:?}");
        let again = job(&lane, &three);
        let got = contend(&lane, &[&j1, &j3, &again], MS, 400);
        assert!((98..=102).contains(&got[0]), "a tenant's share does not grow with its number of guests: {got:?}");
    }

    #[test]
    fn a_tenant_back_from_a_pause_has_no_credit() {
        let lane = lane();
        let shares = Shares::default();
        let (busy, idle) = (shares.share("busy", 1), shares.share("idle", 1));
        let jb = job(&lane, &busy);
        assert_eq!(contend(&lane, &[&jb], MS, 100), vec![100]);
        let ji = job(&lane, &idle);
        let got = contend(&lane, &[&jb, &ji], MS, 20);
        assert!(got[1] <= 11, "the newcomer shares from now on, without the 100 ms it missed: {got:?}");
    }

    #[test]
    fn foreground_time_counts_against_the_tenant() {
        let lane = lane();
        let shares = Shares::default();
        let (a, b) = (shares.share("a", 1), shares.share("b", 1));
        let (ja, jb) = (job(&lane, &a), job(&lane, &b));
        a.charge_foreground(10 * MS);
        let got = contend(&lane, &[&ja, &jb], MS, 30);
        assert!(got[1] >= 19, "b first makes up for a's foreground time: {got:?}");
    }

    #[test]
    fn a_lane_without_progress_is_starved() {
        let lane = lane();
        let share = Shares::default().share("t", 1);
        let job = job(&lane, &share);
        lane.progressed();
        assert!(!lane.starved(), "progress just now");
        std::thread::sleep(STARVED_AFTER * 2);
        assert!(lane.starved(), "no slice for a while");
        assert!(lane.pick().is_some());
        assert!(lane.starved(), "a lender's slice is not the runners' progress");
        lane.send(job.clone());
        assert!(lane.pick_beside_others().is_some());
        assert!(!lane.starved(), "a runner's slice started");
    }
}
