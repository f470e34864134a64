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

use crate::conn::{ConnError, ConnErrorKind, Pool, Reply, run_script};
use crate::scripts::{LOCK, Script, UNLOCK};
use crate::validity::{Tally, Vote};

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

/// One script call, the same for every node.
#[derive(Debug)]
pub(crate) struct Call {
    script: Script,
    key: Arc<str>,
    value: Arc<str>,
    ttl_ms: String,
    mode: LockMode,
}

impl Call {
    /// Sets or refreshes the key with `ttl_ms`, as `mode` allows.
    pub(crate) fn lock(key: Arc<str>, value: Arc<str>, ttl_ms: u64, mode: LockMode) -> Self {
        let ttl_ms = ttl_ms.to_string();
        Self {
            script: LOCK,
            key,
            value,
            ttl_ms,
            mode,
        }
    }

    /// Deletes the key if it is ours.
    pub(crate) fn unlock(key: Arc<str>, value: Arc<str>) -> Self {
        let ttl_ms = String::new();
        Self {
            script: UNLOCK,
            key,
            value,
            ttl_ms,
            mode: LockMode::Refresh,
        }
    }

    async fn run<P: Pool>(&self, pool: &P) -> Result<Reply, ConnError> {
        let mut conn = pool.get().await?;
        let keys = [&*self.key];
        if self.script == UNLOCK {
            return run_script(&mut conn, &self.script, &keys, &[&self.value]).await;
        }
        let args = [&*self.value, &self.ttl_ms, self.mode.arg()];
        run_script(&mut conn, &self.script, &keys, &args).await
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

/// Runs `call` on node `node`, bounded by `timeout`, and reads the reply as a vote.
async fn vote<P: Pool>(
    nodes: Nodes<P>,
    node: usize,
    timeout: Duration,
    call: Arc<Call>,
) -> (usize, Vote) {
    let Some(pool) = nodes.get(node) else {
        let e = ConnError::new(ConnErrorKind::Other, "no such node");
        return (node, Vote::Failed(e));
    };
    let reply = match tokio::time::timeout(timeout, call.run(pool)).await {
        Ok(reply) => reply,
        Err(_) => Err(ConnError::new(
            ConnErrorKind::Timeout,
            format!("no answer within {timeout:?}"),
        )),
    };
    (node, read_vote(reply))
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

/// The node calls still in flight when a fail-fast fan-out decided early.
pub(crate) struct Pending<F>(Vec<Pin<Box<F>>>);

/// Polls every call still pending on each wake and tallies each answer, until all have
/// answered or (with fail-fast) the outcome is certain.
///
/// Not `FuturesUnordered`: once it has polled each of its futures, its `poll_next` wakes
/// its own task (futures-rs #2333), which on tokio's multi-thread runtime requeues the
/// lock's task and wakes a parked worker, two extra context switches per fan-out. Polling
/// a handful of nodes on each wake costs far less.
fn gather<'a, F: Future<Output = (usize, Vote)>>(
    calls: &'a mut Vec<Pin<Box<F>>>,
    tally: &'a mut Tally,
    fail_fast: bool,
) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        let mut i = 0;
        while let Some(call) = calls.get_mut(i) {
            let Poll::Ready((node, vote)) = call.as_mut().poll(cx) else {
                i += 1;
                continue;
            };
            drop(calls.swap_remove(i));
            tally.add(node, vote);
            if fail_fast && tally.decided() {
                return Poll::Ready(());
            }
        }
        if calls.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

/// Runs `call` on every node at once and tallies the votes.
///
/// Without fail-fast it waits for every node (each bounded by the timeout). With it, it
/// returns once the outcome is certain, handing back the calls still in flight.
pub(crate) async fn fan_out<P: Pool>(
    nodes: &Nodes<P>,
    plan: Plan,
    call: Arc<Call>,
) -> (
    Tally,
    Pending<impl Future<Output = (usize, Vote)> + Send + 'static>,
) {
    let mut calls: Vec<_> = (0..nodes.len())
        .map(|node| Box::pin(vote(nodes.clone(), node, plan.timeout, call.clone())))
        .collect();
    if plan.shuffle {
        calls.shuffle(&mut rand::rng());
    }
    let mut tally = Tally::new(nodes.len(), plan.quorum);
    gather(&mut calls, &mut tally, plan.fail_fast).await;
    (tally, Pending(calls))
}

impl<F: Future<Output = (usize, Vote)> + Send + 'static> Pending<F> {
    /// Lets the calls still in flight finish in the background; when `release` is given,
    /// each node is released once its call has finished (with its last field set, only
    /// nodes that voted yes), so no key outlives a failure.
    /// Returns the background task, for a guard to wait on before it releases.
    pub(crate) fn finish_in_background<P: Pool>(
        self,
        release: Option<(Nodes<P>, Plan, Arc<Call>, bool)>,
    ) -> InFlight {
        if self.0.is_empty() {
            return None;
        }
        // A spawned task of its own: here FuturesUnordered's self-wake costs nothing.
        let mut pending: FuturesUnordered<_> = self.0.into_iter().collect();
        spawn(async move {
            while let Some((node, voted)) = pending.next().await {
                let Some((nodes, plan, call, only_yes)) = &release else {
                    continue;
                };
                if !only_yes || matches!(voted, Vote::Yes) {
                    let _ = vote(nodes.clone(), node, plan.timeout, call.clone()).await;
                }
            }
        })
    }
}

/// Releases the key on `targets`, waiting for every answer.
pub(crate) async fn release_on<P: Pool>(
    nodes: &Nodes<P>,
    targets: &[usize],
    plan: Plan,
    call: Arc<Call>,
) {
    let calls = targets
        .iter()
        .map(|&node| vote(nodes.clone(), node, plan.timeout, call.clone()));
    futures::future::join_all(calls).await;
}

/// Releases the key on every node in the background, when a runtime is there to run it.
///
/// Without a runtime (dropped after the runtime shut down) the keys simply expire.
pub(crate) fn release_in_background<P: Pool>(nodes: Nodes<P>, plan: Plan, call: Arc<Call>) {
    release_after_in_background(None, nodes, plan, call);
}

/// Releases the key on every node in the background, once `in_flight` (an acquire's calls
/// still running) has finished, so that a late `SET` cannot land after the release.
pub(crate) fn release_after_in_background<P: Pool>(
    in_flight: InFlight,
    nodes: Nodes<P>,
    plan: Plan,
    call: Arc<Call>,
) {
    spawn(async move {
        if let Some(task) = in_flight {
            let _ = task.await;
        }
        let all: Vec<usize> = (0..nodes.len()).collect();
        release_on(&nodes, &all, plan, call).await;
    });
}

/// The background task finishing an acquire's calls still in flight, if any.
pub(crate) type InFlight = Option<JoinHandle<()>>;

fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> InFlight {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    Some(handle.spawn(task))
}
