//! Work that outlives the request that started it but belongs to its connection (a proxied WebSocket
//! tunnel): spawned on the connection's worker and waited for when the server drains, like a connection.

use std::cell::RefCell;

use tokio_util::task::TaskTracker;

thread_local! {
    /// The tracker of the worker running on this thread, if the server installed one.
    static LINGERING: RefCell<Option<TaskTracker>> = const { RefCell::new(None) };
}

/// Makes `tracker` the one [`spawn`] uses on this thread (a server worker does, when it starts).
pub fn install(tracker: TaskTracker) {
    LINGERING.with(|l| *l.borrow_mut() = Some(tracker));
}

/// Spawns `task` on the current runtime, tracked by this thread's worker if there is one, so that a stopping
/// server lets it finish (within its shutdown timeout) instead of cutting it.
pub fn spawn<F>(task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let tracker = LINGERING.with(|l| l.borrow().clone());
    match tracker {
        Some(tracker) => drop(tracker.spawn(task)),
        None => drop(tokio::spawn(task)),
    }
}
