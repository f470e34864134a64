//! The fan-out: one script call to every node at once, all bounded by one timer, gathered
//! into a [`Tally`]; and the releases that run after a round, in the foreground or in the
//! background.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::seq::SliceRandom;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep, timeout_at};

use crate::conn::{ConnError, ConnErrorKind, Pool, Reply, run_script};
use crate::health::Health;
use crate::scripts::{LOCK, LockArgs, LockMode, UNLOCK, UnlockArgs};
use crate::tally::{NodeSet, Tally, Vote};

/// The nodes of one lock manager, shared by every lock it makes: each node's pool, its
/// address for messages, and its health.
pub(crate) struct Nodes<P> {
    pools: Box<[P]>,
    addresses: Box<[Option<Arc<str>>]>,
    health: Box<[Health]>,
}

impl<P: Pool> Nodes<P> {
    pub(crate) fn new(pools: Vec<P>) -> Self {
        let addresses = pools.iter().map(|p| p.address().map(Arc::from)).collect();
        let health = pools.iter().map(|_| Health::default()).collect();
        Self {
            pools: pools.into(),
            addresses,
            health,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.pools.len()
    }

    /// Each node's address, by index.
    pub(crate) fn addresses(&self) -> &[Option<Arc<str>>] {
        &self.addresses
    }

    /// Notes how a call to `node` ended, and replaces the node's connection once it has
    /// gone silent.
    fn observe(&self, node: usize, vote: &Vote) {
        let (Some(health), Some(pool)) = (self.health.get(node), self.pools.get(node)) else {
            return;
        };
        if health.record(vote.is_timeout()) {
            // A pool that cannot reconnect keeps its connection; nothing else to do.
            pool.reconnect();
        }
    }
}

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
        let op = Op::Lock { ttl_ms, mode };
        let tag = Tag::next();
        Self {
            nodes,
            key,
            value,
            op,
            tag,
        }
    }

    /// Deletes `key` on `nodes` if it holds `value`.
    pub(crate) fn unlock(nodes: Arc<Nodes<P>>, key: Arc<str>, value: Arc<str>) -> Self {
        let (op, tag) = (Op::Unlock, Tag::next());
        Self {
            nodes,
            key,
            value,
            op,
            tag,
        }
    }

    async fn run(&self, node: usize) -> Result<Reply, ConnError> {
        let Some(pool) = self.nodes.pools.get(node) else {
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

/// How one fan-out runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) timeout: Duration,
    pub(crate) fail_fast: bool,
    pub(crate) shuffle: bool,
    /// The caller's deadline: a round still waiting then stops, and its calls go on in
    /// the background until their own timeout.
    pub(crate) deadline: Option<Instant>,
}

impl Plan {
    /// The plan for calls that must hear from every node (extend, unlock, releases), even
    /// when acquire rounds decide early.
    pub(crate) fn everyone(self) -> Self {
        Self {
            fail_fast: false,
            deadline: None,
            ..self
        }
    }
}

/// Runs `call` on node `node` and reads the reply as a vote; the caller bounds it in time.
async fn vote<P: Pool>(call: Arc<Call<P>>, node: usize) -> Vote {
    let reply = call.run(node).await;
    read_vote(reply, call.tag.as_str())
}

/// [`vote`] bounded by `timeout`, for calls made one by one (releases).
async fn vote_within<P: Pool>(call: Arc<Call<P>>, node: usize, timeout: Duration) -> Vote {
    let nodes = call.nodes.clone();
    let voted = tokio::time::timeout(timeout, vote(call, node)).await;
    let vote = voted.unwrap_or_else(|_| timed_out(timeout));
    nodes.observe(node, &vote);
    vote
}

fn timed_out(timeout: Duration) -> Vote {
    let message = format!("no answer within {timeout:?}");
    Vote::Failed(ConnError::new(ConnErrorKind::Timeout, message))
}

fn cut_by_deadline() -> Vote {
    let message = "no answer before the caller's deadline";
    Vote::Failed(ConnError::new(ConnErrorKind::Timeout, message))
}

fn read_vote(reply: Result<Reply, ConnError>, tag: &str) -> Vote {
    let mismatch = |what: String| Vote::Failed(ConnError::new(ConnErrorKind::Protocol, what));
    match reply {
        Ok(Reply::Data(echo)) if echo == tag.as_bytes() => Vote::Yes,
        Ok(Reply::Int(0)) => Vote::Absent,
        Ok(Reply::Int(-1)) => Vote::Taken,
        Ok(Reply::Data(_) | Reply::Int(1)) => mismatch(
            "the reply belongs to another call: the connection handed a late reply on".into(),
        ),
        Ok(other) => mismatch(format!("unexpected script reply {other:?}")),
        Err(e) => Vote::Failed(e),
    }
}

/// The node calls of a fan-out still in flight, each with its node.
type Calls<F> = Vec<(usize, Pin<Box<F>>)>;

/// The node calls still in flight when a fan-out decided early (fail-fast, or the
/// caller's deadline), and the instant their own time runs out.
pub(crate) struct Pending<P, F> {
    nodes: Arc<Nodes<P>>,
    calls: Calls<F>,
    /// When the calls' own time runs out.
    deadline: Instant,
    /// The per-node timeout they started with.
    timeout: Duration,
}

/// Polls every call still pending on each wake and tallies each answer, until all have
/// answered, their time ran out, the caller's deadline passed, or (with fail-fast) the
/// outcome is certain.
///
/// One timer bounds the whole fan-out: every call starts at the same instant with the same
/// timeout, so one deadline is the same bound as one timer per call, at a fraction of the
/// cost. It is polled only after the calls, so a fan-out whose calls all answer at once
/// (an in-memory node) never registers it.
///
/// Not `FuturesUnordered`: once it has polled each of its futures, its `poll_next` wakes
/// its own task (futures-rs #2333), which on tokio's multi-thread runtime requeues the
/// lock's task and wakes a parked worker, two extra context switches per fan-out. Polling
/// a handful of nodes on each wake costs far less.
fn gather<'a, P: Pool, F: Future<Output = Vote>>(
    pending: &'a mut Pending<P, F>,
    tally: &'a mut Tally,
    plan: Plan,
    mut timer: Pin<&'a mut Sleep>,
) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        let mut i = 0;
        while let Some((node, call)) = pending.calls.get_mut(i) {
            let (node, Poll::Ready(vote)) = (*node, call.as_mut().poll(cx)) else {
                i += 1;
                continue;
            };
            drop(pending.calls.swap_remove(i));
            pending.nodes.observe(node, &vote);
            tally.add(node, vote);
            if plan.fail_fast && tally.decided() {
                return Poll::Ready(());
            }
        }
        if pending.calls.is_empty() {
            return Poll::Ready(());
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if Instant::now() >= pending.deadline {
            for (node, _) in pending.calls.drain(..) {
                let vote = timed_out(pending.timeout);
                pending.nodes.observe(node, &vote);
                tally.add(node, vote);
            }
        } else {
            // The caller's deadline came first: the calls go on in the background.
            for &(node, _) in &pending.calls {
                tally.add(node, cut_by_deadline());
            }
        }
        Poll::Ready(())
    })
}

