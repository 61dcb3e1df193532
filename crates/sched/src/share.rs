//! A tenant's share of the CPU: its weight, and what its guests have used and waited.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::job::Job;

/// The largest weight a tenant may have (the smallest is 1).
pub const MAX_WEIGHT: u32 = 1000;

/// Virtual time units per nanosecond of CPU at weight 1: enough resolution at [`MAX_WEIGHT`] (a microsecond is
/// 16 units), and 36 years of a weight-1 tenant's CPU before a `u64` runs out.
const VIRTUAL_PER_NS: u64 = 16;

/// One tenant's share: its weight under contention, and counters of what its guests did.
///
/// The counters only grow, also across reloads: [`Shares::share`] hands out the same `Share` for a tenant's
/// name for as long as anything holds it.
#[derive(Debug)]
pub struct Share {
    name: Arc<str>,
    weight: AtomicU32,
    /// CPU time used by the tenant's guests in both lanes, in nanoseconds. The background lane folds it into
    /// the tenant's virtual time when it next looks at the tenant, so charging it costs no lock.
    cpu_ns: AtomicU64,
    /// The tenant's guests in the background lane now.
    lane_jobs: AtomicUsize,
    /// Its guests ready for a slice in the background lane.
    ready: (crossbeam_channel::Sender<Arc<Job>>, crossbeam_channel::Receiver<Arc<Job>>),
    /// Its virtual time is `lift` plus the CPU it used since `cpu_at_lift`, divided by its weight (see
    /// [`Share::vtime`]). Both are set when it comes back to the lane.
    lift: AtomicU64,
    cpu_at_lift: AtomicU64,
    /// Whether the lane lists it among the tenants it picks from.
    pub(crate) in_lane: AtomicBool,
    /// Time the tenant's guests waited for a background turn, in nanoseconds.
    wait_ns: AtomicU64,
    /// Guests moved to the background lane (or started there).
    demotions: AtomicU64,
    /// What the accountant saw: CPU used recently, in nanoseconds per second (smoothed), and `cpu_ns` when it
    /// last looked.
    recent: AtomicU64,
    seen: AtomicU64,
    /// Whether the tenant has recently used more than about half its fair share of the machine (see
    /// [`crate::account`]): only such a tenant's long guests run at the lowest priority.
    heavy: AtomicBool,
    /// Whether no other tenant was present at the accountant's last look: the tenant's long guests leave the
    /// connection workers for runners of normal priority, so that it can use every core.
    alone: AtomicBool,
    /// Set by each request that runs no guest (a static file, a proxied request): the tenant is there, with a
    /// claim on the machine, though its guests used nothing.
    requested: AtomicBool,
    /// Looks of the accountant for which the tenant still counts as present since it was last `requested`.
    present_for: AtomicU8,
}

impl Share {
    fn new(name: &str, weight: u32) -> Share {
        Share {
            name: name.into(),
            weight: AtomicU32::new(weight.clamp(1, MAX_WEIGHT)),
            cpu_ns: AtomicU64::new(0),
            lane_jobs: AtomicUsize::new(0),
            ready: crossbeam_channel::unbounded(),
            lift: AtomicU64::new(0),
            cpu_at_lift: AtomicU64::new(0),
            in_lane: AtomicBool::new(false),
            wait_ns: AtomicU64::new(0),
            demotions: AtomicU64::new(0),
            recent: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            heavy: AtomicBool::new(false),
            alone: AtomicBool::new(false),
            requested: AtomicBool::new(false),
            present_for: AtomicU8::new(0),
        }
    }

    /// The tenant's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tenant's weight: its share of the background lane relative to the others' when they compete.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// CPU time the tenant's guests have used since start-up.
    pub fn cpu_time(&self) -> Duration {
        Duration::from_nanos(self.cpu_ns.load(Ordering::Relaxed))
    }

