//! The fan-out: one script call to every node at once, each bounded by the per-node
//! timeout, gathered into a [`Tally`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::seq::SliceRandom;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep, timeout_at};

use crate::conn::{ConnError, ConnErrorKind, Pool, Reply, run_script};
use crate::scripts::{LOCK, UNLOCK};
use crate::validity::{NodeSet, Tally, Vote};

/// The nodes of one lock manager, shared by every lock it makes.
pub(crate) type Nodes<P> = Arc<[P]>;

/// What the lock script may do to the key (its `ARGV[3]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// Refresh the TTL if the key holds our value (extend).
    Refresh,
    /// Set the key if absent, or refresh it if it holds our value: acquire with a value
    /// unique to this call (so a replayed call is harmless), or extend with re-create.
    CreateOrRefresh,
    /// Set the key only if absent: acquire with a value that may not be unique, so that
    /// two owners can never share one lock.
    CreateOnly,
}

impl LockMode {
    fn arg(self) -> &'static str {
        match self {
            LockMode::Refresh => "0",
            LockMode::CreateOrRefresh => "1",
            LockMode::CreateOnly => "2",
        }
    }
}

/// What a call asks of the key.
#[derive(Debug)]
enum Op {
    /// Set or refresh it with this TTL (milliseconds, formatted as the script's argument),
    /// as `mode` allows.
    Lock { ttl_ms: Arc<str>, mode: LockMode },
    /// Delete it if it holds our value.
    Unlock,
}

/// One script call, the same for every node, with the nodes to send it to (so that a
/// fan-out's node calls share one handle on them instead of one each).
pub(crate) struct Call<P> {
    nodes: Nodes<P>,
    key: Arc<str>,
    value: Arc<str>,
    op: Op,
}

impl<P: Pool> Call<P> {
    /// Sets or refreshes `key` on `nodes` with `ttl_ms` (a decimal number of
    /// milliseconds), as `mode` allows.
    pub(crate) fn lock(
        nodes: Nodes<P>,
        key: Arc<str>,
        value: Arc<str>,
        ttl_ms: Arc<str>,
        mode: LockMode,
    ) -> Self {
        let op = Op::Lock { ttl_ms, mode };
        Self {
            nodes,
            key,
            value,
            op,
        }
    }

    /// Deletes `key` on `nodes` if it holds `value`.
    pub(crate) fn unlock(nodes: Nodes<P>, key: Arc<str>, value: Arc<str>) -> Self {
        let op = Op::Unlock;
        Self {
            nodes,
            key,
            value,
            op,
        }
    }

    fn node_count(&self) -> usize {
        self.nodes.len()
    }

    async fn run(&self, node: usize) -> Result<Reply, ConnError> {
        let Some(pool) = self.nodes.get(node) else {
            return Err(ConnError::new(ConnErrorKind::Other, "no such node"));
        };
        let mut conn = match pool.get_now() {
            Some(conn) => conn,
            None => pool.get().await?,
        };
        let keys = [&*self.key];
        let (script, args, count) = match &self.op {
            Op::Lock { ttl_ms, mode } => (&LOCK, [&*self.value, ttl_ms, mode.arg()], 3),
            Op::Unlock => (&UNLOCK, [&*self.value, "", ""], 1),
        };
        run_script(&mut conn, script, &keys, &args[..count]).await
    }
}

/// How one fan-out runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) quorum: usize,
    pub(crate) timeout: Duration,
    pub(crate) fail_fast: bool,
    pub(crate) shuffle: bool,
}

/// Runs `call` on node `node` and reads the reply as a vote; the caller bounds it in time.
async fn vote<P: Pool>(call: Arc<Call<P>>, node: usize) -> Vote {
    read_vote(call.run(node).await)
}

/// [`vote`] bounded by `timeout`, for calls made one by one (releases).
async fn vote_within<P: Pool>(call: Arc<Call<P>>, node: usize, timeout: Duration) -> Vote {
    let voted = tokio::time::timeout(timeout, vote(call, node)).await;
    voted.unwrap_or_else(|_| timed_out(timeout))
}

fn timed_out(timeout: Duration) -> Vote {
    let message = format!("no answer within {timeout:?}");
    Vote::Failed(ConnError::new(ConnErrorKind::Timeout, message))
}

fn read_vote(reply: Result<Reply, ConnError>) -> Vote {
    match reply {
        Ok(Reply::Int(1)) => Vote::Yes,
        Ok(Reply::Int(0)) => Vote::Absent,
        Ok(Reply::Int(-1)) => Vote::Taken,
        Ok(other) => Vote::Failed(ConnError::new(
            ConnErrorKind::Protocol,
            format!("unexpected script reply {other:?}"),
        )),
        Err(e) => Vote::Failed(e),
    }
}

