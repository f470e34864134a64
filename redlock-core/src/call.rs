//! One script call, the same for every node of a lock: what is sent (the key, the value,
//! the script's arguments and a tag of its own) and how a node's reply is read as a vote.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::conn::{Conn, ConnError, ConnErrorKind, Pool, Reply, ScriptRef};
use crate::fence::Token;
use crate::nodes::Nodes;
use crate::scripts::{
    FENCE, FenceArgs, LOCK, LockArgs, LockMode, RELEASE_CHANNEL_PREFIX, Script, UNLOCK, UnlockArgs,
};
use crate::tally::Vote;

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
        }
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

    async fn run(&self, node: usize) -> Result<Reply, ConnError> {
        let Some(pool) = self.nodes.pool(node) else {
            return Err(ConnError::new(ConnErrorKind::Other, "no such node"));
        };
        let mut conn = match pool.get_now() {
            Some(conn) => conn,
            None => pool.get().await?,
        };
        let fresh = match self.quarantine {
            Some(_) => self.check_age(node, &mut conn).await?,
            None => false,
        };
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
                self.script((node, fresh), &mut conn, &LOCK, &keys, &args.argv())
                    .await
            }
            Op::Unlock { notify } => {
                let channel_prefix = if *notify { RELEASE_CHANNEL_PREFIX } else { "" };
                let args = UnlockArgs {
                    value,
                    tag,
                    channel_prefix,
                };
                self.script((node, fresh), &mut conn, &UNLOCK, &keys, &args.argv())
                    .await
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
                self.script((node, fresh), &mut conn, &FENCE, &keys, &args.argv())
                    .await
            }
        }
    }

    /// Runs `script` by EVALSHA, and by EVAL when the node does not know it. An empty
    /// script cache means the node restarted (or was flushed) since this connection last
    /// ran it: its age is read again before the vote counts, unless this call just read
    /// it (`fresh`).
    async fn script(
        &self,
        (node, fresh): (usize, bool),
        conn: &mut P::Conn,
        script: &Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        let (ages, bit) = (self.nodes.ages(), script_bit(script));
        let reply = match conn.eval(ScriptRef::Sha1(script.sha1()), keys, args).await {
            Err(e) if e.kind() == ConnErrorKind::NoScript => {
                if ages.lost_script(node, bit) && !fresh {
                    ages.forget_connection(node);
                }
                if self.quarantine.is_some() {
                    self.check_age(node, conn).await?;
                }
                conn.eval(ScriptRef::Source(script.source()), keys, args)
                    .await
            }
            other => other,
        };
        if reply.is_ok() {
            ages.ran(node, bit);
        }
        reply
    }

    /// Reads the node's age (`INFO server`) when the connection may be new since it was
    /// last read; returns whether it did.
    async fn check_age(&self, node: usize, conn: &mut P::Conn) -> Result<bool, ConnError> {
        let ages = self.nodes.ages();
        let epoch = conn.epoch();
        if !ages.needs_check(node, epoch) {
            return Ok(false);
        }
        match conn.command(&["INFO", "server"]).await {
            Ok(info) => ages
                .record(node, epoch, &info, Instant::now())
                .map(|()| true),
            Err(e) if e.kind() == ConnErrorKind::Unsupported => {
                ages.unsupported(node);
                Ok(false)
            }
            // Refused, not failed: say what for, since an ACL user needs `+info`.
            Err(e) if matches!(e.kind(), ConnErrorKind::Permission | ConnErrorKind::Command) => {
                let message =
                    format!("restart quarantine could not read the node's age (INFO server): {e}");
                Err(ConnError::new(e.kind(), message))
            }
            Err(e) => Err(e),
        }
    }
}

/// The bit of `script` in a node's set of scripts it has run.
fn script_bit(script: &Script) -> u8 {
    [LOCK, UNLOCK, FENCE]
        .iter()
        .position(|s| s == script)
        .map_or(8, |i| 1 << i)
}

/// Runs `call` on node `node` and reads the reply as a vote; the caller bounds it in time.
/// A release that reached waiters has the nodes hold this lock manager back from the
/// lock for about twice the call's round trip, so that a waiter's attempt gets there
/// first.
pub(crate) async fn vote<P: Pool>(call: Arc<Call<P>>, node: usize) -> Vote {
    let start = Instant::now();
    let (mut vote, fence) = read_fenced(call.run(node).await, call.tag);
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
    let voted = tokio::time::timeout(timeout, vote(call, node)).await;
    let vote = voted.unwrap_or_else(|_| timed_out(timeout));
    nodes.observe(node, &vote);
    vote
}

pub(crate) fn timed_out(timeout: Duration) -> Vote {
    Vote::Failed(ConnError::timed_out(timeout))
}

