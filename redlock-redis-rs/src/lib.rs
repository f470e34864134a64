//! Redlock distributed lock driver for [redis-rs](https://docs.rs/redis) (`redis` 1.x, tokio).
//!
//! This crate re-exports all of [`redlock_core`] and the `redis` crate, so it is the only
//! redlock dependency you need.
//!
//! ```no_run
//! use redlock_redis_rs::{RedisPool, Redlock};
//!
//! # async fn run() -> redlock_redis_rs::Result<()> {
//! let pools = RedisPool::from_urls(&[
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
//! [`RedisPool`] wraps a [`ConnectionManager`]: one multiplexed connection per node that
//! connects lazily and reconnects by itself after a broken connection. A node that is down
//! when the pool is built counts as a failed vote until it is reachable, and is used again
//! once it is back. Its connections set `TCP_NODELAY`, TCP keepalive and (on Linux)
//! `TCP_USER_TIMEOUT`, and when the lock sees a node stay silent it replaces the manager
//! (see [`Pool::reconnect`]). Any other `redis` async connection that is `Clone` (say a
//! `MultiplexedConnection`) works through [`RedisPool::from_connection`]; [`RedisConn`]
//! runs the scripts on any [`ConnectionLike`], which is what other redis-rs based drivers
//! build on.
//!
//! With the `cluster` feature, `RedisPool::from_cluster` makes a whole Redis Cluster
//! one node of the lock: each call goes to the master that serves the lock key's slot.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
pub use conn::{RedisConn, map_error, query_command, query_script, query_script_then, to_reply};
pub use redis;
use redis::ConnectionAddr;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::{TcpSettings, socket2::TcpKeepalive};
pub use redlock_core::*;
#[cfg(feature = "sentinel")]
pub use sentinel::SentinelConnection;
pub use subscriber::RedisSubscriber;
pub use tls::{TLS_BUILT, connection_info};

#[cfg(feature = "cluster")]
mod cluster;
mod conn;
#[cfg(feature = "sentinel")]
mod sentinel;
mod subscriber;
mod tls;

/// One Redis node reached through redis-rs. Cheap to clone; clones share the connection.
pub struct RedisPool<C = ConnectionManager> {
    shared: Arc<Shared<C>>,
    address: Option<String>,
    /// What pub/sub connections for release notifications are opened through; `None`
    /// leaves waiters polling.
    subscriber: Option<SubscribeVia>,
}

/// Where a [`RedisPool`]'s pub/sub connections come from.
#[derive(Clone)]
enum SubscribeVia {
    /// The first of these clients that connects: the node's own client, or a cluster's
    /// seeds (a cluster passes a message published on any master to every node).
    Clients(Vec<redis::Client>),
    /// The master that the Sentinels report now.
    #[cfg(feature = "sentinel")]
    Sentinel(SentinelConnection),
}

/// Makes a new connection to replace one that went silent.
type Rebuild<C> = Box<dyn Fn() -> Option<C> + Send + Sync>;

struct Shared<C> {
    conn: RwLock<C>,
    /// `None` for a connection the caller built: it cannot be replaced.
    rebuild: Option<Rebuild<C>>,
    /// Counts the new underlying connections of a connection this crate built: each
    /// replacement, and each reconnect a RESP3 `ConnectionManager` made by itself.
    /// `None` for a connection the caller built, which may reconnect unseen.
    generation: Option<Arc<AtomicU64>>,
    /// Whether `INFO` reaches the one node (not a cluster).
    commands: bool,
}

impl<C> Clone for RedisPool<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            address: self.address.clone(),
            subscriber: self.subscriber.clone(),
        }
    }
}

