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
//! sent with fred's per-command `fail_fast` and a single write attempt: made while the
//! node is down, it fails at once (a failed vote) instead of being buffered; in flight
//! when the connection drops or is replaced, it fails instead of being replayed on the
//! next connection. A late vote is worthless, and the lock retries by itself. fred still
//! reports "connected" for a moment after a connection dropped, and a call sent then waits
//! behind the reconnect; so each call also carries the core's deadline as fred's command
//! timeout, and fred never writes a command whose timeout passed. Calls go
//! through fred's `custom` command, because fred ignores per-call options on `evalsha`;
//! the lock bounds each call with its per-node timeout. Only while a connection attempt
//! is under way, or before the first one has ended, does a call wait for its outcome, so
//! that a lock taken right after building does not find every node "down".
//!
//! A whole Redis Cluster can be one node of the lock ([`FredPool::from_cluster`], or a
//! `redis-cluster://` URL): each call goes to the master that serves the lock key's slot.
//!
//! While fred cannot connect, a call fails with the reason fred last gave (refused
//! credentials say so, and stop the lock's retries at once), not a bare "not connected".
//! When the lock sees the node stay silent, the pool asks fred for a new connection
//! ([`Pool::reconnect`]).

use std::sync::atomic::{AtomicBool, Ordering};
// `Mutex` would shadow the re-exported `redlock_core::Mutex`.
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
pub use fred;
use fred::clients::Client;
use fred::error::Error as FredError;
use fred::interfaces::{ClientLike, EventInterface};
use fred::socket2::TcpKeepalive;
use fred::types::config::{Config, ReconnectPolicy, Server, ServerConfig};
use fred::types::{Builder, ClientState, ConnectHandle};
pub use redlock_core::*;
use tokio::sync::broadcast::Receiver;

