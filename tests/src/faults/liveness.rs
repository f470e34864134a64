//! Liveness figures: how many lock calls acquired, and how fast, by the fault situation
//! (which nodes were under a fault inside the model) when each call started.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::clients::{Entry, Op};
use super::nemesis::Event;
use super::schedule::{Action, Fault};

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

pub(super) fn liveness(history: &[Entry], events: &[Event], by: Bucketing) -> Vec<Liveness> {
    let mut started: HashMap<usize, Instant> = HashMap::new();
    // By (faulty nodes, situation) at the start: how long each call took if it acquired.
    let mut calls: BTreeMap<(usize, String), Vec<Option<Duration>>> = BTreeMap::new();
    for e in history {
        match e.op {
            Op::Invoke => {
                started.insert(e.client, e.at);
            }
            Op::Acquired { .. } | Op::Leased { .. } | Op::Failed(_) => {
                if let Some(start) = started.remove(&e.client) {
                    let acquired = !matches!(e.op, Op::Failed(_));
                    let took = acquired.then(|| e.at - start);
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
