//! Counting votes: one node's answer ([`Vote`]), sets of nodes ([`NodeSet`]), and the
//! votes of one round ([`Tally`]), which decides whether a quorum agreed and, if not, why.

use std::sync::Arc;
use std::time::Duration;

use crate::conn::{ConnError, ConnErrorKind};
use crate::error::{Action, Error};
use crate::node_error::NodeError;
use crate::options::MAX_NODES;

/// One node's answer to one call.
#[derive(Debug)]
pub(crate) enum Vote {
    /// The key holds our value (set, refreshed or deleted as asked).
    Yes,
    /// Our key was deleted, and its release reached subscribers: someone waits.
    YesHeard,
    /// The key is absent.
    Absent,
    /// Another value holds the key, for this much longer if the node said.
    Taken(Option<Duration>),
    /// The fencing token proposed was not above the node's fence.
    Stale,
    /// The key was set, but the node restarted too recently for its vote to count: it
    /// stays in quarantine this much longer.
    Young(Duration),
    /// The node failed or timed out.
    Failed(ConnError),
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

    /// Adds `node`; nodes at or above [`MAX_NODES`] cannot occur (`Settings::new`
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

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
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

/// What an error about a round names besides its votes.
pub(crate) struct Subject<'a> {
    /// The lock's name.
    pub(crate) lock: &'a Arc<str>,
    /// What the round was for.
    pub(crate) action: Action,
    /// Each node's address, by index.
    pub(crate) addresses: &'a [Option<Arc<str>>],
}

/// The votes of one round across all nodes.
#[derive(Debug)]
pub(crate) struct Tally {
    nodes: usize,
    quorum: usize,
    answered: NodeSet,
    yes: NodeSet,
    taken: NodeSet,
    stale: NodeSet,
    /// The nodes in quarantine that set the key, with how much longer each stays there.
    young: Vec<(usize, Duration)>,
    /// How much longer the key holds another value, on each taken node that said.
    held_for: Vec<Duration>,
    /// Whether a taken node did not say how long.
    held_unknown: bool,
    errors: Vec<(usize, ConnError)>,
}

