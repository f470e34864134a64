//! The nodes of one lock manager: each node's pool, its address for messages, and its
//! health.

use std::sync::Arc;

use crate::conn::{ConnErrorKind, Pool};
use crate::health::{Health, Outcome};
use crate::tally::Vote;

/// The nodes of one lock manager, shared by every lock it makes: each node's pool, its
/// address for messages, and its health.
pub(crate) struct Nodes<P> {
    pools: Box<[P]>,
    addresses: Box<[Option<Arc<str>>]>,
    health: Box<[Health]>,
}

impl<P: Pool> Nodes<P> {
    pub(crate) fn new(pools: Vec<P>) -> Self {
        let addresses = pools.iter().map(|p| p.address().map(Arc::from)).collect();
        let health = pools.iter().map(|_| Health::default()).collect();
        Self {
            pools: pools.into(),
            addresses,
            health,
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

    /// Notes how a call to `node` ended, and replaces the node's connection when only a
    /// new one can help (see `health`).
    pub(crate) fn observe(&self, node: usize, vote: &Vote) {
        let (Some(health), Some(pool)) = (self.health.get(node), self.pools.get(node)) else {
            return;
        };
        if health.record(outcome(vote)) {
            // A pool that cannot reconnect keeps its connection; nothing else to do.
            pool.reconnect();
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
