//! One node's failure, [`NodeError`], and how a round's failures read in a message.

use std::fmt;
use std::sync::Arc;

use crate::conn::{ConnError, ConnErrorKind};

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

/// The causes of a failed round, the most common first: `3 could not be reached (a, b,
/// c), 1 held by another owner`.
pub(crate) fn write_causes(
    f: &mut fmt::Formatter<'_>,
    taken: usize,
    errors: &[NodeError],
) -> fmt::Result {
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
        ConnErrorKind::ReadOnly => "were replicas, not masters",
        ConnErrorKind::Protocol => "sent an unexpected reply",
        ConnErrorKind::NoScript => "did not know the script",
        ConnErrorKind::Unsupported => "lacked a capability",
        ConnErrorKind::Other => "failed",
    }
}

/// The first node error of the most common kind: the cause the message names first.
pub(crate) fn dominant(errors: &[NodeError]) -> Option<&NodeError> {
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
