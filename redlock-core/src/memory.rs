//! An in-memory node that runs the core's scripts natively, with fault injection.
//!
//! For deterministic tests and doctests only: it is not Redis, and the conformance suite
//! never uses it in place of a real server. Time is tokio's, so tests that pause the clock
//! (`start_paused = true`) control expiry and latency exactly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::conn::{Conn, ConnError, ConnErrorKind, Pool, Reply};
use crate::scripts::{LOCK, UNLOCK};

/// One in-memory node. Clones share the node.
#[derive(Clone, Debug, Default)]
pub struct MemoryPool {
    node: Arc<Mutex<Node>>,
}

#[derive(Debug, Default)]
struct Node {
    data: HashMap<String, (String, Instant)>,
    scripts_loaded: bool,
    latency: Duration,
    transit: Duration,
    down: bool,
    hang: bool,
    calls: u64,
}

impl MemoryPool {
    /// A new, empty, healthy node.
    pub fn new() -> Self {
        Self::default()
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
        node.data
            .get(key)
            .filter(|(_, at)| *at > now)
            .map(|(v, _)| v.clone())
    }

    /// The time `key` has left, if present and not expired.
    pub fn ttl(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let node = self.node();
        node.data
            .get(key)
            .and_then(|(_, at)| at.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Sets `key` to `value` for `ttl`, as another client would.
    pub fn set(&self, key: &str, value: &str, ttl: Duration) {
        let at = Instant::now() + ttl;
        self.node()
            .data
            .insert(key.to_owned(), (value.to_owned(), at));
    }

    /// How many script calls reached the node (EVALSHA and EVAL alike).
    pub fn calls(&self) -> u64 {
        self.node().calls
    }

    async fn run(
        &self,
        by_sha: Option<&str>,
        source: Option<&str>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        let transit = self.node().transit;
        let (reply, latency, hang) = if transit.is_zero() {
            self.arrive(by_sha, source, keys, args)?
        } else {
            self.send(transit, by_sha, source, keys, args).await?
        };
        if hang {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(latency).await;
        reply
    }

    /// Runs the command on the node now; the reply with the latency and hang to answer it with.
    fn arrive(
        &self,
        by_sha: Option<&str>,
        source: Option<&str>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Answer, ConnError> {
        let mut node = self.node();
        if node.down {
            return Err(ConnError::new(
                ConnErrorKind::Connection,
                "connection refused",
            ));
        }
        node.calls += 1;
        let reply = node.apply(by_sha, source, keys, args);
        Ok((reply, node.latency, node.hang))
    }

    /// Runs the command after `transit` in a task of its own, so that it lands even when
    /// the caller stops waiting for it.
    async fn send(
        &self,
        transit: Duration,
        by_sha: Option<&str>,
        source: Option<&str>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Answer, ConnError> {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (by_sha, source) = (by_sha.map(str::to_owned), source.map(str::to_owned));
        let (keys, args) = (owned(keys), owned(args));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let pool = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(transit).await;
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let answer = pool.arrive(by_sha.as_deref(), source.as_deref(), &keys, &args);
            let _ = tx.send(answer);
        });
        rx.await
            .unwrap_or_else(|_| Err(ConnError::new(ConnErrorKind::Connection, "connection lost")))
    }
}

/// A command's reply, with the latency and hang of the node when it ran.
type Answer = (Result<Reply, ConnError>, Duration, bool);

impl Node {
    fn apply(
        &mut self,
        by_sha: Option<&str>,
        source: Option<&str>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        let script = match (by_sha, source) {
            (Some(_), _) if !self.scripts_loaded => {
                return Err(ConnError::new(
                    ConnErrorKind::NoScript,
                    "NOSCRIPT no matching script",
                ));
            }
            (Some(sha), _) => [LOCK, UNLOCK].into_iter().find(|s| s.sha1() == sha),
            (None, Some(src)) => [LOCK, UNLOCK].into_iter().find(|s| s.source() == src),
            (None, None) => None,
        };
        self.scripts_loaded = true;
        let (Some(script), Some(key), Some(value)) = (script, keys.first(), args.first()) else {
            return Err(ConnError::new(
                ConnErrorKind::Server,
                "ERR unknown script or arguments",
            ));
        };
        let now = Instant::now();
        self.data.retain(|_, (_, at)| *at > now);
        let current = self.data.get(*key).map(|(v, _)| v.as_str());
        let mine = current == Some(*value);
        if script == UNLOCK {
            return Ok(Reply::Int(match current {
                None => 0,
                Some(_) if mine => {
                    self.data.remove(*key);
                    1
                }
                Some(_) => -1,
            }));
        }
        let ttl: u64 = args
            .get(1)
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| ConnError::new(ConnErrorKind::Server, "ERR bad ttl"))?;
        // The modes of `scripts::LOCK`: "0" refresh, "1" create or refresh, "2" create only.
        let mode = args.get(2).copied().unwrap_or("0");
        if current.is_some() && (!mine || mode == "2") {
            return Ok(Reply::Int(-1));
        }
        if current.is_none() && mode == "0" {
            return Ok(Reply::Int(0));
        }
        self.data.insert(
            (*key).to_owned(),
            ((*value).to_owned(), now + Duration::from_millis(ttl)),
        );
        Ok(Reply::Int(1))
    }
}

#[async_trait]
impl Pool for MemoryPool {
    type Conn = MemoryPool;

    async fn get(&self) -> Result<MemoryPool, ConnError> {
        Ok(self.clone())
    }
}

#[async_trait]
impl Conn for MemoryPool {
    async fn evalsha(
        &mut self,
        sha1: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        self.run(Some(sha1), None, keys, args).await
    }

    async fn eval(
        &mut self,
        source: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        self.run(None, Some(source), keys, args).await
    }
}
