//! The checker: reads the clients' histories and the nemesis's events and reports
//! mutual-exclusion violations, lost updates, late writes under a lease, and liveness
//! figures.
//!
//! A holding runs from the instant the lock call returned to the earlier of the unlock
//! call and the guard's validity deadline, as the guard reported it after the last
//! extend (success moves it on, failure may move it back). A lease's holding runs from
//! the instant `run` handed it to the work (or `lease` returned) to the earlier of the
//! end of the work and the instant the lease was lost; a release counts as a loss, when
//! the renewals stopped. Two holdings of one name that overlap are a violation, whatever
//! the nodes said.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::clients::{Entry, ErrorClass, Op};
pub use super::leases::LeaseFigures;
use super::leases::figures;
use super::liveness::liveness;
pub use super::liveness::{Bucketing, Liveness, active_at, faulty_at, percentile};
use super::nemesis::Event;
use crate::history::{Holding, overlaps};

/// How many nemesis steps a violation's account shows.
const MAX_STEPS: usize = 8;

/// Two holdings of one name that overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// The lock name's index.
    pub name: usize,
    /// The holding that began first.
    pub first: Holding,
    /// The holding that began while `first` was still held.
    pub second: Holding,
}

impl Violation {
    /// A one-line account, with times in ms from `start`, and the last nemesis steps
    /// (at most 8) from `lookback` before the first holding began up to the second one.
    pub fn describe(&self, start: Instant, events: &[Event], lookback: Duration) -> String {
        let ms = |t: Instant| t.saturating_duration_since(start).as_secs_f64() * 1e3;
        let from = self.first.acquired.checked_sub(lookback).unwrap_or(start);
        let window: Vec<&Event> = (events.iter())
            .filter(|e| e.at >= from && e.at <= self.second.acquired)
            .collect();
        let steps: Vec<String> = window[window.len().saturating_sub(MAX_STEPS)..]
            .iter()
            .map(|e| format!("{}@n{}:{:.0}ms", e.action.label(), e.node, ms(e.at)))
            .collect();
        format!(
            "name {}: client {} held [{:.1} ms, {:.1} ms], client {} acquired at {:.1} ms; \
             nemesis before: [{}]",
            self.name,
            self.first.client,
            ms(self.first.acquired),
            ms(self.first.released),
            self.second.client,
            ms(self.second.acquired),
            steps.join(", ")
        )
    }
}

/// What the checker found in one run.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Lock calls.
    pub ops: usize,
    /// Lock calls that returned a guard or a lease.
    pub acquired: usize,
    /// Protected writes done.
    pub writes: u64,
    /// Protected writes skipped for lack of validity.
    pub skipped: usize,
    /// Extends tried, and how many failed.
    pub extends: (usize, usize),
    /// Unlocks that reported an error (expired, taken, no quorum).
    pub unlock_errors: usize,
    /// Failed lock calls, by class.
    pub failures: Vec<(ErrorClass, usize)>,
    /// Overlapping holdings.
    pub violations: Vec<Violation>,
    /// Counter increments lost: writes done minus the counters' final values.
    pub lost_updates: u64,
    /// Liveness by fault situation, fewest faulty nodes first.
    pub liveness: Vec<Liveness>,
    /// What the long-work clients did with their leases.
    pub leases: LeaseFigures,
}

/// Checks the merged history of every client (each client's entries in its own order)
/// against the final `counters` (by name) and the nemesis's `events`.
pub fn check(history: &[Entry], counters: &[u64], events: &[Event], by: Bucketing) -> Verdict {
    let mut verdict = Verdict::default();
    let mut writes = vec![0u64; counters.len()];
    let mut failures: HashMap<ErrorClass, usize> = HashMap::new();
    for entry in history {
        match entry.op {
            Op::Invoke => verdict.ops += 1,
            Op::Acquired { .. } | Op::Leased { .. } => verdict.acquired += 1,
            Op::Failed(class) => *failures.entry(class).or_default() += 1,
            Op::Extended { result, .. } => {
                verdict.extends.0 += 1;
                verdict.extends.1 += usize::from(result.is_err());
            }
            Op::Wrote { .. } | Op::LeaseWrote { .. } => {
                if let Some(w) = writes.get_mut(entry.name) {
                    *w += 1;
                }
            }
            Op::Skipped => verdict.skipped += 1,
            Op::Unlocked(result) => verdict.unlock_errors += usize::from(result.is_err()),
            // The fenced figures are read by `fencing::tokens`.
            Op::Unlocking | Op::LeaseEnded { .. } | Op::Fenced { .. } | Op::FencedWrote { .. } => {}
        }
    }
    verdict.writes = writes.iter().sum();
    verdict.failures = ErrorClass::ALL
        .iter()
        .filter_map(|c| failures.get(c).map(|&n| (*c, n)))
        .collect();
    verdict.lost_updates = writes
        .iter()
        .zip(counters)
        .map(|(w, c)| w.saturating_sub(*c))
        .sum();
    for (name, held) in holdings(history, counters.len()).iter().enumerate() {
        verdict
            .violations
            .extend(overlaps(held).into_iter().map(|(a, b)| Violation {
                name,
                first: held[a],
                second: held[b],
            }));
    }
    verdict.liveness = liveness(history, events, by);
    verdict.leases = figures(history);
    let leased: HashSet<usize> = (history.iter())
        .filter(|e| matches!(e.op, Op::Leased { .. }))
        .map(|e| e.client)
        .collect();
    let by_lease = |v: &&Violation| {
        [v.first, v.second]
            .iter()
            .any(|h| leased.contains(&h.client))
    };
    verdict.leases.violations = verdict.violations.iter().filter(by_lease).count();
    verdict
}

