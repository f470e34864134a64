//! The crate's one error type, and why a lease was lost.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::node_error::{NodeError, dominant, write_causes};

/// A `Result` whose error defaults to this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong locking, extending or unlocking.
///
/// Match on the variant, or ask a predicate such as [`Error::is_taken`]. Node indexes are
/// positions in the list of pools the lock was built with; [`NodeError`] also carries the
/// node's address, as its driver gives it (never with credentials).
///
/// The message names the lock, says how many nodes agreed out of how many and how many
/// were needed, and leads with the most common cause, with the nodes' addresses:
/// `lock "invoice:42" not acquired: 2 of 5 nodes agreed, 3 needed; 3 could not be reached
/// (10.0.0.3:6379, 10.0.0.4:6379, 10.0.0.5:6379)`. The client's own error is the end of
/// the `source()` chain, not repeated in the message.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Another owner holds the lock: on a quorum of nodes (acquire), or on at least one
    /// node that no longer holds ours (extend, unlock).
    Taken {
        /// The lock's name.
        lock: Arc<str>,
        /// What failed.
        action: Action,
        /// The nodes on which another value holds the key.
        nodes: Vec<usize>,
        /// How many nodes were asked.
        total: usize,
    },

    /// Too few nodes agreed: some were held by another owner, some failed.
    NoQuorum {
        /// The lock's name.
        lock: Arc<str>,
        /// What failed.
        action: Action,
        /// How many nodes were asked.
        total: usize,
        /// How many nodes agreed.
        agreed: usize,
        /// How many nodes had to agree.
        quorum: usize,
        /// The nodes on which another value holds the key.
        taken: Vec<usize>,
        /// The nodes that failed, each with its error, in node order.
        errors: Vec<NodeError>,
    },

    /// A quorum agreed, but the time it took (plus clock drift) used up the whole TTL.
    ValidityExhausted {
        /// The lock's name.
        lock: Arc<str>,
        /// What failed.
        action: Action,
        /// How long the round took.
        elapsed: Duration,
        /// The TTL the nodes were sent.
        ttl: Duration,
    },

    /// On unlock or extend: the key is gone from too many nodes; the lock had expired.
    Expired {
        /// The lock's name.
        lock: Arc<str>,
        /// What failed.
        action: Action,
    },

    /// The options or inputs were rejected before anything was sent.
    Config(String),

    /// The deadline given to the call passed before the lock was acquired.
    DeadlineExceeded {
        /// The lock's name.
        lock: Arc<str>,
        /// The failure of the attempt the deadline ended, or cut short, if one was made.
        last: Option<Box<Error>>,
    },

    /// The cancellation signal given to the call fired before the lock was acquired.
    Cancelled {
        /// The lock's name.
        lock: Arc<str>,
    },

    /// A lease was lost: the work it protected must stop. See [`LostReason`].
    Lost {
        /// The lock's name.
        lock: Arc<str>,
        /// Why it was lost.
        reason: LostReason,
    },

    /// A lease is held, but for less than the time the caller needs before it ends.
    ValidityLow {
        /// The lock's name.
        lock: Arc<str>,
        /// How long the lease is held for unless it is renewed.
        remaining: Duration,
        /// How long the caller asked for.
        needed: Duration,
    },
}

/// What a lock call was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Acquiring the lock.
    Acquire,
    /// Extending a held lock.
    Extend,
    /// Releasing a held lock.
    Release,
}

