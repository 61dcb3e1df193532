//! The CPU time a thread has run, for charging background slices.
//!
//! A background thread runs at the lowest priority, so the wall time of a slice includes whatever preempted it;
//! the thread's own CPU clock does not. It costs a system call (no vDSO for this clock), which is nothing
//! against a slice of a millisecond, so the foreground, where polls take microseconds, reads the wall clock.

use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};

/// CPU time the calling thread has used since it started.
pub(crate) fn thread_cpu_time() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(t.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinning_advances_the_thread_clock_and_sleeping_does_not() {
        let before = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(30));
        let slept = thread_cpu_time() - before;
        assert!(slept < Duration::from_millis(15), "sleeping used {slept:?}");
        let start = std::time::Instant::now();
        let before = thread_cpu_time();
        while start.elapsed() < Duration::from_millis(20) {
            std::hint::spin_loop();
        }
        assert!(thread_cpu_time() - before >= Duration::from_millis(5), "spinning is counted");
    }
}
