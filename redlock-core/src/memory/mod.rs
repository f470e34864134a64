//! An in-memory node that runs the core's scripts natively, with fault injection.
//!
//! For deterministic tests and doctests only: it is not Redis, and the conformance suite
//! never uses it in place of a real server. Time is tokio's, so tests that pause the clock
//! (`start_paused = true`) control expiry and latency exactly.
//!
//! A [`MemoryPool`] is one client's connection to a node; its clones share both, and
//! [`MemoryPool::second_client`] connects another client to the same node. Besides
//! latency, refusals and hangs, it can break the [`Pool`] contract on purpose, to show that
//! the core stays safe when a driver does: it can hold commands and deliver them after
//! later ones ([`MemoryPool::set_queueing`]), and hand a call the reply of an earlier one
//! that was cut short ([`MemoryPool::set_stale_replies`]).

mod node;
mod subscriber;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use self::node::{Arrival, Command, Node};
use self::subscriber::MemorySubscriber;
use crate::conn::{Conn, ConnError, ConnErrorKind, Pool, Replies, Reply, ScriptRef};
use crate::subscriber::BoxSubscriber;

/// One client's connection to one in-memory node. Clones share both.
#[derive(Clone, Debug, Default)]
pub struct MemoryPool {
    node: Arc<Mutex<Node>>,
    link: Arc<Mutex<Link>>,
    address: Option<Arc<str>>,
}

/// One client's connection.
#[derive(Debug, Default)]
struct Link {
    /// How many times the network had begun to swallow when this connection was made.
    seen: u64,
    reconnects: u64,
    stale_replies: bool,
    /// The reply of a call that was cut short, waiting for the next call to read it.
    late_reply: Option<Result<Reply, ConnError>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Another client's connection to the same node: it shares the node's data and
    /// faults, but not this connection's silence, stale replies or reconnects.
    pub fn second_client(&self) -> Self {
        let link = Link {
            seen: self.node().swallows,
            ..Link::default()
        };
        Self {
            node: self.node.clone(),
            link: Arc::new(Mutex::new(link)),
            address: self.address.clone(),
        }
    }