/// The holdings of each name (indexes `0..names`), from the merged history.
pub fn holdings(history: &[Entry], names: usize) -> Vec<Vec<Holding>> {
    struct Open {
        name: usize,
        acquired: Instant,
        valid_until: Instant,
    }
    let mut by_name = vec![Vec::new(); names];
    let mut open: HashMap<usize, Open> = HashMap::new();
    let mut close = |client: usize, o: Open, at: Instant| {
        if let Some(held) = by_name.get_mut(o.name) {
            held.push(Holding::new(client, o.acquired, at, o.valid_until));
        }
    };
    for e in history {
        match e.op {
            Op::Acquired { valid_until }
            | Op::Leased {
                until: valid_until, ..
            } => {
                let (name, acquired) = (e.name, e.at);
                let o = Open {
                    name,
                    acquired,
                    valid_until,
                };
                if let Some(stale) = open.insert(e.client, o) {
                    close(e.client, stale, e.at);
                }
            }
            Op::Extended { valid_until, .. } => {
                if let Some(o) = open.get_mut(&e.client) {
                    o.valid_until = valid_until;
                }
            }
            Op::Unlocking => {
                if let Some(o) = open.remove(&e.client) {
                    close(e.client, o, e.at);
                }
            }
            Op::LeaseEnded { until, .. } => {
                // The lease's last good instant, after all its renewals, replaces the end
                // it had when it was acquired.
                if let Some(o) = open.remove(&e.client) {
                    let o = Open {
                        valid_until: until,
                        ..o
                    };
                    close(e.client, o, e.at);
                }
            }
            _ => {}
        }
    }
    for (client, o) in open {
        let until = o.valid_until;
        close(client, o, until);
    }
    by_name
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A history entry of `client` on name 0, `ms` after `base`; the other checkers' tests
    /// build their histories with it too.
    pub(in crate::faults) fn entry(client: usize, base: Instant, ms: u64, op: Op) -> Entry {
        let at = base + Duration::from_millis(ms);
        Entry {
            client,
            name: 0,
            at,
            op,
        }
    }

    fn acquired(base: Instant, ms: u64) -> Op {
        let valid_until = base + Duration::from_millis(ms);
        Op::Acquired { valid_until }
    }

    fn extended(base: Instant, ms: u64, result: Result<(), ErrorClass>) -> Op {
        let valid_until = base + Duration::from_millis(ms);
        Op::Extended {
            valid_until,
            result,
        }
    }

    #[test]
    fn sequential_holdings_pass_and_an_overlap_fires() {
        let t = Instant::now();
        let ok = [
            entry(0, t, 0, Op::Invoke),
            entry(0, t, 5, acquired(t, 100)),
            entry(0, t, 6, Op::Wrote { seen: 0 }),
            entry(0, t, 7, Op::Unlocking),
            entry(1, t, 1, Op::Invoke),
            entry(1, t, 8, acquired(t, 100)),
            entry(1, t, 9, Op::Wrote { seen: 1 }),
            entry(1, t, 10, Op::Unlocking),
        ];
        let v = check(&ok, &[2], &[], Bucketing::Count);
        assert_eq!((v.ops, v.acquired, v.writes), (2, 2, 2));
        assert!(v.violations.is_empty() && v.lost_updates == 0, "{v:?}");
        assert_eq!(v.liveness[0].p99, Some(Duration::from_millis(7)));

        let mut bad = ok;
        bad[5] = entry(1, t, 6, acquired(t, 100));
        bad[6] = entry(1, t, 9, Op::Wrote { seen: 0 });
        let v = check(&bad, &[1], &[], Bucketing::Count);
        assert_eq!(v.violations.len(), 1, "{v:?}");
        assert_eq!(v.lost_updates, 1);
    }

    #[test]
    fn validity_and_extends_bound_the_holding() {
        let t = Instant::now();
        let history = [
            entry(0, t, 0, acquired(t, 10)),
            entry(0, t, 5, extended(t, 30, Ok(()))),
            entry(0, t, 6, extended(t, 25, Err(ErrorClass::NoQuorum))),
            entry(0, t, 50, Op::Unlocking),
        ];
        let held = holdings(&history, 1);
        assert_eq!(held[0][0].released, t + Duration::from_millis(25));
    }

    #[test]
    fn a_lease_holding_ends_at_the_earlier_of_the_work_and_the_loss() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let leased = Op::Leased {
            until: ms(900),
            heeds: true,
        };
        let ended = |until, reason| Op::LeaseEnded { until, reason };
        let history = [
            entry(0, t, 0, leased),
            entry(0, t, 2500, ended(ms(2400), "gone")),
            entry(1, t, 2450, acquired(t, 3000)),
            entry(1, t, 2460, Op::Unlocking),
            entry(0, t, 3000, leased),
            entry(0, t, 3200, ended(ms(3210), "released")),
        ];
        let held = holdings(&history, 1);
        let ends: Vec<Instant> = held[0].iter().map(|h| h.released).collect();
        assert_eq!(ends, [ms(2400), ms(2460), ms(3200)]);
        let v = check(&history, &[0], &[], Bucketing::Count);
        assert!(v.violations.is_empty(), "{v:?}");
        assert_eq!((v.acquired, v.leases.holdings), (3, 2));

        let mut bad = history;
        bad[2] = entry(1, t, 2300, acquired(t, 3000));
        let v = check(&bad, &[0], &[], Bucketing::Count);
        assert_eq!((v.violations.len(), v.leases.violations), (1, 1), "{v:?}");
    }
}
