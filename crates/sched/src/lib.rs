//! palisade's guest scheduler: tenants kept apart in time, as the sandbox keeps them apart in memory.
//!
//! Guest code runs in two lanes:
//!
//! - **Foreground**: a request's guest starts on the connection worker that received it, as before: no thread
//!   hop, warm instances, a hello component answered in tens of microseconds. Nearly every request of a
//!   well-behaved app ends here.
//! - **Background**: a guest that has run through [`SchedulerOptions::foreground_ticks`] epoch ticks (1 to 2
//!   ms of running; the ticks are where it gives way anyway; past the first, it must also have used half a
//!   tick of CPU, so a short guest the system preempted is not taken for a long one), and whose tenant is heavy (it used more than half
//!   its fair share of the machine lately, see [`Share::heavy`]), is moved, mid-run, to the background lane: its
//!   own threads, at the operating system's lowest priority (`SCHED_IDLE`), so a connection worker that has work
//!   takes the core back at once. A light tenant's slow guests stay in the foreground, giving way at every tick,
//!   unless the tenant is alone: then they move to runners of normal priority, because a connection worker keeps
//!   its connections to itself, and a long guest left on it could use only that worker's core (a tenant alone
//!   with more long guests than cores would leave a core idle). TLS, static files, proxying, the admin API and
//!   short guests never wait behind a long guest's slice. An app whose recent requests were mostly moved
//!   ([`AppHistory`]) starts its next ones there.
//!
//! In the background lane, guests take turns: its runner threads (one per core at each of the two priorities)
//! each run one slice of a ready guest at a time (until its next epoch yield or I/O wait), and the next slice
//! goes to the tenant that has used the least CPU for its [`Share`]'s weight, foreground time included
//! (start-time fair queuing, as Pisces and 2DFQ do between tenants), and within a tenant to its request that
//! has run the least. A tenant alone gets every core (work-conserving); two tenants flooding spinning guests
//! get CPU in the ratio of their weights.
//!
//! Lowest priority must not mean never: when the foreground keeps every core busy (a flood of short requests),
//! the runners get no CPU. Each connection worker then lends the lane slices (for at most about one tick)
//! once the runners have started or ended none for 10 ms, and pauses three times as long as it lent, so long
//! guests keep a floor of about a quarter of every core, and the foreground waits at most about one tick for
//! it, only while this lasts. (Runners that are merely slow, getting part of a core beside a busy neighbour,
//! are left to it: lending to them cost the neighbour's tail and gave the lane no more CPU.)
//!
//! A background guest's remains (its store, with the instance's memory, which can take the kernel a
//! millisecond or more to unmap) are dropped by a reaper thread of normal priority, charged to its tenant
//! ([`dispose`]), never in a slice on a lending connection worker or a lowest-priority runner.
//!
//! What it costs a request that stays in the foreground: one allocation (the guest's future is boxed so it can
//! move) and two clock readings per poll.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use palisade_sched::{AppHistory, Scheduler, SchedulerOptions, Shares};
//!
//! let shares = Shares::default();
//! let scheduler = Scheduler::start(&SchedulerOptions::default(), &shares).expect("threads");
//! let alice = shares.share("alice", 1);
//! let history = std::sync::Arc::new(AppHistory::default());
//! let answer = scheduler.run(&alice, &history, async { 6 * 7 }).await;
//! assert_eq!(answer.ok(), Some(42));
//! assert_eq!(alice.demotions(), 0, "a short guest stays in the foreground");
//! # }
//! ```

#![forbid(unsafe_code)]

mod account;
mod clock;
mod guest;
mod history;
mod job;
mod lane;
mod priority;
mod reaper;
mod runners;
mod scheduler;
mod share;

pub use guest::{Guest, GuestLost, tick_yield};
pub use history::AppHistory;
pub use reaper::dispose;
pub use scheduler::{Scheduler, SchedulerOptions};
pub use share::{MAX_WEIGHT, Share, Shares};