/// Reads a reply that may carry a node's fence (`[refused, fence]`, from the fenced
/// acquire) as a vote and the fence; any other reply as [`read_vote`] does.
fn read_fenced(reply: Result<Reply, ConnError>, tag: i64) -> (Vote, Option<u64>) {
    let Ok(Reply::Array(items)) = &reply else {
        return (read_vote(reply, tag), None);
    };
    match items[..] {
        [Reply::Int(0), Reply::Int(fence @ 0..)] => (Vote::Stale, Some(fence.unsigned_abs())),
        [Reply::Int(refused @ ..=-1), Reply::Int(fence @ 0..)] => (
            read_vote(Ok(Reply::Int(refused)), tag),
            Some(fence.unsigned_abs()),
        ),
        _ => (read_vote(reply, tag), None),
    }
}

fn read_vote(reply: Result<Reply, ConnError>, tag: i64) -> Vote {
    match reply {
        Ok(Reply::Int(0)) => Vote::Absent,
        Ok(Reply::Int(-1)) => Vote::Taken(None),
        // Another value holds the key for this many more milliseconds.
        Ok(Reply::Int(held @ ..=-2)) => {
            let ms = u64::try_from((-2_i64).saturating_sub(held)).unwrap_or(0);
            Vote::Taken(Some(Duration::from_millis(ms)))
        }
        Ok(Reply::Int(echo)) if echo == tag => Vote::Yes,
        Ok(Reply::Array(items)) => match items[..] {
            // Released, and the release reached subscribers.
            [Reply::Int(echo), Reply::Int(1..)] if echo == tag => Vote::YesHeard,
            [Reply::Int(_), Reply::Int(_)] => out_of_step(),
            _ => unexpected(&Reply::Array(items)),
        },
        Ok(Reply::Int(_)) => out_of_step(),
        Ok(other) => unexpected(&other),
        Err(e) => Vote::Failed(e),
    }
}

/// A connection out of step with its calls handed on another call's reply: retryable,
/// and a new connection fixes it if it goes on.
fn out_of_step() -> Vote {
    Vote::Failed(ConnError::new(
        ConnErrorKind::Connection,
        "the reply belongs to another call: the connection handed on a late reply",
    ))
}

fn unexpected(reply: &Reply) -> Vote {
    let message = format!("unexpected script reply {reply:?}");
    Vote::Failed(ConnError::new(ConnErrorKind::Protocol, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ConnErrorKind;
    #[test]
    fn tags_are_distinct_numbers_never_0_or_minus_1() {
        let mut tags: Vec<i64> = (0..100).map(|_| next_tag()).collect();
        assert!(tags.iter().all(|&t| (1..=MAX_TAG).contains(&t)), "{tags:?}");
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), 100);
    }

    #[test]
    fn only_the_calls_own_tag_is_a_yes() {
        assert!(matches!(read_vote(Ok(Reply::Int(31)), 31), Vote::Yes));
        assert!(matches!(read_vote(Ok(Reply::Int(0)), 31), Vote::Absent));
        assert!(matches!(
            read_vote(Ok(Reply::Int(-1)), 31),
            Vote::Taken(None)
        ));
        let held = Some(Duration::from_millis(250));
        assert!(matches!(read_vote(Ok(Reply::Int(-252)), 31), Vote::Taken(t) if t == held));
        let now = Some(Duration::ZERO);
        assert!(matches!(read_vote(Ok(Reply::Int(-2)), 31), Vote::Taken(t) if t == now));
        for stale in [30, 1] {
            let vote = read_vote(Ok(Reply::Int(stale)), 31);
            assert!(matches!(vote, Vote::Failed(ref e) if e.kind() == ConnErrorKind::Connection));
        }
        let heard = |tag, n| Ok(Reply::Array(vec![Reply::Int(tag), Reply::Int(n)]));
        assert!(matches!(read_vote(heard(31, 2), 31), Vote::YesHeard));
        let stale = read_vote(heard(30, 2), 31);
        assert!(matches!(stale, Vote::Failed(ref e) if e.kind() == ConnErrorKind::Connection));
        let fenced =
            |refused, fence| Ok(Reply::Array(vec![Reply::Int(refused), Reply::Int(fence)]));
        assert!(matches!(
            read_fenced(fenced(0, 9), 31),
            (Vote::Stale, Some(9))
        ));
        let taken = read_fenced(fenced(-252, 9), 31);
        assert!(matches!(taken, (Vote::Taken(t), Some(9)) if t == held));
        assert!(matches!(
            read_fenced(fenced(-1, 0), 31),
            (Vote::Taken(None), Some(0))
        ));
        assert!(matches!(
            read_fenced(Ok(Reply::Int(31)), 31),
            (Vote::Yes, None)
        ));
        assert!(matches!(
            read_fenced(fenced(0, -3), 31),
            (Vote::Failed(_), None)
        ));
        let odd = read_vote(Ok(Reply::Array(vec![Reply::Int(31)])), 31);
        assert!(matches!(odd, Vote::Failed(ref e) if e.kind() == ConnErrorKind::Protocol));
        for odd in [Reply::Nil, Reply::Data(b"31".to_vec())] {
            let vote = read_vote(Ok(odd), 31);
            assert!(matches!(vote, Vote::Failed(ref e) if e.kind() == ConnErrorKind::Protocol));
        }
    }
}
