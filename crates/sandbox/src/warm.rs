//! Warm instances: an app's next instance, made ready before the request that will use it.
//!
//! Instantiating a component and tearing it down again are most of what a fresh instance per request costs:
//! wasmtime allocates, links and initialises each core instance, and resets its memory for the pool. Neither
//! needs the request. So once a worker has answered a request for an app, it drops that instance and
//! instantiates the app's next one, after the response has gone out; the next request for the app on that
//! worker only calls the guest. Each instance still serves exactly one request and is then thrown away:
//! nothing one request did is ever seen by another.
//!
//! This module is the bookkeeping, one [`WarmSet`] per worker thread: which apps have an instance waiting,
//! within bounds. It keeps at most [`PER_WORKER`] instances, one per app, and drops one that waited longer than
//! [`MAX_IDLE`] (a sweep does, on a worker that gets no more requests). An instance evicted before it served
//! anything was wasted work; its app then gets no warm instance on that worker for [`BACKOFF`], so a worker
//! serving many apps in turn stops making instances that would only be thrown away. An app whose instantiation
//! fails (or runs out of time) backs off the same way.

use std::time::{Duration, Instant};

/// Warm instances one worker thread keeps at most.
pub(crate) const PER_WORKER: usize = 4;
/// How long a warm instance may wait for its request before it is dropped.
pub(crate) const MAX_IDLE: Duration = Duration::from_secs(10);
/// How long an app whose warm instance was evicted unused gets none on that worker.
pub(crate) const BACKOFF: Duration = Duration::from_secs(1);

/// One worker's warm instances (`V`), by app id.
pub(crate) struct WarmSet<V> {
    /// Most recently made last.
    ready: Vec<(u64, V, Instant)>,
    /// Apps that wasted a warm instance, and since when.
    cold: Vec<(u64, Instant)>,
    /// Whether a task is already waiting to drop instances as they pass [`MAX_IDLE`].
    sweeping: bool,
}

impl<V> Default for WarmSet<V> {
    fn default() -> Self {
        WarmSet { ready: Vec::new(), cold: Vec::new(), sweeping: false }
    }
}

impl<V> WarmSet<V> {
    /// Takes the instance waiting for `app`, if there is one.
    pub(crate) fn take(&mut self, app: u64) -> Option<V> {
        let at = self.ready.iter().position(|(id, _, _)| *id == app)?;
        Some(self.ready.remove(at).1)
    }

    /// Whether a warm instance for `app` should be made now: it has none, and has not wasted one lately.
    pub(crate) fn wants(&mut self, app: u64, now: Instant) -> bool {
        self.cold.retain(|(_, since)| now.duration_since(*since) < BACKOFF);
        !self.ready.iter().any(|(id, _, _)| *id == app) && !self.cold.iter().any(|(id, _)| *id == app)
    }

    /// Records that making a warm instance for `app` failed: it gets none on this worker for [`BACKOFF`]
    /// (the request that instantiates next reports the failure).
    pub(crate) fn failed(&mut self, app: u64, now: Instant) {
        self.cold.push((app, now));
    }

    /// Keeps `instance` for `app`'s next request. Returns what no longer fits or waited too long, for the
    /// caller to drop (outside any borrow of the set).
    pub(crate) fn put(&mut self, app: u64, instance: V, now: Instant) -> Vec<V> {
        let mut dropped: Vec<V> =
            self.ready.extract_if(.., |(id, _, made)| *id == app || stale(*made, now)).map(|(_, v, _)| v).collect();
        if self.ready.len() >= PER_WORKER {
            let (id, v, _) = self.ready.remove(0);
            self.cold.push((id, now));
            dropped.push(v);
        }
        self.ready.push((app, instance, now));
        dropped
    }

    /// Whether the caller should start the sweep (see [`WarmSet::sweep`]): true once while instances wait and
    /// no sweep runs, so an idle worker still lets them go at [`MAX_IDLE`] rather than at its next request.
    pub(crate) fn start_sweep(&mut self) -> bool {
        let start = !self.sweeping && !self.ready.is_empty();
        self.sweeping |= start;
        start
    }

    /// One step of the sweep at `now`: what waited [`MAX_IDLE`], for the caller to drop, and when to step
    /// again; `None` once nothing waits (the sweep is over, and the next [`WarmSet::start_sweep`] says so).
    pub(crate) fn sweep(&mut self, now: Instant) -> (Vec<V>, Option<Instant>) {
        let expired = self.ready.extract_if(.., |(_, _, made)| stale(*made, now)).map(|(_, v, _)| v).collect();
        let next = self.ready.iter().map(|(_, _, made)| *made + MAX_IDLE).min();
        self.sweeping = next.is_some();
        (expired, next)
    }
}

/// Whether an instance made at `made` has waited [`MAX_IDLE`] by `now`.
fn stale(made: Instant, now: Instant) -> bool {
    now.duration_since(made) >= MAX_IDLE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_app_bounded_with_backoff_for_waste() {
        let now = Instant::now();
        let mut set = WarmSet::default();
        assert!(set.wants(1, now));
        assert!(set.put(1, "a", now).is_empty());
        assert!(!set.wants(1, now), "one warm instance per app");
        assert_eq!(set.take(1), Some("a"));
        assert_eq!(set.take(1), None, "each instance is taken once");

        for app in 1..=PER_WORKER as u64 {
            assert!(set.put(app, "x", now).is_empty());
        }
        assert_eq!(set.put(99, "y", now), vec!["x"], "the oldest is evicted when full");
        assert_eq!(set.take(1), None);
        assert!(!set.wants(1, now), "an app that wasted an instance waits");
        assert!(set.wants(1, now + BACKOFF), "... for BACKOFF");

        set.failed(7, now);
        assert!(!set.wants(7, now), "an app that failed to instantiate waits too");
    }

    #[test]
    fn the_sweep_drops_what_waited_too_long_and_ends_when_nothing_waits() {
        let now = Instant::now();
        let mut set = WarmSet::default();
        assert!(!set.start_sweep(), "nothing waits: no sweep");
        assert!(set.put(1, "a", now).is_empty());
        assert!(set.start_sweep());
        assert!(!set.start_sweep(), "one sweep at a time");
        assert!(set.put(2, "b", now + BACKOFF).is_empty());
        assert_eq!(set.sweep(now), (vec![], Some(now + MAX_IDLE)));
        assert_eq!(set.sweep(now + MAX_IDLE), (vec!["a"], Some(now + BACKOFF + MAX_IDLE)));
        assert_eq!(set.take(2), Some("b"));
        assert_eq!(set.sweep(now + MAX_IDLE), (vec![], None), "nothing left: the sweep ends");
        assert!(set.put(3, "c", now).is_empty());
        assert!(set.start_sweep(), "and the next instance starts it again");
    }

    #[test]
    fn instances_that_waited_too_long_are_dropped() {
        let now = Instant::now();
        let mut set = WarmSet::default();
        assert!(set.put(1, "old", now).is_empty());
        assert_eq!(set.put(2, "new", now + MAX_IDLE), vec!["old"]);
        assert_eq!(set.take(1), None);
        assert!(set.wants(1, now + MAX_IDLE), "expiry is not waste");
        assert_eq!(set.take(2), Some("new"));
    }
}
