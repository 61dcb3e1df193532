//! A route's upstream servers: which are usable, and which one takes the next request.
//!
//! An upstream is usable while its last health check passed (when checks are configured) and it is not
//! ejected. A failed connection ejects it for [`EJECTION`] (passive health checking, as nginx's
//! `max_fails=1 fail_timeout`); a passing health check ends an ejection early. When no upstream is usable,
//! all of them are tried anyway: refusing every request outright would turn a flapping health check into an
//! outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::uri::Authority;
use palisade_config::{Balance, Upstream};

/// How long a connection failure takes an upstream out of rotation.
pub(crate) const EJECTION: Duration = Duration::from_secs(10);

/// One upstream and what is known about it.
pub(crate) struct UpstreamState {
    /// As configured, for logs.
    pub(crate) config: Upstream,
    /// `host:port`, for request URIs.
    pub(crate) authority: Authority,
    in_flight: AtomicUsize,
    /// The last health check passed (true until a check says otherwise).
    healthy: AtomicBool,
    /// Milliseconds after `Upstreams::epoch` until which the upstream is ejected (0: not ejected).
    ejected_until: AtomicU64,
}

/// All upstreams of one proxy route.
pub(crate) struct Upstreams {
    list: Vec<UpstreamState>,
    balance: Balance,
    next: AtomicUsize,
    epoch: Instant,
}

/// An upstream chosen for one request; counted as in flight until dropped.
pub(crate) struct Picked {
    upstreams: Arc<Upstreams>,
    index: usize,
}

impl Upstreams {
    /// The upstreams of a route; an upstream whose address is not a valid authority is an error.
    pub(crate) fn new(upstreams: &[Upstream], balance: Balance) -> Result<Upstreams, http::uri::InvalidUri> {
        let list = upstreams
            .iter()
            .map(|u| {
                let host = if u.host.contains(':') { format!("[{}]", u.host) } else { u.host.clone() };
                Ok(UpstreamState {
                    config: u.clone(),
                    authority: Authority::try_from(format!("{host}:{}", u.port))?,
                    in_flight: AtomicUsize::new(0),
                    healthy: AtomicBool::new(true),
                    ejected_until: AtomicU64::new(0),
                })
            })
            .collect::<Result<_, http::uri::InvalidUri>>()?;
        Ok(Upstreams { list, balance, next: AtomicUsize::new(0), epoch: Instant::now() })
    }

    /// How many upstreams there are.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// The upstream at `index`.
    pub(crate) fn get(&self, index: usize) -> Option<&UpstreamState> {
        self.list.get(index)
    }

