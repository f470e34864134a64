//! Many tasks contending for one lock, checked from the recorded history.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use redlock_core::{Options, Pool, Redlock};
use tokio::time::Instant;

use super::{Factory, Testbed};
use crate::history::{Holding, overlaps};

const TASKS: usize = 16;
const ACQUISITIONS: usize = 512;

/// 16 tasks take one lock 512 times in all: no two holdings overlap, and a counter
/// updated only under the lock loses no update.
pub async fn contending_tasks_never_overlap<P: Pool>(factory: &impl Factory<P>) {
    let options = Options::new()
        .expiry(Duration::from_secs(3))
        .timeout_factor(0.3)
        .tries(100_000)
        .retry_delay(Duration::from_millis(1), Duration::from_millis(6))
        .quarantine(Duration::ZERO);
    let c = Testbed::start(3, options, factory, "contention");
    let name: Arc<str> = c.key("lock").into();
    let budget = Arc::new(AtomicUsize::new(ACQUISITIONS));
    let counter = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|client| {
            let run = Contender {
                client,
                redlock: c.redlock.clone(),
                name: name.clone(),
            };
            tokio::spawn(run.go(budget.clone(), counter.clone()))
        })
        .collect();
    let mut history = Vec::new();
    for task in tasks {
        history.extend(task.await.expect("contender panicked"));
    }
    assert_eq!(history.len(), ACQUISITIONS);
    let bad = overlaps(&history);
    assert!(
        bad.is_empty(),
        "{} overlapping holdings, first {:?}",
        bad.len(),
        bad.first().map(|&(a, b)| (history[a], history[b]))
    );
    assert_eq!(
        counter.load(Ordering::SeqCst),
        ACQUISITIONS as u64,
        "lost updates"
    );
    assert!(c.values(&name).iter().all(Option::is_none), "no key left");
}

struct Contender<P: Pool> {
    client: usize,
    redlock: Redlock<P>,
    name: Arc<str>,
}

impl<P: Pool> Contender<P> {
    async fn go(self, budget: Arc<AtomicUsize>, counter: Arc<AtomicU64>) -> Vec<Holding> {
        let mut history = Vec::new();
        while budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .is_ok()
        {
            let guard = self
                .redlock
                .lock(&self.name)
                .await
                .expect("lock under contention");
            let acquired = Instant::now();
            // A read-modify-write split by a yield: only mutual exclusion keeps it whole.
            let seen = counter.load(Ordering::SeqCst);
            tokio::task::yield_now().await;
            counter.store(seen + 1, Ordering::SeqCst);
            let valid_until = guard.valid_until();
            let unlock_called = Instant::now();
            guard.unlock().await.expect("unlock under contention");
            history.push(Holding::new(
                self.client,
                acquired,
                unlock_called,
                valid_until,
            ));
        }
        history
    }
}

/// Behind a holder that never unlocks (it crashed), a waiter with a 30 s retry delay
/// acquires once the holder's keys expire: the refusal says how long they have left, and
/// the waiter retries then, not after its delay.
pub async fn waiter_behind_a_crashed_holder_acquires_when_its_keys_expire<P: Pool>(
    factory: &impl Factory<P>,
) {
    let options = Options::new()
        .expiry(Duration::from_secs(5))
        .timeout_factor(0.1)
        .tries(3)
        .retry_delay(Duration::from_secs(30), Duration::from_secs(30))
        .quarantine(Duration::ZERO);
    let c = Testbed::start(3, options, factory, "crashed_holder");
    let name = c.key("lock");
    c.cycle(&c.key("warm-up")).await;
    for i in 0..3 {
        c.fleet.set(i, &name, "crashed-holder", 1_500).expect("set");
    }
    // Generous, but far below the 30 s retry delay: a waiter that slept it would fail.
    let waited = tokio::time::timeout(Duration::from_secs(15), c.redlock.lock(&name)).await;
    let guard = waited
        .expect("acquired long before the retry delay")
        .expect("acquired once the keys expired");
    // A quorum at least: the crashed holder's keys were set one after another, so the
    // last may outlive the retry by a moment and keep that node's vote.
    let holders = c.holders(&name, guard.value());
    assert!(holders >= 2, "held on {holders} of 3 nodes");
    guard.unlock().await.expect("unlock");
}