/// Runs `call` on every node at once and tallies the votes into `tally`.
///
/// Without fail-fast it waits for every node (each bounded by the timeout) or the caller's
/// deadline. With it, it returns once the outcome is certain. Either way it hands back the
/// calls still in flight.
pub(crate) async fn fan_out<P: Pool>(
    plan: Plan,
    call: Arc<Call<P>>,
    tally: &mut Tally,
) -> Pending<P, impl Future<Output = Vote> + Send + 'static> {
    let timer = tokio::time::sleep(plan.timeout);
    let deadline = timer.deadline();
    let mut timer = std::pin::pin!(timer);
    if let Some(caller) = plan.deadline.filter(|&d| d < deadline) {
        timer.as_mut().reset(caller);
    }
    let nodes = call.nodes.clone();
    let mut calls: Calls<_> = (0..nodes.len())
        .map(|node| (node, Box::pin(vote(call.clone(), node))))
        .collect();
    if plan.shuffle {
        calls.shuffle(&mut rand::rng());
    }
    let mut pending = Pending {
        nodes,
        calls,
        deadline,
        timeout: plan.timeout,
    };
    gather(&mut pending, tally, plan, timer).await;
    pending
}

/// What to release once an acquire's calls still in flight have finished.
pub(crate) struct Release<P> {
    pub(crate) plan: Plan,
    /// The unlock call.
    pub(crate) call: Arc<Call<P>>,
    /// Release only nodes that voted yes (the value may be another owner's too).
    pub(crate) only_yes: bool,
}

