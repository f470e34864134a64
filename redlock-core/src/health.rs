//! Node health: noticing a connection that only a new one can fix.
//!
//! A peer that vanishes without a reset (power loss, a firewall that drops packets) leaves
//! a connection that never fails by itself: every call on it costs the full per-node
//! timeout until the kernel gives up, which takes minutes. Some clients also keep a
//! failed handshake (refused credentials, "max number of clients") and return it on every
//! later call. The core cannot see the socket, but it sees the calls: after
//! [`RECONNECT_AFTER`] timeouts or connection failures in a row on one node, or at once
//! when the node refuses the credentials or answers as a replica (`READONLY`: a failover
//! demoted the master this connection reached), it asks the node's pool for a new connection
//! ([`Pool::reconnect`](crate::Pool::reconnect)), at most once per [`RECONNECT_EVERY`].
//!
//! The limit keeps a node that is slow for everyone (a paused server, a fork stall) from
//! being handed a new connection for every few calls that time out on it. A reconnect
//! also costs liveness, never safety: a release sent on the new connection may overtake
//! a `SET` still queued on the old one, and the key then stays until it expires.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How many timeouts or connection failures in a row on one node make the core ask for a
/// new connection. More than one, so that a single slow answer (a long script, a fork)
/// does not cost a reconnect; few, so that a silent node votes again soon after the
/// network heals.
pub(crate) const RECONNECT_AFTER: u32 = 3;

/// The least time between two reconnects of one node.
pub(crate) const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// How one call to a node ended, as far as its connection is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The node answered: the connection works.
    Answered,
    /// No answer in time, or the connection failed: a new one may help if it goes on.
    Failed,
    /// The node refused the credentials, or is a replica since a failover: only a new
    /// connection (trying the credentials again, or reaching the new master) helps.
    Refused,
    /// Anything else (say a rejected command): says nothing about the connection.
    Other,
}

/// What the core knows of one node's connection.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Calls in a row that failed.
    failures: AtomicU32,
    /// When the core last asked for a new connection.
    last_reconnect: Mutex<Option<Instant>>,
}

impl Health {
    /// Records how one call ended; true when the connection should be replaced now.
    pub(crate) fn record(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Answered => {
                // Read first: the common case (no failures) then writes nothing.
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
                false
            }
            Outcome::Other => false,
            Outcome::Refused => self.reconnect_due(),
            Outcome::Failed => {
                let seen = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                seen >= RECONNECT_AFTER && self.reconnect_due()
            }
        }
    }

    /// Whether a reconnect may happen now (none in the last [`RECONNECT_EVERY`]); if so,
    /// counts it and starts counting failures afresh.
    fn reconnect_due(&self) -> bool {
        let now = Instant::now();
        let mut last = self
            .last_reconnect
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|at| now.saturating_duration_since(at) < RECONNECT_EVERY) {
            return false;
        }
        *last = Some(now);
        self.failures.store(0, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asks(health: &Health, pattern: &[Outcome]) -> Vec<bool> {
        pattern.iter().map(|&o| health.record(o)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn only_failures_in_a_row_ask_for_a_reconnect() {
        use Outcome::{Answered, Failed, Other};
        let health = Health::default();
        let pattern = [Failed, Failed, Answered, Failed, Failed, Other];
        assert_eq!(asks(&health, &pattern), [false; 6]);
        assert_eq!(asks(&health, &[Failed]), [true]);
    }

    #[tokio::test(start_paused = true)]
    async fn refused_credentials_ask_at_once() {
        assert!(Health::default().record(Outcome::Refused));
    }

    #[tokio::test(start_paused = true)]
    async fn reconnects_are_at_least_a_second_apart() {
        use Outcome::{Failed, Refused};
        let health = Health::default();
        assert_eq!(asks(&health, &[Failed; 3]), [false, false, true]);
        // Calls still in flight on the old connection time out too: no second reconnect.
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(asks(&health, &[Failed; 4]), [false; 4]);
        assert!(!health.record(Refused));
        tokio::time::advance(RECONNECT_EVERY / 2).await;
        assert!(
            health.record(Failed),
            "a fifth failure in a row, a second on"
        );
    }
}
