//! The seam between the algorithm and a Redis client: [`Pool`] and [`Conn`].
//!
//! # Why `async-trait`
//!
//! The traits use [`async_trait`] rather than native `async fn` in traits. Native
//! async trait methods are not `dyn`-compatible, and this project wants one lock to
//! span nodes reached through different clients (say two nodes on `redis` and one on
//! `fred`); `async-trait` makes `dyn Pool` work (see [`BoxPool`]). The price is a boxed
//! future per call: measured, about 200 instructions and one allocation each, a few
//! per cent of a lock's client CPU (`bench/RESULTS.md`). [`Pool::get_now`] lets a driver
//! whose connections are at hand skip the box of `get`, which leaves one per node call.

use std::error::Error as StdError;
use std::fmt;

use async_trait::async_trait;

use crate::scripts::Script;

/// A handle to one Redis node that hands out connections.
///
/// A multiplexed client may hand out a cheap clone of itself; a pooled client checks one
/// out. For each operation on a node the lock tries [`Pool::get_now`], then awaits
/// [`Pool::get`] if that returned `None`; the per-node timeout bounds `get` and the call
/// together, so a `get` that waits for a free pooled connection is safe. Nothing bounds
/// `get_now`, which must therefore never block.
///
/// Drivers implement this trait; users of the lock only pick a driver.
#[async_trait]
pub trait Pool: Send + Sync + 'static {
    /// The connection type this pool hands out.
    type Conn: Conn;

    /// Returns a connection to this pool's node.
    ///
    /// # Errors
    ///
    /// [`ConnError`] when no connection can be had (node unreachable, pool exhausted).
    async fn get(&self) -> Result<Self::Conn, ConnError>;

    /// A connection handed out at once, when the pool has one at hand without waiting (a
    /// multiplexed client cloning itself, a connection already checked out); `None` sends
    /// the caller to [`Pool::get`]. The default returns `None`.
    ///
    /// Optional, and only a shortcut: the core tries it before every node call, and each
    /// call it answers skips the boxed future of `get`. It must never block.
    fn get_now(&self) -> Option<Self::Conn> {
        None
    }
}

/// One connection to one Redis node, able to run the core's Lua scripts.
///
/// Drivers only move bytes: every script, key layout and reply interpretation lives in
/// the core. The core calls [`Conn::evalsha`] first and falls back to [`Conn::eval`] when
/// the driver reports [`ConnErrorKind::NoScript`] (see [`run_script`]).
#[async_trait]
pub trait Conn: Send {
    /// Runs `EVALSHA sha numkeys keys... args...`.
    ///
    /// # Errors
    ///
    /// [`ConnError`] with kind [`ConnErrorKind::NoScript`] when the server answers
    /// `NOSCRIPT`; any other failure with the kind that fits it best.
    async fn evalsha(
        &mut self,
        sha1: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError>;

    /// Runs `EVAL source numkeys keys... args...`.
    ///
    /// # Errors
    ///
    /// [`ConnError`] for any failure, with the kind that fits it best.
    async fn eval(
        &mut self,
        source: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError>;
}

/// Runs `script` by EVALSHA, and by EVAL only when the server does not know it yet.
///
/// The fallback costs one extra round trip, and only on a node that lost its script cache
/// (a restart or `SCRIPT FLUSH`).
///
/// # Errors
///
/// The connection's error, from the EVAL attempt when the EVALSHA reported `NOSCRIPT`.
pub async fn run_script<C: Conn + ?Sized>(
    conn: &mut C,
    script: &Script,
    keys: &[&str],
    args: &[&str],
) -> Result<Reply, ConnError> {
    match conn.evalsha(script.sha1(), keys, args).await {
        Err(e) if e.kind() == ConnErrorKind::NoScript => {
            conn.eval(script.source(), keys, args).await
        }
        other => other,
    }
}

/// The reply to a script, as far as the core needs to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// A nil reply.
    Nil,
    /// An integer reply.
    Int(i64),
    /// A bulk or simple string reply.
    Data(Vec<u8>),
    /// An array reply.
    Array(Vec<Reply>),
}

/// What went wrong talking to one node, as reported by a driver.
///
/// Drivers map their client's errors into this type; the core adds the node's index (see
/// [`NodeError`](crate::NodeError)).
#[derive(Debug)]
pub struct ConnError {
    kind: ConnErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// The class of a [`ConnError`]: what the core needs to decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnErrorKind {
    /// The server does not have the script cached (`NOSCRIPT`): retry with EVAL.
    NoScript,
    /// The node could not be reached, or the connection broke.
    Connection,
    /// The call did not finish within the per-node timeout.
    Timeout,
    /// No pooled connection was free in time.
    PoolExhausted,
    /// The server answered with an error reply.
    Server,
    /// The reply had a shape the core did not expect.
    Protocol,
    /// Anything else.
    Other,
}

impl ConnError {
    /// A new error of `kind` with a short, lowercase `message`.
    pub fn new(kind: ConnErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A new error of `kind` caused by `source` (the client's own error).
    pub fn with_source(
        kind: ConnErrorKind,
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The class of this error.
    pub fn kind(&self) -> ConnErrorKind {
        self.kind
    }

    /// Whether the server answered `NOSCRIPT`.
    pub fn is_noscript(&self) -> bool {
        self.kind == ConnErrorKind::NoScript
    }

    /// Whether the call timed out.
    pub fn is_timeout(&self) -> bool {
        self.kind == ConnErrorKind::Timeout
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for ConnError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// A connection of any driver, boxed; the connection type of [`BoxPool`].
pub type BoxConn = Box<dyn Conn>;

/// A pool of any driver, boxed, so that one lock can span nodes reached through different
/// clients. Build one with [`PoolExt::boxed`].
pub type BoxPool = Box<dyn Pool<Conn = BoxConn>>;

#[async_trait]
impl<C: Conn + ?Sized> Conn for Box<C> {
    async fn evalsha(
        &mut self,
        sha1: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        (**self).evalsha(sha1, keys, args).await
    }

    async fn eval(
        &mut self,
        source: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        (**self).eval(source, keys, args).await
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
