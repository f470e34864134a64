//! An in-memory node that runs the core's scripts natively, with fault injection.
//!
//! For deterministic tests and doctests only: it is not Redis, and the conformance suite
//! never uses it in place of a real server. Time is tokio's, so tests that pause the clock
//! (`start_paused = true`) control expiry and latency exactly.
//!
//! Besides latency, refusals and hangs, it can break the [`Pool`] contract on purpose, to
//! show that the core stays safe when a driver does: it can hold commands and deliver them
//! after later ones ([`MemoryPool::set_queueing`]), and hand a call the reply of an earlier
//! one that was cut short ([`MemoryPool::set_stale_replies`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::conn::{Conn, ConnError, ConnErrorKind, Pool, Reply, ScriptRef};
use crate::scripts::{LOCK, LockArgs, LockMode, UNLOCK, UnlockArgs};

/// One in-memory node. Clones share the node.
#[derive(Clone, Debug, Default)]
pub struct MemoryPool {
    node: Arc<Mutex<Node>>,
    address: Option<Arc<str>>,
}

/// A command as sent: script, keys and arguments.
#[derive(Debug, Clone)]
struct Command {
    by_sha: bool,
    script: String,
    keys: Vec<String>,
    args: Vec<String>,
}

#[derive(Debug, Default)]
struct Node {
    data: HashMap<String, (String, Instant)>,
    scripts_loaded: bool,
    latency: Duration,
    transit: Duration,
    down: bool,
    hang: bool,
    failure: Option<(ConnErrorKind, String)>,
    /// The network swallows every byte (no reply, no reset) while set.
    swallowing: bool,
    /// The connection in use went silent and stays so until a reconnect.
    silent: bool,
    reconnects: u64,
    queueing: bool,
    queued: Vec<Command>,
    stale_replies: bool,
    /// The reply of a call that was cut short, waiting for the next call to read it.
    late_reply: Option<Result<Reply, ConnError>>,
    calls: u64,
}

/// What became of a command at the node.
enum Arrival {
    /// The node ran it; the reply comes after the latency.
    Answer(Result<Reply, ConnError>, Duration),
    /// No reply will ever come.
    Never,
}

impl MemoryPool {
    /// A new, empty, healthy node.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new node that gives `address` as its [`Pool::address`].
    pub fn with_address(address: &str) -> Self {
        let address = Some(address.into());
        Self {
            address,
            ..Self::default()
        }
    }

