//! A lease's state, shared by its renewer and every [`LeaseSignal`]: held until an
//! instant, or lost for a reason. Readers judge the deadline themselves, so a lease reads
//! as lost at its end even when nothing ran to record it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::fence::Token;
use crate::observe;

use crate::error::LostReason;
use crate::error::{Error, Result};
use crate::runtime;

/// What a lease's state is at one instant.
#[derive(Debug, Clone)]
pub enum LeaseState {
    /// The lease is held until `until` unless it is renewed before then.
    Held {
        /// When the lease ends without a renewal: its validity less the safety margin,
        /// and no later than the maximum hold time.
        until: Instant,
    },
    /// The lease was lost; it stays lost.
    Lost {
        /// Why.
        reason: LostReason,
        /// When the loss was recorded; for a lease that ran out of time, its end.
        at: Instant,
    },
}

/// What is stored: the raw validity while held, so that the margin and maximum hold are
/// applied by one function, [`Shared::end`].
#[derive(Debug)]
enum Stored {
    Held { valid_until: Instant },
    Lost { reason: LostReason, at: Instant },
}

/// The state of one lease, behind the renewer and every signal.
#[derive(Debug)]
pub(crate) struct Shared {
    lock: Arc<str>,
    fencing: Option<Token>,
    state: watch::Sender<Stored>,
    margin: Duration,
    /// The end of the maximum hold time, if there is one.
    max_until: Option<Instant>,
    #[cfg(feature = "tokio-util")]
    token: tokio_util::sync::CancellationToken,
}