impl Tally {
    pub(crate) fn new(nodes: usize, quorum: usize) -> Self {
        Self {
            nodes,
            quorum,
            answered: NodeSet::default(),
            yes: NodeSet::default(),
            taken: NodeSet::default(),
            stale: NodeSet::default(),
            young: Vec::new(),
            held_for: Vec::new(),
            held_unknown: false,
            errors: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, node: usize, vote: Vote) {
        self.answered.insert(node);
        match vote {
            Vote::Yes | Vote::YesHeard => self.yes.insert(node),
            // Counted as answered; nothing else decides on it.
            Vote::Absent => {}
            Vote::Taken(held_for) => {
                self.taken.insert(node);
                match held_for {
                    Some(held_for) => self.held_for.push(held_for),
                    None => self.held_unknown = true,
                }
            }
            Vote::Stale => self.stale.insert(node),
            Vote::Young(left) => self.young.push((node, left)),
            Vote::Failed(error) => self.errors.push((node, error)),
        }
    }

    /// Whether a node found the proposed fencing token not above its fence.
    pub(crate) fn has_stale(&self) -> bool {
        !self.stale.is_empty()
    }

    /// The nodes that voted yes.
    pub(crate) fn yes_nodes(&self) -> NodeSet {
        self.yes
    }

    /// The nodes that set the key: those that voted yes, and those in quarantine.
    pub(crate) fn set_nodes(&self) -> NodeSet {
        let mut set = self.yes;
        for &(node, _) in &self.young {
            set.insert(node);
        }
        set
    }

    /// The nodes that have answered (or failed).
    pub(crate) fn answered_nodes(&self) -> NodeSet {
        self.answered
    }

    /// How long until enough of the other owner's keys expire for a quorum of nodes to be
    /// free, counting only the nodes that answered (a failed node is not free); `None` when
    /// other owners were not what stood in the way, or a taken node did not say how long.
    pub(crate) fn frees_in(&self) -> Option<Duration> {
        if self.held_unknown {
            return None;
        }
        let failed = self.errors.len();
        let free = self.nodes.saturating_sub(self.taken.len() + failed);
        let needed = self.quorum.checked_sub(free).filter(|&n| n > 0)?;
        let mut held_for = self.held_for.clone();
        held_for.sort_unstable();
        held_for.get(needed - 1).copied()
    }

    /// The nodes whose key holds another value.
    pub(crate) fn taken_nodes(&self) -> NodeSet {
        self.taken
    }

    /// Whether a quorum said yes.
    pub(crate) fn reached(&self) -> bool {
        self.yes.len() >= self.quorum
    }

    /// Whether the outcome can no longer change: a quorum said yes, or too few nodes are
    /// left to reach one.
    pub(crate) fn decided(&self) -> bool {
        let open = self.nodes - self.answered.len();
        self.reached() || self.yes.len() + open < self.quorum
    }

    /// The error for an acquire round that did not reach a quorum: [`Error::Taken`] when
    /// every node answered and other owners hold a quorum. Takes the node errors out.
    pub(crate) fn error(&mut self, subject: &Subject<'_>) -> Error {
        let no_failures = self.errors.is_empty();
        if no_failures && self.taken.len() >= self.quorum {
            return self.taken_error(subject);
        }
        self.no_quorum(subject)
    }

    /// The error for an unlock or extend that did not reach a quorum, once every node
    /// answered: [`Error::Taken`] when another owner holds any node, [`Error::Expired`]
    /// when the key was simply gone; otherwise [`Error::NoQuorum`].
    pub(crate) fn held_error(&mut self, subject: &Subject<'_>) -> Error {
        match (self.errors.is_empty(), self.taken.is_empty()) {
            (true, false) => self.taken_error(subject),
            (true, true) => Error::Expired {
                lock: subject.lock.clone(),
                action: subject.action,
            },
            (false, _) => self.no_quorum(subject),
        }
    }

    fn taken_error(&self, subject: &Subject<'_>) -> Error {
        Error::Taken {
            lock: subject.lock.clone(),
            action: subject.action,
            nodes: self.taken.iter().collect(),
            total: self.nodes,
        }
    }

    fn no_quorum(&mut self, subject: &Subject<'_>) -> Error {
        let stale = self.stale.iter().map(|node| {
            let message = "the fencing token proposed was not above the node's fence";
            (node, ConnError::new(ConnErrorKind::Other, message))
        });
        let young = self.young.iter().map(|&(node, left)| {
            let message = format!("restarted too recently to vote: in quarantine {left:?} more");
            (node, ConnError::new(ConnErrorKind::Other, message))
        });
        let mut errors: Vec<NodeError> = std::mem::take(&mut self.errors)
            .into_iter()
            .chain(stale)
            .chain(young)
            .map(|(node, error)| NodeError {
                node,
                address: subject.addresses.get(node).cloned().flatten(),
                error,
            })
            .collect();
        errors.sort_unstable_by_key(|e| e.node);
        Error::NoQuorum {
            lock: subject.lock.clone(),
            action: subject.action,
            total: self.nodes,
            agreed: self.yes.len(),
            quorum: self.quorum,
            taken: self.taken.iter().collect(),
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ConnErrorKind;
    use crate::validity::majority;
    use proptest::prelude::*;

    fn tally_of(nodes: usize, quorum: usize, votes: &[u8]) -> Tally {
        let mut t = Tally::new(nodes, quorum);
        for (i, v) in votes.iter().enumerate() {
            let vote = match v % 4 {
                0 => Vote::Yes,
                1 => Vote::Absent,
                2 => Vote::Taken(None),
                _ => Vote::Failed(ConnError::new(ConnErrorKind::Connection, "down")),
            };
            t.add(i, vote);
        }
        t
    }

    fn subject(addresses: &[Option<Arc<str>>]) -> Subject<'_> {
        static LOCK: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| "l".into());
        Subject {
            lock: &LOCK,
            action: Action::Acquire,
            addresses,
        }
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
        let s = subject(&[]);
        let err = tally_of(3, 2, &[2, 2, 2]).error(&s);
        assert!(matches!(err, Error::Taken { ref nodes, .. } if nodes == &[0, 1, 2]));
        let err = tally_of(3, 2, &[2, 3, 0]).error(&s);
        assert!(
            err.is_no_quorum() && !err.is_taken(),
            "a down node could have made it"
        );
        assert_eq!(err.node_errors().len(), 1);
        assert_eq!(err.node_errors()[0].node, 1);
        let err = tally_of(3, 2, &[2, 2, 3]).error(&s);
        assert!(
            err.is_no_quorum() && err.is_taken(),
            "no quorum possible without the taken"
        );
        let err = tally_of(5, 3, &[2, 3, 3, 3, 0]).error(&s);
        assert!(!err.is_taken(), "one taken node, three down");
    }

    #[test]
    fn node_errors_carry_their_addresses() {
        let addresses = [Some("a:1".into()), None];
        let err = tally_of(2, 2, &[3, 3]).error(&subject(&addresses));
        let names: Vec<String> = err.node_errors().iter().map(NodeError::name).collect();
        assert_eq!(names, ["a:1", "node 1"]);
    }

    #[test]
    fn held_error_names_what_every_node_said() {
        let s = subject(&[]);
        assert!(tally_of(3, 2, &[1, 1, 0]).held_error(&s).is_expired());
        assert!(tally_of(3, 2, &[1, 3, 0]).held_error(&s).is_no_quorum());
        assert!(matches!(
            tally_of(3, 2, &[2, 2, 1]).held_error(&s),
            Error::Taken { .. }
        ));
        // One node ours, one taken by another owner, one empty: the lock was lost to
        // another owner, not merely expired.
        assert!(matches!(
            tally_of(3, 2, &[0, 2, 1]).held_error(&s),
            Error::Taken { ref nodes, .. } if nodes == &[1]
        ));
    }

    #[test]
    fn frees_in_is_when_a_quorum_of_keys_can_be_ours() {
        let ms = Duration::from_millis;
        let taken = |ttls: &[u64], free: usize, failed: usize| {
            let mut t = Tally::new(
                ttls.len() + free + failed,
                majority(ttls.len() + free + failed),
            );
            let mut node = 0;
            for &ttl in ttls {
                t.add(node, Vote::Taken(Some(ms(ttl))));
                node += 1;
            }
            for _ in 0..free {
                t.add(node, Vote::Absent);
                node += 1;
            }
            for _ in 0..failed {
                t.add(
                    node,
                    Vote::Failed(ConnError::new(ConnErrorKind::Connection, "down")),
                );
                node += 1;
            }
            t.frees_in()
        };
        // 3 nodes all taken: two must expire; the second soonest decides.
        assert_eq!(taken(&[300, 100, 200], 0, 0), Some(ms(200)));
        // 5 nodes, 2 free: one more of the three taken must expire.
        assert_eq!(taken(&[900, 400, 700], 2, 0), Some(ms(400)));
        // A failed node is not free: 2 taken, 1 failed of 3: both keys must go.
        assert_eq!(taken(&[50, 80], 0, 1), Some(ms(80)));
        // Too many failed nodes: expiring keys cannot make a quorum.
        assert_eq!(taken(&[50], 0, 2), None);
        // Nothing taken stood in the way.
        assert_eq!(taken(&[], 3, 0), None);
        // A node that did not say how long: no estimate.
        let mut t = Tally::new(3, 2);
        t.add(0, Vote::Taken(Some(ms(10))));
        t.add(1, Vote::Taken(None));
        t.add(2, Vote::Absent);
        assert_eq!(t.frees_in(), None);
    }

    proptest! {
        #[test]
        fn decided_is_final(nodes in 1usize..=7, votes in proptest::collection::vec(0u8..4, 7)) {
            let quorum = majority(nodes);
            let mut t = Tally::new(nodes, quorum);
            let mut verdict = None;
            for (i, v) in votes[..nodes].iter().enumerate() {
                t.add(i, if v % 4 == 0 { Vote::Yes } else { Vote::Taken(None) });
                if t.decided() && verdict.is_none() {
                    verdict = Some(t.reached());
                }
            }
            prop_assert!(t.decided());
            prop_assert_eq!(verdict, Some(t.reached()));
        }

        #[test]
        fn reached_means_a_quorum_said_yes(
            nodes in 1usize..=7,
            raise in 0usize..4,
            votes in proptest::collection::vec(0u8..4, 7),
        ) {
            let quorum = (majority(nodes) + raise).min(nodes);
            let tally = tally_of(nodes, quorum, &votes[..nodes]);
            let yes = votes[..nodes].iter().filter(|v| *v % 4 == 0).count();
            prop_assert_eq!(tally.reached(), yes >= quorum);
        }
    }
}
