//! Node health: noticing a connection that went silent.
//!
//! A peer that vanishes without a reset (power loss, a firewall that drops packets) leaves
//! a connection that never fails by itself: every call on it costs the full per-node
//! timeout until the kernel gives up, which takes minutes. The core cannot see the socket,
//! but it sees the timeouts: after [`RECONNECT_AFTER`] in a row on one node it asks the
//! node's pool for a new connection ([`Pool::reconnect`](crate::Pool::reconnect)).

use std::sync::atomic::{AtomicU32, Ordering};

/// How many timeouts in a row on one node make the core ask for a new connection. More
/// than one, so that a single slow answer (a long script, a fork) does not cost a
/// reconnect; few, so that a silent node votes again soon after the network heals.
pub(crate) const RECONNECT_AFTER: u32 = 3;

/// What the core knows of one node's connection.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Calls in a row that timed out.
    timeouts: AtomicU32,
}

impl Health {
    /// Records how one call ended; true when the connection should be replaced now.
    pub(crate) fn record(&self, timed_out: bool) -> bool {
        if !timed_out {
            // Read first: the common case (no timeouts) then writes nothing.
            if self.timeouts.load(Ordering::Relaxed) != 0 {
                self.timeouts.store(0, Ordering::Relaxed);
            }
            return false;
        }
        let seen = self.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
        if seen < RECONNECT_AFTER {
            return false;
        }
        // Start counting afresh for the new connection.
        self.timeouts.store(0, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_timeouts_in_a_row_ask_for_a_reconnect() {
        let health = Health::default();
        let asks =
            |pattern: &[bool]| -> Vec<bool> { pattern.iter().map(|&t| health.record(t)).collect() };
        assert_eq!(asks(&[true, true, false, true, true]), [false; 5]);
        assert_eq!(
            asks(&[false, true, true, true]),
            [false, false, false, true]
        );
        assert_eq!(asks(&[true, true, true]), [false, false, true]);
    }
}
