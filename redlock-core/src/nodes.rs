//! The nodes of one lock manager: each node's pool, its address for messages, and its
//! health.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::conn::{ConnErrorKind, Pool};
use crate::health::{Health, Outcome};
use crate::observe::{self, Started};
use crate::quarantine::Ages;
use crate::tally::Vote;

/// The nodes of one lock manager, shared by every lock it makes: each node's pool, its
/// address for messages, and its health.
pub(crate) struct Nodes<P> {
    pools: Box<[P]>,
    addresses: Box<[Option<Arc<str>>]>,
    health: Box<[Health]>,
    hand_offs: HandOffs,
    fences: FenceHints,
    ages: Ages,
}

impl<P: Pool> Nodes<P> {
    pub(crate) fn new(pools: Vec<P>) -> Self {
        let addresses = pools.iter().map(|p| p.address().map(Arc::from)).collect();
        let health = pools.iter().map(|_| Health::default()).collect();
        let ages = Ages::new(pools.len());
        Self {
            pools: pools.into(),
            addresses,
            health,
            hand_offs: HandOffs::default(),
            fences: FenceHints::default(),
            ages,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.pools.len()
    }

    /// Each node's address, by index.
    pub(crate) fn addresses(&self) -> &[Option<Arc<str>>] {
        &self.addresses
    }

    /// Node `node`'s pool.
    pub(crate) fn pool(&self, node: usize) -> Option<&P> {
        self.pools.get(node)
    }

    /// What this manager knows of each node's age, for restart quarantine.
    pub(crate) fn ages(&self) -> &Ages {
        &self.ages
    }

    /// The largest fence this manager has seen kept in `fence_key` (0 for none): a
    /// fenced acquire proposes one more.
    pub(crate) fn fence_hint(&self, fence_key: &str) -> u64 {
        self.fences.get(fence_key)
    }

    /// Notes that a node reported `fence` (or a holding got it as its token).
    pub(crate) fn saw_fence(&self, fence_key: &Arc<str>, fence: u64) {
        self.fences.raise(fence_key, fence);
    }

    /// Notes that a release of `key` reached waiters: this manager leaves them the lock
    /// for `window` (see [`Nodes::handed_off_until`]).
    pub(crate) fn hand_off(&self, key: &str, window: Duration) {
        self.hand_offs.note(key, window);
    }

    /// Until when a new acquire of `key` by this manager should wait, for the waiters
    /// its last release woke to take the lock first.
    pub(crate) fn handed_off_until(&self, key: &str) -> Option<Instant> {
        self.hand_offs.until(key)
    }

    /// Notes how a call to `node` ended, and replaces the node's connection when only a
    /// new one can help (see `health`).
    pub(crate) fn observe(&self, node: usize, vote: &Vote, action: &'static str, started: Started) {
        let (Some(health), Some(pool)) = (self.health.get(node), self.pools.get(node)) else {
            return;
        };
        let address = self.addresses.get(node).and_then(Option::as_ref);
        observe::node_vote(node, address, action, vote, started);
        let outcome = outcome(vote);
        if outcome != Outcome::Answered {
            // The connection may be replaced before the next call: read the node's age
            // again before its next vote counts.
            self.ages.forget_connection(node);
        }
        if health.record(outcome) {
            // A pool that cannot reconnect keeps its connection; nothing else to do.
            if pool.reconnect() {
                observe::node_replaced(node, address, vote);
            }
        }
    }
}

/// What a vote says of the connection it came over.
fn outcome(vote: &Vote) -> Outcome {
    let Vote::Failed(error) = vote else {
        return Outcome::Answered;
    };
    match error.kind() {
        ConnErrorKind::Timeout | ConnErrorKind::Connection => Outcome::Failed,
        ConnErrorKind::Auth | ConnErrorKind::ReadOnly => Outcome::Refused,
        _ => Outcome::Other,
    }
}

/// The bounds of a hand-off window: at least a millisecond (Redis's own resolution), at
/// most what a waiter on a slow link could need.
const HAND_OFF_MIN: Duration = Duration::from_millis(1);
const HAND_OFF_MAX: Duration = Duration::from_millis(50);

/// The locks this manager released to waiters, and until when it leaves them alone.
#[derive(Debug)]
struct HandOffs {
    windows: Mutex<HashMap<Arc<str>, Instant>>,
    /// When the latest window ends, in nanoseconds after `origin`: read without the
    /// lock, so that an acquire with no hand-off under way pays nothing to learn it.
    latest: AtomicU64,
    origin: Instant,
}

impl Default for HandOffs {
    fn default() -> Self {
        Self {
            windows: Mutex::new(HashMap::new()),
            latest: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }
}

impl HandOffs {
    fn note(&self, key: &str, window: Duration) {
        let now = Instant::now();
        let until = now + window.clamp(HAND_OFF_MIN, HAND_OFF_MAX);
        let mut map = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        // Windows that passed are dropped here, so the map stays as small as the locks
        // being handed off right now.
        map.retain(|_, until| *until > now);
        map.insert(key.into(), until);
        self.latest.fetch_max(self.nanos(until), Ordering::Relaxed);
    }

    fn until(&self, key: &str) -> Option<Instant> {
        let now = Instant::now();
        if self.latest.load(Ordering::Relaxed) <= self.nanos(now) {
            return None;
        }
        let map = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).copied().filter(|until| *until > now)
    }

    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX)
    }
}

/// At most this many locks' fences are remembered; past it they are forgotten all at
/// once, and each costs one stale proposal to learn again.
const FENCE_HINTS_MAX: usize = 4096;

/// The largest fence this manager has seen for each fenced lock: a hint only (the nodes
/// decide), so that a proposal is rarely stale.
#[derive(Debug, Default)]
struct FenceHints(Mutex<HashMap<Arc<str>, u64>>);

impl FenceHints {
    fn get(&self, fence_key: &str) -> u64 {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(fence_key).copied().unwrap_or(0)
    }

    fn raise(&self, fence_key: &Arc<str>, fence: u64) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= FENCE_HINTS_MAX && !map.contains_key(fence_key) {
            map.clear();
        }
        let hint = map.entry(fence_key.clone()).or_default();
        *hint = (*hint).max(fence);
    }
}
