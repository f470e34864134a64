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

use async_trait::async_trait;

pub use crate::conn_error::{ConnError, ConnErrorKind};
use crate::scripts::Script;
use crate::subscriber::BoxSubscriber;

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
///    is unreachable fails (a failed vote) instead of being held until a connection is
///    back, and a call in flight when the connection drops, or when [`Pool::reconnect`]
///    replaces it, fails or finishes on the old connection instead of being sent again on
///    the new one: a late `SET` could land after the core gave up on it. A client that
///    holds calls back while it reconnects must at least never send one after its
///    deadline ([`Conn::set_deadline`]).
/// 4. **Building a pool never fails because its node is down.** A node that is down when
///    the lock manager is built counts as a failed vote until it is reachable, and is used
///    again once it is back; connect lazily or in the background.
/// 5. **No client-side response timeout is shorter than the lock's per-node timeout**
///    (expiry × timeout factor; 400 ms by default). The core bounds every call itself. A
///    timeout taken from the call's deadline ([`Conn::set_deadline`]) may end just before
///    it.
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
    /// The core calls it, at most once a second, after several calls in a row timed out
    /// or failed on this node, or at once when the node refused the credentials: a peer
    /// that vanished without a reset (power loss, a firewall dropping packets) leaves a
    /// connection that never fails by itself, and would cost every call the full per-node
    /// timeout until the kernel gives up on it; and some clients keep a failed handshake
    /// and return it on every later call. It must not block.
    fn reconnect(&self) -> bool {
        false
    }

    /// Opens a new pub/sub connection to this node, for release notifications. The default
    /// reports [`ConnErrorKind::Unsupported`], and waiters then poll.
    ///
    /// Optional. The core opens at most one per node and lock manager at a time, when
    /// someone first waits, keeps it until it fails or the manager is dropped, and opens
    /// a new one when it fails (see the [`Subscriber`](crate::Subscriber) contract).
    /// Like building a pool, it must not hand out a connection that replays anything.
    ///
    /// # Errors
    ///
    /// [`ConnError`] when no subscriber can be had now (node unreachable, credentials
    /// refused); [`ConnErrorKind::Unsupported`] when the driver has none.
    async fn subscriber(&self) -> Result<BoxSubscriber, ConnError> {
        let message = "this driver has no subscriber for release notifications";
        Err(ConnError::new(ConnErrorKind::Unsupported, message))
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
///
/// For restart quarantine (see [`Conn::epoch`]), the core must learn of every new
/// underlying connection to the node before a call goes over it: either the connection
/// is only ever replaced after a call of the core failed on the old one, or
/// [`Conn::epoch`] changes.
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

    /// Runs one command, `args[0]` being its name (`["INFO", "server"]`), on this
    /// connection. The default reports [`ConnErrorKind::Unsupported`].
    ///
    /// Optional. The core sends only `INFO server`, to learn a node's `run_id` and
    /// uptime for restart quarantine ([`Options::quarantine`](crate::Options::quarantine)),
    /// once per underlying connection; a driver without it leaves quarantine unenforced
    /// on its nodes.
    ///
    /// # Errors
    ///
    /// As [`Conn::eval`]; [`ConnErrorKind::Unsupported`] when the driver has no way to
    /// send it (a cluster connection, whose commands go to several masters).
    async fn command(&mut self, args: &[&str]) -> Result<Reply, ConnError> {
        let message = format!("this driver cannot send {:?}", args.first());
        Err(ConnError::new(ConnErrorKind::Unsupported, message))
    }

    /// Runs the script and then the command `then` (`args[0]` is its name) on this
    /// connection, pipelined: both are sent before either reply is read, so that the
    /// command runs on the same server connection right after the script, and a reconnect
    /// in between fails both instead of running the command alone. Returns both replies,
    /// a server's error reply as that command's `Err`. The default reports
    /// [`ConnErrorKind::Unsupported`].
    ///
    /// Optional. The core uses it for durable votes
    /// ([`Options::durable_votes`](crate::Options::durable_votes)): `WAITAOF` after the
    /// acquire or extend script, so that a vote counts only once the key reached the
    /// node's append-only file. Without it, durable votes fail on this driver's nodes,
    /// with an error that says why.
    ///
    /// # Errors
    ///
    /// A [`ConnError`] when the connection failed (neither reply came);
    /// [`ConnErrorKind::Unsupported`] when the driver cannot pipeline.
    async fn eval_then(
        &mut self,
        _script: ScriptRef<'_>,
        _keys: &[&str],
        _args: &[&str],
        _then: &[&str],
    ) -> Result<Replies, ConnError> {
        let message = "this driver cannot pipeline a command after a script";
        Err(ConnError::new(ConnErrorKind::Unsupported, message))
    }

    /// A number that identifies the underlying connection the next call goes over, and
    /// changes whenever the driver makes a new one to the node (a reconnect, a new pooled
    /// connection), before any call goes over the new one. The default, `None`, says the
    /// driver cannot tell.
    ///
    /// Optional. The core reads the node's age (`INFO server`) again whenever the epoch
    /// changes, after a call failed on a connection error, after a `NOSCRIPT` for a script
    /// the node had run (the script cache empties on restart) and after
    /// [`Pool::reconnect`]; and it compares the epoch before and after each acquire
    /// script, reading the age again before a grant counts if it changed. So a node that
    /// restarted is seen before its vote counts, provided the epoch changes before a new
    /// connection carries a call. A driver that replaces its connection only after a call
    /// of its own failed on the old one may count those failures.
    fn epoch(&self) -> Option<u64> {
        None
    }

    /// The instant after which the core no longer waits for calls on this connection: the
    /// node call's per-node deadline, set once before the call's commands (the age check,
    /// the script, its `EVAL` fallback) are sent. The default ignores it.
    ///
    /// Optional, for rule 3 of [`Pool`]: a driver whose client may hold a call back
    /// while it reconnects (fred queues a command sent just after a connection dropped,
    /// before its state says so, behind the reconnect) must make sure that a call still
    /// held at this instant is never sent, since a late `SET` could land after the core
    /// gave up on it. A driver that sends each call at once or fails it needs nothing.
    fn set_deadline(&mut self, _deadline: std::time::Instant) {}
}

/// The replies to a script and the command pipelined after it ([`Conn::eval_then`]), each
/// a server's error reply as `Err`.
pub type Replies = (Result<Reply, ConnError>, Result<Reply, ConnError>);

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

impl Reply {
    /// The reply's shape, for messages: integers as they are, strings by their length
    /// only, so that a message can never carry a lock value (`string of 24 bytes`,
    /// `[integer 1, nil]`).
    pub fn shape(&self) -> String {
        match self {
            Reply::Nil => "nil".into(),
            Reply::Int(n) => format!("integer {n}"),
            Reply::Data(data) => format!("string of {} bytes", data.len()),
            Reply::Array(items) => {
                let items: Vec<String> = items.iter().map(Reply::shape).collect();
                format!("[{}]", items.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replys_shape_shows_no_string_contents() {
        let reply = Reply::Array(vec![
            Reply::Int(1),
            Reply::Data(b"the-lock-value".to_vec()),
            Reply::Nil,
        ]);
        assert_eq!(reply.shape(), "[integer 1, string of 14 bytes, nil]");
    }

    #[test]
    fn script_refs_name_their_command() {
        assert_eq!(ScriptRef::Sha1("abc").command(), "EVALSHA");
        assert_eq!(ScriptRef::Source("return 1").command(), "EVAL");
        assert_eq!(ScriptRef::Source("return 1").text(), "return 1");
    }
}