mod cluster;
mod config;
mod conn;
mod convert;
mod subscriber;
pub use conn::FredConn;
use conn::Reconnects;
pub use convert::{map_error, to_reply};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::task::JoinHandle;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a forced reconnect may take before this pool stops waiting for it (fred
/// itself waits for a node that is down).
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One Redis node reached through fred. Cheap to clone.
#[derive(Clone)]
pub struct FredPool {
    client: Client,
    shared: Arc<Shared>,
}

struct Shared {
    /// Set once a connection attempt has succeeded or failed; before that, calls wait.
    settled: AtomicBool,
    /// The connection task of a client this crate built; aborted when the last clone drops.
    task: Option<ConnectHandle>,
    address: Option<String>,
    /// fred's connection errors, read to tell why the node is not connected.
    errors: StdMutex<Receiver<(FredError, Option<Server>)>>,
    last_error: StdMutex<Option<FredError>>,
    /// The reconnect this pool asked fred for, while under way.
    reconnecting: StdMutex<Option<JoinHandle<()>>>,
    /// fred's reconnects of the client, for [`Conn::epoch`](redlock_core::Conn::epoch).
    reconnects: Arc<Reconnects>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Without this, a client built by `from_url` would keep reconnecting forever.
        if let Some(task) = &self.task {
            task.abort();
        }
        if let Some(task) = lock(&self.reconnecting).take() {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &StdMutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl std::fmt::Debug for FredPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the client's config: it holds the password.
        f.debug_struct("FredPool")
            .field("address", &self.shared.address)
            .field("state", &self.client.state())
            .finish_non_exhaustive()
    }
}

impl FredPool {
    /// A node reached through `client`, which the caller connects (`connect` or `init`).
    ///
    /// Give the client a [`ReconnectPolicy`] so that a restarted node is used again, and
    /// keep blocking commands (`BLPOP`) off it: they would hold up the lock's calls. Leave
    /// its `default_command_timeout` unset or above the lock's per-node timeout: a shorter
    /// one would cut the lock's calls short.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when called outside a tokio runtime (the pool reconnects in tasks
    /// of its own), as every driver's constructors do.
    pub fn new(client: Client) -> Result<Self> {
        in_runtime()?;
        let errors = client.error_rx();
        Ok(Self::build(client, None, errors))
    }

    /// A node at `url` (`redis://[user:pass@]host:port/db`), connected in the background.
    ///
    /// The client reconnects forever, backing off from 10 ms to 1 s, with 1 s per attempt,
    /// `TCP_NODELAY` and TCP keepalive (after 10 s idle, every 5 s). A node that is down
    /// now does not make this fail; it counts as a failed vote until it is reachable.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the URL is malformed (the message names it without its
    /// credentials), is not `redis://`, `redis-sentinel://`, `redis-cluster://` (a whole
    /// Redis Cluster as one node, as [`FredPool::from_cluster`] makes it) or, with a
    /// TLS feature, their `rediss` forms (trusting the system's roots), or when called
    /// outside a tokio runtime.
    pub fn from_url(url: &str) -> Result<Self> {
        in_runtime()?;
        Self::from_config(config::config(url, None)?)
    }

    /// A node at the `rediss://` `url`, trusting the CA and presenting the client
    /// certificate that `tls` holds, as [`FredPool::from_url`] builds it. Needs the
    /// `tls-rustls` feature.
    ///
    /// # Errors
    ///
    /// As [`FredPool::from_url`], and [`Error::Config`] when the URL is not `rediss://`,
    /// the certificates or key do not parse, or the feature is off.
    pub fn from_url_with_tls(url: &str, tls: &Tls) -> Result<Self> {
        in_runtime()?;
        Self::from_config(config::config(url, Some(tls))?)
    }

    /// A node that is the master of the Sentinel-managed group `service` (its name, or
    /// `redis://[user:password@]NAME[/db]` to log in to the master), found through the
    /// Sentinels at `sentinels` (`redis://host:port/` URLs), built as
    /// [`FredPool::from_url`] builds a node.
    ///
    /// fred follows a failover by itself when its connection breaks; when the demoted
    /// master answers `READONLY` instead, the lock makes it reconnect at once, through the
    /// Sentinels. A failover can lose a key the old master granted but had not replicated
    /// yet; see the README on Sentinel.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a URL is malformed or none is given, when a Sentinel URL
    /// carries credentials or asks for TLS (they would not reach the master), when
    /// `service` asks for TLS to the master (not supported yet), or outside a tokio
    /// runtime.
    pub fn from_sentinel<S: AsRef<str>>(sentinels: &[S], service: &str) -> Result<Self> {
        in_runtime()?;
        let urls: Vec<&str> = sentinels.iter().map(AsRef::as_ref).collect();
        Self::from_config(config::sentinel(&urls, service)?)
    }

    fn from_config(config: Config) -> Result<Self> {
        let client = Builder::from_config(config)
            // Retry the first connection in the background instead of failing `init`.
            .with_config(|c| c.fail_fast = false)
            .with_connection_config(|c| {
                c.connection_timeout = CONNECT_TIMEOUT;
                c.internal_command_timeout = CONNECT_TIMEOUT;
                c.tcp.nodelay = Some(true);
                let keepalive = TcpKeepalive::new()
                    .with_time(Duration::from_secs(10))
                    .with_interval(Duration::from_secs(5));
                c.tcp.keepalive = Some(keepalive);
            })
            .set_policy(reconnect_policy())
            .build()
            .map_err(|e| Error::Config(format!("cannot build a fred client: {e}")))?;
        // Subscribed before connecting, so that the first failure is seen.
        let errors = client.error_rx();
        let task = client.connect();
        Ok(Self::build(client, Some(task), errors))
    }

    /// One node per URL, in order.
    ///
    /// # Errors
    ///
    /// As [`FredPool::from_url`], for the first URL that fails.
    pub fn from_urls<S: AsRef<str>>(urls: &[S]) -> Result<Vec<Self>> {
        urls.iter().map(|u| Self::from_url(u.as_ref())).collect()
    }
}

impl FredPool {
    fn build(
        client: Client,
        task: Option<ConnectHandle>,
        errors: Receiver<(FredError, Option<Server>)>,
    ) -> Self {
        let shared = Arc::new(Shared {
            settled: AtomicBool::new(false),
            task,
            address: server_address(&client),
            errors: StdMutex::new(errors),
            last_error: StdMutex::new(None),
            reconnecting: StdMutex::new(None),
            reconnects: Arc::new(Reconnects::of(&client)),
        });
        Self { client, shared }
    }

    fn conn(&self) -> FredConn {
        let client = self.client.clone();
        let reconnects = self.shared.reconnects.clone();
        FredConn {
            client,
            reconnects,
            deadline: None,
        }
    }

    /// Waits for a connection attempt in progress; fails at once while fred backs off.
    async fn await_connection(&self) -> Result<(), ConnError> {
        let connecting = self.client.state() == ClientState::Connecting;
        if self.shared.settled.load(Ordering::Relaxed) && !connecting {
            return Err(self.not_connected());
        }
        // Subscribe before looking again, so that a failure cannot slip in between.
        let mut errors = self.client.error_rx();
        if !self.client.is_connected() {
            tokio::select! {
                connected = self.client.wait_for_connect() => connected.map_err(map_error)?,
                error = errors.recv() => {
                    self.shared.settled.store(true, Ordering::Relaxed);
                    return Err(match error {
                        Ok((error, _)) => map_error(error),
                        Err(_) => self.not_connected(),
                    });
                }
            }
        }
        self.shared.settled.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Why the node is not connected: the last error fred reported, if any.
    fn not_connected(&self) -> ConnError {
        match self.shared.last_error() {
            Some(error) => map_error(error),
            None => ConnError::new(
                ConnErrorKind::Connection,
                "node not connected; fred is reconnecting in the background",
            ),
        }
    }
}

impl Shared {
    /// The newest connection error fred reported.
    fn last_error(&self) -> Option<FredError> {
        let mut errors = lock(&self.errors);
        let mut last = lock(&self.last_error);
        loop {
            match errors.try_recv() {
                Ok((error, _)) => *last = Some(error),
                // Older errors were dropped; newer ones follow.
                Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty | TryRecvError::Closed) => return last.clone(),
            }
        }
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
        Ok(self.conn())
    }

    /// A connection whenever the client is connected (a clone of it).
    fn get_now(&self) -> Option<FredConn> {
        if !self.client.is_connected() {
            return None;
        }
        self.shared.settled.store(true, Ordering::Relaxed);
        Some(self.conn())
    }

    fn address(&self) -> Option<String> {
        self.shared.address.clone()
    }

    /// Asks fred for a new connection, one request at a time; calls in flight on the old
    /// one fail (they are sent with a single write attempt, so fred does not replay them).
    fn reconnect(&self) -> bool {
        let mut reconnecting = lock(&self.shared.reconnecting);
        if reconnecting
            .as_ref()
            .is_some_and(|task| !task.is_finished())
        {
            return true;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let client = self.client.clone();
        *reconnecting = Some(runtime.spawn(async move {
            let reconnected = tokio::time::timeout(RECONNECT_TIMEOUT, client.force_reconnection());
            // How it went shows in the next calls, and in fred's error stream that
            // `not_connected` reads; nothing else waits for it.
            drop(reconnected.await);
        }));
        true
    }

    /// A new pub/sub client with this pool's client's configuration.
    async fn subscriber(&self) -> Result<BoxSubscriber, ConnError> {
        Ok(Box::new(
            subscriber::FredSubscriber::open(&self.client).await?,
        ))
    }
}

/// Fails outside a tokio runtime, which fred and this pool run their tasks on.
fn in_runtime() -> Result<()> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::Config(
            "FredPool must be built within a tokio runtime".into(),
        ));
    }
    Ok(())
}

/// The node's address from the client's config, without credentials.
fn server_address(client: &Client) -> Option<String> {
    let join = |hosts: &[Server]| {
        let hosts: Vec<String> = hosts.iter().map(ToString::to_string).collect();
        hosts.join(",")
    };
    // The variants fred adds with its features (unix sockets) have no host to name.
    #[allow(unreachable_patterns)]
    match client.client_config().server {
        ServerConfig::Centralized { server } => Some(server.to_string()),
        ServerConfig::Sentinel {
            hosts,
            service_name,
            ..
        } => Some(format!("{service_name} via sentinel {}", join(&hosts))),
        ServerConfig::Clustered { hosts, .. } => Some(format!("{} (cluster)", hosts.first()?)),
        _ => None,
    }
}

/// Forever, 10 ms doubling to 1 s, plus up to 10 ms of jitter (fred's default is 50 ms,
/// which would also delay the very first connection).
fn reconnect_policy() -> ReconnectPolicy {
    let mut policy = ReconnectPolicy::new_exponential(0, 10, 1_000, 2);
    policy.set_jitter(10);
    policy
}
