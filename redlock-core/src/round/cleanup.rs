//! The cleanup of an acquire round: [`Round`] releases, at once or in the background,
//! every node that a failed or dropped round may have set.

use std::sync::Arc;

use tokio::time::Instant;

use super::Target;
use crate::conn::Pool;
use crate::fan_out::{InFlight, Release, finish, release_on};
use crate::tally::{NodeSet, Tally};

/// One acquire round in progress. Dropped part-way (the acquire future was cancelled), it
/// releases in the background every node that may hold its value.
pub(super) struct Round<'a, P: Pool> {
    target: &'a Target<P>,
    pub(super) value: Arc<str>,
    /// Whether the value is this attempt's alone, so that releasing it anywhere is safe.
    pub(super) unique: bool,
    pub(super) tally: Tally,
    pub(super) armed: bool,
}

impl<'a, P: Pool> Round<'a, P> {
    pub(super) fn new(target: &'a Target<P>, value: Arc<str>) -> Self {
        let unique = target.settings.options.value.is_unique();
        Self {
            target,
            value,
            unique,
            tally: target.tally(),
            armed: true,
        }
    }

    /// The nodes that may hold our value: with a unique value, every node that did not
    /// answer "taken" (a timed-out `SET` may still land), or only those that answered so
    /// far; with a value that might be another owner's, only the nodes that confirmed it.
    fn ours(&self, unanswered_too: bool) -> NodeSet {
        if !self.unique {
            return self.tally.set_nodes();
        }
        let asked = if unanswered_too {
            self.target.all_nodes()
        } else {
            self.tally.answered_nodes()
        };
        asked.without(self.tally.taken_nodes())
    }

    /// Releases what the failed round may have set, before the next round: at once, and
    /// never past the caller's deadline (what is left then goes on in the background).
    /// The calls still in flight are released by `in_flight` as each one finishes.
    pub(super) async fn release(mut self, release: Release<P>, mut in_flight: InFlight) {
        let ours = self.ours(false);
        let deadline = release.plan.deadline;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            self.armed = false;
            self.target
                .release_in_background(ours, None, &self.value, false);
            return;
        }
        // Cancelled, or cut by the deadline, while this runs, the round is dropped still
        // armed and releases in the background.
        let releasing = release_on(ours, release.plan.everyone(), release.call, false);
        if until(deadline, releasing).await.is_none() {
            return;
        }
        self.armed = false;
        // The next round's value is new, so no late release of this round can touch its
        // keys; waiting keeps a late `SET` of this round from taking a node it needs.
        until(deadline, finish(&mut in_flight)).await;
    }
}

/// Runs `f` to its end, or until `deadline` when there is one; `None` when cut short.
async fn until<F: std::future::Future>(deadline: Option<Instant>, f: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, f).await.ok(),
        None => Some(f.await),
    }
}

impl<P: Pool> Drop for Round<'_, P> {
    fn drop(&mut self) {
        if self.armed {
            let ours = self.ours(true);
            self.target
                .release_in_background(ours, None, &self.value, false);
        }
    }
}
