//! Lock users that record what they did, on one monotonic clock.
//!
//! Each client loops until the run's stop time: pick a name, lock it, read the name's
//! shared counter, work a little (sometimes extending the lock), then write the counter
//! back plus one, but only if validity is still left (the contract of Redlock: check
//! [`Guard::remaining`](redlock_core::Guard::remaining) before each side effect), and
//! unlock. Every step goes into the client's history. The history's types also carry
//! the steps of the [`long_work`](super::long_work) clients, which hold a lease instead
//! of a guard.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redlock_core::fence::{self, Token, Write};
use redlock_core::{Error, Mutex, Pool, Redlock};
use tokio::time::Instant;

/// Why a lock, extend or unlock call failed, as far as the checker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorClass {
    /// Another owner held the lock.
    Taken,
    /// Too few nodes agreed, for other reasons (failed or timed-out nodes).
    NoQuorum,
    /// A quorum agreed too slowly for any validity to remain.
    ValidityExhausted,
    /// The key was gone on unlock or extend.
    Expired,
    /// The call's deadline passed.
    Deadline,
    /// Anything else.
    Other,
}

impl ErrorClass {
    /// The class of a lock error.
    pub fn of(error: &Error) -> Self {
        if error.is_deadline() {
            Self::Deadline
        } else if error.is_taken() {
            Self::Taken
        } else if error.is_no_quorum() {
            Self::NoQuorum
        } else if error.is_validity_exhausted() {
            Self::ValidityExhausted
        } else if error.is_expired() {
            Self::Expired
        } else {
            Self::Other
        }
    }

    /// Every class, in a fixed order, for reports.
    pub const ALL: [ErrorClass; 6] = [
        Self::Taken,
        Self::NoQuorum,
        Self::ValidityExhausted,
        Self::Expired,
        Self::Deadline,
        Self::Other,
    ];

    /// A short lowercase name for report lines.
    pub fn label(self) -> &'static str {
        match self {
            Self::Taken => "taken",
            Self::NoQuorum => "no_quorum",
            Self::ValidityExhausted => "validity_exhausted",
            Self::Expired => "expired",
            Self::Deadline => "deadline",
            Self::Other => "other",
        }
    }
}

/// One recorded operation, or the result of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A lock call began.
    Invoke,
    /// The lock call returned a guard, valid until this instant.
    Acquired {
        /// The guard's validity deadline.
        valid_until: Instant,
    },
    /// The lock call failed.
    Failed(ErrorClass),
    /// An extend returned.
    Extended {
        /// The guard's validity deadline after the call, whatever its outcome: a failed
        /// extend may leave it where it was, or earlier.
        valid_until: Instant,
        /// Why the extend failed, if it did.
        result: Result<(), ErrorClass>,
    },
    /// The protected write: the name's counter went from `seen` to `seen + 1`.
    Wrote {
        /// The value read right after acquiring.
        seen: u64,
    },
    /// The protected write was skipped because too little validity was left.
    Skipped,
    /// Unlock was called: the holder stopped relying on the lock here.
    Unlocking,
    /// Unlock returned.
    Unlocked(Result<(), ErrorClass>),
    /// A lease was acquired ([`Mutex::run`] called its work, or [`Mutex::lease`]
    /// returned): the holding begins.
    Leased {
        /// The lease's end as it read then; renewals move it on.
        until: Instant,
        /// Whether the holder checks its lease before each write; one that does not is the
        /// broken client of the canary.
        heeds: bool,
    },
    /// A write under a lease: the name's counter went from `seen` to `seen + 1`.
    LeaseWrote {
        /// The value read at the start of the step.
        seen: u64,
        /// The window that protected the write: the lease's end as read right before it,
        /// or `None` if the lease read as lost.
        window: Option<Instant>,
    },
    /// The lock call returned a fenced guard with this token (right after `Acquired`).
    Fenced {
        /// The guard's token.
        token: u64,
        /// The guard's validity deadline, as in `Acquired`.
        valid_until: Instant,
    },
    /// A write to the fenced resource under a token returned: written, or refused
    /// because a holder with a larger token had written.
    FencedWrote {
        /// The writer's token.
        token: u64,
        /// Whether the resource took it; `None` when the call failed (the resource is
        /// outside the nemesis, so that is a harness problem).
        accepted: Option<bool>,
        /// Whether the writer had stalled past its lock before writing.
        stalled: bool,
    },
    /// The holder stopped relying on its lease: the run returned, or the lease was
    /// unlocked.
    LeaseEnded {
        /// The last instant the lease could be relied on: when its loss was recorded
        /// (for a release, when the renewals stopped; for a lease that ran out, its end).
        until: Instant,
        /// The loss's kind, as [`LostReason::kind`](redlock_core::LostReason::kind)
        /// names it.
        reason: &'static str,
    },
}

