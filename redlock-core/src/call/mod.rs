//! One script call, the same for every node of a lock: what is sent (the key, the value,
//! the script's arguments and a tag of its own) and how a node's reply is read as a vote.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::conn::{Conn, ConnError, ConnErrorKind, Pool, Reply};
use crate::fence::Token;
use crate::nodes::Nodes;
use crate::observe::Started;
use crate::scripts::{
    FENCE, FenceArgs, LOCK, LockArgs, LockMode, RELEASE_CHANNEL_PREFIX, UNLOCK, UnlockArgs,
};
use crate::tally::Vote;

mod read;
mod send;

use read::{read_fenced, read_vote};
pub(crate) use send::WaitAof;

/// Tags run from 1 to this, then start again: exact as Lua numbers (doubles).
const MAX_TAG: i64 = (1 << 53) - 1;

/// A new call's tag: a number no other call of this process carries (until 2^53 - 1 calls
/// have been made), which the scripts return on success, so that a late reply to another
/// call is never read as this call's success. Never 0 or -1, the scripts' other replies.
fn next_tag() -> i64 {
    static NEXT: AtomicI64 = AtomicI64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed).rem_euclid(MAX_TAG) + 1
}

/// What a call asks of the key.
enum Op {
    /// Set or refresh it with this TTL (the script's argument), as `mode` allows.
    Lock { ttl_ms: Arc<str>, mode: LockMode },
    /// Delete it if it holds our value, and announce that on its release channel if
    /// `notify`.
    Unlock { notify: bool },
    /// Set it with this TTL if it is absent and `token` is above the fence kept in
    /// `fence_key`.
    Fence {
        fence_key: Arc<str>,
        ttl_ms: Arc<str>,
        token: Token,
    },
}

/// One script call, the same for every node, with the nodes to send it to (so that a
/// fan-out's node calls share one handle on them instead of one each).
pub(crate) struct Call<P> {
    nodes: Arc<Nodes<P>>,
    key: Arc<str>,
    value: Arc<str>,
    op: Op,
    tag: i64,
    /// The largest fence a node reported to a fenced acquire.
    fence_seen: AtomicU64,
    /// For an acquire under restart quarantine: the period after a node's start in which
    /// its grant does not count.
    quarantine: Option<Duration>,
    /// For an acquire or extend with durable votes: `WAITAOF`'s replicas and timeout.
    durable: Option<WaitAof>,
}

impl<P: Pool> Call<P> {
    /// Sets or refreshes `key` on `nodes` with the TTL `ttl_ms`, as `mode` allows.
    pub(crate) fn lock(
        nodes: Arc<Nodes<P>>,
        key: Arc<str>,
        value: Arc<str>,
        ttl_ms: Arc<str>,
        mode: LockMode,
    ) -> Self {
        Self::new(nodes, key, value, Op::Lock { ttl_ms, mode })
    }

    /// Deletes `key` on `nodes` if it holds `value`, and publishes that on the key's
    /// release channel if `notify`.
    pub(crate) fn unlock(
        nodes: Arc<Nodes<P>>,
        key: Arc<str>,
        value: Arc<str>,
        notify: bool,
    ) -> Self {
        Self::new(nodes, key, value, Op::Unlock { notify })
    }

    /// Sets `key` on `nodes` with the TTL `ttl_ms` where it is absent and `token` is above
    /// the fence kept in `fence_key`.
    pub(crate) fn fence(
        nodes: Arc<Nodes<P>>,
        key: Arc<str>,
        fence_key: Arc<str>,
        value: Arc<str>,
        ttl_ms: Arc<str>,
        token: Token,
    ) -> Self {
        let op = Op::Fence {
            fence_key,
            ttl_ms,
            token,
        };
        Self::new(nodes, key, value, op)
    }

    fn new(nodes: Arc<Nodes<P>>, key: Arc<str>, value: Arc<str>, op: Op) -> Self {
        let tag = next_tag();
        Self {
            nodes,
            key,
            value,
            op,
            tag,
            fence_seen: AtomicU64::new(0),
            quarantine: None,
            durable: None,
        }
    }

    /// Counts a node's success only once `WAITAOF` after the script confirms it reached
    /// the node's append-only file (`None`: at once).
    pub(crate) fn with_durable(mut self, wait: Option<WaitAof>) -> Self {
        self.durable = wait;
        self
    }

    /// Counts no grant of a node that started less than `period` ago (`None`: every
    /// grant counts), reading each node's age when its connection may be new.
    pub(crate) fn with_quarantine(mut self, period: Option<Duration>) -> Self {
        self.quarantine = period;
        self
    }

    /// The largest fence a node has reported to this call so far (0 for none).
    pub(crate) fn fence_seen(&self) -> u64 {
        self.fence_seen.load(Ordering::Relaxed)
    }

    /// The nodes this call goes to.
    pub(crate) fn nodes(&self) -> &Arc<Nodes<P>> {
        &self.nodes
    }

