//! The one task behind a lease: it renews the lock on schedule, runs the holder's
//! commands in turn with the renewals, records the loss, and ends the lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::conn::Pool;
use crate::error::LostReason;
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::lease::signal::{LeaseState, Shared};
use crate::observe::{self, HeldCall};

/// A renewal starts up to this share of the lead earlier than due, at random.
const JITTER_SHARE: u32 = 8;

/// The shortest wait before a failed renewal is retried.
const MIN_RETRY_DELAY: Duration = Duration::from_millis(1);

/// What the holder asks of its lease's task.
pub(crate) enum Command {
    /// Renew now; reply with the outcome.
    Extend(oneshot::Sender<Result<()>>),
    /// Stop renewing, release the lock and reply with the outcome.
    Unlock(oneshot::Sender<Result<()>>),
    /// Stop renewing and hand back the value without releasing.
    Detach(oneshot::Sender<String>),
}

/// What woke the task.
enum Step {
    /// A command, or `None` when the lease handle was dropped.
    Command(Option<Command>),
    /// The lease's time ran out.
    End,
    /// A renewal is due.
    Renew,
}

/// The lease's task: it owns the guard, so a renewal, a manual extend and the release can
/// never run at once, and a release always comes after the last renewal's calls are done.
pub(crate) struct Renewer<P: Pool> {
    /// Declared first, so that it is dropped first: the signal reads lost before the
    /// guard's own drop releases the lock.
    _abandon: Abandon,
    guard: Guard<P>,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    /// How long before the lease's end it renews.
    lead: Duration,
    /// When to renew next; `None` when no renewal is due (lost, or valid past the
    /// maximum hold time).
    next: Option<Instant>,
    /// Renewals failed in a row, for the retry delay.
    failures: u32,
}

impl<P: Pool> Renewer<P> {
    pub(crate) fn new(
        guard: Guard<P>,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
        lead: Duration,
    ) -> Self {
        let mut renewer = Self {
            _abandon: Abandon(shared.clone()),
            guard,
            shared,
            commands,
            lead,
            next: None,
            failures: 0,
        };
        renewer.next = renewer.schedule();
        renewer
    }

    /// Runs until the holder unlocks, detaches or drops the lease.
    pub(crate) async fn run(mut self) {
        loop {
            self.record_the_end();
            match self.next_step().await {
                Step::Renew => {
                    // The outcome is recorded where it matters: in the signal (a loss) and
                    // in the schedule (a retry); no one waits for this reply.
                    let _recorded = self.renew().await;
                }
                Step::End => {
                    self.shared.lose(LostReason::Expired);
                    self.next = None;
                }
                Step::Command(Some(Command::Extend(reply))) => {
                    // A holder that stopped waiting has the outcome in the signal.
                    let _unheard = reply.send(self.renew().await);
                }
                Step::Command(Some(Command::Unlock(reply))) => {
                    self.shared.lose(LostReason::Released);
                    let _unheard = reply.send(self.guard.unlock().await);
                    return;
                }
                Step::Command(Some(Command::Detach(reply))) => {
                    self.shared.lose(LostReason::Released);
                    if !reply.is_closed() {
                        // Only a value sent into a closed channel is lost; then the keys
                        // expire by themselves.
                        let _unheard = reply.send(self.guard.detach());
                    }
                    // A holder that stopped waiting gets nothing: the guard is dropped,
                    // which releases the lock.
                    return;
                }
                Step::Command(None) => {
                    // The lease was dropped: dropping the guard releases the lock in the
                    // background, after any calls of its own still in flight.
                    self.shared.lose(LostReason::Released);
                    return;
                }
            }
        }
    }

    /// Records the loss of a lease whose end has passed unseen (the task was not polled in
    /// time, or started late), so that its token is cancelled and no renewal stays due.
    fn record_the_end(&mut self) {
        if self.end().is_none() {
            self.shared.lose(LostReason::Expired);
            self.next = None;
        }
    }

    async fn next_step(&mut self) -> Step {
        let end = self.end();
        let renew = self.next;
        tokio::select! {
            biased;
            command = self.commands.recv() => Step::Command(command),
            () = sleep_until(end) => Step::End,
            () = sleep_until(renew) => Step::Renew,
        }
    }

