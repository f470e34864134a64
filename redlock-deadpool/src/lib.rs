//! Redlock distributed lock driver for [deadpool-redis](https://docs.rs/deadpool-redis) 0.23.
//!
//! This crate re-exports all of [`redlock_core`] and the `deadpool_redis` crate (which
//! re-exports `redis`), so it is the only redlock dependency you need.
//!
//! ```no_run
//! use redlock_deadpool::{DeadpoolPool, Redlock};
//!
//! # async fn run() -> redlock_deadpool::Result<()> {
//! let pools = DeadpoolPool::from_urls(&[
//!     "redis://10.0.0.1:6379/",
//!     "redis://10.0.0.2:6379/",
//!     "redis://10.0.0.3:6379/",
//! ])?;
//! let redlock = Redlock::new(pools)?;
//! let guard = redlock.lock("invoice:42").await?;
//! // ... the protected work ...
//! guard.unlock().await?;
//! # Ok(()) }
//! ```
//!
//! # Why a connection is pinned
//!
//! deadpool-redis recycles a connection on every checkout by sending `UNWATCH` and `PING`
//! (0.23 has no setting to skip it), which would add a round trip to every lock operation.
//! Its connections are multiplexed, so [`DeadpoolPool`] checks one out once, keeps it
//! for itself, and runs every call on a clone of it: a lock cycle costs exactly its own
//! commands. Keeping the connection checked out (rather than cloning it and handing it
//! back) means no one else can put a blocking command (`BLPOP`) in front of a lock call.
//! When a call fails on a broken connection, or the lock finds the node silent (see
//! [`Pool::reconnect`]), the connection is taken out of the pool for good, and the next
//! call checks out a fresh one. [`DeadpoolPool::from_url`]'s connections set
//! `TCP_NODELAY`, TCP keepalive and (on Linux) `TCP_USER_TIMEOUT`.
//!
//! Checkouts are bounded: a pool without a wait timeout is asked without waiting, so an
//! exhausted pool is a failed vote ([`ConnErrorKind::PoolExhausted`]) rather than a hang,
//! and the lock bounds every call with its per-node timeout, so a hanging node is a
//! failed vote with [`ConnErrorKind::Timeout`].
//!
//! A Sentinel-managed master or a Redis Cluster as a node is not offered here:
//! deadpool-redis 0.23's Sentinel pool gives its connections a fixed 500 ms response
//! timeout, and its cluster pool resends calls after a dropped connection, both against
//! the driver contract. Build such a node with `redlock-redis-rs` (`from_sentinel`,
//! `from_cluster`) and mix it with deadpool nodes through [`PoolExt::boxed`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use deadpool_redis;
use deadpool_redis::redis;
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{AsyncConnectionConfig, ConnectionInfo};
use deadpool_redis::{Manager, PoolError, Runtime, TimeoutType, Timeouts};
pub use redlock_core::*;
use redlock_redis_rs::{
    RedisSubscriber, connection_info, node_address, query_command, query_script, query_script_then,
    tcp_settings,
};
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;

/// The pool timeouts [`DeadpoolPool::from_url`] sets: no waiting for a free connection,
/// 1 s to create one, 500 ms to recycle one.
pub const URL_TIMEOUTS: Timeouts = Timeouts {
    wait: Some(Duration::ZERO),
    create: Some(Duration::from_secs(1)),
    recycle: Some(Duration::from_millis(500)),
};

/// One Redis node reached through a deadpool-redis pool. Cheap to clone.
#[derive(Clone)]
pub struct DeadpoolPool {
    pool: deadpool_redis::Pool,
    pinned: Arc<AsyncMutex<Pinned>>,
    address: Option<String>,
    /// What pub/sub connections for release notifications are opened through (outside
    /// the pool); `None` leaves waiters polling.
    subscriber: Option<redis::Client>,
}

/// The connection this node's calls run on, and a count that tells replacements apart.
#[derive(Default)]
struct Pinned {
    conn: Option<deadpool_redis::Connection>,
    generation: u64,
    /// A checkout under way, kept across calls cut short by the per-node timeout.
    connecting: Option<JoinHandle<std::result::Result<deadpool_redis::Connection, PoolError>>>,
}

