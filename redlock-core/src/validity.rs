//! The decision logic, as plain functions: quorum size, drift, validity, and the verdict
//! on one round of votes. No I/O and no clock here, so property tests can hammer it.

use std::time::Duration;

use crate::error::{Error, NodeError, NodeErrors};
use crate::options::MAX_NODES;

/// The fixed part of the drift allowance, for Redis's own expiry granularity.
pub const DRIFT_FLOOR: Duration = Duration::from_millis(2);

/// The smallest quorum for `nodes` nodes: a strict majority.
pub fn majority(nodes: usize) -> usize {
    nodes / 2 + 1
}

/// The clock drift allowance for `expiry`: `expiry * factor + 2 ms`, saturating.
pub fn drift(expiry: Duration, factor: f64) -> Duration {
    let scaled =
        Duration::try_from_secs_f64(expiry.as_secs_f64() * factor).unwrap_or(Duration::MAX);
    scaled.saturating_add(DRIFT_FLOOR)
}

/// The time a lock stays valid after a round that took `elapsed`: `expiry - elapsed -
/// drift`, or `None` when nothing is left.
pub fn validity(expiry: Duration, elapsed: Duration, drift: Duration) -> Option<Duration> {
    expiry
        .checked_sub(elapsed)?
        .checked_sub(drift)
        .filter(|left| !left.is_zero())
}

/// One node's answer to one call.
#[derive(Debug)]
pub(crate) enum Vote {
    /// The key holds our value (set, refreshed or deleted as asked).
    Yes,
    /// The key is absent.
    Absent,
    /// Another value holds the key.
    Taken,
    /// The node failed or timed out.
    Failed(crate::ConnError),
}

/// A set of node indexes below [`MAX_NODES`]; a bitmask, so a round's bookkeeping
/// allocates nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NodeSet(u64);

impl NodeSet {
    /// Nodes `0..nodes`.
    pub(crate) fn all(nodes: usize) -> Self {
        match nodes {
            0 => Self(0),
            n if n >= MAX_NODES => Self(u64::MAX),
            n => Self(u64::MAX >> (MAX_NODES - n)),
        }
    }

    /// Adds `node`; nodes at or above [`MAX_NODES`] cannot occur (`Options::validate`
    /// refuses more nodes) and are ignored.
    pub(crate) fn insert(&mut self, node: usize) {
        if node < MAX_NODES {
            self.0 |= 1 << node;
        }
    }

    pub(crate) fn contains(self, node: usize) -> bool {
        node < MAX_NODES && self.0 & (1 << node) != 0
    }

    pub(crate) fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The nodes in `self` and not in `other`.
    pub(crate) fn without(self, other: NodeSet) -> Self {
        Self(self.0 & !other.0)
    }

    /// The nodes, in ascending order.
    pub(crate) fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_NODES).filter(move |&n| self.contains(n))
    }
}

/// The votes of one round across all nodes.
#[derive(Debug)]
pub(crate) struct Tally {
    nodes: usize,
    quorum: usize,
    taken: NodeSet,
    pub(crate) errors: Vec<NodeError>,
    answered: NodeSet,
    yes_nodes: NodeSet,
}

impl Tally {
    pub(crate) fn new(nodes: usize, quorum: usize) -> Self {
        Self {
            nodes,
            quorum,
            taken: NodeSet::default(),
            errors: Vec::new(),
            answered: NodeSet::default(),
            yes_nodes: NodeSet::default(),
        }
    }

    pub(crate) fn add(&mut self, node: usize, vote: Vote) {
        self.answered.insert(node);
        match vote {
            Vote::Yes => self.yes_nodes.insert(node),
            // Counted as answered; nothing else decides on it.
            Vote::Absent => {}
            Vote::Taken => self.taken.insert(node),
            Vote::Failed(error) => self.errors.push(NodeError { node, error }),
        }
    }

    fn answered(&self) -> usize {
        self.answered.len()
    }

