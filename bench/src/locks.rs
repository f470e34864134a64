//! The lock libraries under test: redlock-rs (generic over its drivers) and rslock 0.10,
//! each with its default options.

use std::time::Duration;

use redlock_redis_rs::redis;
use redlock_redis_rs::{Guard, Pool, Redlock};
use rslock::{LockGuard, LockManager};

use crate::Result;
use crate::measured::Locker;

/// rslock's TTL, the same as redlock-rs's default expiry.
const RSLOCK_TTL: Duration = Duration::from_secs(8);

impl<P: Pool> Locker for Redlock<P> {
    type Held = Guard<P>;

    async fn acquire(&self, key: &str) -> Result<Guard<P>> {
        Ok(self.mutex(key)?.lock().await?)
    }

    async fn release(&self, held: Guard<P>) -> Result<()> {
        Ok(held.unlock().await?)
    }
}

/// rslock 0.10 over its own multiplexed connections (redis-rs underneath).
pub(crate) struct Rslock(LockManager);

impl Rslock {
    /// A lock manager over `urls`.
    pub(crate) fn new(urls: &[String]) -> Result<Self> {
        let clients = urls
            .iter()
            .map(|url| redis::Client::open(url.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(LockManager::from_clients(clients)))
    }
}

impl Locker for Rslock {
    type Held = LockGuard;

    /// `acquire` retries until it gets the lock, as rslock users call it.
    async fn acquire(&self, key: &str) -> Result<LockGuard> {
        Ok(self.0.acquire(key.as_bytes(), RSLOCK_TTL).await?)
    }

    async fn release(&self, held: LockGuard) -> Result<()> {
        held.release().await;
        Ok(())
    }
}
