//! A recorded history of lock holdings, and the checker that finds overlaps in it.

use tokio::time::Instant;

/// One holding of a lock, on the recording process's monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holding {
    /// Which client held it.
    pub client: usize,
    /// When the acquire call returned the guard.
    pub acquired: Instant,
    /// When the holder stopped relying on it: the unlock call, or the validity deadline if
    /// that came first.
    pub released: Instant,
}

impl Holding {
    /// A holding from `acquired` until the earlier of `unlock_called` and `valid_until`.
    pub fn new(
        client: usize,
        acquired: Instant,
        unlock_called: Instant,
        valid_until: Instant,
    ) -> Self {
        Self {
            client,
            acquired,
            released: unlock_called.min(valid_until),
        }
    }
}

/// Overlapping holdings, as pairs of indexes into `history`: empty if and only if no two
/// windows overlap. A sweep in acquire order compares each holding with the one released
/// last so far, so every violation shows up, though not every overlapping pair is listed.
pub fn overlaps(history: &[Holding]) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..history.len()).collect();
    order.sort_by_key(|&i| history[i].acquired);
    let mut found = Vec::new();
    let mut latest: Option<usize> = None;
    for &i in &order {
        if let Some(j) = latest {
            if history[i].acquired < history[j].released {
                found.push((j, i));
            }
            if history[i].released > history[j].released {
                latest = Some(i);
            }
        } else {
            latest = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn disjoint_windows_pass_and_overlapping_ones_fire() {
        let t = Instant::now();
        let ok = [
            Holding::new(0, at(t, 0), at(t, 10), at(t, 100)),
            Holding::new(1, at(t, 10), at(t, 20), at(t, 100)),
            Holding::new(2, at(t, 25), at(t, 90), at(t, 30)),
            Holding::new(0, at(t, 30), at(t, 40), at(t, 100)),
        ];
        assert!(overlaps(&ok).is_empty());
        let bad = [
            Holding::new(0, at(t, 0), at(t, 50), at(t, 100)),
            Holding::new(1, at(t, 10), at(t, 20), at(t, 100)),
            Holding::new(2, at(t, 30), at(t, 60), at(t, 100)),
        ];
        assert_eq!(overlaps(&bad), vec![(0, 1), (0, 2)]);
    }
}
