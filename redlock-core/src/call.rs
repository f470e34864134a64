//! One script call, the same for every node of a lock: what is sent (the key, the value,
//! the script's arguments and a tag of its own) and how a node's reply is read as a vote.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::conn::{ConnError, ConnErrorKind, Pool, Reply, run_script};
use crate::nodes::Nodes;
use crate::scripts::{LOCK, LockArgs, LockMode, UNLOCK, UnlockArgs};
use crate::tally::Vote;

/// A call's tag: a number no other call of this process carries, in hex. The scripts
/// return it on success, so that a late reply to another call is never read as this
/// call's success.
struct Tag {
    text: [u8; 16],
    len: usize,
}

impl Tag {
    fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let len = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
        let mut text = [0u8; 16];
        for (i, digit) in text[..len].iter_mut().enumerate() {
            let nibble = (n >> (4 * (len - 1 - i))) & 0xf;
            *digit = b"0123456789abcdef"[nibble as usize];
        }
        Self { text, len }
    }

    fn as_str(&self) -> &str {
        // Hex digits are ASCII, so this is always `Ok`.
        std::str::from_utf8(&self.text[..self.len]).unwrap_or_default()
    }
}

/// What a call asks of the key.
enum Op {
    /// Set or refresh it with this TTL (the script's argument), as `mode` allows.
    Lock { ttl_ms: Arc<str>, mode: LockMode },
    /// Delete it if it holds our value.
    Unlock,
}

/// One script call, the same for every node, with the nodes to send it to (so that a
/// fan-out's node calls share one handle on them instead of one each).
pub(crate) struct Call<P> {
    nodes: Arc<Nodes<P>>,
    key: Arc<str>,
    value: Arc<str>,
    op: Op,
    tag: Tag,
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

    /// Deletes `key` on `nodes` if it holds `value`.
    pub(crate) fn unlock(nodes: Arc<Nodes<P>>, key: Arc<str>, value: Arc<str>) -> Self {
        Self::new(nodes, key, value, Op::Unlock)
    }

    fn new(nodes: Arc<Nodes<P>>, key: Arc<str>, value: Arc<str>, op: Op) -> Self {
        let tag = Tag::next();
        Self {
            nodes,
            key,
            value,
            op,
            tag,
        }
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
        let (keys, value, tag) = ([&*self.key], &*self.value, self.tag.as_str());
        match &self.op {
            Op::Lock { ttl_ms, mode } => {
                let args = LockArgs {
                    value,
                    ttl_ms,
                    mode: *mode,
                    tag,
                };
                run_script(&mut conn, &LOCK, &keys, &args.argv()).await
            }
            Op::Unlock => {
                let args = UnlockArgs { value, tag }.argv();
                run_script(&mut conn, &UNLOCK, &keys, &args).await
            }
        }
    }
}

/// Runs `call` on node `node` and reads the reply as a vote; the caller bounds it in time.
pub(crate) async fn vote<P: Pool>(call: Arc<Call<P>>, node: usize) -> Vote {
    let reply = call.run(node).await;
    read_vote(reply, call.tag.as_str())
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
    let message = format!("no answer within {timeout:?}");
    Vote::Failed(ConnError::new(ConnErrorKind::Timeout, message))
}

fn read_vote(reply: Result<Reply, ConnError>, tag: &str) -> Vote {
    let mismatch = |what: String| Vote::Failed(ConnError::new(ConnErrorKind::Protocol, what));
    match reply {
        Ok(Reply::Data(echo)) if echo == tag.as_bytes() => Vote::Yes,
        Ok(Reply::Int(0)) => Vote::Absent,
        Ok(Reply::Int(-1)) => Vote::Taken,
        // A connection out of step with its calls: retryable, and a new connection fixes
        // it if it goes on.
        Ok(Reply::Data(_) | Reply::Int(1)) => Vote::Failed(ConnError::new(
            ConnErrorKind::Connection,
            "the reply belongs to another call: the connection handed on a late reply",
        )),
        Ok(other) => mismatch(format!("unexpected script reply {other:?}")),
        Err(e) => Vote::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ConnErrorKind;
    #[test]
    fn tags_are_distinct_hex() {
        let tags: Vec<String> = (0..100).map(|_| Tag::next().as_str().to_owned()).collect();
        let mut unique = tags.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), tags.len());
        assert!(
            tags.iter()
                .all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }

    #[test]
    fn only_the_calls_own_tag_is_a_yes() {
        assert!(matches!(
            read_vote(Ok(Reply::Data(b"1f".to_vec())), "1f"),
            Vote::Yes
        ));
        assert!(matches!(read_vote(Ok(Reply::Int(0)), "1f"), Vote::Absent));
        assert!(matches!(read_vote(Ok(Reply::Int(-1)), "1f"), Vote::Taken));
        for stale in [Reply::Data(b"1e".to_vec()), Reply::Int(1)] {
            let vote = read_vote(Ok(stale), "1f");
            assert!(matches!(vote, Vote::Failed(ref e) if e.kind() == ConnErrorKind::Connection));
        }
        let odd = read_vote(Ok(Reply::Nil), "1f");
        assert!(matches!(odd, Vote::Failed(ref e) if e.kind() == ConnErrorKind::Protocol));
    }
}