    /// Time the tenant's guests have spent waiting for a turn in the background lane.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.wait_ns.load(Ordering::Relaxed))
    }

    /// How many guests have run in the background lane.
    pub fn demotions(&self) -> u64 {
        self.demotions.load(Ordering::Relaxed)
    }

    /// Whether the tenant's long guests run at the lowest priority: it has recently used more than about half
    /// its fair share of the machine's CPU (and another tenant is there).
    pub fn heavy(&self) -> bool {
        self.heavy.load(Ordering::Relaxed)
    }

    /// CPU its guests used recently, in nanoseconds per second, as the accountant last measured it.
    pub(crate) fn recent(&self) -> u64 {
        self.recent.load(Ordering::Relaxed)
    }

    /// The accountant's look: folds the CPU used since the last one, over `window`, into the recent rate.
    pub(crate) fn measure(&self, window: Duration) -> u64 {
        let now = self.cpu_ns();
        let used = now.saturating_sub(self.seen.swap(now, Ordering::Relaxed));
        let rate = u128::from(used) * 1_000_000_000 / window.as_nanos().max(1);
        let rate = u64::try_from(rate).unwrap_or(u64::MAX);
        // Half the last reading, half this one: a tenant that starts a flood is seen within a few looks.
        let recent = self.recent() / 2 + rate / 2;
        self.recent.store(recent, Ordering::Relaxed);
        recent
    }

    /// Notes a request of this tenant that runs no guest: connection work counts as the tenant being there, so
    /// a tenant flooding guests beside it is not alone on the machine (see [`crate::account`]). One load per
    /// request, and a store only when the accountant has looked since.
    pub fn note_request(&self) {
        if !self.requested.load(Ordering::Relaxed) {
            self.requested.store(true, Ordering::Relaxed);
        }
    }

    /// The accountant's look at requests: whether the tenant had any in its last few looks (200 ms), so a
    /// steady stream of them keeps it present across a gap of one look.
    pub(crate) fn present(&self) -> bool {
        /// Looks a request keeps the tenant present for.
        const LOOKS: u8 = 4;
        let left = if self.requested.swap(false, Ordering::Relaxed) {
            LOOKS
        } else {
            self.present_for.load(Ordering::Relaxed).saturating_sub(1)
        };
        self.present_for.store(left, Ordering::Relaxed);
        left > 0
    }

    pub(crate) fn set_heavy(&self, heavy: bool) {
        self.heavy.store(heavy, Ordering::Relaxed);
    }

    pub(crate) fn set_alone(&self, alone: bool) {
        self.alone.store(alone, Ordering::Relaxed);
    }

    /// Whether the tenant's long guests leave the connection worker they started on: a heavy tenant's make way
    /// for its neighbours (at the lowest priority), a tenant alone's spread over every core (at normal
    /// priority). A light tenant beside others keeps its long guests on their worker, giving way at every
    /// tick: at normal priority on threads of their own they would take whole cores from the neighbours'
    /// connections (ten tenants, each light for a moment in turn, took half the neighbour's rate that way).
    pub(crate) fn moves_long_guests(&self) -> bool {
        self.heavy() || self.alone()
    }

    /// Whether no other tenant was present at the accountant's last look.
    pub(crate) fn alone(&self) -> bool {
        self.alone.load(Ordering::Relaxed)
    }

    pub(crate) fn charge_foreground(&self, used: Duration) {
        self.cpu_ns.fetch_add(nanos(used), Ordering::Relaxed);
    }

    pub(crate) fn charge_background(&self, used: Duration) {
        self.cpu_ns.fetch_add(nanos(used), Ordering::Relaxed);
    }

    pub(crate) fn cpu_ns(&self) -> u64 {
        self.cpu_ns.load(Ordering::Relaxed)
    }

    pub(crate) fn lane_jobs(&self) -> usize {
        self.lane_jobs.load(Ordering::Acquire)
    }

    /// The tenant's virtual time: CPU used, scaled by [`MAX_WEIGHT`] over its weight (a weight-2 tenant's
    /// milliseconds count half), from where it was lifted when it last came back to the lane.
    pub(crate) fn vtime(&self) -> u64 {
        let used = self.cpu_ns().saturating_sub(self.cpu_at_lift.load(Ordering::Acquire));
        let scaled = u128::from(used) * u128::from(VIRTUAL_PER_NS) / u128::from(self.weight().max(1));
        self.lift.load(Ordering::Acquire).saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX))
    }

    /// Back in the lane: its virtual time is at least the lane's `clock` from now on, and what it used while
    /// away is forgiven.
    pub(crate) fn lift_to(&self, clock: u64) {
        let lifted = self.vtime().max(clock);
        self.cpu_at_lift.store(self.cpu_ns(), Ordering::Release);
        self.lift.store(lifted, Ordering::Release);
    }

    pub(crate) fn queue(&self, job: Arc<Job>) {
        // The share holds the receiver, so the channel never closes while it lives.
        let _ = self.ready.0.send(job);
    }

    pub(crate) fn dequeue(&self) -> Option<Arc<Job>> {
        self.ready.1.try_recv().ok()
    }

    pub(crate) fn has_queued(&self) -> bool {
        !self.ready.1.is_empty()
    }

    pub(crate) fn entered_lane(&self) {
        self.lane_jobs.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn left_lane(&self) {
        self.lane_jobs.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn waited_for_turn(&self, waited: Duration) {
        self.wait_ns.fetch_add(nanos(waited), Ordering::Relaxed);
    }

    pub(crate) fn demoted(&self) {
        self.demotions.fetch_add(1, Ordering::Relaxed);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Every tenant's [`Share`], by name. Clones see the same shares.
#[derive(Debug, Default, Clone)]
pub struct Shares {
    by_name: Arc<Mutex<HashMap<String, Weak<Share>>>>,
}

impl Shares {
    /// The share of tenant `name`, with `weight` (clamped to 1..=[`MAX_WEIGHT`]) from now on. While any holder
    /// keeps it, asking again for the same name (a reload building the tenant anew) returns the same share, so
    /// its counters and its place in the background lane carry over.
    pub fn share(&self, name: &str, weight: u32) -> Arc<Share> {
        let mut by_name = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(share) = by_name.get(name).and_then(Weak::upgrade) {
            share.weight.store(weight.clamp(1, MAX_WEIGHT), Ordering::Relaxed);
            return share;
        }
        // Shares nobody holds any more are dropped when the map has doubled since the last look, not at every
        // new name: ten thousand tenants would otherwise cost a hundred million looks at start-up.
        if by_name.len() >= 64 && by_name.len().is_power_of_two() {
            by_name.retain(|_, share| share.strong_count() > 0);
        }
        let share = Arc::new(Share::new(name, weight));
        by_name.insert(name.to_string(), Arc::downgrade(&share));
        share
    }

    /// Every share still held, by name.
    pub fn all(&self) -> Vec<Arc<Share>> {
        let mut all = self.held();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Every share still held, in no order (the accountant's look every 50 ms need not sort ten thousand names).
    pub(crate) fn held(&self) -> Vec<Arc<Share>> {
        let by_name = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        by_name.values().filter_map(Weak::upgrade).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_share_per_name_while_held() {
        let shares = Shares::default();
        let a = shares.share("a", 1);
        a.charge_foreground(Duration::from_millis(3));
        let again = shares.share("a", 5);
        assert!(Arc::ptr_eq(&a, &again), "a reload gets the same share");
        assert_eq!(a.weight(), 5, "with the new weight");
        assert_eq!(again.cpu_time(), Duration::from_millis(3));
        assert_eq!(shares.share("b", 0).weight(), 1, "weights are at least 1");
        assert_eq!(shares.share("c", 5000).weight(), MAX_WEIGHT);
        drop((a, again));
        let back = shares.share("a", 1);
        assert_eq!(back.cpu_time(), Duration::ZERO, "a tenant gone and back starts afresh");
        assert_eq!(shares.all().len(), 1, "only shares still held are listed");
    }
}
