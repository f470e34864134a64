//! What an acquire call records: its span, its refused attempts, and its end, including
//! an end that never came because the caller dropped the call.

use std::sync::atomic::AtomicU32;
#[cfg(any(feature = "tracing", feature = "metrics"))]
use std::sync::atomic::Ordering;

#[cfg(feature = "tracing")]
use tokio::time::Instant;

use super::{Span, Started};
use crate::error::Error;
use crate::round::Held;

/// What an acquire call recorded as its outcome when its caller dropped it before it
/// ended: a [`Mutex::lock_or_cancel`](crate::Mutex::lock_or_cancel) whose `cancel` won, a
/// timeout or `select!` around [`Mutex::lock`](crate::Mutex::lock), an aborted task.
#[cfg(any(feature = "tracing", feature = "metrics"))]
const CANCELLED: &str = "cancelled";

/// One acquire call being recorded (`call`: `lock`, `try_lock` or `lock_until`), from
/// its start to its end. Dropped before [`Acquiring::end`], it records the call as
/// `cancelled`, with the attempts made by then.
// With a feature off, what only it records is carried, never read.
#[cfg_attr(not(all(feature = "tracing", feature = "metrics")), allow(dead_code))]
pub(crate) struct Acquiring<'a> {
    /// The call's span, for the attempts to run in.
    pub(crate) span: Span,
    call: &'static str,
    started: Started,
    /// Counted by the call as it makes them (shared, as the call runs while this waits).
    attempts: &'a AtomicU32,
    quorum: usize,
    ended: bool,
}

impl<'a> Acquiring<'a> {
    /// Starts recording an acquire of `lock` whose attempts are counted in `attempts`;
    /// `quorum` is the lock's, to tell how many nodes agreed beyond it.
    pub(crate) fn start(
        lock: &str,
        call: &'static str,
        attempts: &'a AtomicU32,
        quorum: usize,
    ) -> Self {
        #[cfg(feature = "tracing")]
        let span = tracing::debug_span!(
            "redlock.acquire",
            lock,
            call,
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
            quorum_margin = tracing::field::Empty,
            validity_left_ms = tracing::field::Empty,
            wait_ms = tracing::field::Empty,
        );
        #[cfg(not(feature = "tracing"))]
        let span = Span;
        Self {
            span,
            call,
            started: Started::now(),
            attempts,
            quorum,
            ended: false,
        }
    }

    /// Records the end of the call: its outcome, and for a success how many nodes agreed
    /// beyond the quorum, the validity left and how long the winning round took.
    pub(crate) fn end(mut self, result: &Result<Held, Error>) {
        self.ended = true;
        #[cfg(any(feature = "tracing", feature = "metrics"))]
        self.record(result.as_ref().ok(), super::outcome(result.as_ref().err()));
    }

    #[cfg(any(feature = "tracing", feature = "metrics"))]
    fn record(&self, held: Option<&Held>, outcome: &'static str) {
        let attempts = self.attempts.load(Ordering::Relaxed);
        let waited = self.started.elapsed();
        #[cfg(feature = "tracing")]
        {
            let span = &self.span;
            span.record("attempts", attempts);
            span.record("outcome", outcome);
            span.record("wait_ms", super::millis(waited));
            if let Some(held) = held {
                let left = held.valid_until.saturating_duration_since(Instant::now());
                span.record("quorum_margin", held.agreed.saturating_sub(self.quorum));
                span.record("validity_left_ms", super::millis(left));
            }
        }
        #[cfg(feature = "metrics")]
        {
            let call = self.call;
            metrics::counter!("redlock_acquires_total", "call" => call, "outcome" => outcome)
                .increment(1);
            metrics::histogram!("redlock_acquire_wait_seconds", "call" => call, "outcome" => outcome)
                .record(waited);
            metrics::histogram!("redlock_acquire_attempts", "call" => call, "outcome" => outcome)
                .record(f64::from(attempts));
            if let Some(held) = held {
                metrics::histogram!("redlock_acquire_seconds", "call" => call).record(held.took);
            }
        }
    }
}

#[cfg(any(feature = "tracing", feature = "metrics"))]
impl Drop for Acquiring<'_> {
    fn drop(&mut self) {
        // A panic in the call is not the caller giving up.
        if !self.ended && !std::thread::panicking() {
            self.record(None, CANCELLED);
        }
    }
}

/// Records an acquire attempt that did not win (the lock span's child event).
pub(crate) fn attempt_refused(attempt: u32, error: &Error) {
    #[cfg(feature = "tracing")]
    tracing::debug!(attempt, reason = error.kind(), error = %error, "redlock: attempt refused");
}