/// One entry of a client's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The client.
    pub client: usize,
    /// The lock name's index.
    pub name: usize,
    /// When, on the shared monotonic clock.
    pub at: Instant,
    /// What.
    pub op: Op,
}

/// One counter per lock name, updated only under that lock.
#[derive(Debug)]
pub struct Counters(Vec<AtomicU64>);

impl Counters {
    /// `names` counters at zero.
    pub fn new(names: usize) -> Self {
        Self((0..names).map(|_| AtomicU64::new(0)).collect())
    }

    /// The counters' values, by name.
    pub fn values(&self) -> Vec<u64> {
        self.0.iter().map(|c| c.load(Ordering::SeqCst)).collect()
    }

    /// The counter of name `name`.
    pub(super) fn get(&self, name: usize) -> Option<&AtomicU64> {
        self.0.get(name)
    }
}

/// A duration uniformly random in `[lo, hi)`, or `lo` when the range is empty.
pub(super) fn between(rng: &mut StdRng, lo: Duration, hi: Duration) -> Duration {
    if lo >= hi {
        return lo;
    }
    let span = u64::try_from((hi - lo).as_micros()).unwrap_or(u64::MAX);
    lo + Duration::from_micros(rng.random_range(0..span))
}

/// How far around the end of its validity an overrunning holder stops working.
pub const OVERRUN_JITTER: Duration = Duration::from_millis(20);

/// How the clients behave.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Time between the read and the write of the counter, uniformly random in `[lo, hi)`.
    pub hold: (Duration, Duration),
    /// Pause between two lock calls, uniformly random in `[lo, hi)`.
    pub think: (Duration, Duration),
    /// Chance that a holder extends its lock before the write.
    pub extend_chance: f64,
    /// Chance that a holder works until its validity has about run out (give or take
    /// [`OVERRUN_JITTER`]), so that some holdings end by validity rather than by unlock
    /// and some writes must be skipped. Without it, holdings far shorter than the expiry
    /// would hide a validity computed too generously.
    pub overrun_chance: f64,
    /// How long one lock call may try (`lock_until`).
    pub acquire_budget: Duration,
    /// Validity that must be left to do the write (or to try an extend).
    pub margin: Duration,
    /// Each client locks only name `id % names`, so that no call waits for another
    /// client: for liveness figures that show the faults' cost alone.
    pub dedicated: bool,
    /// With a fenced resource: chance that a holder stalls past its lock (a pause after
    /// its check) before it writes there.
    pub stall_chance: f64,
    /// Holders drop their guard (which releases in the background) instead of awaiting
    /// the unlock, and go on at once: a silent node then costs nothing.
    pub release_in_background: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            hold: (Duration::from_millis(2), Duration::from_millis(30)),
            think: (Duration::ZERO, Duration::from_millis(15)),
            extend_chance: 0.2,
            overrun_chance: 0.03,
            acquire_budget: Duration::from_millis(800),
            margin: Duration::from_millis(5),
            dedicated: false,
            stall_chance: 0.0,
            release_in_background: false,
        }
    }
}

/// How far past the end of its lock a stalled holder writes: long enough for the next
/// holder to take the lock once the keys expire and write first.
const STALL_PAST: Duration = Duration::from_millis(300);

/// The data a fenced lock protects, on a server outside the lock's nodes: one key and
/// its fence per name, written with [`fence::fenced_set`].
#[derive(Debug)]
pub struct Resource<P> {
    /// The server's pool, from the driver under test.
    pub pool: P,
    /// The data key and its fence key, by name.
    pub keys: Vec<(String, String)>,
}

/// One lock user with its own lock manager (its own connections to every node).
#[derive(Debug)]
pub struct Client<P: Pool> {
    id: usize,
    mutexes: Vec<Mutex<P>>,
    counters: Arc<Counters>,
    workload: Workload,
    rng: StdRng,
    history: Vec<Entry>,
    resource: Option<Resource<P>>,
}

