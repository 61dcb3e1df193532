//! How long a request's guest instance ran, for the access log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The clock of one guest instance: started when the instance is created, stopped when it is dropped.
///
/// Guest handlers put it in their response's extensions; the access log reads it when the response is done.
/// The instance may still be running then (it streams its body), so [`InstanceTime::micros`] is the time so
/// far until it is stopped.
#[derive(Debug, Clone)]
pub struct InstanceTime(Arc<Clock>);

#[derive(Debug)]
struct Clock {
    started: Instant,
    /// Microseconds the instance ran, plus one (zero: still running).
    stopped: AtomicU64,
}

impl InstanceTime {
    /// Starts a clock now.
    pub fn start() -> InstanceTime {
        InstanceTime(Arc::new(Clock { started: Instant::now(), stopped: AtomicU64::new(0) }))
    }

    /// Stops the clock (only the first call counts).
    pub fn stop(&self) {
        let ran = u64::try_from(self.0.started.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        let _ = self.0.stopped.compare_exchange(0, ran + 1, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Microseconds the instance ran (so far, if it has not stopped).
    pub fn micros(&self) -> u64 {
        match self.0.stopped.load(Ordering::Acquire) {
            0 => u64::try_from(self.0.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            n => n - 1,
        }
    }
}
