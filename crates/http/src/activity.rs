//! When a connection last moved a byte, for idle timeouts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When a connection last moved a byte, for the idle timeout.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    /// A connection that moves its first byte now.
    pub fn new() -> Activity {
        Activity { started: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    /// Records that a byte moved now.
    pub fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the connection started.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Milliseconds from the connection's start to when it last moved a byte: a clock reading that costs no
    /// system call, as fresh as the last [`touch`](Activity::touch).
    pub fn last_moved_ms(&self) -> u64 {
        self.last_ms.load(Ordering::Relaxed)
    }

    /// When the connection had been open for `ms` milliseconds.
    pub fn instant_at(&self, ms: u64) -> Instant {
        self.started + Duration::from_millis(ms)
    }

    /// Completes once no byte has moved for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let deadline = self.instant_at(self.last_moved_ms()) + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}
