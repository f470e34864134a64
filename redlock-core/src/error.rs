//! The crate's one error type.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::conn::{ConnError, ConnErrorKind};

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
        }
    }
}

/// The causes of a failed round, the most common first: `3 could not be reached (a, b,
/// c), 1 held by another owner`.
fn write_causes(f: &mut fmt::Formatter<'_>, taken: usize, errors: &[NodeError]) -> fmt::Result {
    let mut groups: Vec<(usize, Option<ConnErrorKind>)> = Vec::new();
    if taken > 0 {
        groups.push((taken, None));
    }
    groups.extend(kinds_by_count(errors).map(|(count, kind)| (count, Some(kind))));
    // Stable: on a tie, "held by another owner" stays first, then the earlier kind.
    groups.sort_by_key(|&(count, _)| std::cmp::Reverse(count));
    for (i, (count, kind)) in groups.iter().enumerate() {
        let separator = if i == 0 { "" } else { ", " };
        let Some(kind) = kind else {
            write!(f, "{separator}{count} held by another owner")?;
            continue;
        };
        write!(f, "{separator}{count} {} (", phrase(*kind))?;
        let of_kind = errors.iter().filter(|e| e.error.kind() == *kind);
        for (j, e) in of_kind.take(SHOWN).enumerate() {
            let comma = if j == 0 { "" } else { ", " };
            write!(f, "{comma}{}", e.name())?;
        }
        if *count > SHOWN {
            write!(f, " and {} more", count - SHOWN)?;
        }
        f.write_str(")")?;
    }
    Ok(())
}

/// How many nodes a cause names before it says "and N more".
const SHOWN: usize = 3;

/// What nodes that failed with `kind` did, for messages.
fn phrase(kind: ConnErrorKind) -> &'static str {
    match kind {
        ConnErrorKind::Connection => "could not be reached",
        ConnErrorKind::Timeout => "timed out",
        ConnErrorKind::PoolExhausted => "had no free pooled connection",
        ConnErrorKind::Auth => "refused the credentials",
        ConnErrorKind::Permission => "denied permission",
        ConnErrorKind::Command => "rejected the script",
        ConnErrorKind::Server => "answered with an error",
        ConnErrorKind::Protocol => "sent an unexpected reply",
        ConnErrorKind::NoScript => "did not know the script",
        ConnErrorKind::Unsupported => "lacked a capability",
        ConnErrorKind::Other => "failed",
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::NoQuorum { errors, .. } => dominant(errors).map(|e| e as _),
            Error::DeadlineExceeded { last, .. } => last.as_deref().map(|e| e as _),
            _ => None,
        }
    }
}

/// The first node error of the most common kind: the cause the message names first.
fn dominant(errors: &[NodeError]) -> Option<&NodeError> {
    let (_, kind) = kinds_by_count(errors).next()?;
    errors.iter().find(|e| e.error.kind() == kind)
}

/// Each kind of error in `errors` with how many nodes failed so, the most common first,
/// and on a tie the kind that came first.
fn kinds_by_count(errors: &[NodeError]) -> impl Iterator<Item = (usize, ConnErrorKind)> {
    let mut kinds: Vec<(usize, ConnErrorKind)> = Vec::new();
    for kind in errors.iter().map(|e| e.error.kind()) {
        match kinds.iter_mut().find(|(_, k)| *k == kind) {
            Some((count, _)) => *count += 1,
            None => kinds.push((1, kind)),
        }
    }
    kinds.sort_by_key(|&(count, _)| std::cmp::Reverse(count));
    kinds.into_iter()
}

impl Error {
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

    /// Whether another attempt could succeed. Not when nodes that failed for a reason
    /// that does not pass by itself (refused credentials or permission, a rejected script,
    /// a wrong protocol: see [`ConnErrorKind::is_retryable`]) leave no quorum possible, and
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
            | Error::Cancelled { lock } => Some(lock),
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
            _ => &[],
        }
    }

    pub(crate) fn config(reason: impl Into<String>) -> Self {
        Error::Config(reason.into())
    }
}

/// One node's failure: the node and what went wrong.
#[derive(Debug)]
pub struct NodeError {
    /// The node's index in the lock's list of pools.
    pub node: usize,
    /// The node's address as its driver gives it (`host:port`), if it gives one.
    pub address: Option<Arc<str>>,
    /// What the driver reported, or the core's timeout.
    pub error: ConnError,
}

impl NodeError {
    /// The node's address, or `node N` when the driver gives none.
    pub fn name(&self) -> String {
        match &self.address {
            Some(address) => address.to_string(),
            None => format!("node {}", self.node),
        }
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.address {
            Some(address) => write!(f, "node {} ({address}) failed", self.node),
            None => write!(f, "node {} failed", self.node),
        }
    }
}

impl std::error::Error for NodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
