//! Redlock distributed lock driver for [fred](https://docs.rs/fred) 10.x.
//!
//! This crate re-exports all of [`redlock_core`] and the `fred` crate, so it is the only
//! redlock dependency you need.
//!
//! ```no_run
//! use redlock_fred::{FredPool, Redlock};
//!
//! # async fn run() -> redlock_fred::Result<()> {
//! let pools = FredPool::from_urls(&[
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
//! # Connections, reconnects and replays
//!
//! [`FredPool`] wraps a fred [`Client`], one multiplexed connection that fred reconnects
//! in the background (a lock's few small commands need no fred `Pool`). Every call is
//! sent with fred's per-command `fail_fast`: made while the node is down, it fails at once
//! (a failed vote) instead of being buffered; in flight when the connection drops, it
//! fails instead of being replayed after the reconnect. A late vote is worthless, and the
//! lock retries by itself. Calls go through fred's `custom` command, because fred ignores
//! per-call options on `evalsha`; the lock bounds each call with its per-node timeout.
//! Only while a connection attempt is under way, or before the first one has ended, does a
//! call wait for its outcome, so that a lock taken right after building does not find
//! every node "down".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
pub use fred;
use fred::clients::Client;
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::{ClientLike, EventInterface};
use fred::types::config::{Config, Options as CallOptions, ReconnectPolicy};
use fred::types::{Builder, ClientState, ClusterHash, ConnectHandle, CustomCommand, Value};
pub use redlock_core::*;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One Redis node reached through fred. Cheap to clone.
#[derive(Clone, Debug)]
pub struct FredPool {
    client: Client,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Set once a connection attempt has succeeded or failed; before that, calls wait.
    settled: AtomicBool,
    /// The connection task of a client this crate built; aborted when the last clone drops.
    task: Option<ConnectHandle>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Without this, a client built by `from_url` would keep reconnecting forever.
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl FredPool {
    /// A node reached through `client`, which the caller connects (`connect` or `init`).
    ///
    /// Give the client a [`ReconnectPolicy`] so that a restarted node is used again, and
    /// keep blocking commands (`BLPOP`) off it: they would hold up the lock's calls.
    pub fn new(client: Client) -> Self {
        Self::with_task(client, None)
    }

    /// A node at `url` (`redis://[user:pass@]host:port/db`), connected in the background.
    ///
    /// The client reconnects forever, backing off from 10 ms to 1 s, with 1 s per attempt
    /// and `TCP_NODELAY`. A node that is down now does not make this fail; it counts as a
    /// failed vote until it is reachable.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the URL is malformed, is not `redis://` or
    /// `redis-sentinel://` (for TLS, build a TLS client and use [`FredPool::new`]; a cluster
    /// is not one Redlock node), or when called outside a tokio runtime.
    pub fn from_url(url: &str) -> Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(
                "FredPool must be built within a tokio runtime".into(),
            ));
        }
        check_scheme(url)?;
        let config =
            Config::from_url(url).map_err(|e| Error::Config(format!("invalid redis url: {e}")))?;
        let client = Builder::from_config(config)
            // Retry the first connection in the background instead of failing `init`.
            .with_config(|c| c.fail_fast = false)
            .with_connection_config(|c| {
                c.connection_timeout = CONNECT_TIMEOUT;
                c.internal_command_timeout = CONNECT_TIMEOUT;
                c.tcp.nodelay = Some(true);
            })
            .set_policy(reconnect_policy())
            .build()
            .map_err(|e| Error::Config(format!("cannot build a fred client: {e}")))?;
        let task = client.connect();
        Ok(Self::with_task(client, Some(task)))
    }

    /// One node per URL, in order.
    ///
    /// # Errors
    ///
    /// As [`FredPool::from_url`], for the first URL that fails.
    pub fn from_urls<S: AsRef<str>>(urls: &[S]) -> Result<Vec<Self>> {
        urls.iter().map(|u| Self::from_url(u.as_ref())).collect()
    }

    fn with_task(client: Client, task: Option<ConnectHandle>) -> Self {
        let settled = AtomicBool::new(false);
        let shared = Arc::new(Shared { settled, task });
        Self { client, shared }
    }

    /// Waits for a connection attempt in progress; fails at once while fred backs off.
    async fn await_connection(&self) -> Result<(), ConnError> {
        let connecting = self.client.state() == ClientState::Connecting;
        if self.shared.settled.load(Ordering::Relaxed) && !connecting {
            return Err(not_connected());
        }
        // Subscribe before looking again, so that a failure cannot slip in between.
        let mut errors = self.client.error_rx();
        if !self.client.is_connected() {
            tokio::select! {
                connected = self.client.wait_for_connect() => connected.map_err(map_error)?,
                _ = errors.recv() => {
                    self.shared.settled.store(true, Ordering::Relaxed);
                    return Err(not_connected());
                }
            }
        }
        self.shared.settled.store(true, Ordering::Relaxed);
        Ok(())
    }
}

#[async_trait]
impl Pool for FredPool {
    type Conn = FredConn;