impl<C> fmt::Debug for RedisPool<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPool")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl RedisPool {
    /// A node reached through `client`, connected lazily and reconnected as needed, with
    /// `TCP_NODELAY`, TCP keepalive (after 10 s idle, every 5 s, 3 probes) and, on Linux,
    /// a 10 s `TCP_USER_TIMEOUT` set on top of the client's TCP settings.
    ///
    /// Nothing is sent until the first lock call, so a node that is down now does not make
    /// this fail.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when called outside a tokio runtime.
    pub fn new(client: redis::Client) -> Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(
                "RedisPool must be built within a tokio runtime".into(),
            ));
        }
        let info = client.get_connection_info().clone();
        let tcp = tcp_settings(info.tcp_settings());
        let address = node_address(info.addr());
        let client = redis::Client::open(info.set_tcp_settings(tcp))
            .map_err(|e| Error::Config(format!("cannot set up a redis client: {e}")))?;
        let subscriber = SubscribeVia::Clients(vec![client.clone()]);
        let disconnections = conn::Disconnections::default();
        let generation = disconnections.0.clone();
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            // The lock bounds every call with its own per-node timeout; redis's default of
            // 500 ms would cut calls short of a longer one.
            .set_response_timeout(None);
        // Over RESP2 the manager reconnects only after a call failed, which the lock sees;
        // over RESP3 it reconnects when a connection closes, and pushes a notice first.
        let resp3 = client
            .get_connection_info()
            .redis_settings()
            .protocol()
            .supports_resp3();
        let config = match resp3 {
            true => config.set_push_sender(disconnections),
            false => config,
        };
        let manager =
            move || ConnectionManager::new_lazy_with_config(client.clone(), config.clone());
        let conn = manager()
            .map_err(|e| Error::Config(format!("cannot set up a redis connection: {e}")))?;
        let rebuild: Rebuild<ConnectionManager> = Box::new(move || manager().ok());
        let pool = Self::build(conn, Some(rebuild)).with_address(address);
        Ok(pool.counting(generation).subscribing_via(subscriber))
    }

    /// A node at `url` (`redis://[user:pass@]host:port/db`, `rediss://…` with a TLS
    /// feature, trusting the system's roots, `unix://…`).
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
    /// As [`RedisPool::from_url`], and [`Error::Config`] when the URL is not `rediss://`,
    /// the certificates or key do not parse, or the feature is off.
    pub fn from_url_with_tls(url: &str, tls: &Tls) -> Result<Self> {
        Self::from_info(url, connection_info(url, Some(tls))?)
    }

    fn from_info(url: &str, info: redis::ConnectionInfo) -> Result<Self> {
        let client = redis::Client::open(info)
            .map_err(|e| Error::Config(format!("invalid redis url {:?}: {e}", redact_url(url))))?;
        Self::new(client)
    }

    /// One node per URL, in order.
    ///
    /// # Errors
    ///
    /// As [`RedisPool::from_url`], for the first URL that fails.
    pub fn from_urls<S: AsRef<str>>(urls: &[S]) -> Result<Vec<Self>> {
        urls.iter().map(|u| Self::from_url(u.as_ref())).collect()
    }
}

impl<C> RedisPool<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A node reached through an existing connection that is cheap to clone, such as a
    /// `MultiplexedConnection` or a `ConnectionManager` you built yourself. Name it in
    /// errors with [`RedisPool::with_address`].
    ///
    /// Such a pool cannot replace its connection when the lock finds it silent, so give it
    /// TCP keepalive and `TCP_USER_TIMEOUT` yourself. Its response timeout, if it has one
    /// (redis's default is 500 ms), also bounds the lock's calls: set it to `None` or above
    /// the lock's per-node timeout.
    pub fn from_connection(conn: C) -> Self {
        Self::build(conn, None)
    }

    /// Names the node `address` in errors (`host:port`; never put credentials in it).
    #[must_use]
    pub fn with_address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// Has waiters of this node woken by release announcements, heard on pub/sub
    /// connections opened through `client` (one at a time per lock manager, from when
    /// someone first waits). Pools built from a URL, a client, a cluster's seeds or
    /// Sentinels have this already; without it, waiters poll. The client's response
    /// timeout does not matter here.
    #[must_use]
    pub fn with_subscriber(mut self, client: redis::Client) -> Self {
        self.subscriber = Some(SubscribeVia::Clients(vec![client]));
        self
    }

    fn subscribing_via(mut self, via: SubscribeVia) -> Self {
        self.subscriber = Some(via);
        self
    }

    fn build(conn: C, rebuild: Option<Rebuild<C>>) -> Self {
        let conn = RwLock::new(conn);
        let shared = Arc::new(Shared {
            conn,
            rebuild,
            generation: None,
            commands: true,
        });
        Self {
            shared,
            address: None,
            subscriber: None,
        }
    }

    /// Reports the new underlying connections that `generation` counts, and the
    /// replacements, as [`Conn::epoch`]. Only while the pool is not shared yet.
    fn counting(mut self, generation: Arc<AtomicU64>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.generation = Some(generation);
        }
        self
    }

    /// Reports [`Conn::command`] unsupported (a cluster). Only while the pool is not
    /// shared yet.
    #[cfg(feature = "cluster")]
    fn without_commands(mut self) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.commands = false;
        }
        self
    }

    fn conn(&self) -> RedisConn<C> {
        let shared = &*self.shared;
        let conn = shared.conn.read();
        let conn = RedisConn::new(conn.unwrap_or_else(PoisonError::into_inner).clone());
        let conn = match &shared.generation {
            Some(generation) => conn.with_generation(generation.clone()),
            None => conn,
        };
        match shared.commands {
            true => conn,
            false => conn.without_commands(),
        }
    }
}