impl std::fmt::Debug for DeadpoolPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadpoolPool")
            .field("address", &self.address)
            .field("status", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl DeadpoolPool {
    /// A node reached through `pool`, of which it keeps one connection checked out.
    ///
    /// Nothing is sent until the first lock call. If the pool has no wait timeout, this
    /// driver's checkouts do not wait for a free connection. Name the node in errors with
    /// [`DeadpoolPool::with_address`].
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when called outside a tokio runtime (checkouts run in tasks of
    /// their own), as every driver's constructors do.
    pub fn new(pool: deadpool_redis::Pool) -> Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(
                "DeadpoolPool must be built within a tokio runtime".into(),
            ));
        }
        let pinned = Arc::new(AsyncMutex::new(Pinned::default()));
        Ok(Self {
            pool,
            pinned,
            address: None,
            subscriber: None,
        })
    }

    /// Has waiters of this node woken by release announcements, heard on pub/sub
    /// connections opened through `client`, outside the pool (one at a time per lock
    /// manager, from when someone first waits). Pools built from a URL have this already;
    /// without it, waiters poll. Give it the pool's own connection settings.
    #[must_use]
    pub fn with_subscriber(mut self, client: redis::Client) -> Self {
        self.subscriber = Some(client);
        self
    }

    /// Names the node `address` in errors (`host:port`; never put credentials in it).
    #[must_use]
    pub fn with_address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// A node at `url` (`redis://[user:pass@]host:port/db`, or `rediss://…` with a TLS
    /// feature, trusting the system's roots), on a new tokio pool with [`URL_TIMEOUTS`].
    /// Nothing is sent yet, so a node that is down now does not make this fail; it counts
    /// as a failed vote until it is reachable.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the URL is malformed (the message names it without its
    /// credentials), asks for TLS in a build without a TLS feature, or outside a tokio
    /// runtime.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::from_info(url, connection_info(url, None)?)
    }

    /// A node at the `rediss://` `url`, trusting the CA and presenting the client
    /// certificate that `tls` holds. Needs the `tls-rustls` feature.
    ///
    /// # Errors
    ///
    /// As [`DeadpoolPool::from_url`], and [`Error::Config`] when the URL is not
    /// `rediss://`, the certificates or key do not parse, or the feature is off.
    pub fn from_url_with_tls(url: &str, tls: &Tls) -> Result<Self> {
        Self::from_info(url, connection_info(url, Some(tls))?)
    }

    fn from_info(url: &str, info: ConnectionInfo) -> Result<Self> {
        let invalid = |e: &dyn std::fmt::Display| {
            Error::Config(format!("invalid redis url {:?}: {e}", redact_url(url)))
        };
        let address = node_address(info.addr());
        let tcp = tcp_settings(info.tcp_settings());
        // No response timeout: the lock bounds every call with its own per-node timeout,
        // and redis's default of 500 ms would cut calls short of a longer one.
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(None);
        let info = info.set_tcp_settings(tcp);
        let subscriber = redis::Client::open(info.clone()).map_err(|e| invalid(&e))?;
        let manager = Manager::new_with_config(info, connection).map_err(|e| invalid(&e))?;
        let pool = deadpool_redis::Pool::builder(manager)
            .timeouts(URL_TIMEOUTS)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Config(format!("cannot build a deadpool pool: {e}")))?;
        let node = Self::new(pool)?.with_address(address);
        Ok(node.with_subscriber(subscriber))
    }

    /// One node per URL, in order.
    ///
    /// # Errors
    ///
    /// As [`DeadpoolPool::from_url`], for the first URL that fails.
    pub fn from_urls<S: AsRef<str>>(urls: &[S]) -> Result<Vec<Self>> {
        urls.iter().map(|u| Self::from_url(u.as_ref())).collect()
    }

    /// The deadpool-redis pool this node's connection comes from.
    pub fn pool(&self) -> &deadpool_redis::Pool {
        &self.pool
    }

    /// Checks a connection out in a task of its own, so that the lock's per-node timeout,
    /// which may cut `get` short, never cuts a connection half-way through being made:
    /// the next `get` picks up the same checkout.
    fn checkout(&self) -> JoinHandle<std::result::Result<deadpool_redis::Connection, PoolError>> {
        let mut timeouts = self.pool.timeouts();
        timeouts.wait.get_or_insert(Duration::ZERO);
        let pool = self.pool.clone();
        tokio::spawn(async move { pool.timeout_get(&timeouts).await })
    }
}

#[async_trait]
impl Pool for DeadpoolPool {
    type Conn = DeadpoolConn;

