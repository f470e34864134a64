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
//! connects lazily and reconnects by itself. A node that is down when the pool is built
//! counts as a failed vote until it is reachable, and is used again once it is back.
//! Any other `redis` async connection that is `Clone` (say a `MultiplexedConnection`) works
//! through [`RedisPool::from_connection`]; [`RedisConn`] runs the scripts on any
//! [`ConnectionLike`], which is what other redis-rs based drivers build on.

use std::time::Duration;

use async_trait::async_trait;
pub use redis;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind, Value};
pub use redlock_core::*;

/// One Redis node reached through redis-rs. Cheap to clone.
#[derive(Clone)]
pub struct RedisPool<C = ConnectionManager> {
    conn: C,
}

impl<C> std::fmt::Debug for RedisPool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool").finish_non_exhaustive()
    }
}

impl RedisPool {
    /// A node reached through `client`, connected lazily and reconnected as needed.
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
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            // The lock bounds every call with its own per-node timeout; redis's default of
            // 500 ms would cut calls short of a longer one.
            .set_response_timeout(None);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| Error::Config(format!("cannot set up a redis connection: {e}")))?;
        Ok(Self { conn })
    }

    /// A node at `url` (`redis://host:port/db`, `rediss://…`, `unix://…`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the URL is malformed, or outside a tokio runtime.
    pub fn from_url(url: &str) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::Config(format!("bad redis url {url:?}: {e}")))?;
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
    /// `MultiplexedConnection` or a `ConnectionManager` you built yourself. Its response
    /// timeout, if it has one (redis's default is 500 ms), also bounds the lock's calls:
    /// set it to `None` or above the lock's per-node timeout.
    pub fn from_connection(conn: C) -> Self {
        Self { conn }
    }
}

#[async_trait]
impl<C> Pool for RedisPool<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    type Conn = RedisConn<C>;

    async fn get(&self) -> Result<RedisConn<C>, ConnError> {
        Ok(RedisConn(self.conn.clone()))
    }

    /// Always a connection: handing one out is a clone of the multiplexed handle.
    fn get_now(&self) -> Option<RedisConn<C>> {
        Some(RedisConn(self.conn.clone()))
    }
}

/// Runs the core's scripts on any redis-rs async connection.
#[derive(Debug)]
pub struct RedisConn<C>(pub C);

#[async_trait]
impl<C: ConnectionLike + Send> Conn for RedisConn<C> {
    async fn eval(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        query_script(&mut self.0, script, keys, args).await
    }
}

/// Sends `script` (EVALSHA or EVAL) with `keys` and `args` on `conn`, and maps the reply
/// and any error into the core's types.
///
/// What [`RedisConn`] does, without its boxed future: for drivers built on a redis-rs
/// connection (`redlock-deadpool`), so they neither repeat it nor pay for a second box.
///
/// # Errors
///
/// As [`map_error`] and [`to_reply`].
pub async fn query_script<C: ConnectionLike>(
    conn: &mut C,
    script: ScriptRef<'_>,
    keys: &[&str],
    args: &[&str],
) -> Result<Reply, ConnError> {
    let mut cmd = redis::cmd(script.command());
    cmd.arg(script.text()).arg(keys.len()).arg(keys).arg(args);
    let reply = cmd.query_async(conn).await.map_err(map_error)?;
    to_reply(reply)
}

/// Maps a redis-rs error into the core's [`ConnError`].
pub fn map_error(e: RedisError) -> ConnError {
    let kind = match e.kind() {
        ErrorKind::Server(ServerErrorKind::NoScript) => ConnErrorKind::NoScript,
        _ if e.is_timeout() => ConnErrorKind::Timeout,
        _ if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
            ConnErrorKind::Connection
        }
        ErrorKind::Server(_) | ErrorKind::Extension => ConnErrorKind::Server,
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => ConnErrorKind::Protocol,
        _ => ConnErrorKind::Other,
    };
    ConnError::with_source(kind, "redis-rs call failed", e)
}

/// Converts a redis-rs reply into the core's [`Reply`].
///
/// # Errors
///
/// [`ConnErrorKind::Protocol`] for reply types the core's scripts never produce.
pub fn to_reply(value: Value) -> Result<Reply, ConnError> {
    Ok(match value {
        Value::Nil => Reply::Nil,
        Value::Int(i) => Reply::Int(i),
        Value::BulkString(b) => Reply::Data(b),
        Value::SimpleString(s) => Reply::Data(s.into_bytes()),
        Value::Okay => Reply::Data(b"OK".to_vec()),
        Value::Array(items) => {
            Reply::Array(items.into_iter().map(to_reply).collect::<Result<_, _>>()?)
        }
        other => {
            let msg = format!("unexpected reply type {other:?}");
            return Err(ConnError::new(ConnErrorKind::Protocol, msg));
        }
    })
}
