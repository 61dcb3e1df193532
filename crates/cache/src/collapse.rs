//! Collapsed forwarding: concurrent misses for one URL make one request to the origin. The first request
//! leads; the others wait until it is done (or gone, or [`crate::COLLAPSE_WAIT`] has passed) and then look
//! again, finding what it stored or, when it stored nothing, going on their own, all at once rather than one
//! after the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

/// The fetches in flight, by key.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    fetches: Mutex<HashMap<String, watch::Receiver<()>>>,
}

/// A request's turn for a key.
pub(crate) enum Turn {
    /// Fetch; the others wait until this is dropped.
    Lead(Leader),
    /// Another request is fetching: wait for it.
    Wait(watch::Receiver<()>),
}

/// The request fetching a key. Dropping it (done, failed or cancelled) wakes the waiters.
pub(crate) struct Leader {
    inflight: Arc<InFlight>,
    key: String,
    _done: watch::Sender<()>,
}

impl InFlight {
    /// Leads the fetch of `key`, or waits for the one in flight.
    pub(crate) fn turn(self: &Arc<Self>, key: &str) -> Turn {
        let mut fetches = self.fetches.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(done) = fetches.get(key) {
            return Turn::Wait(done.clone());
        }
        let (tx, rx) = watch::channel(());
        fetches.insert(key.to_string(), rx);
        Turn::Lead(Leader { inflight: self.clone(), key: key.to_string(), _done: tx })
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.inflight.fetches.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.key);
    }
}

/// Waits until the leader of `done` is dropped, or `limit` passes.
pub(crate) async fn wait(mut done: watch::Receiver<()>, limit: Duration) {
    // The leader never sends: `changed` returns once its sender is dropped.
    let _ = tokio::time::timeout(limit, done.changed()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leads_the_others_wait_until_it_is_done() {
        let inflight = Arc::new(InFlight::default());
        let Turn::Lead(leader) = inflight.turn("k") else { panic!("the first leads") };
        let Turn::Wait(done) = inflight.turn("k") else { panic!("the second waits") };
        assert!(matches!(inflight.turn("other"), Turn::Lead(_)));
        let waiter = tokio::spawn(wait(done, Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(leader);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.expect("woken").expect("joined");
        assert!(matches!(inflight.turn("k"), Turn::Lead(_)), "the next request leads again");
    }
}