#[async_trait]
impl<C> Pool for RedisPool<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    type Conn = RedisConn<C>;

    async fn get(&self) -> Result<RedisConn<C>, ConnError> {
        Ok(self.conn())
    }

    /// Always a connection: handing one out is a clone of the multiplexed handle.
    fn get_now(&self) -> Option<RedisConn<C>> {
        Some(self.conn())
    }

    fn address(&self) -> Option<String> {
        self.address.clone()
    }

    /// Replaces the connection manager (or cluster connection) with a new one, when this
    /// crate built it; calls in flight finish on the old one, whose sockets close with its
    /// last clone.
    fn reconnect(&self) -> bool {
        let Some(fresh) = self.shared.rebuild.as_ref().and_then(|rebuild| rebuild()) else {
            return false;
        };
        let conn = self.shared.conn.write();
        *conn.unwrap_or_else(PoisonError::into_inner) = fresh;
        if let Some(generation) = &self.shared.generation {
            generation.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// A new pub/sub connection through the client this pool was built from (or given
    /// with [`RedisPool::with_subscriber`]); for a cluster, through the first seed that
    /// answers; for a Sentinel-managed group, to the master the Sentinels report now.
    async fn subscriber(&self) -> Result<BoxSubscriber, ConnError> {
        let subscriber = match &self.subscriber {
            Some(SubscribeVia::Clients(clients)) => RedisSubscriber::open_first(clients).await?,
            #[cfg(feature = "sentinel")]
            Some(SubscribeVia::Sentinel(sentinel)) => {
                let client = sentinel.master_client().await.map_err(map_error)?;
                RedisSubscriber::open(&client).await?
            }
            // No client: unsupported, and waiters poll.
            None => RedisSubscriber::open_first(&[]).await?,
        };
        Ok(Box::new(subscriber))
    }
}

/// The TCP settings every connection of [`RedisPool::new`] gets: `base` with
/// `TCP_NODELAY`, keepalive (after 10 s idle, every 5 s, 3 probes) and, on Linux, a 10 s
/// `TCP_USER_TIMEOUT`, so that a peer that vanished is noticed by the kernel too. For
/// drivers built on redis-rs connections.
pub fn tcp_settings(base: &TcpSettings) -> TcpSettings {
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    let tcp = base.clone().set_nodelay(true).set_keepalive(keepalive);
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let tcp = tcp.set_user_timeout(Duration::from_secs(10));
    tcp
}

/// A node's address for messages: `host:port` (IPv6 hosts in brackets) or the socket
/// path, never credentials. For drivers built on redis-rs connections.
pub fn node_address(addr: &ConnectionAddr) -> String {
    let text = addr.to_string();
    match text.rsplit_once(':') {
        Some((host, port)) if host.contains(':') => format!("[{host}]:{port}"),
        _ => text,
    }
}
