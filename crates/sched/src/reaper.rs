//! Where the background lane's guests leave what they drop last: a thread of normal priority frees it.
//!
//! Tearing an instance down frees its memory, which for a guest that grew takes the kernel a millisecond or
//! more (unmapping its pages), and nothing can cut that short. Done in a slice, it would run on a connection
//! worker lending the lane CPU (its connections waiting that long), or on a runner at the lowest priority,
//! which the system may preempt in the middle of it while it holds the address space's locks that every other
//! thread's page faults and mappings need. The reaper is one ordinary thread: the system shares the CPU between
//! it and the connection workers as between any threads, and the time it spends is charged to the guest's
//! tenant.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::clock::thread_cpu_time;
use crate::share::Share;

/// Something to drop, and the tenant to charge for dropping it.
struct Remains {
    what: Box<dyn Send>,
    share: Arc<Share>,
}

/// The reaper's queue; its thread ends when the last sender is gone.
#[derive(Clone)]
pub(crate) struct Reaper {
    queue: Sender<Remains>,
}

impl Reaper {
    pub(crate) fn start() -> std::io::Result<Reaper> {
        let (queue, remains) = crossbeam_channel::unbounded();
        std::thread::Builder::new().name("palisade-reaper".into()).spawn(move || reap(&remains))?;
        Ok(Reaper { queue })
    }

    /// Has `what` dropped on the reaper's thread, charged to `share`'s tenant.
    pub(crate) fn take<T: Send + 'static>(&self, what: T, share: &Arc<Share>) {
        let remains = Remains { what: Box::new(what), share: share.clone() };
        // The reaper is gone only while the process stops: dropped here then.
        drop(self.queue.send(remains));
    }
}

fn reap(remains: &Receiver<Remains>) {
    for Remains { what, share } in remains {
        let start = thread_cpu_time();
        // A drop that panics must not end the reaper: every later guest's remains would be dropped where they
        // were left, in slices, without a word.
        if std::panic::catch_unwind(AssertUnwindSafe(|| drop(what))).is_err() {
            tracing::error!(tenant = %share.name(), "dropping a guest's remains panicked");
        }
        share.charge_background(thread_cpu_time().saturating_sub(start));
    }
}

thread_local! {
    /// Set while this thread runs a background slice: whose guest it is, and where its remains go.
    static IN_SLICE: RefCell<Option<(Reaper, Arc<Share>)>> = const { RefCell::new(None) };
}

/// Marks the calling thread as running a background slice of `share`'s guest until dropped.
pub(crate) struct InSlice(());

impl InSlice {
    pub(crate) fn enter(reaper: &Reaper, share: &Arc<Share>) -> InSlice {
        IN_SLICE.with(|s| *s.borrow_mut() = Some((reaper.clone(), share.clone())));
        InSlice(())
    }
}

impl Drop for InSlice {
    fn drop(&mut self) {
        IN_SLICE.with(|s| s.borrow_mut().take());
    }
}

/// Drops `value`: here, unless the caller is a guest running in the background lane, whose remains (its store,
/// with the instance's memory) go to the reaper thread instead, charged to its tenant (see the module's
/// documentation). A guest in the foreground drops them on its connection worker after its response has gone
/// out, as before: small, and the warm instance after it needs the slot.
pub fn dispose<T: Send + 'static>(value: T) {
    IN_SLICE.with(|s| match &*s.borrow() {
        Some((reaper, share)) => reaper.take(value, share),
        None => drop(value),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::Shares;

    /// Records the thread that dropped it.
    struct Witness(Sender<Option<String>>);

    impl Drop for Witness {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().name().map(str::to_string));
        }
    }

    #[test]
    fn a_slice_leaves_its_remains_to_the_reaper_and_others_drop_them_at_once() {
        let reaper = Reaper::start().expect("thread");
        let share = Shares::default().share("t", 1);
        let (tx, rx) = crossbeam_channel::unbounded();
        dispose(Witness(tx.clone()));
        assert_eq!(rx.recv().expect("dropped"), std::thread::current().name().map(str::to_string));
        {
            let _slice = InSlice::enter(&reaper, &share);
            dispose(Witness(tx.clone()));
        }
        let by = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("dropped by the reaper");
        assert_eq!(by.as_deref(), Some("palisade-reaper"));
        dispose(Witness(tx));
        assert_eq!(rx.recv().expect("dropped"), std::thread::current().name().map(str::to_string));
    }

    /// Panics when dropped.
    struct Bomb;

    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("a drop that panics");
        }
    }

    #[test]
    fn a_drop_that_panics_leaves_the_reaper_running() {
        let reaper = Reaper::start().expect("thread");
        let share = Shares::default().share("t", 1);
        let (tx, rx) = crossbeam_channel::unbounded();
        reaper.take(Bomb, &share);
        // Dropped after the bomb, on the reaper's thread either way (a dying thread's queue drops what it held).
        reaper.take(Witness(tx.clone()), &share);
        rx.recv_timeout(std::time::Duration::from_secs(5)).expect("dropped after the bomb");
        // Sent once the bomb has gone off: a reaper that died would leave it to be dropped here.
        reaper.take(Witness(tx), &share);
        let by = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("dropped");
        assert_eq!(by.as_deref(), Some("palisade-reaper"));
    }
}
