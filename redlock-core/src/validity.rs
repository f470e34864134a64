//! The timing maths, as pure functions: quorum size, clock drift allowance, and the
//! validity left after a round. No I/O, no clock and no crate types here, so property
//! tests can hammer it.

use std::time::Duration;

/// The fixed part of the drift allowance, for Redis's own expiry granularity.
pub const DRIFT_FLOOR: Duration = Duration::from_millis(2);

/// The smallest quorum for `nodes` nodes: a strict majority.
pub fn majority(nodes: usize) -> usize {
    nodes / 2 + 1
}

/// The clock drift allowance for a TTL of `ttl`: `ttl * factor + 2 ms`, saturating.
pub fn drift(ttl: Duration, factor: f64) -> Duration {
    let scaled = Duration::try_from_secs_f64(ttl.as_secs_f64() * factor).unwrap_or(Duration::MAX);
    scaled.saturating_add(DRIFT_FLOOR)
}

/// The time a lock stays valid after a round that took `elapsed` to set a TTL of `ttl`:
/// `ttl - elapsed - drift`, or `None` when nothing is left.
///
/// `ttl` must be the TTL the nodes were sent, not the expiry asked for: Redis counts
/// whole milliseconds, so an expiry of 10.9 ms sets a 10 ms TTL.
pub fn validity(ttl: Duration, elapsed: Duration, drift: Duration) -> Option<Duration> {
    ttl.checked_sub(elapsed)?
        .checked_sub(drift)
        .filter(|left| !left.is_zero())
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

    proptest! {
        #[test]
        fn validity_never_exceeds_ttl_less_elapsed_and_drift(
            ttl_ms in 0u64..1_000_000,
            elapsed_us in 0u64..2_000_000_000,
            factor in 0.0f64..1.0,
        ) {
            let ttl = Duration::from_millis(ttl_ms);
            let elapsed = Duration::from_micros(elapsed_us);
            let d = drift(ttl, factor);
            match validity(ttl, elapsed, d) {
                Some(left) => prop_assert_eq!(left + elapsed + d, ttl),
                None => prop_assert!(elapsed + d >= ttl),
            }
        }
    }
}
