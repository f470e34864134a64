//! The crate's one error type.

use std::fmt;
use std::time::Duration;

use crate::conn::ConnError;

/// A `Result` whose error defaults to this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong locking, extending or unlocking.
///
/// Match on the variant, or ask a predicate such as [`Error::is_taken`]. Node indexes are
/// positions in the list of pools the lock was built with.
///
/// `Display` and `source()` are written by hand (not derived) so that the source of
/// [`Error::DeadlineExceeded`] is the last failure itself, downcastable to `Error`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Another owner holds the lock on a quorum of nodes.
    Taken {
        /// The nodes on which another value holds the key.
        nodes: Vec<usize>,
    },

    /// Too few nodes answered in favour: some were held by another owner, some failed.
    NoQuorum {
        /// How many nodes were asked.
        nodes: usize,
        /// How many nodes agreed.
        succeeded: usize,
        /// How many nodes had to agree.
        quorum: usize,
        /// The nodes on which another value holds the key.
        taken: Vec<usize>,
        /// The nodes that failed, each with its error; the first is the `source()`.
        errors: NodeErrors,
    },

    /// A quorum agreed, but the time it took (plus clock drift) used up the whole expiry.
    ValidityExhausted {
        /// How long the attempt took.
        elapsed: Duration,
        /// The expiry the lock was asked for.
        expiry: Duration,
    },

    /// On unlock or extend: the key is gone from a quorum of nodes; the lock had expired.
    Expired,

    /// The options or inputs were rejected before anything was sent.
    Config(String),

    /// The deadline given to the call passed before the lock was acquired.
    DeadlineExceeded {
        /// The last attempt's failure, if an attempt had finished.
        last: Option<Box<Error>>,
    },

    /// The cancellation signal given to the call fired before the lock was acquired.
    Cancelled,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Taken { nodes } => write!(f, "lock is held by another owner on nodes {nodes:?}"),
            Error::NoQuorum {
                succeeded, quorum, ..
            } => write!(
                f,
                "quorum not reached: {succeeded} of {quorum} needed nodes agreed"
            ),
            Error::ValidityExhausted { elapsed, expiry } => write!(
                f,
                "lock validity used up: the attempt took {elapsed:?} of a {expiry:?} expiry"
            ),
            Error::Expired => f.write_str("lock had already expired"),
            Error::Config(reason) => write!(f, "invalid configuration: {reason}"),
            Error::DeadlineExceeded { .. } => {
                f.write_str("deadline passed before the lock was acquired")
            }
            Error::Cancelled => f.write_str("acquire cancelled"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::NoQuorum { errors, .. } => Some(errors),
            Error::DeadlineExceeded { last } => last.as_deref().map(|e| e as _),
            _ => None,
        }
    }
}

impl Error {
    /// Whether another owner holds the lock: on a quorum of nodes, or on so many that no
    /// quorum was possible even had every failed node agreed. A lock that failed because
    /// nodes were down is not taken.
    pub fn is_taken(&self) -> bool {
        match self {
            Error::Taken { .. } => true,
            Error::NoQuorum {
                nodes,
                quorum,
                taken,
                ..
            } => nodes.saturating_sub(taken.len()) < *quorum,
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
        matches!(self, Error::Expired)
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
        matches!(self, Error::Cancelled)
    }

    /// The errors of the nodes that failed, if this error carries them.
    pub fn node_errors(&self) -> &[NodeError] {
        match self {
            Error::NoQuorum { errors, .. } => &errors.0,
            Error::DeadlineExceeded { last: Some(last) } => last.node_errors(),
            _ => &[],
        }
    }

    pub(crate) fn config(reason: impl Into<String>) -> Self {
        Error::Config(reason.into())
    }
}

/// One node's failure: its index and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("node {node} failed")]
pub struct NodeError {
    /// The node's index in the lock's list of pools.
    pub node: usize,
    /// What the driver reported, or the core's timeout.
    #[source]
    pub error: ConnError,
}

/// The failures of several nodes; `source()` is the first one's.
#[derive(Debug, Default)]
pub struct NodeErrors(pub Vec<NodeError>);

impl NodeErrors {
    /// The failures, in node order.
    pub fn as_slice(&self) -> &[NodeError] {
        &self.0
    }
}

impl fmt::Display for NodeErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<usize> = self.0.iter().map(|e| e.node).collect();
        write!(f, "{} node(s) failed: {nodes:?}", self.0.len())
    }
}

impl std::error::Error for NodeErrors {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .first()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