    /// How many nodes voted yes.
    pub(crate) fn yes(&self) -> usize {
        self.yes_nodes.len()
    }

    /// The nodes that voted yes.
    pub(crate) fn yes_nodes(&self) -> NodeSet {
        self.yes_nodes
    }

    /// The nodes that have answered (or failed).
    pub(crate) fn answered_nodes(&self) -> NodeSet {
        self.answered
    }

    /// The nodes whose key holds another value.
    pub(crate) fn taken_nodes(&self) -> NodeSet {
        self.taken
    }

    /// Whether a quorum said yes.
    pub(crate) fn reached(&self) -> bool {
        self.yes() >= self.quorum
    }

    /// Whether the outcome can no longer change: a quorum said yes, or too few nodes are
    /// left to reach one.
    pub(crate) fn decided(&self) -> bool {
        self.reached() || self.yes() + (self.nodes - self.answered()) < self.quorum
    }

    /// The error for a round that did not reach a quorum.
    pub(crate) fn into_error(mut self) -> Error {
        self.errors.sort_unstable_by_key(|e| e.node);
        let taken: Vec<usize> = self.taken.iter().collect();
        if self.errors.is_empty() && taken.len() >= self.quorum {
            return Error::Taken { nodes: taken };
        }
        Error::NoQuorum {
            nodes: self.nodes,
            succeeded: self.yes(),
            quorum: self.quorum,
            taken,
            errors: NodeErrors(self.errors),
        }
    }

    /// The error for an unlock or extend that did not reach a quorum: [`Error::Expired`]
    /// when every node answered and the key was simply gone from too many.
    pub(crate) fn into_release_error(self) -> Error {
        let all_answered = self.errors.is_empty();
        if all_answered && self.taken.len() < self.quorum {
            return Error::Expired;
        }
        self.into_error()
    }
}

