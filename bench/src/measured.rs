//! What is measured: a [`Cycle`] (one lock and one unlock on a fresh key) or a [`Locker`]
//! (a lock that can also wait for a key another task holds). Contenders implement these;
//! the workloads drive them.

use std::future::Future;
use std::sync::Arc;

use crate::Result;

/// One lock and one unlock on a key nobody else uses.
pub(crate) trait Cycle: Send + Sync + 'static {
    /// Locks `key` and unlocks it again.
    fn cycle(&self, key: &str) -> impl Future<Output = Result<()>> + Send;
}

/// A lock that waits for a key held by someone else.
pub(crate) trait Locker: Send + Sync + 'static {
    /// Proof of holding the lock, handed back to [`Locker::release`].
    type Held: Send;

    /// Acquires `key`, retrying as the library does by default.
    fn acquire(&self, key: &str) -> impl Future<Output = Result<Self::Held>> + Send;

    /// Releases what [`Locker::acquire`] returned.
    fn release(&self, held: Self::Held) -> impl Future<Output = Result<()>> + Send;
}

/// A lock library measured through its lock calls: a cycle is acquire then release.
pub(crate) struct AsCycle<L>(pub(crate) Arc<L>);

impl<L: Locker> Cycle for AsCycle<L> {
    async fn cycle(&self, key: &str) -> Result<()> {
        let held = self.0.acquire(key).await?;
        self.0.release(held).await
    }
}
