//! The limits a tenant's guests are held to, how they are enforced inside wasmtime, and what fired.
//!
//! - [`GuestLimiter`] is each store's `ResourceLimiter`: growth past the instance's `memory` or past what is
//!   left of the tenant's `max_total_memory` traps with a [`LimitExceeded`] (so no guest mistakes a failed
//!   allocation for a successful one), and the memory it charged is returned when the store is dropped.
//! - [`LimitCounters`] counts every limit that fires, per tenant, for metrics.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Each limit a guest request can run into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitKind {
    /// `memory`: one instance grew past its linear-memory limit.
    Memory,
    /// `max_total_memory`: the tenant's instances together hold all the memory they may.
    TotalMemory,
    /// `max_guest_memory`: all tenants' instances together hold all the memory the server gives guests.
    GuestMemory,
    /// `timeout`: the request's wall-clock deadline passed.
    Timeout,
    /// `cpu_time`: the guest ran for longer than its CPU budget.
    CpuTime,
    /// `max_concurrency`: all the tenant's instance slots were in use.
    Concurrency,
    /// `max_request_body`: the request body was larger than allowed.
    RequestBody,
    /// `max_response_body`: the guest sent a larger response body than allowed.
    ResponseBody,
    /// `max_stderr`: the guest wrote more to stderr than is logged.
    Stderr,
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow, ...).
    Trap,
    /// The guest tried to make an outbound request to something it may not reach.
    OutboundDenied,
}

impl LimitKind {
    /// Every kind, in a fixed order.
    pub const ALL: [LimitKind; 11] = [
        LimitKind::Memory,
        LimitKind::TotalMemory,
        LimitKind::GuestMemory,
        LimitKind::Timeout,
        LimitKind::CpuTime,
        LimitKind::Concurrency,
        LimitKind::RequestBody,
        LimitKind::ResponseBody,
        LimitKind::Stderr,
        LimitKind::Trap,
        LimitKind::OutboundDenied,
    ];

