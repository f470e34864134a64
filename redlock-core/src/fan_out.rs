//! The fan-out: one script call to every node at once, all bounded by one timer, gathered
//! into a [`Tally`]; and the releases that run after a round, in the foreground or in the
//! background.

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

use crate::call::{Call, timed_out, vote, vote_within};
use crate::conn::{ConnError, ConnErrorKind, Pool};
use crate::error::Result;
use crate::nodes::Nodes;
use crate::observe::{self, Started};
use crate::runtime;
use crate::tally::{NodeSet, Tally, Vote};

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

fn cut_by_deadline() -> Vote {
    let message = "no answer before the caller's deadline";
    Vote::Failed(ConnError::new(ConnErrorKind::Timeout, message))
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
    /// What the calls do, and when they started, for what is recorded (`observe`).
    action: &'static str,
    started: Started,
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
            pending
                .nodes
                .observe(node, &vote, pending.action, pending.started);
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
                pending
                    .nodes
                    .observe(node, &vote, pending.action, pending.started);
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
///
/// # Errors
///
/// [`Error::Config`](crate::Error::Config), before anything is sent, when no timer can be
/// made (no tokio runtime, or one without its time driver).
pub(crate) async fn fan_out<P: Pool>(
    plan: Plan,
    call: Arc<Call<P>>,
    tally: &mut Tally,
) -> Result<Pending<P, impl Future<Output = Vote> + Send + 'static>> {
    let timer = runtime::sleep(plan.timeout)?;
    let started = Started::now();
    let deadline = timer.deadline();
    let mut timer = std::pin::pin!(timer);
    if let Some(caller) = plan.deadline.filter(|&d| d < deadline) {
        timer.as_mut().reset(caller);
    }
    let nodes = call.nodes().clone();
    let mut calls: Calls<_> = (0..nodes.len())
        .map(|node| (node, Box::pin(vote(call.clone(), node, deadline))))
        .collect();
    if plan.shuffle {
        calls.shuffle(&mut rand::rng());
    }
    let mut pending = Pending {
        nodes,
        calls,
        deadline,
        timeout: plan.timeout,
        action: call.action(),
        started,
    };
    gather(&mut pending, tally, plan, timer).await;
    Ok(pending)
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
        let (action, started) = (self.action, self.started);
        let each = self.calls.into_iter().map(|(node, call)| {
            let (release, nodes) = (release.clone(), self.nodes.clone());
            async move {
                let vote = timeout_at(deadline, call).await;
                let vote = vote.unwrap_or_else(|_| timed_out(timeout));
                nodes.observe(node, &vote, action, started);
                let Some(r) = release else {
                    return;
                };
                if !r.only_yes || matches!(vote, Vote::Yes | Vote::YesHeard | Vote::Young(_)) {
                    let released = vote_within(r.call.clone(), node, r.plan.timeout).await;
                    report_release(&r.call, node, &released);
                }
            }
        });
        // A spawned task of its own: here FuturesUnordered's self-wake costs nothing.
        let mut all: FuturesUnordered<_> = each.collect();
        spawn(async move { while all.next().await.is_some() {} })
    }
}

/// Releases the key on `targets`, waiting for every answer (each bounded by the timeout).
/// Nobody reads the answers; with `report`, a node that failed (and keeps the key until it
/// expires) is recorded (`observe`).
pub(crate) async fn release_on<P: Pool>(
    targets: NodeSet,
    plan: Plan,
    call: Arc<Call<P>>,
    report: bool,
) {
    let calls = targets.iter().map(|node| {
        let released = vote_within(call.clone(), node, plan.timeout);
        let reported = report.then(|| call.clone());
        async move {
            let released = released.await;
            if let Some(call) = reported {
                report_release(&call, node, &released);
            }
        }
    });
    futures::future::join_all(calls).await;
}

/// Records a release nobody waits for that failed on `node`.
fn report_release<P: Pool>(call: &Call<P>, node: usize, vote: &Vote) {
    if matches!(vote, Vote::Failed(_)) {
        let address = call.nodes().addresses().get(node).and_then(Option::as_ref);
        observe::background_release_failed(call.key(), node, address, vote);
    }
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
        release_on(targets, plan, call, true).await;
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
