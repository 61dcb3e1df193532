//! The scheduler: the background lane, its runner threads, and [`Scheduler::run`].

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use crate::guest::Guest;
use crate::history::AppHistory;
use crate::job::{Job, Run};
use crate::lane::Lane;
use crate::reaper::Reaper;
use crate::share::{Share, Shares};

/// How the scheduler is set up.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Runner threads in the background lane (one per core by default): how many long guests run at once.
    pub threads: usize,
    /// Epoch ticks a request's guest may run through in the foreground before it is moved to the background
    /// lane. With 1 ms ticks, two let a guest run 1 to 2 ms there: guests that answer in microseconds never
    /// reach it. Past the first, a guest must also have used half a tick of CPU (`LONG_CPU`): one that a busy
    /// system preempted, however often, does not count as long.
    pub foreground_ticks: u32,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions { threads: std::thread::available_parallelism().map_or(1, usize::from), foreground_ticks: 2 }
    }
}

/// Runs guests so that tenants share the CPU fairly (see the crate documentation). Cloning is cheap.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("foreground_ticks", &self.inner.foreground_ticks).finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) foreground_ticks: u32,
    lane: Arc<Lane>,
    /// Drives the I/O and timers of guests in the background lane; shut down without waiting when the
    /// scheduler goes (a runtime may not be dropped in async code).
    io: Mutex<Option<tokio::runtime::Runtime>>,
}

impl Scheduler {
    /// Starts the background lane's runner threads, at the lowest priority the system allows, and a thread for
    /// its guests' I/O, where the accountant also looks at `shares` now and then to tell heavy tenants (see
    /// [`Share::heavy`]).
    pub fn start(options: &SchedulerOptions, shares: &Shares) -> std::io::Result<Scheduler> {
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("palisade-guest-io")
            .enable_all()
            .build()?;
        let lane = Arc::new(Lane::new(io.handle().clone(), options.threads, Reaper::start()?));
        io.spawn(accountant(shares.clone(), options.threads, lane.clone()));
        // The runners end when the lane stops; nothing waits for them.
        crate::runners::start(&lane, options.threads)?;
        Ok(Scheduler {
            inner: Arc::new(Inner {
                foreground_ticks: options.foreground_ticks.max(1),
                lane,
                io: Mutex::new(Some(io)),
            }),
        })
    }

    /// Runs `future`, a guest's work for one request of an app whose runs `history` records, charged to
    /// `share`'s tenant. It starts on the calling task unless the app's requests have run long lately, and
    /// moves to the background lane once it has run through the foreground's ticks.
    pub fn run<F>(&self, share: &Arc<Share>, history: &Arc<AppHistory>, future: F) -> Guest<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Guest::new(self.inner.clone(), share, history, Box::pin(future))
    }
}

/// Tells heavy tenants from light ones every [`crate::account::EVERY`], for as long as the scheduler runs.
async fn accountant(shares: Shares, cores: usize, lane: Arc<Lane>) {
    let mut interval = tokio::time::interval(crate::account::EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = std::time::Instant::now();
    loop {
        interval.tick().await;
        crate::account::account(&shares.held(), last.elapsed(), cores);
        last = std::time::Instant::now();
        lane.nudge_runners();
    }
}

impl Inner {
    /// Puts `run` in the background lane.
    pub(crate) fn spawn(&self, share: &Arc<Share>, history: &Arc<AppHistory>, run: Run) -> Arc<Job> {
        share.demoted();
        let job = Job::new(&self.lane, share, history, run, self.foreground_ticks);
        self.lane.enter(job.clone());
        job
    }

    /// Makes sure the calling thread's runtime lends slices to the lane when it starves.
    pub(crate) fn ensure_lender(&self) {
        crate::runners::ensure_lender(&self.lane);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.lane.stop();
        if let Some(io) = self.io.lock().unwrap_or_else(PoisonError::into_inner).take() {
            io.shutdown_background();
        }
    }
}