impl<P: Pool> Client<P> {
    /// Client `id`, locking `names` through `redlock`, its randomness drawn from `seed`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a name is empty.
    pub fn new(
        id: usize,
        redlock: &Redlock<P>,
        names: &[String],
        counters: Arc<Counters>,
        workload: Workload,
        seed: u64,
    ) -> redlock_core::Result<Self> {
        let mutexes = names
            .iter()
            .map(|n| redlock.mutex(n))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            id,
            mutexes,
            counters,
            workload,
            rng: StdRng::seed_from_u64(seed),
            history: Vec::new(),
            resource: None,
        })
    }

    /// Writes under the guard's token to `resource` too, when the lock is fenced.
    #[must_use]
    pub fn with_resource(mut self, resource: Resource<P>) -> Self {
        self.resource = Some(resource);
        self
    }

    /// Locks and works until `stop`, then returns the history.
    pub async fn run(mut self, stop: Instant) -> Vec<Entry> {
        while Instant::now() < stop && !self.mutexes.is_empty() {
            let name = if self.workload.dedicated {
                self.id % self.mutexes.len()
            } else {
                self.rng.random_range(0..self.mutexes.len())
            };
            self.once(name).await;
            let (lo, hi) = self.workload.think;
            tokio::time::sleep(self.between(lo, hi)).await;
        }
        self.history
    }

    async fn once(&mut self, name: usize) {
        let Some(mutex) = self.mutexes.get(name).cloned() else {
            return;
        };
        self.record(name, Op::Invoke);
        let deadline = Instant::now() + self.workload.acquire_budget;
        let mut guard = match mutex.lock_until(deadline).await {
            Ok(guard) => guard,
            Err(e) => return self.record(name, Op::Failed(ErrorClass::of(&e))),
        };
        let valid_until = guard.valid_until();
        self.record(name, Op::Acquired { valid_until });
        if let Some(token) = guard.token() {
            let token = token.get();
            self.record(name, Op::Fenced { token, valid_until });
        }
        let counters = self.counters.clone();
        let Some(counter) = counters.get(name) else {
            return;
        };
        // A read-modify-write split by a sleep: only mutual exclusion keeps it whole.
        let seen = counter.load(Ordering::SeqCst);
        let hold = if self.rng.random_bool(self.workload.overrun_chance) {
            let edge = guard.remaining().saturating_sub(OVERRUN_JITTER);
            edge + self.between(Duration::ZERO, OVERRUN_JITTER * 2)
        } else {
            let (lo, hi) = self.workload.hold;
            self.between(lo, hi)
        };
        tokio::time::sleep(hold).await;
        let extend = self.rng.random_bool(self.workload.extend_chance);
        if extend && guard.remaining() > self.workload.margin {
            let result = guard.extend().await.map_err(|e| ErrorClass::of(&e));
            let valid_until = guard.valid_until();
            self.record(
                name,
                Op::Extended {
                    valid_until,
                    result,
                },
            );
        }
        let stalls = self.resource.is_some() && self.rng.random_bool(self.workload.stall_chance);
        if stalls {
            // Paused after the check: by the time it writes, its lock has ended.
            tokio::time::sleep(guard.remaining() + STALL_PAST).await;
            self.write_fenced(name, guard.token(), true).await;
        } else if guard.remaining() > self.workload.margin {
            // No await between the check and the write, so nothing can slip in between.
            counter.store(seen + 1, Ordering::SeqCst);
            self.record(name, Op::Wrote { seen });
            self.write_fenced(name, guard.token(), false).await;
        } else {
            self.record(name, Op::Skipped);
        }
        self.record(name, Op::Unlocking);
        if self.workload.release_in_background {
            drop(guard);
            return;
        }
        let result = guard.unlock().await.map_err(|e| ErrorClass::of(&e));
        self.record(name, Op::Unlocked(result));
    }

    /// Writes the client's id to the name's data under `token`, if there is a resource.
    async fn write_fenced(&mut self, name: usize, token: Option<Token>, stalled: bool) {
        let (Some(resource), Some(token)) = (&self.resource, token) else {
            return;
        };
        let Some((key, fence_key)) = resource.keys.get(name) else {
            return;
        };
        let value = self.id.to_string();
        let written = match resource.pool.get().await {
            Ok(mut conn) => fence::fenced_set(&mut conn, key, fence_key, &value, token).await,
            Err(e) => Err(e),
        };
        let accepted = written.ok().map(|write| write == Write::Written);
        let token = token.get();
        self.record(
            name,
            Op::FencedWrote {
                token,
                accepted,
                stalled,
            },
        );
    }

    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        between(&mut self.rng, lo, hi)
    }

    fn record(&mut self, name: usize, op: Op) {
        self.history.push(Entry {
            client: self.id,
            name,
            at: Instant::now(),
            op,
        });
    }
}