    fn node(&self) -> MutexGuard<'_, Node> {
        lock(&self.node)
    }

    fn link(&self) -> MutexGuard<'_, Link> {
        lock(&self.link)
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
    /// connections made before stay silent until [`Pool::reconnect`] replaces them.
    pub fn set_swallowing(&self, swallowing: bool) {
        let mut node = self.node();
        if swallowing && !node.swallowing {
            node.swallows += 1;
        }
        node.swallowing = swallowing;
    }

    /// How many times the core asked this connection to reconnect.
    pub fn reconnects(&self) -> u64 {
        self.link().reconnects
    }

    /// Holds every command that arrives (`true`) instead of running it; none of them is
    /// answered. [`MemoryPool::deliver_queued`] runs them later, after any command sent in
    /// the meantime: the reordering a pool of independent connections allows.
    pub fn set_queueing(&self, queueing: bool) {
        self.node().queueing = queueing;
    }

    /// Runs the held commands, in the order they were sent, now.
    pub fn deliver_queued(&self) {
        self.node().deliver_queued();
    }

    /// Makes this connection hand each call the reply of the call before it when that one
    /// was cut short (`true`), like a plain connection reused after a timeout.
    pub fn set_stale_replies(&self, stale: bool) {
        self.link().stale_replies = stale;
    }

    /// Forgets cached scripts, as `SCRIPT FLUSH` or a restart does.
    pub fn flush_scripts(&self) {
        self.node().scripts_loaded = false;
    }

    /// Deletes `key` now, as an early expiry would.
    pub fn expire_now(&self, key: &str) {
        self.node().data.remove(key);
    }

    /// Forgets every key and script, as a restart without persistence does, without
    /// restarting (the node's uptime and connections stay).
    pub fn lose_data(&self) {
        let mut node = self.node();
        node.data.clear();
        node.persistent.clear();
        node.scripts_loaded = false;
    }

    /// Keeps an append-only file or not (default: not): `WAITAOF` after a write, for
    /// durable votes, is confirmed at once with one and refused without.
    pub fn set_appendonly(&self, appendonly: bool) {
        self.node().appendonly = appendonly;
    }

    /// How many `INFO server` commands the node answered (restart quarantine reads it
    /// once per connection).
    pub fn info_calls(&self) -> u64 {
        self.node().infos
    }

    /// Restarts the node now: its uptime starts again (`INFO server`), every connection
    /// is a new one ([`Conn::epoch`] changes), the scripts are gone, and the keys too
    /// unless `keep_data`. Without a restart a node reports three years of uptime.
    pub fn restart(&self, keep_data: bool) {
        self.node().restart(keep_data);
    }

    /// The value of `key`, if present and not expired.
    pub fn get(&self, key: &str) -> Option<String> {
        let now = Instant::now();
        let node = self.node();
        let held = node.data.get(key).filter(|(_, at)| *at > now);
        let held = held.map(|(v, _)| v.clone());
        held.or_else(|| node.persistent.get(key).cloned())
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

    /// The channels the node's releases were published on, in order (the release script's
    /// `PUBLISH`).
    pub fn published(&self) -> Vec<String> {
        self.node().published.clone()
    }

    /// Publishes `payload` on `channel`, as `PUBLISH` would (unless the node is losing
    /// messages); returns how many subscribers got it.
    pub fn publish(&self, channel: &str, payload: &str) -> usize {
        self.node().publish(channel, payload.as_bytes())
    }

    /// How many open subscriber connections listen to `channel` (`PUBSUB NUMSUB`).
    pub fn subscriptions(&self, channel: &str) -> usize {
        let node = self.node();
        node.subscribers
            .iter()
            .filter(|s| s.listens_to(channel))
            .count()
    }

    /// How many subscriber connections were ever opened to the node.
    pub fn subscribers_opened(&self) -> u64 {
        self.node().subscribers_opened
    }

    /// Makes releases reach no subscriber (`true`), as messages lost in a network
    /// partition or a dropped buffer would; the releases themselves still happen.
    pub fn set_losing_messages(&self, losing: bool) {
        self.node().losing_messages = losing;
    }

    /// Closes every subscriber connection to the node, as a restart or a network reset
    /// would; the clients' next read fails.
    pub fn close_subscribers(&self) {
        self.node().subscribers.clear();
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

    fn arrive(&self, command: Command) -> Result<Arrival, ConnError> {
        let seen = self.link().seen;
        self.node().arrive(command, seen)
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
/// a connection with stale replies for the next call to read it.
struct ReplySlot<'a> {
    pool: &'a MemoryPool,
    reply: Option<Result<Reply, ConnError>>,
}

impl ReplySlot<'_> {
    fn deliver(&mut self) -> Result<Reply, ConnError> {
        let own = self.reply.take().unwrap_or(Ok(Reply::Nil));
        let mut link = self.pool.link();
        match link.late_reply.take() {
            Some(late) if link.stale_replies => {
                link.late_reply = Some(own);
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
        let mut link = self.pool.link();
        if link.stale_replies {
            link.late_reply = Some(reply);
        }
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

    /// A new connection: silent again only while the network swallows everything.
    fn reconnect(&self) -> bool {
        let swallows = self.node().swallows;
        let mut link = self.link();
        link.seen = swallows;
        link.reconnects += 1;
        link.late_reply = None;
        true
    }

    async fn subscriber(&self) -> Result<BoxSubscriber, ConnError> {
        Ok(Box::new(MemorySubscriber::connect(&self.node)?))
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
        self.run(Command::new(script, keys, args)).await
    }

    /// `INFO server` only, answered at once and not counted in [`MemoryPool::calls`].
    async fn command(&mut self, args: &[&str]) -> Result<Reply, ConnError> {
        match args {
            [info, section] if info.eq_ignore_ascii_case("info") && *section == "server" => {
                self.node().info_server()
            }
            _ => Err(ConnError::new(
                ConnErrorKind::Command,
                "ERR unknown command",
            )),
        }
    }

    /// The script as [`Conn::eval`], then `WAITAOF` only (see
    /// [`MemoryPool::set_appendonly`]).
    async fn eval_then(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
        then: &[&str],
    ) -> Result<Replies, ConnError> {
        let reply = match self.run(Command::new(script, keys, args)).await {
            Err(e) if e.kind() != ConnErrorKind::NoScript && e.kind() != ConnErrorKind::Command => {
                return Err(e);
            }
            reply => reply,
        };
        let waited = match then.first() {
            Some(name) if name.eq_ignore_ascii_case("waitaof") => self.node().wait_aof(),
            _ => Err(ConnError::new(
                ConnErrorKind::Command,
                "ERR unknown command",
            )),
        };
        Ok((reply, waited))
    }

    /// The node's restarts and this client's reconnects.
    fn epoch(&self) -> Option<u64> {
        let incarnation = self.node().incarnation;
        Some(incarnation << 32 | self.link().reconnects)
    }
}
