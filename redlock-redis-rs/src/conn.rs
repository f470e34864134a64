//! One call to a node, [`RedisConn`], and the mapping of redis-rs replies and errors into
//! the core's types, for every driver built on redis-rs connections.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use redis::aio::{AsyncPushSender, ConnectionLike, SendError};
use redis::{ErrorKind, PushInfo, PushKind, RedisError, Value};
use redlock_core::{Conn, ConnError, ConnErrorKind, Replies, Reply, ScriptRef};

/// Runs the core's scripts, and `INFO server` for restart quarantine, on any redis-rs
/// async connection.
#[derive(Debug)]
pub struct RedisConn<C> {
    conn: C,
    generation: Option<Arc<AtomicU64>>,
    commands: bool,
}

impl<C> RedisConn<C> {
    /// Runs calls on `conn`. Its [`Conn::epoch`] is `None` (it cannot tell a new
    /// underlying connection; see [`RedisConn::with_generation`]).
    pub fn new(conn: C) -> Self {
        Self {
            conn,
            generation: None,
            commands: true,
        }
    }

    /// Reports `generation`, read at each call, as the [`Conn::epoch`]: whoever makes a
    /// new underlying connection for `conn` must raise it first. The connection raises
    /// it itself when a call fails on a connection error, since a redis-rs client makes
    /// its next connection after one.
    #[must_use]
    pub fn with_generation(mut self, generation: Arc<AtomicU64>) -> Self {
        self.generation = Some(generation);
        self
    }

    /// Raises the generation when `result` failed on the connection.
    fn note<T>(&self, result: Result<T, ConnError>) -> Result<T, ConnError> {
        if let (Err(e), Some(generation)) = (&result, &self.generation)
            && e.kind() == ConnErrorKind::Connection
        {
            generation.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Reports [`Conn::command`] unsupported: for a connection whose commands go to
    /// several servers (a cluster), where `INFO` would not say which node answered.
    #[must_use]
    pub fn without_commands(mut self) -> Self {
        self.commands = false;
        self
    }

    /// The connection.
    pub fn into_inner(self) -> C {
        self.conn
    }
}

#[async_trait]
impl<C: ConnectionLike + Send> Conn for RedisConn<C> {
    async fn eval(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        let result = query_script(&mut self.conn, script, keys, args).await;
        self.note(result)
    }

    async fn command(&mut self, args: &[&str]) -> Result<Reply, ConnError> {
        if !self.commands {
            let message = "a cluster connection sends commands to several masters";
            return Err(ConnError::new(ConnErrorKind::Unsupported, message));
        }
        let result = query_command(&mut self.conn, args).await;
        self.note(result)
    }

    async fn eval_then(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
        then: &[&str],
    ) -> Result<Replies, ConnError> {
        let result = query_script_then(&mut self.conn, script, keys, args, then).await;
        self.note(result)
    }

    fn epoch(&self) -> Option<u64> {
        let generation = self.generation.as_ref()?;
        Some(generation.load(Ordering::Relaxed))
    }
}

/// Sends `script` and then the command `then` (`then[0]` is its name) on `conn` in one
/// pipeline, and maps both replies into the core's types: [`Conn::eval_then`] for drivers
/// built on redis-rs connections.
///
/// # Errors
///
/// As [`map_error`] when the pipeline failed as a whole; each command's own error reply
/// comes back as that reply's `Err`.
pub async fn query_script_then<C: ConnectionLike>(
    conn: &mut C,
    script: ScriptRef<'_>,
    keys: &[&str],
    args: &[&str],
    then: &[&str],
) -> Result<Replies, ConnError> {
    let Some((name, rest)) = then.split_first() else {
        return Err(ConnError::new(ConnErrorKind::Command, "no command to send"));
    };
    let mut pipe = redis::pipe();
    let eval = pipe.cmd(script.command()).arg(script.text());
    eval.arg(keys.len()).arg(keys).arg(args);
    pipe.cmd(name).arg(rest);
    pipe.ignore_errors();
    let replies: Vec<Value> = pipe.query_async(conn).await.map_err(map_error)?;
    let mut replies = replies.into_iter().map(|reply| match reply {
        Value::ServerError(e) => Err(map_error(e.into())),
        reply => to_reply(reply),
    });
    match (replies.next(), replies.next()) {
        (Some(script), Some(then)) => Ok((script, then)),
        _ => {
            let message = "a pipeline of two commands gave fewer than two replies";
            Err(ConnError::new(ConnErrorKind::Protocol, message))
        }
    }
}

/// Sends one command (`args[0]` is its name) on `conn`, and maps the reply and any error
/// into the core's types: [`Conn::command`] for drivers built on redis-rs connections.
///
/// # Errors
///
/// As [`map_error`] and [`to_reply`]; [`ConnErrorKind::Command`] for an empty `args`.
pub async fn query_command<C: ConnectionLike>(
    conn: &mut C,
    args: &[&str],
) -> Result<Reply, ConnError> {
    let Some((name, rest)) = args.split_first() else {
        return Err(ConnError::new(ConnErrorKind::Command, "no command to send"));
    };
    let mut cmd = redis::cmd(name);
    cmd.arg(rest);
    let reply = cmd.query_async(conn).await.map_err(map_error)?;
    to_reply(reply)
}

/// Counts the connections a RESP3 `ConnectionManager` dropped: it reconnects by itself
/// when one closes, without a call failing, and says so with a
/// [`PushKind::Disconnection`] push, sent before the new connection is made.
#[derive(Debug, Clone, Default)]
pub(crate) struct Disconnections(pub(crate) Arc<AtomicU64>);

impl AsyncPushSender for Disconnections {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        if info.kind == PushKind::Disconnection {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
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

/// Maps a redis-rs error into the core's [`ConnError`]; server error replies are
/// classified by the core ([`ConnErrorKind::of_server_error`]).
pub fn map_error(e: RedisError) -> ConnError {
    let kind = match (e.code(), e.kind()) {
        (Some(code), _) => {
            let reply = format!("{code} {}", e.detail().unwrap_or_default());
            ConnErrorKind::of_server_error(&reply)
        }
        (None, ErrorKind::AuthenticationFailed) => ConnErrorKind::Auth,
        _ if e.is_timeout() => ConnErrorKind::Timeout,
        _ if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
            ConnErrorKind::Connection
        }
        (None, ErrorKind::Parse | ErrorKind::UnexpectedReturnType) => ConnErrorKind::Protocol,
        (None, ErrorKind::RESP3NotSupported) => ConnErrorKind::Protocol,
        _ => ConnErrorKind::Other,
    };
    ConnError::caused_by(kind, Cause(e))
}

/// A redis-rs error as a `source()`: a `RedisError` that wraps an I/O error prints that
/// error's text and returns it as its own source, which would print it twice; this skips
/// the repeat.
#[derive(Debug)]
struct Cause(RedisError);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for Cause {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let inner = self.0.source()?;
        if inner.to_string() == self.0.to_string() {
            return inner.source();
        }
        Some(inner)
    }
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
        Value::VerbatimString { text, .. } => Reply::Data(text.into_bytes()),
        Value::Array(items) => {
            Reply::Array(items.into_iter().map(to_reply).collect::<Result<_, _>>()?)
        }
        other => {
            // The variant's name only: a reply's contents may be a lock value.
            let shown = format!("{other:?}");
            let kind = shown.split(['(', '{', ' ']).next().unwrap_or_default();
            let msg = format!("unexpected reply type {kind}");
            return Err(ConnError::new(ConnErrorKind::Protocol, msg));
        }
    })
}
