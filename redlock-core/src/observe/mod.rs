//! What the lock reports about itself: spans and events behind the `tracing` feature,
//! counters and histograms behind the `metrics` feature (the [`metrics`] facade, for any
//! exporter). With both off, everything here compiles to nothing: [`Span`] and
//! [`Started`] are empty and every function's body is empty.
//!
//! Spans are at `DEBUG`, so that a service logging at `INFO` pays for none of them (with
//! the `fmt` subscriber at `INFO`, spans cost more than everything else here together:
//! the README's *Observability* has the numbers); what needs attention (a lost lease, a
//! failed background release, a replaced connection, a quarantined node) is an event at
//! `WARN` or `INFO`.
//!
//! The names, fields and labels are listed in the crate docs (`# Observability`), which
//! are the contract; `tests/observe.rs` reads them back. Lock values and credentials are
//! never recorded: a lock is named by its name, a node by the credential-free address its
//! pool gives ([`Pool::address`](crate::Pool::address)) or else by its index. Lock names
//! are not metric labels, since a program may lock unboundedly many names.

// With a feature off, what only it records goes unused.
#![cfg_attr(
    not(all(feature = "tracing", feature = "metrics")),
    allow(unused_variables)
)]

use std::future::Future;
use std::sync::Arc;

#[cfg(any(feature = "tracing", feature = "metrics"))]
use tokio::time::Instant;

use crate::error::{Error, LostReason};
use crate::tally::Vote;

mod acquire;

pub(crate) use acquire::{Acquiring, attempt_refused};

/// Whether anything is recorded: to skip work done only for it.
pub(crate) const ENABLED: bool = cfg!(any(feature = "tracing", feature = "metrics"));

/// A span of the `tracing` feature; empty without it.
#[cfg(feature = "tracing")]
pub(crate) type Span = tracing::Span;

/// A span of the `tracing` feature; empty without it.
#[cfg(not(feature = "tracing"))]
#[derive(Debug, Clone)]
pub(crate) struct Span;

/// When something being measured started; empty with both features off, so that the
/// clock is not even read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    at: Instant,
}

impl Started {
    pub(crate) fn now() -> Self {
        Self {
            #[cfg(any(feature = "tracing", feature = "metrics"))]
            at: Instant::now(),
        }
    }

    /// From an instant already read.
    #[cfg_attr(
        not(any(feature = "tracing", feature = "metrics")),
        allow(unused_variables)
    )]
    pub(crate) fn at(at: tokio::time::Instant) -> Self {
        Self {
            #[cfg(any(feature = "tracing", feature = "metrics"))]
            at,
        }
    }

    #[cfg(any(feature = "tracing", feature = "metrics"))]
    fn elapsed(self) -> std::time::Duration {
        self.at.elapsed()
    }
}

/// Runs `f` inside `span`; `f` itself without the `tracing` feature.
pub(crate) fn instrument<F: Future>(span: &Span, f: F) -> impl Future<Output = F::Output> {
    #[cfg(feature = "tracing")]
    return tracing::Instrument::instrument(f, span.clone());
    #[cfg(not(feature = "tracing"))]
    {
        let _ = span;
        f
    }
}

/// How a lock call ended, as a metric label and span field: `ok`, or the error's kind.
#[cfg(any(feature = "tracing", feature = "metrics"))]
fn outcome(failure: Option<&Error>) -> &'static str {
    failure.map_or("ok", Error::kind)
}

/// A call on a held lock, for its span and its counter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HeldCall {
    /// [`Guard::extend`](crate::Guard::extend) or `extend_to`.
    Extend,
    /// A lease's renewal (an extend, inside it).
    Renew,
    /// [`Guard::unlock`](crate::Guard::unlock).
    Unlock,
}

/// A node's name in events and labels: its address, or `node<i>` when its pool has none.
#[cfg(any(feature = "tracing", feature = "metrics"))]
fn node_name(address: Option<&Arc<str>>, node: usize) -> Arc<str> {
    match address {
        Some(address) => address.clone(),
        None => format!("node{node}").into(),
    }
}

/// The span of one call on a held lock.
pub(crate) fn call_span(call: HeldCall, lock: &str) -> Span {
    #[cfg(feature = "tracing")]
    match call {
        HeldCall::Renew => tracing::debug_span!(
            "redlock.renew",
            lock,
            attempt = tracing::field::Empty,
            outcome = tracing::field::Empty,
            validity_left_ms = tracing::field::Empty
        ),
        HeldCall::Unlock => {
            tracing::debug_span!("redlock.unlock", lock, outcome = tracing::field::Empty)
        }
        HeldCall::Extend => tracing::debug_span!(
            "redlock.extend",
            lock,
            outcome = tracing::field::Empty,
            validity_left_ms = tracing::field::Empty
        ),
    }
    #[cfg(not(feature = "tracing"))]
    Span
}

