//! The seam between the algorithm and a Redis client: [`Pool`] and [`Conn`].
//!
//! # Why `async-trait`
//!
//! The traits use [`async_trait`] rather than native `async fn` in traits. Native
//! async trait methods are not `dyn`-compatible, and this project wants one lock to
//! span nodes reached through different clients (say two nodes on `redis` and one on
//! `fred`); `async-trait` makes `dyn Pool` work (see `BoxPool`). The
//! price is a boxed future per call: measured, about 200 instructions and one allocation
//! each, a few per cent of a lock's client CPU (`bench/RESULTS.md`). [`Pool::get_now`]
//! lets a driver whose connections are at hand skip the box of `get`, which leaves one
//! per node call.
//!
//! # Optional capabilities
//!
//! A capability added to the seam after its first release comes as a method with a default
//! body that reports it unsupported (`None`, `false`, or [`ConnErrorKind::Unsupported`]),
//! so a driver written before it keeps compiling and the core falls back to what it did
//! without it. `BoxPool`, `Box<C>` and the in-memory pool (`memory::MemoryPool`) forward
//! or emulate every one.

use std::error::Error as StdError;
use std::fmt;

use async_trait::async_trait;

use crate::scripts::Script;

/// A handle to one Redis node that hands out connections.
///
/// A multiplexed client may hand out a cheap clone of itself; a pooled client checks one
/// out. For each call to a node the core tries [`Pool::get_now`], then awaits
/// [`Pool::get`] if that returned `None`; the lock's per-node timeout bounds `get` and the
/// call together, so a `get` that waits for a free pooled connection is safe.
///
/// Drivers implement this trait; users of the lock only pick a driver.
///
/// # Contract
///
/// The core relies on these rules. The conformance suite (`redlock-conformance`) checks
/// every one that a real server can show; run it against your driver.
///
/// 1. **Calls to one node run in the order they were sent.** A release sent after a `SET`
///    must not overtake it. (A multiplexed connection does this; a pool of plain
///    connections does not.)
/// 2. **A connection whose call was cut short by the core's timeout is never handed out
///    again with a reply still pending.** The core drops the call's future when the
///    per-node timeout passes; the next call on that connection must not read the late
///    reply as its own. (Multiplexed clients match replies to requests; a plain
///    connection must be discarded or drained.)
/// 3. **Nothing is buffered or replayed while disconnected.** A call made while the node
///    is unreachable fails at once (a failed vote) instead of waiting for a reconnect, and
///    a call in flight when the connection drops fails instead of being sent again on the
///    next connection: a late `SET` could land after the core gave up on it.
/// 4. **Building a pool never fails because its node is down.** A node that is down when
///    the lock manager is built counts as a failed vote until it is reachable, and is used
///    again once it is back; connect lazily or in the background.
/// 5. **No client-side response timeout is shorter than the lock's per-node timeout**
///    (expiry × timeout factor; 400 ms by default). The core bounds every call itself.
/// 6. **[`Pool::get_now`] never blocks.**
///
/// And for every driver: errors are mapped to the [`ConnErrorKind`] that fits (server
/// error replies through [`ConnErrorKind::of_server_error`], so that every driver reads
/// them alike), and nothing a driver prints or returns ([`Pool::address`], `Debug`,
/// error messages) contains a password.
///
/// The core stays safe for a driver that breaks rules 1 and 2 (a pool of plain
/// connections, a third-party driver): every acquire attempt uses a fresh value and
/// creates keys only where none exists, and every call carries a tag that its reply must
/// echo, so no late reply or late release of one round is ever taken for another's. What
/// such a driver costs is liveness: keys that stay until they expire, and failed votes.
#[async_trait]
pub trait Pool: Send + Sync + 'static {
    /// The connection type this pool hands out.
    type Conn: Conn;

    /// Returns a connection to this pool's node.
    ///
    /// # Errors
    ///
    /// [`ConnError`] when no connection can be had (node unreachable, pool exhausted,
    /// credentials refused).
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

    /// The node's address for messages (`host:port`, or a socket path), never with
    /// credentials. The core asks once, when a lock manager is built, and names the node
    /// by it in errors. The default, `None`, names the node by its position.
    fn address(&self) -> Option<String> {
        None
    }

    /// Drops the connection that calls to this node go through, so that the next call
    /// makes a new one; returns whether it did. The default does nothing and returns
    /// `false` (unsupported).
    ///
    /// The core calls it after several calls in a row timed out on this node: a peer that
    /// vanished without a reset (power loss, a firewall dropping packets) leaves a
    /// connection that never fails by itself, and would cost every call the full per-node
    /// timeout until the kernel gives up on it. It must not block.
    fn reconnect(&self) -> bool {
        false
    }
}