    /// The key: the lock's name.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// What the call does, in one word: `acquire`, `extend` or `release`.
    pub(crate) fn action(&self) -> &'static str {
        match &self.op {
            Op::Lock {
                mode: LockMode::CreateOnly,
                ..
            }
            | Op::Fence { .. } => "acquire",
            Op::Lock { .. } => "extend",
            Op::Unlock { .. } => "release",
        }
    }

    /// Runs the call on node `node`. Under quarantine, the node's age is read before the
    /// script when the connection may be new, and again after a grant if the connection
    /// may have changed while the script ran: the grant then came from a server the
    /// first reading did not see.
    async fn run(&self, node: usize, deadline: Instant) -> Result<Reply, ConnError> {
        let Some(pool) = self.nodes.pool(node) else {
            return Err(ConnError::new(ConnErrorKind::Other, "no such node"));
        };
        let mut conn = match pool.get_now() {
            Some(conn) => conn,
            None => pool.get().await?,
        };
        conn.set_deadline(deadline.into_std());
        if self.quarantine.is_none() {
            return self.send_op(node, &mut conn).await;
        }
        let before = self.check_age(node, &mut conn).await?;
        let reply = self.send_op(node, &mut conn).await?;
        if reply == Reply::Int(self.tag) && before != self.connection_seen(node, &conn) {
            self.nodes.ages().forget_connection(node);
            self.check_age(node, &mut conn).await?;
        }
        Ok(reply)
    }

    /// Sends what the call asks of the key.
    async fn send_op(&self, node: usize, conn: &mut P::Conn) -> Result<Reply, ConnError> {
        let mut digits = itoa::Buffer::new();
        let (keys, value, tag) = ([&*self.key], &*self.value, digits.format(self.tag));
        match &self.op {
            Op::Lock { ttl_ms, mode } => {
                let args = LockArgs {
                    value,
                    ttl_ms,
                    mode: *mode,
                    tag,
                };
                self.script(node, conn, &LOCK, &keys, &args.argv()).await
            }
            Op::Unlock { notify } => {
                let channel_prefix = if *notify { RELEASE_CHANNEL_PREFIX } else { "" };
                let args = UnlockArgs {
                    value,
                    tag,
                    channel_prefix,
                };
                self.script(node, conn, &UNLOCK, &keys, &args.argv()).await
            }
            Op::Fence {
                fence_key,
                ttl_ms,
                token,
            } => {
                let mut token_digits = itoa::Buffer::new();
                let args = FenceArgs {
                    value,
                    ttl_ms,
                    token: token_digits.format(token.get()),
                    tag,
                };
                let keys = [&*self.key, &**fence_key];
                self.script(node, conn, &FENCE, &keys, &args.argv()).await
            }
        }
    }
}

/// Runs `call` on node `node` and reads the reply as a vote; the caller bounds it in time,
/// by `deadline`. A release that reached waiters has the nodes hold this lock manager back from the
/// lock for about twice the call's round trip, so that a waiter's attempt gets there
/// first.
pub(crate) async fn vote<P: Pool>(call: Arc<Call<P>>, node: usize, deadline: Instant) -> Vote {
    let start = Instant::now();
    let reply = call.run(node, deadline).await;
    // Only a fenced acquire's replies carry a fence.
    let (mut vote, fence) = match call.op {
        Op::Fence { .. } => read_fenced(reply, call.tag),
        _ => (read_vote(reply, call.tag), None),
    };
    if let (Vote::Yes, Some(period)) = (&vote, call.quarantine)
        && let Some(left) = call.nodes.ages().young(node, period)
    {
        vote = Vote::Young(left);
    }
    if let Some(fence) = fence {
        call.fence_seen.fetch_max(fence, Ordering::Relaxed);
    }
    if let Vote::YesHeard = vote {
        call.nodes.hand_off(&call.key, start.elapsed() * 2);
    }
    vote
}

/// [`vote`] bounded by `timeout`, for calls made one by one (releases).
pub(crate) async fn vote_within<P: Pool>(
    call: Arc<Call<P>>,
    node: usize,
    timeout: Duration,
) -> Vote {
    let nodes = call.nodes.clone();
    let (start, action) = (Instant::now(), call.action());
    let deadline = start + timeout;
    let voted = tokio::time::timeout_at(deadline, vote(call, node, deadline)).await;
    let vote = voted.unwrap_or_else(|_| timed_out(timeout));
    nodes.observe(node, &vote, action, Started::at(start));
    vote
}

pub(crate) fn timed_out(timeout: Duration) -> Vote {
    Vote::Failed(ConnError::timed_out(timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_distinct_numbers_never_0_or_minus_1() {
        let mut tags: Vec<i64> = (0..100).map(|_| next_tag()).collect();
        assert!(tags.iter().all(|&t| (1..=MAX_TAG).contains(&t)), "{tags:?}");
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), 100);
    }
}
