//! The checker: reads the clients' histories and the nemesis's events and reports
//! mutual-exclusion violations, lost updates and liveness figures.
//!
//! A holding runs from the instant the lock call returned to the earlier of the unlock
//! call and the guard's validity deadline, as the guard reported it after the last
//! extend (success moves it on, failure may move it back). Two holdings of one name that
//! overlap are a violation, whatever the nodes said.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::clients::{Entry, ErrorClass, Op};
use super::nemesis::Event;
use super::schedule::{Action, Fault};
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

/// How lock calls are grouped for liveness figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucketing {
    /// By how many nodes were faulty when the call started: `faulty=2`.
    Count,
    /// Also by kind when all faulty nodes had the same fault: `kill=2`, `blackhole=2`.
    Kind,
}

/// Lock calls started under one fault situation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    /// The situation, `faulty=N` or `KIND=N`.
    pub bucket: String,
    /// Nodes under a fault inside the model when the calls started.
    pub faulty: usize,
    /// Lock calls started.
    pub attempts: usize,
    /// Of which acquired.
    pub acquired: usize,
    /// Median time to acquire, over the calls that acquired.
    pub p50: Option<Duration>,
    /// 99th percentile time to acquire, over the calls that acquired.
    pub p99: Option<Duration>,
}

impl Liveness {
    /// The share of calls that acquired, 0 to 1.
    pub fn share(&self) -> f64 {
        if self.attempts == 0 {
            return 0.0;
        }
        self.acquired as f64 / self.attempts as f64
    }
}

/// What the checker found in one run.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Lock calls.
    pub ops: usize,
    /// Lock calls that returned a guard.
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
            Op::Acquired { .. } => verdict.acquired += 1,
            Op::Failed(class) => *failures.entry(class).or_default() += 1,
            Op::Extended { result, .. } => {
                verdict.extends.0 += 1;
                verdict.extends.1 += usize::from(result.is_err());
            }
            Op::Wrote { .. } => {
                if let Some(w) = writes.get_mut(entry.name) {
                    *w += 1;
                }
            }
            Op::Skipped => verdict.skipped += 1,
            Op::Unlocked(result) => verdict.unlock_errors += usize::from(result.is_err()),
            Op::Unlocking => {}
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
            Op::Acquired { valid_until } => {
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
            _ => {}
        }
    }
    for (client, o) in open {
        let until = o.valid_until;
        close(client, o, until);
    }
    by_name
}

/// The faults inside the model active at `at`, one per faulty node, from the executed
/// events.
pub fn active_at(events: &[Event], at: Instant) -> Vec<Fault> {
    let mut active: BTreeMap<usize, Fault> = BTreeMap::new();
    for e in events.iter().filter(|e| e.at <= at) {
        match e.action {
            Action::Inject(fault) => {
                active.insert(e.node, fault);
            }
            Action::Heal(_) => {
                active.remove(&e.node);
            }
            _ => {}
        }
    }
    active.into_values().collect()
}

/// How many nodes were under a fault inside the model at `at`.
pub fn faulty_at(events: &[Event], at: Instant) -> usize {
    active_at(events, at).len()
}

fn bucket(faults: &[Fault], by: Bucketing) -> String {
    match faults.first() {
        Some(f) if by == Bucketing::Kind && faults.iter().all(|g| g.label() == f.label()) => {
            format!("{}={}", f.label(), faults.len())
        }
        _ => format!("faulty={}", faults.len()),
    }
}

fn liveness(history: &[Entry], events: &[Event], by: Bucketing) -> Vec<Liveness> {
    let mut started: HashMap<usize, Instant> = HashMap::new();
    // By (faulty nodes, situation) at the start: how long each call took if it acquired.
    let mut calls: BTreeMap<(usize, String), Vec<Option<Duration>>> = BTreeMap::new();
    for e in history {
        match e.op {
            Op::Invoke => {
                started.insert(e.client, e.at);
            }
            Op::Acquired { .. } | Op::Failed(_) => {
                if let Some(start) = started.remove(&e.client) {
                    let took = matches!(e.op, Op::Acquired { .. }).then(|| e.at - start);
                    let faults = active_at(events, start);
                    let key = (faults.len(), bucket(&faults, by));
                    calls.entry(key).or_default().push(took);
                }
            }
            _ => {}
        }
    }
    calls
        .into_iter()
        .map(|((faulty, bucket), all)| {
            let mut took: Vec<Duration> = all.iter().filter_map(|t| *t).collect();
            took.sort_unstable();
            Liveness {
                bucket,
                faulty,
                attempts: all.len(),
                acquired: took.len(),
                p50: percentile(&took, 0.50),
                p99: percentile(&took, 0.99),
            }
        })
        .collect()
}

/// The `p` quantile (0 to 1) of `sorted`, by the nearest-rank method.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(client: usize, base: Instant, ms: u64, op: Op) -> Entry {
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
    fn faulty_nodes_are_counted_between_inject_and_heal() {
        let t = Instant::now();
        let ev = |ms, node, action| Event {
            at: t + Duration::from_millis(ms),
            node,
            action,
            error: None,
        };
        let (pause, kill) = (Fault::Pause, Fault::Kill);
        let events = [
            ev(10, 0, Action::Inject(pause)),
            ev(20, 1, Action::Inject(pause)),
            ev(30, 0, Action::Heal(pause)),
            ev(35, 2, Action::EarlyExpiry),
            ev(40, 0, Action::Inject(kill)),
        ];
        let at = |ms| faulty_at(&events, t + Duration::from_millis(ms));
        assert_eq!([at(5), at(15), at(25), at(37), at(45)], [0, 1, 2, 1, 2]);
        let kinds = |ms, by| bucket(&active_at(&events, t + Duration::from_millis(ms)), by);
        assert_eq!(kinds(5, Bucketing::Kind), "faulty=0");
        assert_eq!(kinds(25, Bucketing::Kind), "pause=2");
        assert_eq!(kinds(25, Bucketing::Count), "faulty=2");
        assert_eq!(kinds(45, Bucketing::Kind), "faulty=2");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&d, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&[], 0.99), None);
    }
}
