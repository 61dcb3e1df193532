//! How an app's recent requests ran, so that an app whose requests run long starts them in the background lane
//! instead of taking a foreground slice first.

use std::sync::atomic::{AtomicU8, Ordering};

/// The last eight requests of one app: for each, whether it ran long enough to be moved to the background.
#[derive(Debug, Default)]
pub struct AppHistory {
    /// One bit per request, the newest lowest; 1 = ran long.
    recent: AtomicU8,
}

impl AppHistory {
    /// Whether the app's next request should start in the background lane: at least half of the last eight ran
    /// long. An app that changes its ways is back in the foreground after a few short requests.
    pub fn runs_long(&self) -> bool {
        self.recent.load(Ordering::Relaxed).count_ones() >= 4
    }

    /// Records how a request ran.
    pub(crate) fn record(&self, long: bool) {
        // Lost updates between racing requests only blur a heuristic.
        let bits = self.recent.load(Ordering::Relaxed);
        self.recent.store((bits << 1) | u8::from(long), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_of_the_last_eight() {
        let h = AppHistory::default();
        assert!(!h.runs_long());
        for _ in 0..3 {
            h.record(true);
        }
        assert!(!h.runs_long());
        h.record(true);
        assert!(h.runs_long());
        for _ in 0..4 {
            h.record(false);
        }
        assert!(h.runs_long(), "still four long ones among the last eight");
        h.record(false);
        assert!(!h.runs_long());
    }
}