impl Shared {
    pub(crate) fn new(
        lock: Arc<str>,
        fencing: Option<Token>,
        valid_until: Instant,
        margin: Duration,
        max_hold: Option<Duration>,
    ) -> Self {
        let now = Instant::now();
        Self {
            lock,
            fencing,
            state: watch::Sender::new(Stored::Held { valid_until }),
            margin,
            // A maximum too far away to be an instant is no maximum.
            max_until: max_hold.and_then(|max| now.checked_add(max)),
            #[cfg(feature = "tokio-util")]
            token: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// When a lease valid until `valid_until` ends unless renewed, and what it is lost for
    /// then.
    pub(crate) fn end(&self, valid_until: Instant) -> (Instant, LostReason) {
        // An instant cannot precede the clock's origin; such a margin ends the lease now.
        let end = valid_until
            .checked_sub(self.margin)
            .unwrap_or_else(Instant::now);
        match self.max_until {
            Some(max) if max <= end => (max, LostReason::MaxHold),
            _ => (end, LostReason::Expired),
        }
    }

    /// Whether a lease valid until `valid_until` needs renewing to last until its maximum
    /// hold time.
    pub(crate) fn needs_renewal(&self, valid_until: Instant) -> bool {
        matches!(self.end(valid_until).1, LostReason::Expired)
    }

    /// The state now.
    pub(crate) fn read(&self) -> LeaseState {
        classify(self, &self.state.borrow(), Instant::now())
    }

    /// Records a renewal that made the lease valid until `valid_until`. Refused (returns
    /// `false`) once the lease is lost, or has run out of time: a lease never comes back.
    pub(crate) fn renewed(&self, valid_until: Instant) -> bool {
        self.state.send_if_modified(|stored| match stored {
            Stored::Held { valid_until: old } if Instant::now() < self.end(*old).0 => {
                *old = valid_until;
                true
            }
            _ => false,
        })
    }

    /// Records the loss of the lease for `reason`, unless it is already lost. A lease
    /// whose time has run out is recorded as lost for that, at its end, as readers saw it.
    pub(crate) fn lose(&self, reason: LostReason) {
        let now = Instant::now();
        // What was stored, recorded once the watch's lock is let go: a subscriber or
        // recorder that reads the lease must not run under it.
        let mut recorded = None;
        let changed = self.state.send_if_modified(|stored| {
            let Stored::Held { valid_until } = stored else {
                return false;
            };
            let (end, why) = self.end(*valid_until);
            let (reason, at) = if now >= end {
                (why, end)
            } else {
                (reason, now)
            };
            if observe::ENABLED {
                recorded = Some(reason.clone());
            }
            *stored = Stored::Lost { reason, at };
            true
        });
        if let Some(reason) = recorded {
            observe::lease_ended(&self.lock, &reason);
        }
        #[cfg(feature = "tokio-util")]
        if changed {
            self.token.cancel();
        }
        #[cfg(not(feature = "tokio-util"))]
        let _unused = changed;
    }
}

impl Shared {
    /// The error for a lease that is lost (or has run out of time).
    pub(crate) fn lost_error(&self) -> Error {
        let reason = match self.read() {
            LeaseState::Lost { reason, .. } => reason,
            // Callers ask only once the lease is lost; should one not, the lease's time
            // is what they were acting on.
            LeaseState::Held { .. } => LostReason::Expired,
        };
        Error::Lost {
            lock: self.lock.clone(),
            reason,
        }
    }
}

fn classify(shared: &Shared, stored: &Stored, now: Instant) -> LeaseState {
    match stored {
        Stored::Lost { reason, at } => LeaseState::Lost {
            reason: reason.clone(),
            at: *at,
        },
        Stored::Held { valid_until } => match shared.end(*valid_until) {
            (end, reason) if now >= end => LeaseState::Lost { reason, at: end },
            (until, _) => LeaseState::Held { until },
        },
    }
}

/// A handle on a lease's state that any task can hold: cheap to clone, `Send` and `Sync`.
///
/// It reads whether the lease is held and until when, and [`LeaseSignal::lost`] waits
/// until it is lost. The loss is seen no later than the lease's end (its validity less
/// the safety margin), even when renewals hang or nothing runs them: a reader judges the
/// deadline itself. A lost lease stays lost.
///
/// A process paused past the end (GC, swap, SIGSTOP) cannot be told in time: check
/// [`LeaseSignal::check`] right before each side effect, and protect the resource itself
/// where a late write would do harm.
#[derive(Debug, Clone)]
pub struct LeaseSignal {
    shared: Arc<Shared>,
}

impl LeaseSignal {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.shared.lock
    }

    /// The lease's fencing token, for a fenced lock ([`Options::fenced`](crate::Options::fenced)):
    /// the same for the whole lease, renewals included. Hand it to the resource with
    /// every write.
    pub fn token(&self) -> Option<Token> {
        self.shared.fencing
    }

    /// The lease's state now.
    pub fn state(&self) -> LeaseState {
        self.shared.read()
    }

    /// Whether the lease is held now.
    pub fn is_held(&self) -> bool {
        matches!(self.state(), LeaseState::Held { .. })
    }

    /// How long the lease is held for unless it is renewed; zero once it is lost.
    pub fn remaining(&self) -> Duration {
        match self.state() {
            LeaseState::Held { until } => until.saturating_duration_since(Instant::now()),
            LeaseState::Lost { .. } => Duration::ZERO,
        }
    }

    /// Checks, right before a side effect, that the lease is held for at least `needed`
    /// more without another renewal.
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] with the reason when the lease is lost, [`Error::ValidityLow`] when
    /// it is held for less than `needed`.
    pub fn check(&self, needed: Duration) -> Result<()> {
        let lock = self.shared.lock.clone();
        match self.state() {
            LeaseState::Lost { reason, .. } => Err(Error::Lost { lock, reason }),
            LeaseState::Held { until } => {
                let remaining = until.saturating_duration_since(Instant::now());
                if remaining >= needed {
                    return Ok(());
                }
                Err(Error::ValidityLow {
                    lock,
                    remaining,
                    needed,
                })
            }
        }
    }

    /// The error for a lease that is lost, with the reason it was lost for.
    pub(crate) fn lost_error(&self) -> Error {
        self.shared.lost_error()
    }

    /// Waits until the lease is lost, and says why. Returns at once if it already is.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn lost(&self) -> LostReason {
        let mut changes = self.shared.state.subscribe();
        loop {
            let state = classify(&self.shared, &changes.borrow_and_update(), Instant::now());
            let until = match state {
                LeaseState::Lost { reason, .. } => return reason,
                LeaseState::Held { until } => until,
            };
            // Without timers (outside a runtime that has them) the renewer, which has
            // them, still records the loss at the end.
            let end = runtime::sleep_until(until).ok();
            tokio::select! {
                // The sender lives as long as `self.shared`: `changed` cannot fail.
                _ = changes.changed() => {}
                () = async { if let Some(end) = end { end.await } else { std::future::pending().await } } => {}
            }
        }
    }

    /// A token cancelled when the lease is lost, for work that takes a
    /// `CancellationToken`. It is cancelled when the loss is recorded: at once for a
    /// failed renewal or a release, and at the lease's end when time runs out (the
    /// renewer keeps a timer for it). Cancelling the returned token does not end the
    /// lease.
    #[cfg(feature = "tokio-util")]
    pub fn cancellation_token(&self) -> tokio_util::sync::CancellationToken {
        self.shared.token.child_token()
    }
}
