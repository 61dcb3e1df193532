//! Spreading connections evenly over the workers.
//!
//! Every worker accepts on the same listening sockets, and whichever wakes first takes everything queued. A
//! burst of connections (a load balancer filling its pool, a client opening many at once) can therefore land
//! on one worker and keep a single core busy for the connections' whole life while the others idle. So the
//! worker that accepts a connection looks at how many each worker serves and, when it has more than
//! [`SLACK`] over the least loaded one, hands the connection to that worker: the socket moves from one event
//! loop to the other once, before its first byte is read, and its requests never cross threads afterwards.
//! (Seastar and HAProxy spread connections the same way.) Each worker's count is the
//! `palisade_open_connections` gauge.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

/// How many connections more than the least loaded worker a worker keeps before handing new ones over: with
/// none, connections opened one after another (no keep-alive) would move between threads half of the time.
const SLACK: usize = 1;

/// Open connections per worker, and each worker's inbox of connections handed to it.
pub(crate) struct Balance<T> {
    open: Box<[AtomicUsize]>,
    /// The same counts, as metrics (no-ops when no recorder is installed).
    gauges: Box<[metrics::Gauge]>,
    inboxes: Box<[mpsc::UnboundedSender<T>]>,
}

/// One connection counted against a worker until it is dropped.
pub(crate) struct Share<T> {
    balance: Arc<Balance<T>>,
    worker: usize,
}

impl<T> Balance<T> {
    /// A balance over `workers` workers (at least one), and each worker's inbox, in worker order.
    pub(crate) fn new(workers: usize) -> (Arc<Balance<T>>, Vec<mpsc::UnboundedReceiver<T>>) {
        let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..workers.max(1)).map(|_| mpsc::unbounded_channel()).unzip();
        let open = inboxes.iter().map(|_| AtomicUsize::new(0)).collect();
        let gauges = (0..inboxes.len())
            .map(|w| metrics::gauge!("palisade_open_connections", "worker" => w.to_string()))
            .collect();
        (Arc::new(Balance { open, gauges, inboxes: inboxes.into() }), receivers)
    }

    /// The worker to serve a connection that worker `here` accepted: `here`, unless it has more than
    /// [`SLACK`] connections over the least loaded one. The connection counts against that worker from now
    /// on, so a burst accepted at once is spread as it is taken.
    pub(crate) fn assign(self: &Arc<Self>, here: usize) -> Share<T> {
        let load = |w: usize| self.open.get(w).map_or(usize::MAX, |n| n.load(Ordering::Relaxed));
        let (least, fewest) = (0..self.open.len()).map(|w| (w, load(w))).min_by_key(|&(_, n)| n).unwrap_or((here, 0));
        let worker = if load(here) > fewest.saturating_add(SLACK) { least } else { here };
        if let (Some(n), Some(gauge)) = (self.open.get(worker), self.gauges.get(worker)) {
            n.fetch_add(1, Ordering::Relaxed);
            gauge.increment(1.0);
        }
        Share { balance: self.clone(), worker }
    }

    /// Puts `item` in `worker`'s inbox; gives it back if that worker has stopped.
    pub(crate) fn hand_over(&self, worker: usize, item: T) -> Result<(), T> {
        match self.inboxes.get(worker) {
            Some(inbox) => inbox.send(item).map_err(|e| e.0),
            None => Err(item),
        }
    }
}

impl<T> Share<T> {
    /// The worker this connection is counted against.
    pub(crate) fn worker(&self) -> usize {
        self.worker
    }
}

impl<T> Drop for Share<T> {
    fn drop(&mut self) {
        if let (Some(n), Some(gauge)) = (self.balance.open.get(self.worker), self.balance.gauges.get(self.worker)) {
            n.fetch_sub(1, Ordering::Relaxed);
            gauge.decrement(1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_accepted_by_one_worker_is_spread_evenly() {
        let (balance, _inboxes) = Balance::<()>::new(4);
        let shares: Vec<_> = (0..40).map(|_| balance.assign(0)).collect();
        let mut per_worker = [0; 4];
        for s in &shares {
            per_worker[s.worker()] += 1;
        }
        assert!(per_worker.iter().all(|&n| (9..=11).contains(&n)), "{per_worker:?}");
    }

    #[test]
    fn a_worker_keeps_its_connections_within_the_slack_and_closed_ones_are_uncounted() {
        let (balance, _inboxes) = Balance::<()>::new(2);
        let first = balance.assign(0);
        let second = balance.assign(0);
        assert_eq!((first.worker(), second.worker()), (0, 0), "one over the least loaded is within the slack");
        let third = balance.assign(0);
        assert_eq!(third.worker(), 1);
        drop((first, second));
        assert_eq!(balance.assign(0).worker(), 0, "closed connections no longer count");
    }

    #[test]
    fn a_connection_for_a_stopped_worker_comes_back() {
        let (balance, mut inboxes) = Balance::<u8>::new(2);
        assert_eq!(balance.hand_over(1, 7), Ok(()));
        assert_eq!(inboxes[1].try_recv().ok(), Some(7));
        inboxes.truncate(1);
        assert_eq!(balance.hand_over(1, 8), Err(8));
        assert_eq!(balance.hand_over(5, 9), Err(9));
    }
}
