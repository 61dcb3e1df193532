//! The background lane's threads run at the operating system's lowest priority.
//!
//! On Linux that is `SCHED_IDLE`: such a thread runs only when no ordinary thread wants its core, and an
//! ordinary thread that wakes up (a connection worker with a request to read) preempts it at once, without
//! waiting for the end of a time slice. Where that policy cannot be set, the thread's nice value is raised to
//! 19 instead, which gives it about 1.5 % of a core against an ordinary thread.

/// Lowers the calling thread's priority; says what it did, or why it could not.
pub(crate) fn lower_current_thread() -> Result<&'static str, String> {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    match set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle) {
        Ok(()) => Ok("SCHED_IDLE"),
        // Linux keeps a nice value per thread: this thread's id changes only this thread.
        Err(idle_error) => rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19)
            .map(|()| "nice 19")
            .map_err(|e| format!("neither SCHED_IDLE ({idle_error:?}) nor nice 19 ({e})")),
    }
}