impl Action {
    /// What did not happen, for messages.
    fn failed(self) -> &'static str {
        match self {
            Self::Acquire => "not acquired",
            Self::Extend => "not extended",
            Self::Release => "lost before release",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Taken {
                lock,
                action,
                nodes,
                total,
            } => write!(
                f,
                "lock {lock:?} {}: held by another owner on {} of {total} nodes",
                action.failed(),
                nodes.len()
            ),
            Error::NoQuorum {
                lock,
                action,
                total,
                agreed,
                quorum,
                taken,
                errors,
            } => {
                let failed = action.failed();
                write!(
                    f,
                    "lock {lock:?} {failed}: {agreed} of {total} nodes agreed, "
                )?;
                write!(f, "{quorum} needed; ")?;
                write_causes(f, taken.len(), errors)
            }
            Error::ValidityExhausted {
                lock,
                action,
                elapsed,
                ttl,
            } => write!(
                f,
                "lock {lock:?} {}: the round took {elapsed:?} of a {ttl:?} ttl, leaving no \
                 validity after the clock drift allowance",
                action.failed()
            ),
            Error::Expired { lock, action } => {
                write!(
                    f,
                    "lock {lock:?} {}: it had already expired",
                    action.failed()
                )
            }
            Error::Config(reason) => write!(f, "invalid configuration: {reason}"),
            Error::DeadlineExceeded { lock, .. } => {
                write!(f, "lock {lock:?} not acquired before the deadline")
            }
            Error::Cancelled { lock } => write!(f, "lock {lock:?} not acquired: cancelled"),
            Error::Lost { lock, reason } => write!(f, "lock {lock:?} lost: {reason}"),
            Error::ValidityLow {
                lock,
                remaining,
                needed,
            } => write!(
                f,
                "lock {lock:?} is held for {remaining:?} more, {needed:?} needed"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::NoQuorum { errors, .. } => dominant(errors).map(|e| e as _),
            Error::DeadlineExceeded { last, .. } => last.as_deref().map(|e| e as _),
            Error::Lost { reason, .. } => reason.error().map(|e| e as _),
            _ => None,
        }
    }
}

impl Error {
    /// The error in one word, as the `tracing` and `metrics` features record it: `taken`
    /// (whenever [`Error::is_taken`] holds, so also for a [`Error::NoQuorum`] that another
    /// owner made impossible), `no_quorum`, `validity_exhausted`, `expired`, `config`,
    /// `deadline`, `cancelled`, `lost` or `validity_low`.
    pub fn kind(&self) -> &'static str {
        match self {
            e if e.is_taken() => "taken",
            Error::Taken { .. } | Error::NoQuorum { .. } => "no_quorum",
            Error::ValidityExhausted { .. } => "validity_exhausted",
            Error::Expired { .. } => "expired",
            Error::Config(_) => "config",
            Error::DeadlineExceeded { .. } => "deadline",
            Error::Cancelled { .. } => "cancelled",
            Error::Lost { .. } => "lost",
            Error::ValidityLow { .. } => "validity_low",
        }
    }

    /// Whether another owner holds the lock: on a quorum of nodes, or on so many that no
    /// quorum was possible even had every failed node agreed. A lock that failed because
    /// nodes were down is not taken.
    pub fn is_taken(&self) -> bool {
        match self {
            Error::Taken { .. } => true,
            Error::NoQuorum {
                total,
                quorum,
                taken,
                ..
            } => total.saturating_sub(taken.len()) < *quorum,
            _ => false,
        }
    }

    /// Whether too few nodes agreed (for any reason, including [`Error::Taken`]).
    pub fn is_no_quorum(&self) -> bool {
        matches!(self, Error::Taken { .. } | Error::NoQuorum { .. })
    }

    /// Whether a quorum agreed too slowly for any validity to remain.
    pub fn is_validity_exhausted(&self) -> bool {
        matches!(self, Error::ValidityExhausted { .. })
    }

    /// Whether the lock had expired before an unlock or extend.
    pub fn is_expired(&self) -> bool {
        matches!(self, Error::Expired { .. })
    }

    /// Whether the input or options were rejected before anything was sent.
    pub fn is_config(&self) -> bool {
        matches!(self, Error::Config(_))
    }

    /// Whether the call's deadline passed.
    pub fn is_deadline(&self) -> bool {
        matches!(self, Error::DeadlineExceeded { .. })
    }

    /// Whether the call's cancellation signal fired.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled { .. })
    }

    /// Whether a lease was lost ([`Error::Lost`]).
    pub fn is_lost(&self) -> bool {
        matches!(self, Error::Lost { .. })
    }

    /// Whether a lease had less time left than the caller needed ([`Error::ValidityLow`]).
    pub fn is_validity_low(&self) -> bool {
        matches!(self, Error::ValidityLow { .. })
    }

    /// Whether another attempt could succeed. Not when nodes that failed for a reason
    /// that does not pass by itself (refused credentials or permission, a rejected script,
    /// a wrong protocol: see [`ConnErrorKind::is_retryable`](crate::ConnErrorKind::is_retryable)) leave no quorum possible, and
    /// not for configuration errors, expired locks, deadlines or cancellation. A lock held
    /// by another owner may be freed, so [`Error::Taken`] is retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Taken { .. } | Error::ValidityExhausted { .. } => true,
            Error::NoQuorum {
                total,
                quorum,
                errors,
                ..
            } => {
                let stuck = errors.iter().filter(|e| !e.error.kind().is_retryable());
                total.saturating_sub(stuck.count()) >= *quorum
            }
            _ => false,
        }
    }

    /// The name of the lock this error is about, if it is about one.
    pub fn lock_name(&self) -> Option<&str> {
        match self {
            Error::Taken { lock, .. }
            | Error::NoQuorum { lock, .. }
            | Error::ValidityExhausted { lock, .. }
            | Error::Expired { lock, .. }
            | Error::DeadlineExceeded { lock, .. }
            | Error::Cancelled { lock }
            | Error::Lost { lock, .. }
            | Error::ValidityLow { lock, .. } => Some(lock),
            Error::Config(_) => None,
        }
    }

    /// The errors of the nodes that failed, if this error carries them.
    pub fn node_errors(&self) -> &[NodeError] {
        match self {
            Error::NoQuorum { errors, .. } => errors,
            Error::DeadlineExceeded {
                last: Some(last), ..
            } => last.node_errors(),
            Error::Lost { reason, .. } => reason.error().map_or(&[], Error::node_errors),
            _ => &[],
        }
    }

    pub(crate) fn config(reason: impl Into<String>) -> Self {
        Error::Config(reason.into())
    }
}