/// One connection to one Redis node, able to run the core's Lua scripts.
///
/// Drivers only move bytes: every script, key layout and reply interpretation lives in
/// the core. The core calls [`Conn::eval`] with the script's SHA1 first and again with
/// its source when the driver reports [`ConnErrorKind::NoScript`] (see [`run_script`]).
///
/// # Contract
///
/// As for [`Pool`]: the connection serves calls in the order they were sent, never hands
/// a late reply to a later call, and neither buffers nor replays calls while disconnected.
/// A reply is returned as the server sent it, converted to [`Reply`] without
/// interpretation.
#[async_trait]
pub trait Conn: Send {
    /// Runs the script: `EVALSHA sha1 numkeys keys... args...` or `EVAL source numkeys
    /// keys... args...`, as [`ScriptRef::command`] and [`ScriptRef::text`] say.
    ///
    /// # Errors
    ///
    /// [`ConnError`] with kind [`ConnErrorKind::NoScript`] when the server answers
    /// `NOSCRIPT`; any other failure with the kind that fits it best.
    async fn eval(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError>;
}

/// A script as one call sends it: by its SHA1 (EVALSHA) or by its source (EVAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptRef<'a> {
    /// The script's SHA1, for `EVALSHA`.
    Sha1(&'a str),
    /// The script's source, for `EVAL`.
    Source(&'a str),
}

impl<'a> ScriptRef<'a> {
    /// The command to send: `"EVALSHA"` or `"EVAL"`.
    pub fn command(self) -> &'static str {
        match self {
            Self::Sha1(_) => "EVALSHA",
            Self::Source(_) => "EVAL",
        }
    }

    /// The command's first argument: the SHA1 or the source.
    pub fn text(self) -> &'a str {
        match self {
            Self::Sha1(text) | Self::Source(text) => text,
        }
    }
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
    match conn.eval(ScriptRef::Sha1(script.sha1()), keys, args).await {
        Err(e) if e.kind() == ConnErrorKind::NoScript => {
            conn.eval(ScriptRef::Source(script.source()), keys, args)
                .await
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
/// Drivers map their client's errors into this type; the core adds the node (see
/// [`NodeError`](crate::NodeError)). The message is short and lowercase and does not
/// repeat the source's text: the client's error is the `source()`.
#[derive(Debug)]
pub struct ConnError {
    kind: ConnErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// The class of a [`ConnError`]: what the core needs to decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// The server refused the credentials, or wants some (`WRONGPASS`, `NOAUTH`).
    Auth,
    /// The server's ACL forbids the command or the key (`NOPERM`).
    Permission,
    /// The server rejected the command itself and would again (a script error, a key of
    /// the wrong type, an unknown command).
    Command,
    /// The server answered with an error that may pass (`LOADING`, `BUSY`, `READONLY`,
    /// `MASTERDOWN`, `OOM`, ...).
    Server,
    /// The reply had a shape the core did not expect, or belonged to another call.
    Protocol,
    /// The driver does not offer an optional capability.
    Unsupported,
    /// Anything else.
    Other,
}

impl ConnErrorKind {
    /// Whether another attempt could go differently. Refused credentials and permissions,
    /// rejected commands, a wrong protocol and a missing capability stay as they are until
    /// someone changes the setup, so the lock stops retrying when they leave no quorum
    /// possible.
    pub fn is_retryable(self) -> bool {
        !matches!(
            self,
            Self::Auth | Self::Permission | Self::Command | Self::Protocol | Self::Unsupported
        )
    }

    /// The kind of an error reply from a Redis server, read from its text (`"NOPERM this
    /// user has no permissions to run the 'evalsha' command"`), so that every driver
    /// classifies server errors alike.
    pub fn of_server_error(reply: &str) -> Self {
        let code = reply.split_whitespace().next().unwrap_or_default();
        match code {
            "NOSCRIPT" => Self::NoScript,
            "NOAUTH" | "WRONGPASS" => Self::Auth,
            "NOPERM" => Self::Permission,
            "LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "READONLY" | "CLUSTERDOWN"
            | "MOVED" | "ASK" | "OOM" | "MISCONF" | "NOREPLICAS" => Self::Server,
            // Older servers and Sentinel phrase refused credentials as plain `ERR`s.
            "ERR" if reply.contains("password") => Self::Auth,
            "ERR" if reply.contains("max number of clients") => Self::Connection,
            _ => Self::Command,
        }
    }
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

    /// The error of an optional capability that a driver does not offer.
    pub fn unsupported(capability: &str) -> Self {
        let message = format!("the driver does not support {capability}");
        Self::new(ConnErrorKind::Unsupported, message)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_classified_by_their_code() {
        let cases = [
            ("NOSCRIPT No matching script", ConnErrorKind::NoScript),
            (
                "WRONGPASS invalid username-password pair",
                ConnErrorKind::Auth,
            ),
            ("NOAUTH Authentication required.", ConnErrorKind::Auth),
            ("ERR invalid password", ConnErrorKind::Auth),
            (
                "NOPERM this user has no permissions",
                ConnErrorKind::Permission,
            ),
            (
                "READONLY You can't write against a read only replica.",
                ConnErrorKind::Server,
            ),
            (
                "LOADING Redis is loading the dataset in memory",
                ConnErrorKind::Server,
            ),
            (
                "ERR max number of clients reached",
                ConnErrorKind::Connection,
            ),
            (
                "ERR Error running script (call to f_x)",
                ConnErrorKind::Command,
            ),
            (
                "WRONGTYPE Operation against a key holding the wrong kind",
                ConnErrorKind::Command,
            ),
            ("", ConnErrorKind::Command),
        ];
        for (reply, kind) in cases {
            assert_eq!(ConnErrorKind::of_server_error(reply), kind, "{reply}");
        }
        assert!(ConnErrorKind::Server.is_retryable() && ConnErrorKind::Timeout.is_retryable());
        assert!(!ConnErrorKind::Auth.is_retryable() && !ConnErrorKind::Command.is_retryable());
    }

    #[test]
    fn script_refs_name_their_command() {
        assert_eq!(ScriptRef::Sha1("abc").command(), "EVALSHA");
        assert_eq!(ScriptRef::Source("return 1").command(), "EVAL");
        assert_eq!(ScriptRef::Source("return 1").text(), "return 1");
    }
}
