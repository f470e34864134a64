//! Type-erased pools and connections, so that one lock can span nodes reached through
//! different drivers.

use async_trait::async_trait;

use crate::conn::{Conn, ConnError, Pool, Replies, Reply, ScriptRef};
use crate::subscriber::BoxSubscriber;

/// A connection of any driver, boxed; the connection type of [`BoxPool`].
pub type BoxConn = Box<dyn Conn>;

/// A pool of any driver, boxed, so that one lock can span nodes reached through different
/// clients. Build one with [`PoolExt::boxed`].
pub type BoxPool = Box<dyn Pool<Conn = BoxConn>>;

#[async_trait]
impl<C: Conn + ?Sized> Conn for Box<C> {
    async fn eval(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        (**self).eval(script, keys, args).await
    }

    async fn command(&mut self, args: &[&str]) -> Result<Reply, ConnError> {
        (**self).command(args).await
    }

    async fn eval_then(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
        then: &[&str],
    ) -> Result<Replies, ConnError> {
        (**self).eval_then(script, keys, args, then).await
    }

    fn epoch(&self) -> Option<u64> {
        (**self).epoch()
    }

    fn set_deadline(&mut self, deadline: std::time::Instant) {
        (**self).set_deadline(deadline);
    }
}

#[async_trait]
impl Pool for BoxPool {
    type Conn = BoxConn;

    async fn get(&self) -> Result<BoxConn, ConnError> {
        (**self).get().await
    }

    fn get_now(&self) -> Option<BoxConn> {
        (**self).get_now()
    }

    fn address(&self) -> Option<String> {
        (**self).address()
    }

    fn reconnect(&self) -> bool {
        (**self).reconnect()
    }

    async fn subscriber(&self) -> Result<BoxSubscriber, ConnError> {
        (**self).subscriber().await
    }
}

/// Boxes any pool into a [`BoxPool`].
struct Boxed<P>(P);

#[async_trait]
impl<P: Pool> Pool for Boxed<P> {
    type Conn = BoxConn;

    async fn get(&self) -> Result<BoxConn, ConnError> {
        let conn = self.0.get().await?;
        Ok(Box::new(conn))
    }

    fn get_now(&self) -> Option<BoxConn> {
        let conn = self.0.get_now()?;
        Some(Box::new(conn))
    }

    fn address(&self) -> Option<String> {
        self.0.address()
    }

    fn reconnect(&self) -> bool {
        self.0.reconnect()
    }

    async fn subscriber(&self) -> Result<BoxSubscriber, ConnError> {
        self.0.subscriber().await
    }
}

/// Extension methods on every [`Pool`].
pub trait PoolExt: Pool + Sized {
    /// Erases the driver type, so that pools of different drivers fit in one `Vec`.
    ///
    /// # Examples
    ///
    /// ```
    /// use redlock_core::{BoxPool, PoolExt, memory::MemoryPool};
    ///
    /// let nodes: Vec<BoxPool> = vec![MemoryPool::new().boxed(), MemoryPool::new().boxed()];
    /// assert_eq!(nodes.len(), 2);
    /// ```
    fn boxed(self) -> BoxPool {
        Box::new(Boxed(self))
    }
}

impl<P: Pool> PoolExt for P {}