    fn node(&self) -> MutexGuard<'_, Node> {
        self.node.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Delays every reply by `latency`; the command itself takes effect on arrival (at once,
    /// unless [`MemoryPool::set_request_latency`] delays it).
    pub fn set_latency(&self, latency: Duration) {
        self.node().latency = latency;
    }

    /// Delays every command's arrival at the node by `delay`: it takes effect `delay` after
    /// it was sent, even if the caller stopped waiting (the bytes are already on the wire),
    /// and the reply then takes the [`MemoryPool::set_latency`] on top.
    pub fn set_request_latency(&self, delay: Duration) {
        self.node().transit = delay;
    }

    /// Makes the node refuse connections (`true`) or accept them again.
    pub fn set_down(&self, down: bool) {
        self.node().down = down;
    }

    /// Makes the node take commands but never answer (`true`), like a paused process.
    pub fn set_hang(&self, hang: bool) {
        self.node().hang = hang;
    }

    /// Makes every call fail with an error of `kind` (say [`ConnErrorKind::Auth`]), or,
    /// with `None`, succeed again.
    pub fn set_failure(&self, failure: Option<(ConnErrorKind, &str)>) {
        self.node().failure = failure.map(|(kind, message)| (kind, message.to_owned()));
    }

    /// Makes the network swallow every command and reply (`true`), without a reset, like
    /// a firewall that drops packets. Healing it (`false`) helps only new connections:
    /// the connection in use stays silent until [`Pool::reconnect`] replaces it.
    pub fn set_swallowing(&self, swallowing: bool) {
        let mut node = self.node();
        node.swallowing = swallowing;
        node.silent |= swallowing;
    }

    /// How many times the core asked this node for a new connection.
    pub fn reconnects(&self) -> u64 {
        self.node().reconnects
    }

    /// Holds every command that arrives (`true`) instead of running it; none of them is
    /// answered. [`MemoryPool::deliver_queued`] runs them later, after any command sent in
    /// the meantime: the reordering a pool of independent connections allows.
    pub fn set_queueing(&self, queueing: bool) {
        self.node().queueing = queueing;
    }

    /// Runs the held commands, in the order they were sent, now.
    pub fn deliver_queued(&self) {
        let mut node = self.node();
        for command in std::mem::take(&mut node.queued) {
            // Nobody waits for these replies.
            drop(node.apply(&command));
        }
    }

    /// Makes the node's connection hand each call the reply of the call before it when
    /// that one was cut short (`true`), like a plain connection reused after a timeout.
    pub fn set_stale_replies(&self, stale: bool) {
        self.node().stale_replies = stale;
    }

    /// Forgets cached scripts, as `SCRIPT FLUSH` or a restart does.
    pub fn flush_scripts(&self) {
        self.node().scripts_loaded = false;
    }

    /// Deletes `key` now, as an early expiry would.
    pub fn expire_now(&self, key: &str) {
        self.node().data.remove(key);
    }

    /// The value of `key`, if present and not expired.
    pub fn get(&self, key: &str) -> Option<String> {
        let now = Instant::now();
        let node = self.node();
        let held = node.data.get(key).filter(|(_, at)| *at > now);
        held.map(|(v, _)| v.clone())
    }

    /// The time `key` has left, if present and not expired.
    pub fn ttl(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let node = self.node();
        let at = node.data.get(key).map(|(_, at)| *at);
        at.and_then(|at| at.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Sets `key` to `value` for `ttl`, as another client would.
    pub fn set(&self, key: &str, value: &str, ttl: Duration) {
        let at = Instant::now() + ttl;
        let entry = (value.to_owned(), at);
        self.node().data.insert(key.to_owned(), entry);
    }

    /// How many script calls reached the node (EVALSHA and EVAL alike).
    pub fn calls(&self) -> u64 {
        self.node().calls
    }

    async fn run(&self, command: Command) -> Result<Reply, ConnError> {
        let transit = self.node().transit;
        let arrival = if transit.is_zero() {
            self.arrive(command)?
        } else {
            self.send(transit, command).await?
        };
        let Arrival::Answer(reply, latency) = arrival else {
            return std::future::pending().await;
        };
        let mut slot = ReplySlot {
            pool: self,
            reply: Some(reply),
        };
        tokio::time::sleep(latency).await;
        slot.deliver()
    }

    /// Runs, holds or swallows the command at the node now.
    fn arrive(&self, command: Command) -> Result<Arrival, ConnError> {
        let mut node = self.node();
        if node.down {
            let refused = ConnError::new(ConnErrorKind::Connection, "connection refused");
            return Err(refused);
        }
        if node.swallowing || node.silent {
            return Ok(Arrival::Never);
        }
        node.calls += 1;
        if node.queueing {
            node.queued.push(command);
            return Ok(Arrival::Never);
        }
        if let Some((kind, message)) = &node.failure {
            return Err(ConnError::new(*kind, message.clone()));
        }
        let reply = node.apply(&command);
        if node.hang {
            return Ok(Arrival::Never);
        }
        Ok(Arrival::Answer(reply, node.latency))
    }

    /// Runs the command after `transit` in a task of its own, so that it lands even when
    /// the caller stops waiting for it.
    async fn send(&self, transit: Duration, command: Command) -> Result<Arrival, ConnError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let pool = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(transit).await;
            // The caller may have stopped waiting; the command ran all the same.
            tx.send(pool.arrive(command)).unwrap_or_default();
        });
        let lost = || Err(ConnError::new(ConnErrorKind::Connection, "connection lost"));
        rx.await.unwrap_or_else(|_| lost())
    }
}