impl<P> Clone for Release<P> {
    fn clone(&self) -> Self {
        Self {
            plan: self.plan,
            call: self.call.clone(),
            only_yes: self.only_yes,
        }
    }
}

impl<P: Pool, F: Future<Output = Vote> + Send + 'static> Pending<P, F> {
    /// Lets the calls still in flight finish in the background (within their timeout);
    /// when `release` is given, each node is released as soon as its own call has
    /// finished, so no key outlives a failure. The nodes run side by side, so the whole
    /// task takes at most the timeout plus one more.
    /// Returns the background task, for a guard to wait on before it releases.
    pub(crate) fn finish_in_background(self, release: Option<Release<P>>) -> InFlight {
        if self.calls.is_empty() {
            return None;
        }
        let (deadline, timeout) = (self.deadline, self.timeout);
        let each = self.calls.into_iter().map(|(node, call)| {
            let (release, nodes) = (release.clone(), self.nodes.clone());
            async move {
                let vote = timeout_at(deadline, call).await;
                let vote = vote.unwrap_or_else(|_| timed_out(timeout));
                nodes.observe(node, &vote);
                let Some(r) = release else {
                    return;
                };
                if !r.only_yes || matches!(vote, Vote::Yes) {
                    vote_within(r.call, node, r.plan.timeout).await;
                }
            }
        });
        // A spawned task of its own: here FuturesUnordered's self-wake costs nothing.
        let mut all: FuturesUnordered<_> = each.collect();
        spawn(async move { while all.next().await.is_some() {} })
    }
}

/// Releases the key on `targets`, waiting for every answer (each bounded by the timeout).
pub(crate) async fn release_on<P: Pool>(targets: NodeSet, plan: Plan, call: Arc<Call<P>>) {
    let calls = targets
        .iter()
        .map(|node| vote_within(call.clone(), node, plan.timeout));
    futures::future::join_all(calls).await;
}

/// Releases the key on `targets` in the background, once `in_flight` (an acquire's calls
/// still running) has finished, so that a late `SET` cannot land after the release.
///
/// Without a runtime (dropped after the runtime shut down) nothing is sent: the keys
/// expire on their own.
pub(crate) fn release_in_background<P: Pool>(
    targets: NodeSet,
    in_flight: InFlight,
    plan: Plan,
    call: Arc<Call<P>>,
) {
    if targets.is_empty() && in_flight.is_none() {
        return;
    }
    // Nobody waits for this task: it ends on its own, within two timeouts.
    drop(spawn(async move {
        let mut in_flight = in_flight;
        finish(&mut in_flight).await;
        release_on(targets, plan, call).await;
    }));
}

/// The background task finishing an acquire's calls still in flight, if any.
pub(crate) type InFlight = Option<JoinHandle<()>>;

/// Waits for `in_flight` to finish, and forgets it once it has. Cancelled part-way, it
/// leaves `in_flight` in place for whoever waits next.
pub(crate) async fn finish(in_flight: &mut InFlight) {
    if let Some(task) = in_flight.as_mut() {
        // The task ends in an error only when its runtime shuts down (it never panics),
        // and then there is no one left to tell.
        task.await.unwrap_or_default();
    }
    *in_flight = None;
}

fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> InFlight {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    Some(handle.spawn(task))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for stale in [Reply::Data(b"1e".to_vec()), Reply::Int(1), Reply::Nil] {
            let vote = read_vote(Ok(stale), "1f");
            assert!(matches!(vote, Vote::Failed(ref e) if e.kind() == ConnErrorKind::Protocol));
        }
    }
}
