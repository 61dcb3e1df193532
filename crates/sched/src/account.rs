//! Which tenants are heavy: using more of the machine than about half their fair share.
//!
//! Only a heavy tenant's long guests go to the background lane's lowest priority. A tenant whose guests are
//! merely slow (an interpreter that takes 5 ms a request) but that uses less than its share keeps running them
//! beside everyone's short guests: at the lowest priority, a flood of another tenant's short requests would
//! leave them nearly nothing. A tenant alone has no one to make way for: its long guests go to runners of
//! normal priority, so that it can use every core. A tenant flooding spinning guests uses far more than its
//! share, and its guests make way for everyone else's at once.
//!
//! A tenant's fair share is the machine's cores split between the tenants present lately (their guests used
//! CPU, or they had requests that run no guest: static files and proxied requests are work for the connection
//! workers too), by weight, and it is heavy while it uses more than half of it, and another tenant is present. Half, because ten tenants flooding together each get
//! about their share from the lane, and must stay there; and there is no band between heavy and light: a slow
//! app demoted when a flood began, then held to a trickle by it, must come back.

use std::sync::Arc;
use std::time::Duration;

use crate::share::Share;

/// How often the accountant looks.
pub(crate) const EVERY: Duration = Duration::from_millis(50);

/// Measures each share's recent CPU over the last `window` and marks it heavy or light, on a machine of
/// `cores` cores.
pub(crate) fn account(shares: &[Arc<Share>], window: Duration, cores: usize) {
    let recent: Vec<u64> = shares.iter().map(|share| share.measure(window)).collect();
    let present: Vec<bool> = shares.iter().zip(&recent).map(|(share, &r)| share.present() || r > 0).collect();
    let weights: u128 =
        shares.iter().zip(&present).filter(|&(_, &p)| p).map(|(share, _)| u128::from(share.weight())).sum();
    let machine = u128::try_from(cores.max(1)).unwrap_or(1) * 1_000_000_000;
    for ((share, &recent), &present) in shares.iter().zip(&recent).zip(&present) {
        // Alone, a tenant has no one to make way for: it keeps normal priority, and competes with whatever
        // else runs on the machine on equal terms (at the lowest priority, any busy process would starve it).
        let others = weights > if present { u128::from(share.weight()) } else { 0 };
        share.set_alone(!others);
        if recent == 0 || weights == 0 {
            share.set_heavy(false);
            continue;
        }
        let fair = machine * u128::from(share.weight()) / weights;
        share.set_heavy(others && u128::from(recent) * 2 > fair);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::Shares;

    const MS: Duration = Duration::from_millis(1);

    /// Charges each share `used` of CPU, then takes the accountant's look a few times over.
    fn settle(shares: &[Arc<Share>], used: &[Duration], cores: usize) {
        for _ in 0..8 {
            for (share, used) in shares.iter().zip(used) {
                share.charge_foreground(*used);
            }
            account(shares, EVERY, cores);
        }
    }

    #[test]
    fn a_tenant_flooding_is_heavy_and_a_slow_neighbour_is_not() {
        let all = Shares::default();
        let (flood, slow) = (all.share("flood", 1), all.share("slow", 1));
        // Two cores: in every 50 ms, the flood uses 90 ms of CPU, the slow app 20.
        settle(&[flood.clone(), slow.clone()], &[90 * MS, 20 * MS], 2);
        assert!(flood.heavy(), "1.8 cores of 2, its share being 1");
        assert!(!slow.heavy(), "0.4 cores, under half its share");
    }

    #[test]
    fn heavy_while_over_half_its_share() {
        let all = Shares::default();
        let (a, b) = (all.share("a", 1), all.share("b", 1));
        settle(&[a.clone(), b.clone()], &[60 * MS, 10 * MS], 2);
        assert!(a.heavy());
        settle(&[a.clone(), b.clone()], &[20 * MS, 10 * MS], 2);
        assert!(!a.heavy(), "0.4 cores, under half its share: light again");
    }

    #[test]
    fn weight_widens_the_share() {
        let all = Shares::default();
        let (one, nine) = (all.share("one", 1), all.share("nine", 9));
        settle(&[one.clone(), nine.clone()], &[20 * MS, 20 * MS], 1);
        assert!(one.heavy(), "0.4 of a core against a share of 0.1");
        assert!(!nine.heavy(), "0.4 of a core against a share of 0.9");
    }

    #[test]
    fn idle_tenants_are_light_and_do_not_count() {
        let all = Shares::default();
        let (busy, idle) = (all.share("busy", 1), all.share("idle", 1));
        settle(&[busy.clone(), idle.clone()], &[100 * MS, Duration::ZERO], 2);
        assert!(!busy.heavy(), "alone, even the whole machine is its share: no one to make way for");
        assert!(!idle.heavy());
        settle(&[busy.clone(), idle.clone()], &[100 * MS, MS / 10], 2);
        assert!(busy.heavy(), "once another tenant runs anything, it makes way");
    }

    #[test]
    fn a_tenant_served_without_guests_is_there_too() {
        let all = Shares::default();
        let (busy, files) = (all.share("busy", 1), all.share("files", 1));
        let both = [busy.clone(), files.clone()];
        settle(&both, &[100 * MS, Duration::ZERO], 2);
        assert!(!busy.heavy(), "alone");
        assert!(busy.moves_long_guests(), "alone: its long guests spread over the cores");
        for _ in 0..3 {
            files.note_request();
            busy.charge_foreground(100 * MS);
            account(&both, EVERY, 2);
        }
        assert!(busy.heavy(), "a neighbour's static files and proxied requests need the machine too");
        assert!(!files.heavy());
        assert!(!files.moves_long_guests(), "light beside a busy neighbour: its long guests stay on their worker");
        settle(&both, &[100 * MS, Duration::ZERO], 2);
        assert!(!busy.heavy(), "the neighbour gone quiet for a few looks: alone again");
        assert!(busy.moves_long_guests());
    }
}
