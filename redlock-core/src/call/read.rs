//! How a node's reply to a call is read as a vote.

use std::time::Duration;

use crate::conn::{ConnError, ConnErrorKind, Reply};
use crate::tally::Vote;

/// Reads a reply that may carry a node's fence (`[refused, fence]`, from the fenced
/// acquire) as a vote and the fence; any other reply as [`read_vote`] does.
pub(super) fn read_fenced(reply: Result<Reply, ConnError>, tag: i64) -> (Vote, Option<u64>) {
    let Ok(Reply::Array(items)) = &reply else {
        return (read_vote(reply, tag), None);
    };
    match items[..] {
        [Reply::Int(0), Reply::Int(fence @ 0..)] => (Vote::Stale, Some(fence.unsigned_abs())),
        [Reply::Int(refused @ ..=-1), Reply::Int(fence @ 0..)] => (
            read_vote(Ok(Reply::Int(refused)), tag),
            Some(fence.unsigned_abs()),
        ),
        // A fence no client wrote (a key set by hand to a huge or odd number): not a
        // connection out of step, so no reconnect can fix it.
        [Reply::Int(_), Reply::Int(..=-1)] => (unexpected(&Reply::Array(items.clone())), None),
        _ => (read_vote(reply, tag), None),
    }
}

pub(super) fn read_vote(reply: Result<Reply, ConnError>, tag: i64) -> Vote {
    match reply {
        Ok(Reply::Int(0)) => Vote::Absent,
        Ok(Reply::Int(-1)) => Vote::Taken(None),
        // Another value holds the key for this many more milliseconds.
        Ok(Reply::Int(held @ ..=-2)) => {
            let ms = u64::try_from((-2_i64).saturating_sub(held)).unwrap_or(0);
            Vote::Taken(Some(Duration::from_millis(ms)))
        }
        Ok(Reply::Int(echo)) if echo == tag => Vote::Yes,
        Ok(Reply::Array(items)) => match items[..] {
            // Released, and the release reached subscribers.
            [Reply::Int(echo), Reply::Int(1..)] if echo == tag => Vote::YesHeard,
            [Reply::Int(_), Reply::Int(_)] => out_of_step(),
            _ => unexpected(&Reply::Array(items)),
        },
        Ok(Reply::Int(_)) => out_of_step(),
        Ok(other) => unexpected(&other),
        Err(e) => Vote::Failed(e),
    }
}

/// A connection out of step with its calls handed on another call's reply: retryable,
/// and a new connection fixes it if it goes on.
fn out_of_step() -> Vote {
    Vote::Failed(ConnError::new(
        ConnErrorKind::Connection,
        "the reply belongs to another call: the connection handed on a late reply",
    ))
}

fn unexpected(reply: &Reply) -> Vote {
    let message = format!("unexpected script reply: {}", reply.shape());
    Vote::Failed(ConnError::new(ConnErrorKind::Protocol, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ConnErrorKind;
    #[test]
    fn only_the_calls_own_tag_is_a_yes() {
        assert!(matches!(read_vote(Ok(Reply::Int(31)), 31), Vote::Yes));
        assert!(matches!(read_vote(Ok(Reply::Int(0)), 31), Vote::Absent));
        assert!(matches!(
            read_vote(Ok(Reply::Int(-1)), 31),
            Vote::Taken(None)
        ));
        let held = Some(Duration::from_millis(250));
        assert!(matches!(read_vote(Ok(Reply::Int(-252)), 31), Vote::Taken(t) if t == held));
        let now = Some(Duration::ZERO);
        assert!(matches!(read_vote(Ok(Reply::Int(-2)), 31), Vote::Taken(t) if t == now));
        for stale in [30, 1] {
            let vote = read_vote(Ok(Reply::Int(stale)), 31);
            assert!(matches!(vote, Vote::Failed(ref e) if e.kind() == ConnErrorKind::Connection));
        }
        let heard = |tag, n| Ok(Reply::Array(vec![Reply::Int(tag), Reply::Int(n)]));
        assert!(matches!(read_vote(heard(31, 2), 31), Vote::YesHeard));
        let stale = read_vote(heard(30, 2), 31);
        assert!(matches!(stale, Vote::Failed(ref e) if e.kind() == ConnErrorKind::Connection));
        let fenced =
            |refused, fence| Ok(Reply::Array(vec![Reply::Int(refused), Reply::Int(fence)]));
        assert!(matches!(
            read_fenced(fenced(0, 9), 31),
            (Vote::Stale, Some(9))
        ));
        let taken = read_fenced(fenced(-252, 9), 31);
        assert!(matches!(taken, (Vote::Taken(t), Some(9)) if t == held));
        assert!(matches!(
            read_fenced(fenced(-1, 0), 31),
            (Vote::Taken(None), Some(0))
        ));
        assert!(matches!(
            read_fenced(Ok(Reply::Int(31)), 31),
            (Vote::Yes, None)
        ));
        let odd = read_fenced(fenced(0, -3), 31);
        assert!(matches!(odd, (Vote::Failed(ref e), None) if e.kind() == ConnErrorKind::Protocol));
        let odd = read_vote(Ok(Reply::Array(vec![Reply::Int(31)])), 31);
        assert!(matches!(odd, Vote::Failed(ref e) if e.kind() == ConnErrorKind::Protocol));
        for odd in [Reply::Nil, Reply::Data(b"31".to_vec())] {
            let vote = read_vote(Ok(odd), 31);
            assert!(matches!(vote, Vote::Failed(ref e) if e.kind() == ConnErrorKind::Protocol));
        }
    }
}