    /// The configuration key (or event) name, as logged: `memory`, `cpu_time`, `trap`, ...
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Memory => "memory",
            LimitKind::TotalMemory => "max_total_memory",
            LimitKind::GuestMemory => "max_guest_memory",
            LimitKind::Timeout => "timeout",
            LimitKind::CpuTime => "cpu_time",
            LimitKind::Concurrency => "max_concurrency",
            LimitKind::RequestBody => "max_request_body",
            LimitKind::ResponseBody => "max_response_body",
            LimitKind::Stderr => "max_stderr",
            LimitKind::Trap => "trap",
            LimitKind::OutboundDenied => "outbound_denied",
        }
    }

    fn index(self) -> usize {
        LimitKind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How often each limit has fired for one tenant since start-up.
#[derive(Debug, Default)]
pub struct LimitCounters {
    counts: [AtomicU64; LimitKind::ALL.len()],
}

impl LimitCounters {
    pub(crate) fn bump(&self, kind: LimitKind) {
        self.counts[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// How often `kind` has fired.
    pub fn get(&self, kind: LimitKind) -> u64 {
        self.counts[kind.index()].load(Ordering::Relaxed)
    }
}

/// The error a guest traps with when the sandbox stops it at a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("guest stopped at its `{0}` limit")]
pub(crate) struct LimitExceeded(pub(crate) LimitKind);

/// Linear memory live instances hold together: a tenant's against its `max_total_memory`, everyone's against
/// the server's `max_guest_memory`.
///
/// The server's budget is shared fairly when it runs short: past three quarters of it, only a tenant holding
/// less than its fair part (the budget divided by the tenants holding any) may take more, so tenants flooding
/// memory bombs never leave a neighbour without room for its next instance. The limit holds, except that a
/// tenant holding less than [`TENANT_FLOOR`] may always go on to it: every tenant can start a small instance
/// however full the budget is, and the budget is passed by at most that much per tenant.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
    /// Tenants holding some of it now (kept for the server's budget only).
    holders: AtomicUsize,
}

impl MemoryBudget {
    pub(crate) fn new(limit: u64) -> MemoryBudget {
        MemoryBudget { limit, used: AtomicU64::new(0), holders: AtomicUsize::new(0) }
    }

    /// Takes `bytes` from the budget, or nothing if that would pass the limit (half the limit for a warm
    /// instance, so instances waiting for a request never hold what running ones need).
    fn try_charge(&self, bytes: u64, warm: bool) -> bool {
        let limit = if warm { self.limit / 2 } else { self.limit };
        self.charge_within(bytes, limit)
    }

    fn charge_within(&self, bytes: u64, limit: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok()
    }

    /// Takes `bytes` of the server's budget for a tenant that will then hold `holds` of it (see the type's
    /// documentation for the fair part and the floor).
    fn try_charge_shared(&self, bytes: u64, warm: bool, holds: u64) -> bool {
        if warm {
            return self.try_charge(bytes, true);
        }
        if holds <= TENANT_FLOOR {
            self.used.fetch_add(bytes, Ordering::AcqRel);
            return true;
        }
        self.charge_within(bytes, self.limit / 4 * 3) || (self.within_fair_part(holds) && self.try_charge(bytes, false))
    }

    /// Whether a tenant holding `holds` may start one more instance, which needs `room` at the least.
    pub(crate) fn has_room(&self, room: u64, holds: u64) -> bool {
        let after = self.used().saturating_add(room);
        let holds = holds.saturating_add(room);
        holds <= TENANT_FLOOR || after <= self.limit / 4 * 3 || (after <= self.limit && self.within_fair_part(holds))
    }

    fn within_fair_part(&self, holds: u64) -> bool {
        let holders = u64::try_from(self.holders.load(Ordering::Acquire).max(1)).unwrap_or(u64::MAX);
        holds <= self.limit / holders
    }

    fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// The most that may be charged.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes currently charged.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

/// What any tenant may hold of the server's guest memory budget, however full it is: room for a small
/// instance or two (a hello component holds about 1 MiB).
pub(crate) const TENANT_FLOOR: u64 = 4 << 20;

/// Table elements one instance may hold (function tables of large guests run to a few thousand).
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Instances, memories and tables one store may create (a component is a few dozen core instances).
const MAX_STORE_OBJECTS: usize = 100;

/// One store's resource limiter: per-instance memory, the tenant's total, the server's total, and table sizes.
pub(crate) struct GuestLimiter {
    memory: usize,
    budget: Arc<MemoryBudget>,
    server: Arc<MemoryBudget>,
    charged: u64,
    /// Whether the store is a warm instance still waiting for its request (see `warm`).
    pub(crate) warm: bool,
}

impl GuestLimiter {
    pub(crate) fn new(memory: u64, budget: Arc<MemoryBudget>, server: Arc<MemoryBudget>) -> GuestLimiter {
        GuestLimiter { memory: usize::try_from(memory).unwrap_or(usize::MAX), budget, server, charged: 0, warm: false }
    }
}

impl wasmtime::ResourceLimiter for GuestLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory {
            return Err(LimitExceeded(LimitKind::Memory).into());
        }
        let delta = u64::try_from(desired.saturating_sub(current)).unwrap_or(u64::MAX);
        if delta == 0 {
            return Ok(true);
        }
        if !self.budget.try_charge(delta, self.warm) {
            return Err(LimitExceeded(LimitKind::TotalMemory).into());
        }
        let holds = self.budget.used();
        if holds == delta {
            // The tenant's first bytes: it now holds part of the server's budget.
            self.server.holders.fetch_add(1, Ordering::AcqRel);
        }
        if !self.server.try_charge_shared(delta, self.warm, holds) {
            self.release(delta);
            return Err(LimitExceeded(LimitKind::GuestMemory).into());
        }
        self.charged += delta;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(LimitExceeded(LimitKind::Memory).into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_STORE_OBJECTS
    }

    fn tables(&self) -> usize {
        MAX_STORE_OBJECTS
    }

    fn memories(&self) -> usize {
        MAX_STORE_OBJECTS
    }
}

impl GuestLimiter {
    /// Gives `bytes` back to the tenant's budget (and the tenant's place among the server's holders with its last
    /// byte); the caller gives them back to the server's.
    fn release(&self, bytes: u64) {
        let before = self.budget.used.fetch_sub(bytes, Ordering::AcqRel);
        if bytes > 0 && before == bytes {
            self.server.holders.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for GuestLimiter {
    fn drop(&mut self) {
        self.release(self.charged);
        self.server.release(self.charged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    /// The unit of the budgets below, well above [`TENANT_FLOOR`]: in bytes, and as a memory size.
    const U: u64 = 10 << 20;
    const UZ: usize = 10 << 20;

    #[test]
    fn instance_and_tenant_memory_limits() {
        let budget = Arc::new(MemoryBudget::new(100));
        let server = Arc::new(MemoryBudget::new(1000));
        let mut a = GuestLimiter::new(60, budget.clone(), server.clone());
        let mut b = GuestLimiter::new(60, budget.clone(), server.clone());
        assert!(a.memory_growing(0, 60, None).unwrap_or(false));
        let over_instance = a.memory_growing(60, 61, None).unwrap_err();
        assert_eq!(over_instance.downcast_ref(), Some(&LimitExceeded(LimitKind::Memory)));
        assert!(b.memory_growing(0, 40, None).unwrap_or(false));
        let over_tenant = b.memory_growing(40, 41, None).unwrap_err();
        assert_eq!(over_tenant.downcast_ref(), Some(&LimitExceeded(LimitKind::TotalMemory)));
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40, "a dropped store returns what it charged");
        assert!(b.memory_growing(40, 60, None).unwrap_or(false));

        let mut warm = GuestLimiter::new(60, budget.clone(), server.clone());
        warm.warm = true;
        assert!(warm.memory_growing(0, 40, None).is_err(), "a warm instance may not take past half the budget");
        drop(b);
        assert!(warm.memory_growing(0, 40, None).unwrap_or(false));
        assert_eq!(server.used(), 40, "the server's budget is charged with the tenant's");
        drop(warm);
        assert_eq!(server.used(), 0, "... and released with it");
    }

    #[test]
    fn the_servers_budget_holds_across_tenants() {
        let server = Arc::new(MemoryBudget::new(100 * U));
        let (t1, t2) = (Arc::new(MemoryBudget::new(1000 * U)), Arc::new(MemoryBudget::new(1000 * U)));
        let mut a = GuestLimiter::new(80 * U, t1.clone(), server.clone());
        let mut b = GuestLimiter::new(80 * U, t2.clone(), server.clone());
        assert!(a.memory_growing(0, 70 * UZ, None).unwrap_or(false));
        let over = b.memory_growing(0, 40 * UZ, None).unwrap_err();
        assert_eq!(over.downcast_ref(), Some(&LimitExceeded(LimitKind::GuestMemory)));
        assert_eq!(t2.used(), 0, "a refusal by the server leaves the tenant's budget as it was");
        assert!(b.memory_growing(0, 30 * UZ, None).unwrap_or(false));
        drop(a);
        assert_eq!(server.used(), 30 * U);
    }

    #[test]
    fn past_three_quarters_only_tenants_under_their_fair_part_take_more() {
        let server = Arc::new(MemoryBudget::new(100 * U));
        let tenant = || Arc::new(MemoryBudget::new(1000 * U));
        let (flood, calm) = (tenant(), tenant());
        let mut bombs: Vec<_> = (0..3).map(|_| GuestLimiter::new(100 * U, flood.clone(), server.clone())).collect();
        assert!(bombs[0].memory_growing(0, 70 * UZ, None).unwrap_or(false));
        assert!(bombs[1].memory_growing(0, 20 * UZ, None).unwrap_or(false), "alone, its fair part is everything");
        assert!(server.has_room(5 * U, 0), "a newcomer's fair part would be half");
        let mut neighbour = GuestLimiter::new(100 * U, calm.clone(), server.clone());
        assert!(neighbour.memory_growing(0, 5 * UZ, None).unwrap_or(false), "two holders: 5 is under 50");
        let held = bombs[2].memory_growing(0, UZ, None).unwrap_err();
        assert_eq!(held.downcast_ref(), Some(&LimitExceeded(LimitKind::GuestMemory)), "91 is over 50");
        assert!(!server.has_room(U, flood.used()), "nor may it start another instance");
        assert!(neighbour.memory_growing(5 * UZ, 10 * UZ, None).unwrap_or(false));
        assert_eq!(server.used(), 100 * U);
        let full = neighbour.memory_growing(10 * UZ, 11 * UZ, None).unwrap_err();
        assert_eq!(full.downcast_ref(), Some(&LimitExceeded(LimitKind::GuestMemory)), "the limit itself holds");
        assert!(server.has_room(1 << 20, 0), "a full budget still lets a tenant holding nothing start one");
        let mut small = GuestLimiter::new(100 * U, tenant(), server.clone());
        assert!(small.memory_growing(0, 2 << 20, None).unwrap_or(false), "under the floor: past the limit");
        assert!(small.memory_growing(2 << 20, 5 << 20, None).is_err(), "past the floor: refused");
        drop((neighbour, small));
        assert_eq!((server.used(), calm.used()), (90 * U, 0));
        assert_eq!(server.holders.load(Ordering::Acquire), 1, "the neighbour holds nothing now");
        drop(bombs);
        assert_eq!((server.used(), server.holders.load(Ordering::Acquire)), (0, 0));
    }

    #[test]
    fn counters_count_per_kind() {
        let c = LimitCounters::default();
        c.bump(LimitKind::Trap);
        c.bump(LimitKind::Trap);
        c.bump(LimitKind::CpuTime);
        assert_eq!(c.get(LimitKind::Trap), 2);
        assert_eq!(c.get(LimitKind::CpuTime), 1);
        assert_eq!(c.get(LimitKind::Memory), 0);
    }
}
