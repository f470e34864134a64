//! Long-work clients: lock users that hold one name across several expiries under the
//! run-under-lock helper, [`Mutex::run`], while the lease renews itself.
//!
//! A holding's work is a series of steps until its planned length has passed: read the
//! name's shared counter, work a little, check the lease
//! ([`LeaseSignal::check`] with the workload's margin) and write the counter back plus
//! one. A failed check ends the work, as `?` would in real code; a lost lease makes `run`
//! drop the work at its next `.await`. Every write is recorded with the window that
//! protected it, and the holding's end with the last instant the lease was good for, so
//! the checker judges a long holding as it judges a guard's.
//!
//! The canary adds a client that holds a [`Lease`](redlock_core::Lease) and never looks
//! at it: it writes on after the lease is lost, the misuse the checker must catch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use redlock_core::{LeaseSignal, LeaseState, Mutex, Pool, Redlock};
use tokio::time::Instant;

use super::clients::{Counters, Entry, ErrorClass, Op, between};

/// How the long-work clients behave.
#[derive(Debug, Clone, Copy)]
pub struct LongWork {
    /// How long one holding's work lasts, uniformly random in `[lo, hi)`: several
    /// expiries, so that it stands only on renewals.
    pub length: (Duration, Duration),
    /// Time between the read and the write of one step, uniformly random in `[lo, hi)`.
    pub step: (Duration, Duration),
    /// Pause between two holdings, uniformly random in `[lo, hi)`.
    pub think: (Duration, Duration),
    /// How long the lease must still be held for, at the check before each write.
    pub margin: Duration,
    /// Whether the client works under [`Mutex::run`] and checks before each write (the
    /// correct use), or holds a lease and ignores it (the canary's broken client).
    pub heeds: bool,
}

/// One long-work client, with its own lock manager, always on the same name.
#[derive(Debug)]
pub struct LongWorker<P: Pool> {
    id: usize,
    name: usize,
    mutex: Mutex<P>,
    counters: Arc<Counters>,
    work: LongWork,
    rng: StdRng,
    history: Vec<Entry>,
}

impl<P: Pool> LongWorker<P> {
    /// Client `id`, holding `key` (name index `name`) through `redlock`, its randomness
    /// drawn from `seed`.
    ///
    /// # Errors
    ///
    /// [`redlock_core::Error::Config`] when the key is empty.
    pub fn new(
        id: usize,
        redlock: &Redlock<P>,
        (name, key): (usize, &str),
        counters: Arc<Counters>,
        work: LongWork,
        seed: u64,
    ) -> redlock_core::Result<Self> {
        Ok(Self {
            id,
            name,
            mutex: redlock.mutex(key)?,
            counters,
            work,
            rng: StdRng::seed_from_u64(seed),
            history: Vec::new(),
        })
    }

    /// Holds and works until `stop` (a holding under way runs to its planned length),
    /// then returns the history.
    pub async fn run(mut self, stop: Instant) -> Vec<Entry> {
        while Instant::now() < stop {
            let length = between(&mut self.rng, self.work.length.0, self.work.length.1);
            if self.work.heeds {
                self.under_run(length).await;
            } else {
                self.ignoring(length).await;
            }
            let (lo, hi) = self.work.think;
            tokio::time::sleep(between(&mut self.rng, lo, hi)).await;
        }
        self.history
    }

    /// One holding under [`Mutex::run`]: the work ends at a failed check, or is dropped
    /// by `run` the moment the lease is lost.
    async fn under_run(&mut self, length: Duration) {
        self.record(Op::Invoke);
        let mutex = self.mutex.clone();
        let mut held = None;
        let ran = mutex
            .run(|lease| {
                // `run` calls this as soon as it holds the lease, before the work's first
                // poll: the holding's start, as the return of `lock` is a guard's.
                self.started(&lease, true);
                held = Some(lease.clone());
                self.steps(lease, length)
            })
            .await;
        match (held, ran) {
            (Some(lease), _) => self.ended(&lease),
            (None, Err(e)) => self.record(Op::Failed(ErrorClass::of(&e))),
            // `run` returns without an error only after running the work.
            (None, Ok(_)) => {}
        }
    }

    /// One holding of a lease whose work never looks at it: it writes on after a loss
    /// until its planned length has passed, then unlocks.
    async fn ignoring(&mut self, length: Duration) {
        self.record(Op::Invoke);
        let lease = match self.mutex.lease().await {
            Ok(lease) => lease,
            Err(e) => return self.record(Op::Failed(ErrorClass::of(&e))),
        };
        let signal = lease.signal().clone();
        self.started(&signal, false);
        // It does not check, so it never stops early: there is no error to see.
        let _never_fails = self.steps(signal.clone(), length).await;
        // No `Unlocking`: the holding ends where the lease says, at `LeaseEnded`.
        let result = lease.unlock().await.map_err(|e| ErrorClass::of(&e));
        self.record(Op::Unlocked(result));
        self.ended(&signal);
    }

    /// Read-modify-write steps on the name's counter until `length` has passed; a client
    /// that heeds its lease checks it before each write and stops when the check fails.
    async fn steps(&mut self, lease: LeaseSignal, length: Duration) -> redlock_core::Result<()> {
        let end = Instant::now() + length;
        let counters = self.counters.clone();
        let Some(counter) = counters.get(self.name) else {
            return Ok(());
        };
        while Instant::now() < end {
            // A read-modify-write split by a sleep: only mutual exclusion keeps it whole.
            let seen = counter.load(Ordering::SeqCst);
            let (lo, hi) = self.work.step;
            tokio::time::sleep(between(&mut self.rng, lo, hi)).await;
            // Read before the check, so that a check that passes confirms this window:
            // renewals only move a lease's end later, and a lost lease stays lost.
            let window = match lease.state() {
                LeaseState::Held { until } => Some(until),
                LeaseState::Lost { .. } => None,
            };
            if self.work.heeds
                && let Err(e) = lease.check(self.work.margin)
            {
                self.record(Op::Skipped);
                return Err(e);
            }
            // No await between the check and the write, so nothing can slip in between.
            counter.store(seen + 1, Ordering::SeqCst);
            self.record(Op::LeaseWrote { seen, window });
        }
        Ok(())
    }

    /// Records the start of a holding, with the lease's end as it reads when handed over.
    fn started(&mut self, lease: &LeaseSignal, heeds: bool) {
        let until = last_good(&lease.state());
        self.record(Op::Leased { until, heeds });
    }

    /// Records the end of a holding; called once the work has stopped and the lease is
    /// released or lost, so that its state says until when it could be relied on.
    fn ended(&mut self, lease: &LeaseSignal) {
        let state = lease.state();
        let reason = match &state {
            LeaseState::Lost { reason, .. } => reason.kind(),
            LeaseState::Held { .. } => "held",
        };
        let until = last_good(&state);
        self.record(Op::LeaseEnded { until, reason });
    }

    fn record(&mut self, op: Op) {
        self.history.push(Entry {
            client: self.id,
            name: self.name,
            at: Instant::now(),
            op,
        });
    }
}

/// The last instant a lease in `state` can be relied on: its end while held, the moment
/// its loss was recorded once lost.
fn last_good(state: &LeaseState) -> Instant {
    match state {
        LeaseState::Held { until } => *until,
        LeaseState::Lost { at, .. } => *at,
    }
}
