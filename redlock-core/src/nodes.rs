//! The nodes of one lock manager: each node's pool, its address for messages, and its
//! health.

use std::sync::Arc;

use crate::conn::Pool;
use crate::health::Health;
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

    /// Notes how a call to `node` ended, and replaces the node's connection once it has
    /// gone silent.
    pub(crate) fn observe(&self, node: usize, vote: &Vote) {
        let (Some(health), Some(pool)) = (self.health.get(node), self.pools.get(node)) else {
            return;
        };
        if health.record(vote.is_timeout()) {
            // A pool that cannot reconnect keeps its connection; nothing else to do.
            pool.reconnect();
        }
    }
}
