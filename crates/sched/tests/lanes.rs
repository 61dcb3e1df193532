//! The scheduler with real threads: a heavy tenant's spinning guests are moved to the background lane, share
//! it by weight, and stop when asked; a light tenant's stay in the foreground, unless it is alone: then they
//! go to runners of normal priority, free to use every core.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use palisade_sched::{AppHistory, Scheduler, SchedulerOptions, Share, Shares, tick_yield};

/// A guest that runs for `cpu` in slices of `slice`, yielding between them as guests do at epoch ticks.
async fn spin(cpu: Duration, slice: Duration) -> Duration {
    spin_calling(cpu, slice, || {}).await
}

/// [`spin`], calling `each` at the start of every slice; returns the time it ran.
async fn spin_calling(cpu: Duration, slice: Duration, mut each: impl FnMut() + Send) -> Duration {
    let mut ran = Duration::ZERO;
    while ran < cpu {
        each();
        let start = Instant::now();
        while start.elapsed() < slice {
            std::hint::spin_loop();
        }
        ran += slice;
        tick_yield().await;
    }
    ran
}

fn scheduler(threads: usize, shares: &Shares) -> Scheduler {
    Scheduler::start(&SchedulerOptions { threads, foreground_ticks: 2 }, shares).expect("threads")
}

/// One test at a time: each measures what its guests get of the machine, which the others' spinning would take.
static MACHINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Another tenant, present while this is held: its requests (static files, say) arrive every 10 ms from a
/// thread of its own. Its weight of 20 makes a spinning tenant's fair share a twentieth of the machine or less,
/// so that one is heavy whenever it spins at all, however much of the CPU other processes take.
struct Neighbour {
    gone: Arc<AtomicBool>,
}

impl Neighbour {
    fn arrive(shares: &Shares) -> Neighbour {
        let share = shares.share("a-neighbour", 20);
        let gone = Arc::new(AtomicBool::new(false));
        let flag = gone.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                share.note_request();
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Neighbour { gone }
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        self.gone.store(true, Ordering::Relaxed);
    }
}

/// Spins as `share`'s tenant (with an app of its own) until the scheduler finds it heavy, which it does within
/// a few of the accountant's looks while a [`Neighbour`] is there.
async fn make_heavy(scheduler: &Scheduler, share: &Arc<Share>) {
    let history = Arc::new(AppHistory::default());
    let start = Instant::now();
    while !share.heavy() {
        assert!(start.elapsed() < Duration::from_secs(10), "a tenant spinning beside another is heavy");
        let _ = scheduler.run(share, &history, spin(Duration::from_millis(2), Duration::from_millis(1))).await;
    }
}

/// What the tests of a heavy tenant start from, one test at a time: a scheduler with one runner of each kind,
/// and tenant `t`, found heavy beside a [`Neighbour`] for as long as this is held.
struct Heavy {
    scheduler: Scheduler,
    share: Arc<Share>,
    _neighbour: Neighbour,
    _machine: tokio::sync::MutexGuard<'static, ()>,
}

async fn heavy_tenant() -> Heavy {
    let machine = MACHINE.lock().await;
    let shares = Shares::default();
    let scheduler = scheduler(1, &shares);
    let share = shares.share("t", 1);
    let neighbour = Neighbour::arrive(&shares);
    make_heavy(&scheduler, &share).await;
    Heavy { scheduler, share, _neighbour: neighbour, _machine: machine }
}

/// The names of the threads a guest ran on, one per slice of `slice` until it has run for `cpu`.
async fn spin_noting_threads(cpu: Duration, slice: Duration) -> Vec<String> {
    let mut threads = Vec::new();
    spin_calling(cpu, slice, || threads.push(std::thread::current().name().unwrap_or("unnamed").to_owned())).await;
    threads
}

