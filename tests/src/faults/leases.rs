//! What the long-work clients did with their leases: holdings, the renewals their work
//! saw, and writes made outside the window that protected them.
//!
//! A write under a lease is inside the model when it lands within the window it was made
//! in: the lease's end as read right before it, which a passing check then confirmed.
//! A write made after its window ended, or once the lease read as lost, relied on a lock
//! the holder no longer had: a late write. Correct clients make none inside the model;
//! the canary's client that ignores its lease must make some.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::clients::{Entry, Op};

/// The lease figures of one run.
#[derive(Debug, Clone, Default)]
pub struct LeaseFigures {
    /// Lease holdings (acquired by `Mutex::run` or `Mutex::lease`).
    pub holdings: usize,
    /// Of which by clients that ignore their lease.
    pub unheeded: usize,
    /// Renewals the work saw: writes whose window ended later than the previous write's
    /// in the same holding. A lower bound: renewals between two writes count once.
    pub renewals: usize,
    /// The longest lease holding, from acquiring to the earlier of the end of the work
    /// and the loss.
    pub longest: Duration,
    /// Writes under a lease.
    pub writes: u64,
    /// Writes under a lease made after their window ended or once the lease read as lost.
    pub late_writes: usize,
    /// Overlapping holdings with a lease holding on either side (filled by the checker).
    pub violations: usize,
    /// How holdings ended, by the loss's kind (`released`, `gone`, `taken`, ...), in
    /// name order.
    pub ended: Vec<(&'static str, usize)>,
}

/// The lease figures of the merged history (each client's entries in its own order).
pub(super) fn figures(history: &[Entry]) -> LeaseFigures {
    let mut f = LeaseFigures::default();
    // Per client: when its open holding began, and the window its last write saw.
    let mut open: HashMap<usize, (Instant, Instant)> = HashMap::new();
    let mut ended: BTreeMap<&'static str, usize> = BTreeMap::new();
    for e in history {
        match e.op {
            Op::Leased { until, heeds } => {
                f.holdings += 1;
                f.unheeded += usize::from(!heeds);
                open.insert(e.client, (e.at, until));
            }
            Op::LeaseWrote { window, .. } => {
                f.writes += 1;
                f.late_writes += usize::from(window.is_none_or(|end| e.at > end));
                if let (Some(end), Some((_, seen))) = (window, open.get_mut(&e.client)) {
                    f.renewals += usize::from(end > *seen);
                    *seen = end.max(*seen);
                }
            }
            Op::LeaseEnded { until, reason } => {
                *ended.entry(reason).or_default() += 1;
                if let Some((began, _)) = open.remove(&e.client) {
                    let held = e.at.min(until).saturating_duration_since(began);
                    f.longest = f.longest.max(held);
                }
            }
            _ => {}
        }
    }
    f.ended = ended.into_iter().collect();
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::checker::tests::entry;

    fn wrote(base: Instant, window_ms: Option<u64>) -> Op {
        let window = window_ms.map(|ms| base + Duration::from_millis(ms));
        Op::LeaseWrote { seen: 0, window }
    }

    #[test]
    fn renewals_late_writes_and_the_holding_end_are_read_from_the_history() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let history = [
            entry(
                0,
                t,
                0,
                Op::Leased {
                    until: ms(100),
                    heeds: true,
                },
            ),
            entry(0, t, 50, wrote(t, Some(100))),
            entry(0, t, 80, wrote(t, Some(180))),
            entry(0, t, 150, wrote(t, Some(180))),
            entry(0, t, 200, wrote(t, Some(180))),
            entry(0, t, 210, wrote(t, None)),
            entry(
                0,
                t,
                300,
                Op::LeaseEnded {
                    until: ms(170),
                    reason: "gone",
                },
            ),
        ];
        let f = figures(&history);
        assert_eq!((f.holdings, f.unheeded, f.writes), (1, 0, 5));
        assert_eq!(f.renewals, 1);
        assert_eq!(f.late_writes, 2, "one past its window, one after the loss");
        assert_eq!(f.longest, Duration::from_millis(170));
        assert_eq!(f.ended, vec![("gone", 1)]);
    }
}