    async fn get(&self) -> Result<DeadpoolConn, ConnError> {
        // Held across the checkout, so concurrent calls share one connection, not race.
        let mut pinned = self.pinned.lock().await;
        let conn = match pinned.conn.take() {
            Some(conn) => conn,
            None => {
                let checkout = pinned.connecting.get_or_insert_with(|| self.checkout());
                let done = checkout.await;
                pinned.connecting = None;
                let conn = done.map_err(|e| {
                    ConnError::with_source(ConnErrorKind::Other, "checkout task failed", e)
                })?;
                pinned.generation += 1;
                conn.map_err(map_pool_error)?
            }
        };
        let handed = self.hand_out(&conn, pinned.generation);
        pinned.conn = Some(conn);
        Ok(handed)
    }

    /// The pinned connection, when one is checked out and nobody is replacing it.
    fn get_now(&self) -> Option<DeadpoolConn> {
        let pinned = self.pinned.try_lock().ok()?;
        let conn = pinned.conn.as_ref()?;
        Some(self.hand_out(conn, pinned.generation))
    }

    fn address(&self) -> Option<String> {
        self.address.clone()
    }

    /// Takes the pinned connection out of the pool for good; the next call checks out a
    /// new one. Does nothing (and says so) while a checkout holds the connection slot.
    fn reconnect(&self) -> bool {
        let Ok(mut pinned) = self.pinned.try_lock() else {
            return false;
        };
        discard(pinned.conn.take());
        true
    }

    /// A new pub/sub connection outside the pool, through the client built from the
    /// same URL (or given with [`DeadpoolPool::with_subscriber`]).
    async fn subscriber(&self) -> Result<BoxSubscriber, ConnError> {
        let clients = self.subscriber.as_slice();
        Ok(Box::new(RedisSubscriber::open_first(clients).await?))
    }
}

/// Takes `conn` out of its pool for good, instead of handing it back to be recycled (a
/// broken or silent connection would fail its recycle `PING` only after a timeout).
fn discard(conn: Option<deadpool_redis::Connection>) {
    if let Some(conn) = conn {
        drop(deadpool_redis::Connection::take(conn));
    }
}

impl DeadpoolPool {
    /// A handle on the pinned connection `conn` of `generation`.
    fn hand_out(&self, conn: &deadpool_redis::Connection, generation: u64) -> DeadpoolConn {
        DeadpoolConn {
            conn: MultiplexedConnection::clone(conn),
            generation,
            pinned: Arc::clone(&self.pinned),
        }
    }
}

/// Runs the core's scripts on the connection a [`DeadpoolPool`] keeps checked out.
pub struct DeadpoolConn {
    conn: MultiplexedConnection,
    generation: u64,
    pinned: Arc<AsyncMutex<Pinned>>,
}

impl std::fmt::Debug for DeadpoolConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadpoolConn")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl DeadpoolConn {
    /// Takes a broken connection out of the pool, unless it was replaced already.
    async fn check<T>(&self, result: Result<T, ConnError>) -> Result<T, ConnError> {
        if let Err(e) = &result
            && e.kind() == ConnErrorKind::Connection
        {
            let mut pinned = self.pinned.lock().await;
            if pinned.generation == self.generation {
                discard(pinned.conn.take());
            }
        }
        result
    }
}

#[async_trait]
impl Conn for DeadpoolConn {
    async fn eval(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        let result = query_script(&mut self.conn, script, keys, args).await;
        self.check(result).await
    }

    async fn command(&mut self, args: &[&str]) -> Result<Reply, ConnError> {
        let result = query_command(&mut self.conn, args).await;
        self.check(result).await
    }

    async fn eval_then(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
        then: &[&str],
    ) -> Result<Replies, ConnError> {
        let result = query_script_then(&mut self.conn, script, keys, args, then).await;
        self.check(result).await
    }

    /// The checkout this connection came from: a new pooled connection is a new checkout.
    fn epoch(&self) -> Option<u64> {
        Some(self.generation)
    }
}

/// Maps a deadpool-redis checkout error into the core's [`ConnError`].
pub fn map_pool_error(e: PoolError) -> ConnError {
    let (kind, message) = match e {
        PoolError::Backend(e) => return redlock_redis_rs::map_error(e),
        PoolError::Timeout(TimeoutType::Wait) => (
            ConnErrorKind::PoolExhausted,
            "no pooled connection free in time",
        ),
        PoolError::Timeout(_) => (
            ConnErrorKind::Timeout,
            "pool timed out connecting to the node",
        ),
        PoolError::Closed => (ConnErrorKind::Other, "pool is closed"),
        PoolError::NoRuntimeSpecified => (
            ConnErrorKind::Other,
            "pool has timeouts but no runtime; build it with Runtime::Tokio1",
        ),
        PoolError::PostCreateHook(_) => (ConnErrorKind::Other, "pool post-create hook failed"),
    };
    ConnError::with_source(kind, message, e)
}
