//! The getters of [`Options`]: what each setter set, or its default.

use std::time::Duration;

use super::{Options, RetryDelay, ValueSource};
use crate::validity;

impl Options {
    /// The period set by [`Options::quarantine`]; `None` for the default (the expiry plus
    /// the drift allowance).
    pub fn get_quarantine(&self) -> Option<Duration> {
        self.quarantine
    }

    /// The replicas set by [`Options::durable_votes`], when durable votes are on.
    pub fn get_durable_votes(&self) -> Option<u32> {
        self.durable_votes
    }

    /// Whether [`Options::fenced`] is set.
    pub fn get_fenced(&self) -> bool {
        self.fenced
    }

    /// The tolerance set by [`Options::fence_loss_tolerance`].
    pub fn get_fence_loss_tolerance(&self) -> usize {
        self.fence_loss_tolerance
    }

    /// The expiry set by [`Options::expiry`].
    ///
    /// Getters are named `get_*` because the builder's setters take the plain names (as in
    /// `std::process::Command`).
    pub fn get_expiry(&self) -> Duration {
        self.expiry
    }

    /// The number of attempts set by [`Options::tries`].
    pub fn get_tries(&self) -> u32 {
        self.tries
    }

    /// The bounds set by [`Options::retry_delay`], or `None` after
    /// [`Options::retry_delay_fn`].
    pub fn get_retry_delay(&self) -> Option<(Duration, Duration)> {
        match self.retry_delay {
            RetryDelay::Uniform(min, max) => Some((min, max)),
            RetryDelay::Custom(_) => None,
        }
    }

    /// The factor set by [`Options::drift_factor`].
    pub fn get_drift_factor(&self) -> f64 {
        self.drift_factor
    }

    /// The factor set by [`Options::timeout_factor`].
    pub fn get_timeout_factor(&self) -> f64 {
        self.timeout_factor
    }

    /// The per-node timeout these options give: expiry × timeout factor (saturating; zero
    /// for a factor that is not a number, which building a lock rejects).
    pub fn get_node_timeout(&self) -> Duration {
        let secs = self.expiry.as_secs_f64() * self.timeout_factor;
        Duration::try_from_secs_f64(secs).unwrap_or(if secs > 0.0 {
            Duration::MAX
        } else {
            Duration::ZERO
        })
    }

    /// The clock drift allowance these options give: the TTL sent (whole milliseconds of
    /// the expiry) × drift factor, plus 2 ms.
    pub fn get_drift(&self) -> Duration {
        validity::drift(whole_ms(self.expiry), self.drift_factor.clamp(0.0, 1.0))
    }

    /// The setting of [`Options::fail_fast`].
    pub fn get_fail_fast(&self) -> bool {
        self.fail_fast
    }

    /// The setting of [`Options::shuffle_nodes`].
    pub fn get_shuffle_nodes(&self) -> bool {
        self.shuffle
    }

    /// The setting of [`Options::recreate_on_extend`].
    pub fn get_recreate_on_extend(&self) -> bool {
        self.recreate_on_extend
    }

    /// The quorum set by [`Options::quorum`], or `None` for a majority.
    pub fn get_quorum(&self) -> Option<usize> {
        self.quorum
    }

    /// The setting of [`Options::notify_release`].
    pub fn get_notify_release(&self) -> bool {
        self.notify_release
    }

    /// The margin set by [`Options::safety_margin`].
    pub fn get_safety_margin(&self) -> Duration {
        self.safety_margin
    }

    /// The maximum set by [`Options::max_hold`], or `None` for none.
    pub fn get_max_hold(&self) -> Option<Duration> {
        self.max_hold
    }

    /// The factor set by [`Options::renew_factor`].
    pub fn get_renew_factor(&self) -> f64 {
        self.renew_factor
    }

    /// The fixed value set by [`Options::value`], if any.
    pub fn get_value(&self) -> Option<&str> {
        match &self.value {
            ValueSource::Fixed(value) => Some(value),
            ValueSource::Random | ValueSource::Generator(_) => None,
        }
    }
}

/// `d` cut to whole milliseconds, as Redis counts a TTL.
fn whole_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
