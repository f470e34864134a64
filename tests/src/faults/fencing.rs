//! What the checker reads from fenced holdings: tokens that must grow in the order
//! holdings begin, and writes of stalled holders that the resource must refuse.

use std::collections::HashMap;

use tokio::time::Instant;

use super::clients::{Entry, Op};

/// The fenced figures of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Fenced holdings with validity left when the lock call returned.
    pub holdings: usize,
    /// Holdings whose token was not above the token of every holding of that name that
    /// began before it.
    pub regressions: usize,
    /// Writes the resource took.
    pub writes: usize,
    /// Writes of holders that stalled past their lock, refused by the resource because a
    /// newer holder had written.
    pub stale_writes_rejected: usize,
    /// Writes of stalled holders the resource took: nobody had written since.
    pub stale_writes_taken: usize,
    /// Writes of holders that did not stall, refused all the same: the write left
    /// within the lock but reached the resource after a newer holder's (its lock ended
    /// on the way). Not a fault of the lock: the overlap check judges the holdings.
    pub late_writes_rejected: usize,
    /// Writes whose call failed.
    pub failed_writes: usize,
}

/// Reads the fenced holdings and writes of `history`.
///
/// Holdings are taken in the order their lock calls returned, among those that had
/// validity left then: for two such holdings of one name, the one that returned first
/// also began first (had it begun second, its validity would have ended before the other
/// began, so before it returned).
pub fn tokens(history: &[Entry]) -> Tokens {
    let mut figures = Tokens::default();
    let mut holdings: Vec<(usize, Instant, u64)> = Vec::new();
    for entry in history {
        match entry.op {
            Op::Fenced { token, valid_until } if entry.at < valid_until => {
                holdings.push((entry.name, entry.at, token));
            }
            Op::FencedWrote {
                accepted, stalled, ..
            } => match (accepted, stalled) {
                (None, _) => figures.failed_writes += 1,
                (Some(true), false) => figures.writes += 1,
                (Some(true), true) => figures.stale_writes_taken += 1,
                (Some(false), true) => figures.stale_writes_rejected += 1,
                (Some(false), false) => figures.late_writes_rejected += 1,
            },
            _ => {}
        }
    }
    holdings.sort_by_key(|&(name, at, _)| (name, at));
    figures.holdings = holdings.len();
    let mut highest: HashMap<usize, u64> = HashMap::new();
    for (name, _, token) in holdings {
        let top = highest.entry(name).or_default();
        if token <= *top {
            figures.regressions += 1;
        }
        *top = (*top).max(token);
    }
    figures
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn held(name: usize, at: Instant, token: u64) -> Entry {
        let valid_until = at + Duration::from_secs(1);
        let op = Op::Fenced { token, valid_until };
        Entry {
            client: 0,
            name,
            at,
            op,
        }
    }

    #[test]
    fn a_token_not_above_an_earlier_holdings_is_a_regression() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let good = [held(0, ms(1), 1), held(1, ms(2), 1), held(0, ms(3), 2)];
        assert_eq!(tokens(&good).regressions, 0);
        assert_eq!(tokens(&good).holdings, 3);
        let bad = [held(0, ms(1), 2), held(0, ms(3), 2), held(0, ms(4), 1)];
        assert_eq!(tokens(&bad).regressions, 2);
        let mut late = held(0, ms(5), 1);
        late.op = Op::Fenced {
            token: 1,
            valid_until: ms(4),
        };
        assert_eq!(
            tokens(&[held(0, ms(1), 2), late]).regressions,
            0,
            "no validity left"
        );
    }
}