/// Why a [`Lease`](crate::Lease) was lost: the protected work must stop.
///
/// Cheap to clone: every holder of a [`LeaseSignal`](crate::LeaseSignal) gets its own
/// copy. [`LostReason::kind`] names the reason in one word, for logs and metrics.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LostReason {
    /// The lease's time ran out (its validity less the safety margin,
    /// [`Options::safety_margin`](crate::Options::safety_margin)) before a renewal
    /// succeeded: renewals were too slow, or nothing ran them.
    Expired,
    /// A renewal found the lock held by another owner, so that no quorum can hold ours
    /// ([`Error::Taken`], or [`Error::NoQuorum`] for which [`Error::is_taken`] holds).
    Taken(Arc<Error>),
    /// A renewal found the key gone from too many nodes ([`Error::Expired`]): it expired
    /// early there (a restart without data, a clock jump) or was deleted.
    Gone(Arc<Error>),
    /// Renewals kept failing until too little time was left for another one to finish
    /// before the lease ended; the last renewal's error, usually [`Error::NoQuorum`] with
    /// each failed node's error.
    RenewalFailed(Arc<Error>),
    /// The holder ended the lease: unlocked it, detached it, or dropped it.
    Released,
    /// The maximum hold time ([`Options::max_hold`](crate::Options::max_hold)) was reached.
    MaxHold,
    /// The lease's task ended without its holder ending the lease: the tokio runtime it
    /// ran on shut down (or the task panicked). Nothing renews the lock any more.
    Abandoned,
}

impl LostReason {
    /// The reason in one word: `expired`, `taken`, `gone`, `renewal_failed`, `released`,
    /// `max_hold` or `abandoned`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Taken(_) => "taken",
            Self::Gone(_) => "gone",
            Self::RenewalFailed(_) => "renewal_failed",
            Self::Released => "released",
            Self::MaxHold => "max_hold",
            Self::Abandoned => "abandoned",
        }
    }

    /// The renewal error behind the loss, if one was.
    pub fn error(&self) -> Option<&Error> {
        match self {
            Self::Taken(e) | Self::Gone(e) | Self::RenewalFailed(e) => Some(e),
            Self::Expired | Self::Released | Self::MaxHold | Self::Abandoned => None,
        }
    }
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Expired => "its time ran out before a renewal succeeded",
            Self::Taken(_) => "a renewal found it held by another owner",
            Self::Gone(_) => "a renewal found the key gone from too many nodes",
            Self::RenewalFailed(_) => "renewals failed until no time was left for another",
            Self::Released => "released by its holder",
            Self::MaxHold => "the maximum hold time was reached",
            Self::Abandoned => "its renewals stopped with the runtime they ran on",
        })
    }
}