    async fn get(&self) -> Result<FredConn, ConnError> {
        if let Some(conn) = self.get_now() {
            return Ok(conn);
        }
        self.await_connection().await?;
        let client = self.client.clone();
        Ok(FredConn { client })
    }

    /// A connection whenever the client is connected (a clone of it).
    fn get_now(&self) -> Option<FredConn> {
        if !self.client.is_connected() {
            return None;
        }
        self.shared.settled.store(true, Ordering::Relaxed);
        let client = self.client.clone();
        Some(FredConn { client })
    }
}

/// Runs the core's scripts on one fred client, without buffering or replays.
#[derive(Clone, Debug)]
pub struct FredConn {
    client: Client,
}

impl FredConn {
    async fn call(
        &self,
        command: &'static str,
        script: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        let mut values = Vec::with_capacity(2 + keys.len() + args.len());
        values.push(Value::from(script));
        values.push(Value::Integer(keys.len().try_into().unwrap_or(i64::MAX)));
        values.extend(keys.iter().chain(args).map(|s| Value::from(*s)));
        let options = CallOptions {
            fail_fast: true,
            ..CallOptions::default()
        };
        // The key is the third word of EVAL/EVALSHA; it only matters on a cluster.
        let command = CustomCommand::new_static(command, ClusterHash::Offset(2), false);
        let value: Value = self
            .client
            .with_options(&options)
            .custom(command, values)
            .await
            .map_err(map_error)?;
        to_reply(value)
    }
}

#[async_trait]
impl Conn for FredConn {
    async fn eval(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        self.call(script.command(), script.text(), keys, args).await
    }
}

/// Accepts the URL of one plain-text node. fred reads any other scheme as `redis://`, and
/// only logs a warning when it cannot honour TLS (this crate enables no TLS feature).
fn check_scheme(url: &str) -> Result<()> {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    match scheme.to_ascii_lowercase().as_str() {
        "redis" | "valkey" | "redis-sentinel" | "valkey-sentinel" => Ok(()),
        _ => Err(Error::Config(format!(
            "unsupported url scheme {scheme:?}: use redis://host:port/, or for tls or a \
             cluster build a fred client and use FredPool::new"
        ))),
    }
}

/// Forever, 10 ms doubling to 1 s, plus up to 10 ms of jitter (fred's default is 50 ms,
/// which would also delay the very first connection).
fn reconnect_policy() -> ReconnectPolicy {
    let mut policy = ReconnectPolicy::new_exponential(0, 10, 1_000, 2);
    policy.set_jitter(10);
    policy
}

fn not_connected() -> ConnError {
    ConnError::new(
        ConnErrorKind::Connection,
        "node not connected; fred is reconnecting in the background",
    )
}

/// Maps a fred error into the core's [`ConnError`].
pub fn map_error(e: FredError) -> ConnError {
    let (kind, message) = match e.kind() {
        _ if e.details().starts_with("NOSCRIPT") => {
            (ConnErrorKind::NoScript, "script not cached on the node")
        }
        ErrorKind::Timeout => (ConnErrorKind::Timeout, "fred call timed out"),
        ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing => {
            (ConnErrorKind::Connection, "connection to the node failed")
        }
        ErrorKind::Auth
        | ErrorKind::InvalidArgument
        | ErrorKind::InvalidCommand
        | ErrorKind::Cluster => (ConnErrorKind::Server, "node answered with an error"),
        ErrorKind::Unknown if is_server_error(e.details()) => {
            (ConnErrorKind::Server, "node answered with an error")
        }
        ErrorKind::Protocol | ErrorKind::Parse => (ConnErrorKind::Protocol, "malformed reply"),
        _ => (ConnErrorKind::Other, "fred call failed"),
    };
    ConnError::with_source(kind, message, e)
}

/// A server error reply starts with an upper-case code (`ERR`, `BUSY`, `OOM`, ...); fred's
/// own messages do not.
fn is_server_error(details: &str) -> bool {
    details
        .split_whitespace()
        .next()
        .is_some_and(|code| code.bytes().all(|b| b.is_ascii_uppercase()))
}

/// Converts a fred reply into the core's [`Reply`], reading RESP3 booleans as Lua's RESP2
/// conversion would (`true` is 1, `false` is nil).
///
/// # Errors
///
/// [`ConnErrorKind::Protocol`] for reply types the core's scripts never produce.
pub fn to_reply(value: Value) -> Result<Reply, ConnError> {
    Ok(match value {
        Value::Null | Value::Boolean(false) => Reply::Nil,
        Value::Boolean(true) => Reply::Int(1),
        Value::Integer(i) => Reply::Int(i),
        Value::String(s) => Reply::Data(s.as_bytes().to_vec()),
        Value::Bytes(b) => Reply::Data(b.to_vec()),
        Value::Array(items) => {
            Reply::Array(items.into_iter().map(to_reply).collect::<Result<_, _>>()?)
        }
        other => {
            let msg = format!("unexpected reply type {}", other.kind());
            return Err(ConnError::new(ConnErrorKind::Protocol, msg));
        }
    })
}