#[tokio::test(flavor = "current_thread")]
async fn a_light_tenants_long_guest_beside_others_stays_in_the_foreground() {
    let _machine = MACHINE.lock().await;
    let shares = Shares::default();
    let scheduler = scheduler(1, &shares);
    let share = shares.share("t", 1);
    let neighbour = shares.share("files", 1);
    let history = Arc::new(AppHistory::default());
    // The accountant's first looks see the neighbour there.
    neighbour.note_request();
    tokio::time::sleep(Duration::from_millis(120)).await;
    for _ in 0..8 {
        neighbour.note_request();
        let long = scheduler.run(&share, &history, spin(Duration::from_millis(3), Duration::from_millis(1)));
        assert!(!long.in_background());
        assert_eq!(long.await.ok(), Some(Duration::from_millis(3)));
        // Well under its share of the machine.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(!share.heavy());
    assert_eq!(share.demotions(), 0, "a tenant using little of the machine keeps its slow guests in the foreground");
}

#[tokio::test(flavor = "current_thread")]
async fn a_tenant_alone_has_its_long_guests_leave_the_worker_at_normal_priority() {
    let _machine = MACHINE.lock().await;
    let shares = Shares::default();
    let scheduler = scheduler(1, &shares);
    let share = shares.share("t", 1);
    let history = Arc::new(AppHistory::default());
    // The accountant's first looks: no other tenant is there.
    tokio::time::sleep(Duration::from_millis(120)).await;
    let worker = std::thread::current().name().unwrap_or("unnamed").to_owned();
    let long = scheduler.run(&share, &history, spin_noting_threads(Duration::from_millis(8), Duration::from_millis(1)));
    assert!(!long.in_background(), "every app starts on the worker");
    let threads = long.await.expect("an answer");
    assert!(!share.heavy(), "alone: light");
    assert_eq!(share.demotions(), 1, "moved once it had used its ticks on the worker");
    assert_eq!(threads[0], worker, "its first slice ran where it started: {threads:?}");
    assert!(
        threads.iter().any(|t| t.starts_with("palisade-alone-")),
        "then on a runner of normal priority, free to use another core: {threads:?}"
    );
    assert!(
        !threads.iter().any(|t| t.starts_with("palisade-guest-")),
        "never on a runner of the lowest priority, which a busy machine could keep from the CPU: {threads:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_heavy_tenants_long_guest_moves_to_the_background_and_its_app_starts_there_next() {
    let Heavy { scheduler, share, .. } = &heavy_tenant().await;
    let demoted = share.demotions();
    let history = Arc::new(AppHistory::default());
    let short = scheduler.run(share, &history, async { 1 });
    assert!(!short.in_background());
    assert_eq!(short.await.ok(), Some(1));
    assert_eq!(share.demotions(), demoted, "a short guest stays in the foreground");

    let long = scheduler.run(share, &history, spin(Duration::from_millis(5), Duration::from_millis(1)));
    assert!(!long.in_background(), "every app starts in the foreground");
    assert_eq!(long.await.ok(), Some(Duration::from_millis(5)));
    assert_eq!(share.demotions(), demoted + 1, "moved once it had used its foreground slice");
    assert!(share.cpu_time() >= Duration::from_millis(4), "both lanes' CPU is counted: {:?}", share.cpu_time());

    // Long runs: each uses half a tick of CPU past its first tick, also on a busy machine.
    for _ in 0..3 {
        let _ = scheduler.run(share, &history, spin(Duration::from_millis(5), Duration::from_millis(1))).await;
    }
    make_heavy(scheduler, share).await;
    let next = scheduler.run(share, &history, async { 2 });
    assert!(next.in_background(), "four long runs of eight: the next starts in the background");
    assert_eq!(next.await.ok(), Some(2));
}

#[tokio::test(flavor = "current_thread")]
async fn a_short_guest_kept_from_its_core_across_ticks_stays_in_the_foreground() {
    let Heavy { scheduler, share, .. } = &heavy_tenant().await;
    let demoted = share.demotions();
    let history = Arc::new(AppHistory::default());
    for _ in 0..8 {
        // It gives way at three ticks, as a guest whose thread the system preempted would, having used next to
        // no CPU.
        let preempted = scheduler.run(share, &history, async {
            for _ in 0..3 {
                tick_yield().await;
            }
            7
        });
        assert_eq!(preempted.await.ok(), Some(7));
    }
    assert_eq!(share.demotions(), demoted, "ticks without the CPU to go with them do not make a guest long");
    make_heavy(scheduler, share).await;
    let next = scheduler.run(share, &history, async { 8 });
    assert!(!next.in_background(), "its app's requests ran short: the next starts in the foreground");
    assert_eq!(next.await.ok(), Some(8));
}

#[tokio::test(flavor = "current_thread")]
async fn tenants_share_the_background_lane_by_weight() {
    let _machine = MACHINE.lock().await;
    let shares = Shares::default();
    let scheduler = scheduler(1, &shares);
    let (light, heavy) = (shares.share("light", 1), shares.share("heavy", 3));
    let history = Arc::new(AppHistory::default());
    // Neither is ever alone, so both start on the test's thread and move to the lane only once heavy.
    let _neighbour = Neighbour::arrive(&shares);
    tokio::time::sleep(Duration::from_millis(120)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let guest = |share: &Arc<Share>| {
        let stop = stop.clone();
        scheduler.run(share, &history, async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = spin(Duration::from_millis(1), Duration::from_millis(1)).await;
            }
        })
    };
    // Two guests each, all spinning: the lane's one thread is contended all along.
    let guests: Vec<_> = [&light, &light, &heavy, &heavy].into_iter().map(guest).collect();
    let running = tokio::spawn(futures::future::join_all(guests));
    // They start in the foreground, and move once the scheduler finds both tenants heavy.
    let start = Instant::now();
    while light.demotions() < 2 || heavy.demotions() < 2 {
        assert!(start.elapsed() < Duration::from_secs(10), "both use more than half their share");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Their foreground CPU counts too: the heavy tenant, having used no more than the light one there, first
    // gets the lane to itself until their virtual times are even. From the light one's next slice on, they
    // share by weight. (On a busy machine, where the lane gets little CPU, evening out takes a while.)
    let even = light.cpu_time();
    while light.cpu_time() == even {
        assert!(start.elapsed() < Duration::from_secs(20), "the light tenant runs in the lane too");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (l0, h0) = (light.cpu_time(), heavy.cpu_time());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (l, h) = (light.cpu_time() - l0, heavy.cpu_time() - h0);
    stop.store(true, Ordering::Relaxed);
    let _ = running.await;
    let ratio = h.as_secs_f64() / l.as_secs_f64().max(1e-9);
    assert!((2.0..4.5).contains(&ratio), "weight 3 against 1: heavy {h:?}, light {l:?} ({ratio:.2}x)");
    assert!(light.waited() > Duration::ZERO && heavy.waited() > Duration::ZERO, "both waited for turns");
}

#[tokio::test(flavor = "current_thread")]
async fn stopping_a_background_guest_waits_until_it_is_gone() {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let Heavy { scheduler, share, .. } = &heavy_tenant().await;
    let history = Arc::new(AppHistory::default());
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Flag(dropped.clone());
    let mut guest = scheduler.run(share, &history, async move {
        let _flag = flag;
        spin(Duration::from_secs(60), Duration::from_millis(1)).await
    });
    assert!(tokio::time::timeout(Duration::from_millis(50), &mut guest).await.is_err());
    assert!(guest.in_background());
    guest.stop().await;
    assert!(dropped.load(Ordering::SeqCst), "the guest's future was dropped before stop returned");
}

#[tokio::test(flavor = "current_thread")]
async fn when_the_lane_gets_no_cpu_the_foreground_lends_it_slices() {
    let Heavy { scheduler, share, .. } = &heavy_tenant().await;
    let history = Arc::new(AppHistory::default());
    for _ in 0..4 {
        let _ = scheduler.run(share, &history, spin(Duration::from_millis(5), Duration::from_millis(1))).await;
    }
    // The lane's only runner is held by a guest that never gives way (as a runner starved of CPU would be).
    // Should a connection worker lend it a slice first (the runner being kept from the CPU by other processes),
    // it gives way there until the runner takes it.
    make_heavy(scheduler, share).await;
    let held = Arc::new(AtomicBool::new(false));
    let holding = held.clone();
    let hog = scheduler.run(share, &history, async move {
        while !std::thread::current().name().is_some_and(|n| n.starts_with("palisade-guest-")) {
            tick_yield().await;
        }
        holding.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1500));
    });
    assert!(hog.in_background());
    let hog = tokio::spawn(hog);
    let start = Instant::now();
    while !held.load(Ordering::Relaxed) {
        assert!(start.elapsed() < Duration::from_secs(10), "the runner takes the guest");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    make_heavy(scheduler, share).await;
    let started = Instant::now();
    let waiting = scheduler.run(share, &history, spin(Duration::from_millis(10), Duration::from_millis(1)));
    assert!(waiting.in_background());
    assert_eq!(waiting.await.ok(), Some(Duration::from_millis(10)));
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1000), "lent slices finished it while the runner was held: {took:?}");
    let _ = hog.await;
}