/// The node calls of a fan-out still in flight, each with its node.
type Calls<F> = Vec<(usize, Pin<Box<F>>)>;

/// The node calls still in flight when a fail-fast fan-out decided early, and the instant
/// their time runs out.
pub(crate) struct Pending<F> {
    calls: Calls<F>,
    deadline: Instant,
}

/// Polls every call still pending on each wake and tallies each answer, until all have
/// answered, their time ran out, or (with fail-fast) the outcome is certain.
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
fn gather<'a, F: Future<Output = Vote>>(
    calls: &'a mut Calls<F>,
    tally: &'a mut Tally,
    plan: Plan,
    mut timer: Pin<&'a mut Sleep>,
) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        let mut i = 0;
        while let Some((node, call)) = calls.get_mut(i) {
            let (node, Poll::Ready(vote)) = (*node, call.as_mut().poll(cx)) else {
                i += 1;
                continue;
            };
            drop(calls.swap_remove(i));
            tally.add(node, vote);
            if plan.fail_fast && tally.decided() {
                return Poll::Ready(());
            }
        }
        if calls.is_empty() {
            return Poll::Ready(());
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        for (node, _) in calls.drain(..) {
            tally.add(node, timed_out(plan.timeout));
        }
        Poll::Ready(())
    })
}

/// Runs `call` on every node at once and tallies the votes.
///
/// Without fail-fast it waits for every node (each bounded by the timeout). With it, it
/// returns once the outcome is certain, handing back the calls still in flight.
pub(crate) async fn fan_out<P: Pool>(
    plan: Plan,
    call: Arc<Call<P>>,
) -> (Tally, Pending<impl Future<Output = Vote> + Send + 'static>) {
    let timer = std::pin::pin!(tokio::time::sleep(plan.timeout));
    let deadline = timer.deadline();
    let nodes = call.node_count();
    let mut calls: Calls<_> = (0..nodes)
        .map(|node| (node, Box::pin(vote(call.clone(), node))))
        .collect();
    if plan.shuffle {
        calls.shuffle(&mut rand::rng());
    }
    let mut tally = Tally::new(nodes, plan.quorum);
    gather(&mut calls, &mut tally, plan, timer).await;
    (tally, Pending { calls, deadline })
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

impl<F: Future<Output = Vote> + Send + 'static> Pending<F> {
    /// Lets the calls still in flight finish in the background (within the fan-out's
    /// deadline); when `release` is given, each node is released as soon as its own call
    /// has finished, so no key outlives a failure. The nodes run side by side, so the
    /// whole task takes at most the deadline plus one timeout.
    /// Returns the background task, for a guard to wait on before it releases.
    pub(crate) fn finish_in_background<P: Pool>(self, release: Option<Release<P>>) -> InFlight {
        if self.calls.is_empty() {
            return None;
        }
        let deadline = self.deadline;
        let each = self.calls.into_iter().map(|(node, call)| {
            let release = release.clone();
            async move {
                let voted = timeout_at(deadline, call).await.ok();
                let Some(r) = release else {
                    return;
                };
                if !r.only_yes || matches!(voted, Some(Vote::Yes)) {
                    let _ = vote_within(r.call, node, r.plan.timeout).await;
                }
            }
        });
        // A spawned task of its own: here FuturesUnordered's self-wake costs nothing.
        let mut all: FuturesUnordered<_> = each.collect();
        spawn(async move { while all.next().await.is_some() {} })
    }
}

/// Releases the key on `targets`, waiting for every answer.
pub(crate) async fn release_on<P: Pool>(targets: NodeSet, plan: Plan, call: Arc<Call<P>>) {
    let calls = targets
        .iter()
        .map(|node| vote_within(call.clone(), node, plan.timeout));
    futures::future::join_all(calls).await;
}

/// Releases the key on every node in the background, when a runtime is there to run it.
///
/// Without a runtime (dropped after the runtime shut down) the keys simply expire.
pub(crate) fn release_in_background<P: Pool>(plan: Plan, call: Arc<Call<P>>) {
    release_after_in_background(None, plan, call);
}

/// Releases the key on every node in the background, once `in_flight` (an acquire's calls
/// still running) has finished, so that a late `SET` cannot land after the release.
pub(crate) fn release_after_in_background<P: Pool>(
    in_flight: InFlight,
    plan: Plan,
    call: Arc<Call<P>>,
) {
    spawn(async move {
        if let Some(task) = in_flight {
            let _ = task.await;
        }
        release_on(NodeSet::all(call.node_count()), plan, call).await;
    });
}

/// The background task finishing an acquire's calls still in flight, if any.
pub(crate) type InFlight = Option<JoinHandle<()>>;

fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> InFlight {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    Some(handle.spawn(task))
}
