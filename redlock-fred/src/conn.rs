//! One call to a node, [`FredConn`]: a script sent as a custom command, routed by its
//! key, tried once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fred::clients::{Client, Pipeline};
use fred::error::Error as FredError;
use fred::interfaces::{ClientLike, EventInterface};
use fred::prelude::Server;
use fred::types::config::Options as CallOptions;
use fred::types::{ClusterHash, CustomCommand, Value};
use redlock_core::{Conn, ConnError, ConnErrorKind, Replies, Reply, ScriptRef};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::TryRecvError;

use crate::convert::{map_error, to_reply};

type FredResult<T> = Result<T, FredError>;

/// How long before the core's deadline fred's timeout for a call ends (see `once`).
const DEADLINE_LEAD: Duration = Duration::from_millis(2);

/// Runs the core's scripts on one fred client, without buffering or replays.
#[derive(Clone, Debug)]
pub struct FredConn {
    pub(crate) client: Client,
    pub(crate) reconnects: Arc<Reconnects>,
    /// When the core stops waiting for this connection's calls ([`Conn::set_deadline`]).
    pub(crate) deadline: Option<Instant>,
}

/// How many times fred connected the client anew, read from its reconnect events.
#[derive(Debug)]
pub(crate) struct Reconnects(Mutex<(Receiver<Server>, u64)>);

impl Reconnects {
    /// Counts the reconnects of `client` from now on.
    pub(crate) fn of(client: &Client) -> Self {
        Self(Mutex::new((client.reconnect_rx(), 0)))
    }

    fn count(&self) -> u64 {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (events, count) = &mut *state;
        loop {
            match events.try_recv() {
                Ok(_) => *count += 1,
                Err(TryRecvError::Lagged(missed)) => *count += missed,
                Err(TryRecvError::Empty | TryRecvError::Closed) => return *count,
            }
        }
    }
}

impl FredConn {
    /// Tried once, never queued while disconnected, and never written after the core's
    /// deadline. fred checks `fail_fast` against its client state, which still says
    /// "connected" for a moment after the connection dropped: a command sent then waits
    /// behind the reconnect. fred's own timeout marks such a command timed out, and fred
    /// does not write a command so marked, so it cannot land once the node is back.
    ///
    /// fred's timeout ends [`DEADLINE_LEAD`] before the core's deadline: fred starts its
    /// timer a little after this reads the clock, and tokio rounds timers up to the
    /// millisecond, so a timeout of exactly the time left could fire after the core's,
    /// which drops the call before fred marks it.
    fn once(&self) -> Result<CallOptions, ConnError> {
        let timeout = match self.deadline {
            None => None,
            Some(deadline) => match deadline
                .checked_duration_since(Instant::now())
                .and_then(|left| left.checked_sub(DEADLINE_LEAD))
            {
                // fred reads a zero timeout as none at all.
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(ConnError::new(ConnErrorKind::Timeout, "deadline passed")),
            },
        };
        Ok(CallOptions {
            fail_fast: true,
            max_attempts: Some(1),
            timeout,
            ..CallOptions::default()
        })
    }

    /// A script's arguments as fred values: the script, the key count, keys, args.
    fn script_values(script: &str, keys: &[&str], args: &[&str]) -> Vec<Value> {
        let mut values = Vec::with_capacity(2 + keys.len() + args.len());
        values.push(Value::from(script));
        values.push(Value::Integer(keys.len().try_into().unwrap_or(i64::MAX)));
        values.extend(keys.iter().chain(args).map(|s| Value::from(*s)));
        values
    }

    /// On a cluster, the call goes to the slot of KEYS[1], the lock's one key. fred
    /// routes a custom command by its hash only when that is a slot (`Custom`); any other
    /// policy, `Offset` included, hashes the first string argument: the script.
    fn script_command(command: &'static str, keys: &[&str]) -> CustomCommand {
        let slot = keys
            .first()
            .map_or(ClusterHash::Random, |key| ClusterHash::from(*key));
        CustomCommand::new_static(command, slot, false)
    }

    async fn call(
        &self,
        command: &'static str,
        script: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        let values = Self::script_values(script, keys, args);
        let options = self.once()?;
        let command = Self::script_command(command, keys);
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

    /// Both in one fred pipeline, on the client's one connection (a cluster client's
    /// commands may go to two masters: unsupported there). fred does not mark a pipeline
    /// timed out, so a pipeline held behind a reconnect (see `once`) can still be written
    /// after the deadline; the release the core sends after it follows it on the same
    /// connection.
    async fn eval_then(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
        then: &[&str],
    ) -> Result<Replies, ConnError> {
        let Some((name, rest)) = then.split_first().filter(|_| !self.client.is_clustered()) else {
            let message = "a cluster client cannot pipeline a command after a script";
            return Err(ConnError::new(ConnErrorKind::Unsupported, message));
        };
        let pipeline = Pipeline::from(self.client.with_options(&self.once()?));
        let values = Self::script_values(script.text(), keys, args);
        let command = Self::script_command(script.command(), keys);
        let queued: FredResult<Value> = pipeline.custom(command, values).await;
        queued.map_err(map_error)?;
        let command = CustomCommand::new(name.to_string(), ClusterHash::Random, false);
        let values: Vec<Value> = rest.iter().map(|s| Value::from(*s)).collect();
        let queued: FredResult<Value> = pipeline.custom(command, values).await;
        queued.map_err(map_error)?;
        let mut replies = pipeline.try_all::<Value>().await.into_iter();
        let mut next = || {
            replies
                .next()
                .map(|r| r.map_err(map_error).and_then(to_reply))
        };
        match (next(), next()) {
            (Some(script), Some(then)) => Ok((script, then)),
            (Some(Err(e)), None) => Err(e),
            _ => {
                let message = "a pipeline of two commands gave fewer than two replies";
                Err(ConnError::new(ConnErrorKind::Protocol, message))
            }
        }
    }

    async fn command(&mut self, args: &[&str]) -> Result<Reply, ConnError> {
        if self.client.is_clustered() {
            let message = "a cluster client sends commands to several masters";
            return Err(ConnError::new(ConnErrorKind::Unsupported, message));
        }
        let Some((name, rest)) = args.split_first() else {
            return Err(ConnError::new(ConnErrorKind::Command, "no command to send"));
        };
        let command = CustomCommand::new(name.to_string(), ClusterHash::Random, false);
        let values: Vec<Value> = rest.iter().map(|s| Value::from(*s)).collect();
        let client = self.client.with_options(&self.once()?);
        let value: Value = client.custom(command, values).await.map_err(map_error)?;
        to_reply(value)
    }

    /// How many times fred connected the client: it reconnects in the background, so a
    /// call can go over a new connection without one failing. fred announces each new
    /// connection before it puts the connection in service.
    fn epoch(&self) -> Option<u64> {
        Some(self.reconnects.count())
    }

    /// Given to fred as each command's timeout (see `once`).
    fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }
}