/// The verdict on an acquire round: the validity left, or why there is none.
pub(crate) fn acquire_verdict(
    tally: Tally,
    expiry: Duration,
    elapsed: Duration,
    drift: Duration,
) -> Result<Duration, Error> {
    if !tally.reached() {
        return Err(tally.into_error());
    }
    validity(expiry, elapsed, drift).ok_or(Error::ValidityExhausted { elapsed, expiry })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn majority_for_one_to_seven_nodes() {
        let expected = [1, 2, 2, 3, 3, 4, 4];
        for (n, q) in (1..=7).zip(expected) {
            assert_eq!(majority(n), q, "nodes={n}");
        }
    }

    #[test]
    fn default_drift_is_one_percent_plus_two_ms() {
        assert_eq!(
            drift(Duration::from_secs(8), 0.01),
            Duration::from_millis(82)
        );
        assert_eq!(drift(Duration::ZERO, 0.5), DRIFT_FLOOR);
        assert_eq!(drift(Duration::MAX, 2.0), Duration::MAX);
    }

    #[test]
    fn validity_edges() {
        let e = Duration::from_millis(100);
        let d = Duration::from_millis(3);
        assert_eq!(
            validity(e, Duration::from_millis(96), d),
            Some(Duration::from_millis(1))
        );
        assert_eq!(validity(e, Duration::from_millis(97), d), None);
        assert_eq!(validity(e, Duration::from_millis(500), d), None);
        assert_eq!(
            validity(e, Duration::ZERO, d),
            Some(Duration::from_millis(97))
        );
    }

    fn tally_of(nodes: usize, quorum: usize, votes: &[u8]) -> Tally {
        let mut t = Tally::new(nodes, quorum);
        for (i, v) in votes.iter().enumerate() {
            let vote = match v % 4 {
                0 => Vote::Yes,
                1 => Vote::Absent,
                2 => Vote::Taken,
                _ => Vote::Failed(crate::ConnError::new(
                    crate::ConnErrorKind::Connection,
                    "down",
                )),
            };
            t.add(i, vote);
        }
        t
    }

    #[test]
    fn node_sets_cover_all_sixty_four_nodes() {
        assert_eq!(NodeSet::all(0).len(), 0);
        assert_eq!(NodeSet::all(1).iter().collect::<Vec<_>>(), [0]);
        assert_eq!(NodeSet::all(5).iter().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!(NodeSet::all(MAX_NODES).len(), MAX_NODES);
        assert_eq!(NodeSet::all(MAX_NODES + 7), NodeSet::all(MAX_NODES));
        let mut set = NodeSet::default();
        for node in [63, 0, 31, 32, 63] {
            set.insert(node);
        }
        set.insert(MAX_NODES);
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 31, 32, 63]);
        assert!(set.contains(63) && !set.contains(1) && !set.contains(MAX_NODES));
        let rest = NodeSet::all(MAX_NODES).without(set);
        assert_eq!(rest.len(), MAX_NODES - 4);
        assert!(!rest.contains(32) && rest.contains(33));
    }

    #[test]
    fn all_taken_is_taken_and_mixed_is_no_quorum() {
        let err = tally_of(3, 2, &[2, 2, 2]).into_error();
        assert!(matches!(err, Error::Taken { ref nodes } if nodes == &[0, 1, 2]));
        let err = tally_of(3, 2, &[2, 3, 0]).into_error();
        assert!(
            err.is_no_quorum() && !err.is_taken(),
            "a down node could have made it"
        );
        assert_eq!(err.node_errors().len(), 1);
        assert_eq!(err.node_errors()[0].node, 1);
        let err = tally_of(3, 2, &[2, 2, 3]).into_error();
        assert!(
            err.is_no_quorum() && err.is_taken(),
            "no quorum possible without the taken"
        );
        let err = tally_of(5, 3, &[2, 3, 3, 3, 0]).into_error();
        assert!(!err.is_taken(), "one taken node, three down");
    }

    #[test]
    fn release_error_is_expired_only_when_all_nodes_answered() {
        assert!(tally_of(3, 2, &[1, 1, 0]).into_release_error().is_expired());
        assert!(!tally_of(3, 2, &[1, 3, 0]).into_release_error().is_expired());
        assert!(matches!(
            tally_of(3, 2, &[2, 2, 1]).into_release_error(),
            Error::Taken { .. }
        ));
    }

    proptest! {
        #[test]
        fn verdict_needs_quorum_and_time(
            nodes in 1usize..=7,
            raise in 0usize..4,
            votes in proptest::collection::vec(0u8..4, 7),
            expiry_ms in 1u64..100_000,
            elapsed_ms in 0u64..200_000,
            factor in 0.0f64..1.0,
        ) {
            let quorum = (majority(nodes) + raise).min(nodes);
            let tally = tally_of(nodes, quorum, &votes[..nodes]);
            let yes = tally.yes();
            let expiry = Duration::from_millis(expiry_ms);
            let elapsed = Duration::from_millis(elapsed_ms);
            let d = drift(expiry, factor);
            match acquire_verdict(tally, expiry, elapsed, d) {
                Ok(left) => {
                    prop_assert!(yes >= quorum);
                    prop_assert!(left > Duration::ZERO);
                    prop_assert_eq!(left + elapsed + d, expiry);
                }
                Err(e) => prop_assert!(yes < quorum || elapsed + d >= expiry, "{e}"),
            }
        }

        #[test]
        fn decided_is_final(nodes in 1usize..=7, votes in proptest::collection::vec(0u8..4, 7)) {
            let quorum = majority(nodes);
            let mut t = Tally::new(nodes, quorum);
            let mut verdict = None;
            for (i, v) in votes[..nodes].iter().enumerate() {
                t.add(i, if v % 4 == 0 { Vote::Yes } else { Vote::Taken });
                if t.decided() && verdict.is_none() {
                    verdict = Some(t.reached());
                }
            }
            prop_assert!(t.decided());
            prop_assert_eq!(verdict, Some(t.reached()));
        }
    }
}