    /// Extends the lock once and records the outcome. The lease's end is watched while
    /// the calls run, so that a slow renewal cannot delay the loss; the calls are still
    /// awaited, so that none is in flight when the lease is released.
    async fn renew(&mut self) -> Result<()> {
        let Some(end) = self.end() else {
            self.record_the_end();
            return Err(self.lost_error());
        };
        let span = observe::call_span(HeldCall::Renew, self.guard.name());
        let attempt = self.failures.saturating_add(1);
        let result = {
            let extend = observe::instrument(&span, self.guard.extend());
            tokio::pin!(extend);
            tokio::select! {
                biased;
                result = &mut extend => result,
                () = tokio::time::sleep_until(end) => {
                    self.shared.lose(LostReason::Expired);
                    extend.await
                }
            }
        };
        let (until, attempt) = (Some(self.guard.valid_until()), Some(attempt));
        match result {
            Ok(()) if self.shared.renewed(self.guard.valid_until()) => {
                observe::call_end(&span, HeldCall::Renew, None, until, attempt);
                self.failures = 0;
                self.next = self.schedule();
                Ok(())
            }
            Ok(()) => {
                // Refused: the lease had ended (or was lost) by the time the renewal
                // finished.
                self.record_the_end();
                let lost = self.lost_error();
                observe::call_end(&span, HeldCall::Renew, Some(&lost), until, attempt);
                Err(lost)
            }
            Err(error) => {
                observe::call_end(&span, HeldCall::Renew, Some(&error), until, attempt);
                self.failed(error)
            }
        }
    }

    /// Records a failed renewal: a retry while one can still finish before the lease
    /// ends, otherwise the loss.
    fn failed(&mut self, error: Error) -> Result<()> {
        self.failures = self.failures.saturating_add(1);
        let retry = match &error {
            Error::Expired { .. } | Error::Taken { .. } => None,
            e if e.is_taken() || !e.is_retryable() => None,
            _ => self.retry_at(),
        };
        if let Some(at) = retry {
            self.next = Some(at);
            return Err(error);
        }
        let error = Arc::new(error);
        let reason = match &*error {
            Error::Expired { .. } => LostReason::Gone(error),
            e if e.is_taken() => LostReason::Taken(error),
            _ => LostReason::RenewalFailed(error),
        };
        self.shared.lose(reason);
        self.next = None;
        Err(self.lost_error())
    }

    /// When to retry a failed renewal: after the retry delay (at least a millisecond, so
    /// that failures that come at once cannot spin), but no later than the last moment a
    /// round at the per-node timeout still finishes before the lease ends; `None` when
    /// that moment has passed.
    fn retry_at(&self) -> Option<Instant> {
        let end = self.end()?;
        let target = self.guard.target();
        let last_start = end.checked_sub(target.settings().node_timeout)?;
        let now = Instant::now();
        if last_start <= now {
            return None;
        }
        let delay = target.retry_delay(self.failures).max(MIN_RETRY_DELAY);
        let delayed = now.checked_add(delay);
        Some(delayed.map_or(last_start, |at| at.min(last_start)))
    }

    /// When to renew: `lead` before the lease ends, less a random eighth of `lead` so that
    /// leases taken together do not renew in step; never, while the lease is valid past
    /// its maximum hold time.
    fn schedule(&self) -> Option<Instant> {
        let valid_until = self.guard.valid_until();
        if !self.shared.needs_renewal(valid_until) {
            return None;
        }
        let end = self.end()?;
        // At most half the time until the renewal is due, so that a lead close to the
        // whole validity (a renew factor near 1) cannot make it due at once.
        let due_in = end
            .saturating_duration_since(Instant::now())
            .saturating_sub(self.lead);
        let spread = (self.lead / JITTER_SHARE).min(due_in / 2);
        let jitter = spread.mul_f64(rand::random::<f64>());
        // An instant before the clock's origin: renew now.
        Some(
            end.checked_sub(self.lead + jitter)
                .unwrap_or_else(Instant::now),
        )
    }

    /// When the lease ends; `None` once it is lost.
    fn end(&self) -> Option<Instant> {
        match self.shared.read() {
            LeaseState::Held { until } => Some(until),
            LeaseState::Lost { .. } => None,
        }
    }

    fn lost_error(&self) -> Error {
        self.shared.lost_error()
    }
}

/// Sleeps until `at`, or forever when there is no `at`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Records the lease as abandoned when the task ends without its holder ending it (its
/// runtime shut down, or it panicked): nothing renews the lock any more. A no-op after a
/// loss was recorded, as at every normal end.
struct Abandon(Arc<Shared>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.lose(LostReason::Abandoned);
    }
}