/// Records the end of a call on a held lock, and its `failure` if it failed;
/// `valid_until` is the holding's validity after it, `attempt` a renewal's number.
pub(crate) fn call_end(
    span: &Span,
    call: HeldCall,
    failure: Option<&Error>,
    valid_until: Option<tokio::time::Instant>,
    attempt: Option<u32>,
) {
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    let outcome = outcome(failure);
    #[cfg(feature = "tracing")]
    {
        span.record("outcome", outcome);
        if let Some(until) = valid_until.filter(|_| failure.is_none()) {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            span.record("validity_left_ms", millis(left));
        }
        if let Some(attempt) = attempt {
            span.record("attempt", attempt);
        }
    }
    #[cfg(feature = "metrics")]
    {
        let counter = match call {
            HeldCall::Unlock => "redlock_unlocks_total",
            HeldCall::Renew => "redlock_renewals_total",
            HeldCall::Extend => "redlock_extends_total",
        };
        metrics::counter!(counter, "outcome" => outcome).increment(1);
    }
}

/// Records one node's answer to one call (`action`: `acquire`, `extend` or `release`),
/// started at `started`.
pub(crate) fn node_vote(
    node: usize,
    address: Option<&Arc<str>>,
    action: &'static str,
    vote: &Vote,
    started: Started,
) {
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    {
        let latency = started.elapsed();
        let (outcome, error) = match vote {
            Vote::Yes | Vote::YesHeard => ("yes", None),
            Vote::Absent => ("absent", None),
            Vote::Taken(_) => ("taken", None),
            Vote::Stale => ("stale", None),
            Vote::Young(_) => ("quarantined", None),
            Vote::Failed(e) => ("failed", Some(e)),
        };
        let name = node_name(address, node);
        #[cfg(feature = "tracing")]
        match (error, vote) {
            (Some(error), _) => tracing::debug!(
                node,
                address = &*name,
                action,
                outcome,
                error_kind = error.kind().as_str(),
                error = %error,
                latency_us = micros(latency),
                "redlock: node failed"
            ),
            (None, Vote::Young(left)) => tracing::info!(
                node,
                address = &*name,
                action,
                outcome,
                quarantine_left_ms = millis(*left),
                latency_us = micros(latency),
                "redlock: node restarted too recently to vote (restart quarantine)"
            ),
            _ => tracing::trace!(
                node,
                address = &*name,
                action,
                outcome,
                latency_us = micros(latency),
                "redlock: node answered"
            ),
        }
        #[cfg(feature = "metrics")]
        {
            let node = metrics::SharedString::from(name);
            match (error, vote) {
                (Some(error), _) => {
                    let kind = error.kind().as_str();
                    metrics::counter!("redlock_node_errors_total", "node" => node, "action" => action, "kind" => kind)
                        .increment(1);
                }
                (None, Vote::Young(_)) => {
                    metrics::counter!("redlock_node_quarantined_total", "node" => node.clone())
                        .increment(1);
                    metrics::histogram!("redlock_node_call_seconds", "node" => node, "action" => action)
                        .record(latency);
                }
                _ => {
                    metrics::histogram!("redlock_node_call_seconds", "node" => node, "action" => action)
                        .record(latency);
                }
            }
        }
    }
}

/// Records that the core asked node `node`'s pool for a new connection.
pub(crate) fn node_replaced(node: usize, address: Option<&Arc<str>>, vote: &Vote) {
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    {
        let name = node_name(address, node);
        #[cfg(feature = "tracing")]
        {
            let error = match vote {
                Vote::Failed(e) => e.to_string(),
                _ => String::new(),
            };
            tracing::warn!(
                node,
                address = &*name,
                error,
                "redlock: replacing the node's connection after failures"
            );
        }
        #[cfg(feature = "metrics")]
        metrics::counter!("redlock_node_reconnects_total", "node" => metrics::SharedString::from(name))
            .increment(1);
    }
}

/// Records a background release that failed on a node: the key stays there until it
/// expires.
pub(crate) fn background_release_failed(
    lock: &str,
    node: usize,
    address: Option<&Arc<str>>,
    vote: &Vote,
) {
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    {
        let Vote::Failed(error) = vote else {
            return;
        };
        let name = node_name(address, node);
        #[cfg(feature = "tracing")]
        tracing::warn!(
            lock,
            node,
            address = &*name,
            error_kind = error.kind().as_str(),
            error = %error,
            "redlock: background release failed; the key stays on the node until it expires"
        );
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "redlock_background_release_failures_total",
            "node" => metrics::SharedString::from(name),
            "kind" => error.kind().as_str()
        )
        .increment(1);
    }
}

/// Records the end of a lease, for `reason` (a holder's own end, `released`, is not a
/// loss: an event at debug level, and no count).
pub(crate) fn lease_ended(lock: &str, reason: &LostReason) {
    let kind = reason.kind();
    #[cfg(feature = "tracing")]
    match (reason, reason.error()) {
        (LostReason::Released, _) => tracing::debug!(lock, reason = kind, "redlock: lease ended"),
        (_, Some(error)) => {
            tracing::warn!(lock, reason = kind, error = %error, "redlock: lease lost");
        }
        (_, None) => tracing::warn!(lock, reason = kind, "redlock: lease lost"),
    }
    #[cfg(feature = "metrics")]
    if !matches!(reason, LostReason::Released) {
        metrics::counter!("redlock_leases_lost_total", "reason" => kind).increment(1);
    }
}

/// Records a release announcement heard on a lock's release channel.
pub(crate) fn notification() {
    #[cfg(feature = "tracing")]
    tracing::trace!("redlock: release announcement heard");
    #[cfg(feature = "metrics")]
    metrics::counter!("redlock_notifications_total").increment(1);
}

#[cfg(feature = "tracing")]
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(feature = "tracing")]
fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