/// A reply on its way back. Dropped before delivery (its call was cut short), it waits on
/// a node with stale replies for the next call to read it.
struct ReplySlot<'a> {
    pool: &'a MemoryPool,
    reply: Option<Result<Reply, ConnError>>,
}

impl ReplySlot<'_> {
    fn deliver(&mut self) -> Result<Reply, ConnError> {
        let own = self.reply.take().unwrap_or(Ok(Reply::Nil));
        let mut node = self.pool.node();
        match node.late_reply.take() {
            Some(late) if node.stale_replies => {
                node.late_reply = Some(own);
                late
            }
            _ => own,
        }
    }
}

impl Drop for ReplySlot<'_> {
    fn drop(&mut self) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        let mut node = self.pool.node();
        if node.stale_replies {
            node.late_reply = Some(reply);
        }
    }
}

impl Node {
    fn apply(&mut self, command: &Command) -> Result<Reply, ConnError> {
        let known = |s: &crate::scripts::Script| {
            let text = if command.by_sha { s.sha1() } else { s.source() };
            text == command.script
        };
        if command.by_sha && !self.scripts_loaded {
            let message = "NOSCRIPT no matching script";
            return Err(ConnError::new(ConnErrorKind::NoScript, message));
        }
        self.scripts_loaded = true;
        let now = Instant::now();
        self.data.retain(|_, (_, at)| *at > now);
        let args: Vec<&str> = command.args.iter().map(String::as_str).collect();
        let key = command.keys.first().map(String::as_str).unwrap_or_default();
        if known(&UNLOCK)
            && let Some(args) = UnlockArgs::parse(&args)
        {
            return Ok(self.unlock(key, args));
        }
        if known(&LOCK)
            && let Some(args) = LockArgs::parse(&args)
            && let Ok(ttl) = args.ttl_ms.parse::<u64>()
        {
            return Ok(self.lock(key, args, now + Duration::from_millis(ttl)));
        }
        let message = "ERR unknown script or arguments";
        Err(ConnError::new(ConnErrorKind::Command, message))
    }

    fn unlock(&mut self, key: &str, args: UnlockArgs<'_>) -> Reply {
        match self.data.get(key).map(|(v, _)| v.as_str()) {
            None => Reply::Int(0),
            Some(v) if v == args.value => {
                self.data.remove(key);
                Reply::Data(args.tag.as_bytes().to_vec())
            }
            Some(_) => Reply::Int(-1),
        }
    }

    fn lock(&mut self, key: &str, args: LockArgs<'_>, until: Instant) -> Reply {
        let current = self.data.get(key).map(|(v, _)| v.as_str());
        let refresh = current == Some(args.value) && args.mode != LockMode::CreateOnly;
        if current.is_some() && !refresh {
            return Reply::Int(-1);
        }
        if current.is_none() && args.mode == LockMode::Refresh {
            return Reply::Int(0);
        }
        let entry = (args.value.to_owned(), until);
        self.data.insert(key.to_owned(), entry);
        Reply::Data(args.tag.as_bytes().to_vec())
    }
}

#[async_trait]
impl Pool for MemoryPool {
    type Conn = MemoryPool;

    async fn get(&self) -> Result<MemoryPool, ConnError> {
        Ok(self.clone())
    }

    fn address(&self) -> Option<String> {
        self.address.as_deref().map(str::to_owned)
    }

    /// A new connection: silent again only if the network still swallows everything.
    fn reconnect(&self) -> bool {
        let mut node = self.node();
        node.reconnects += 1;
        node.silent = node.swallowing;
        node.late_reply = None;
        true
    }
}

#[async_trait]
impl Conn for MemoryPool {
    async fn eval(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        let command = Command {
            by_sha: matches!(script, ScriptRef::Sha1(_)),
            script: script.text().to_owned(),
            keys: owned(keys),
            args: owned(args),
        };
        self.run(command).await
    }
}