    /// Chooses an upstream not in `tried`: a usable one by the balancing rule, else any untried one.
    /// `None` once every upstream has been tried.
    pub(crate) fn pick(self: &Arc<Self>, tried: &[usize]) -> Option<Picked> {
        let n = self.list.len();
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        // The clock is read only if an upstream has been ejected.
        let now = std::cell::OnceCell::new();
        let now = || *now.get_or_init(|| self.now_ms());
        let untried = |i: &usize| !tried.contains(i);
        let usable = |i: &usize| self.list[*i].usable(now);
        let in_turn = || (0..n).map(move |k| (turn + k) % n).filter(untried);
        let index = match self.balance {
            // The turn-th usable upstream: an even share for each, however many are out.
            Balance::RoundRobin => match (0..n).filter(untried).filter(usable).count() {
                0 => None,
                count => (0..n).filter(untried).filter(usable).nth(turn % count),
            },
            // Ties go to the first in turn order.
            Balance::LeastRequests => {
                in_turn().filter(usable).min_by_key(|&i| self.list[i].in_flight.load(Ordering::Relaxed))
            }
        };
        let index = index.or_else(|| in_turn().next())?;
        self.list[index].in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Picked { upstreams: self.clone(), index })
    }

    /// Records a health check's result; logs when the upstream leaves or rejoins the rotation.
    pub(crate) fn set_healthy(&self, index: usize, healthy: bool, why: &str) {
        let Some(u) = self.list.get(index) else { return };
        let was_healthy = u.healthy.swap(healthy, Ordering::Relaxed);
        metrics::gauge!("palisade_upstream_healthy", "upstream" => u.config.to_string())
            .set(f64::from(u8::from(healthy)));
        if healthy {
            // A passing check ends an ejection early.
            let was_ejected = u.ejected_until.swap(0, Ordering::Relaxed) > self.now_ms();
            if !was_healthy || was_ejected {
                tracing::info!(upstream = %u.config, "upstream is healthy again");
            }
        } else if was_healthy {
            tracing::warn!(upstream = %u.config, "upstream failed its health check: {why}");
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Each upstream's state now.
    pub(crate) fn health(&self) -> Vec<crate::UpstreamHealth> {
        let now = self.now_ms();
        self.list
            .iter()
            .map(|u| {
                crate::UpstreamHealth {
                    upstream: u.config.to_string(),
                    healthy: u.healthy.load(Ordering::Relaxed),
                    // 0 (never ejected) is never after now.
                    ejected: u.ejected_until.load(Ordering::Relaxed) > now,
                    in_flight: u.in_flight.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

impl UpstreamState {
    /// Whether the upstream may take requests; `now_ms` is called only for an ejected one.
    fn usable(&self, now_ms: impl FnOnce() -> u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && {
            let until = self.ejected_until.load(Ordering::Relaxed);
            until == 0 || until <= now_ms()
        }
    }
}

impl Picked {
    /// The chosen upstream.
    pub(crate) fn upstream(&self) -> &UpstreamState {
        &self.upstreams.list[self.index]
    }

    /// Its position, to exclude it from a retry.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// The upstream refused or did not accept a connection: out of rotation for [`EJECTION`].
    pub(crate) fn eject(&self, why: &str) {
        let until = self.upstreams.now_ms().saturating_add(EJECTION.as_millis() as u64);
        let u = self.upstream();
        if u.ejected_until.swap(until, Ordering::Relaxed) <= self.upstreams.now_ms() {
            metrics::counter!("palisade_upstream_ejections_total", "upstream" => u.config.to_string()).increment(1);
            tracing::warn!(upstream = %u.config, "upstream ejected for {EJECTION:?}: {why}");
        }
    }
}

impl Drop for Picked {
    fn drop(&mut self) {
        self.upstream().in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams(n: u16, balance: Balance) -> Arc<Upstreams> {
        let list: Vec<Upstream> = (1..=n).map(|p| Upstream { host: "127.0.0.1".into(), port: p }).collect();
        Arc::new(Upstreams::new(&list, balance).unwrap())
    }

    fn ports(u: &Arc<Upstreams>, count: usize) -> Vec<u16> {
        (0..count).map(|_| u.pick(&[]).unwrap().upstream().config.port).collect()
    }

    #[test]
    fn round_robin_takes_each_in_turn_and_skips_unusable_ones() {
        let u = upstreams(3, Balance::RoundRobin);
        assert_eq!(ports(&u, 6), [1, 2, 3, 1, 2, 3]);
        u.set_healthy(1, false, "test");
        assert_eq!(ports(&u, 4), [1, 3, 1, 3]);
        let ejected = u.pick(&[]).unwrap();
        ejected.eject("test");
        let left = if ejected.upstream().config.port == 1 { 3 } else { 1 };
        drop(ejected);
        assert_eq!(ports(&u, 3), [left; 3]);
        u.set_healthy(1, true, "test");
        assert!(ports(&u, 3).contains(&2));
    }

    #[test]
    fn when_nothing_is_usable_every_upstream_is_still_tried_once() {
        let u = upstreams(2, Balance::RoundRobin);
        u.set_healthy(0, false, "test");
        u.set_healthy(1, false, "test");
        let first = u.pick(&[]).unwrap();
        let second = u.pick(&[first.index()]).unwrap();
        assert_ne!(first.index(), second.index());
        assert!(u.pick(&[first.index(), second.index()]).is_none());
    }

    #[test]
    fn least_requests_prefers_the_idle_upstream() {
        let u = upstreams(3, Balance::LeastRequests);
        let a = u.pick(&[]).unwrap();
        let b = u.pick(&[]).unwrap();
        assert_ne!(a.index(), b.index());
        let c = u.pick(&[]).unwrap();
        assert!(![a.index(), b.index()].contains(&c.index()));
        drop(b);
        let d = u.pick(&[]).unwrap();
        assert!(![a.index(), c.index()].contains(&d.index()));
    }
}
