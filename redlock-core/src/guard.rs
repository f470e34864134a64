//! A held lock, [`Guard`].

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::conn::Pool;
use crate::error::Result;
use crate::fan_out::InFlight;
use crate::fence::Token;
use crate::observe::{self, HeldCall};
use crate::round::{Held, Target};
use crate::settings::{Settings, Ttl};

/// A held lock: proof that a quorum of nodes held this lock's value at acquire time.
///
/// The lock is only safe to rely on until [`Guard::valid_until`]; do the protected work
/// within [`Guard::remaining`], or [`Guard::extend`] it first. For work longer than one
/// expiry, [`Guard::keep_alive`] turns it into a [`Lease`](crate::Lease) that renews
/// itself and says when it is lost.
///
/// Dropping a guard without [`Guard::unlock`] releases the lock in the background. That
/// needs the tokio runtime the lock ran on: a guard dropped after its runtime shut down,
/// or while it shuts down (as a task it was held by is dropped), sends nothing, and its
/// keys stay until they expire. Call `unlock().await` before a runtime ends.
///
/// `Debug` shows the lock's name and validity, never its value: the value is what another
/// process needs to take the lock over.
#[must_use = "dropping the guard releases the lock"]
pub struct Guard<P: Pool> {
    target: Target<P>,
    value: Arc<str>,
    valid_until: Instant,
    held: bool,
    /// The acquire's calls still in flight: waited for before releasing, so that a late
    /// `SET` cannot land after the release.
    in_flight: InFlight,
    token: Option<Token>,
}

impl<P: Pool> std::fmt::Debug for Guard<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("name", self.target.name())
            .field("valid_until", &self.valid_until)
            .finish_non_exhaustive()
    }
}

impl<P: Pool> Guard<P> {
    pub(crate) fn new(target: Target<P>, held: Held) -> Self {
        Self {
            target,
            value: held.value,
            valid_until: held.valid_until,
            held: true,
            in_flight: held.in_flight,
            token: held.token,
        }
    }

    pub(crate) fn target(&self) -> &Target<P> {
        &self.target
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        self.target.name()
    }

    /// The random value that marks this holder on every node. Hand it to another process,
    /// with [`Options::value`](crate::Options::value), to let it take the lock over.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The fencing token of this holding, for a fenced lock
    /// ([`Options::fenced`](crate::Options::fenced)); `None` otherwise.
    ///
    /// It is larger than the token of every holding of this lock that began before this
    /// one (`FENCING.md` states the assumptions). Send it with every write to the
    /// protected resource, which keeps the largest token it has seen and refuses writes
    /// under a smaller one ([`fence::fenced_set`](crate::fence::fenced_set) for data in
    /// Redis): a holder paused past its validity is then refused, not obeyed.
    ///
    /// # Examples
    ///
    /// ```
    /// use redlock_core::{Options, Redlock, memory::MemoryPool};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> redlock_core::Result<()> {
    /// let nodes = vec![MemoryPool::new(), MemoryPool::new(), MemoryPool::new()];
    /// let redlock = Redlock::with_options(nodes, Options::new().fenced(true))?;
    /// let first = redlock.lock("invoice:42").await?;
    /// let one = first.token();
    /// first.unlock().await?;
    /// let second = redlock.lock("invoice:42").await?;
    /// assert!(second.token() > one);
    /// # Ok(()) }
    /// ```
    pub fn token(&self) -> Option<Token> {
        self.token
    }

    /// The instant, on this process's monotonic clock, until which the lock is valid.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// The validity left; zero once it has run out.
    pub fn remaining(&self) -> Duration {
        self.valid_until.saturating_duration_since(Instant::now())
    }

    /// Whether validity is left.
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.valid_until
    }

    /// Extends the lock by its expiry, counted from now.
    ///
    /// # Errors
    ///
    /// [`Error::Expired`](crate::Error::Expired) when the key is gone from too many nodes,
    /// [`Error::Taken`](crate::Error::Taken) when another owner holds it on a node,
    /// [`Error::NoQuorum`](crate::Error::NoQuorum) when too many nodes failed. A failed
    /// extend deletes nothing. Since the new TTL takes effect on every node it reaches,
    /// [`Guard::valid_until`] is first capped at what the new TTL allows (it only moves
    /// earlier when the new TTL is shorter than what was left), then moved forward on
    /// success.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future part-way may leave some nodes extended; nothing is deleted, and
    /// the guard's validity is already capped as above.
    pub async fn extend(&mut self) -> Result<()> {
        let settings = self.target.settings();
        let (ttl, drift) = (settings.ttl.clone(), settings.drift);
        self.extend_by(&ttl, drift).await
    }

    /// Extends the lock by `expiry` instead of the lock's own, counted from now.
    ///
    /// Restart quarantine ([`Options::quarantine`](crate::Options::quarantine)) protects a
    /// holding only if every client's period is at least the longest TTL any key gets:
    /// with the default period (the lock's expiry plus drift), an `expiry` longer than the
    /// lock's leaves a window in which a node that restarted empty votes while this
    /// holding is still valid. Set the period to cover the longest `expiry` you extend to.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) when `expiry` is out of range (checked before
    /// anything is sent); otherwise as [`Guard::extend`].
    ///
    /// # Cancel safety
    ///
    /// As [`Guard::extend`].
    pub async fn extend_to(&mut self, expiry: Duration) -> Result<()> {
        let options = self.target.settings().options.clone().expiry(expiry);
        let checked = Settings::new(&options, self.target.node_count())?;
        self.extend_by(&checked.ttl, checked.drift).await
    }

    async fn extend_by(&mut self, ttl: &Ttl, drift: Duration) -> Result<()> {
        let span = observe::call_span(HeldCall::Extend, self.target.name());
        let extended = observe::instrument(&span, self.extend_in(ttl, drift)).await;
        let until = Some(self.valid_until);
        observe::call_end(
            &span,
            HeldCall::Extend,
            extended.as_ref().err(),
            until,
            None,
        );
        extended
    }

    async fn extend_in(&mut self, ttl: &Ttl, drift: Duration) -> Result<()> {
        let start = Instant::now();
        let cap = (start + ttl.duration()).checked_sub(drift);
        self.valid_until = cap.map_or(start, |cap| self.valid_until.min(cap));
        let extended = self.target.extend(&self.value, ttl, drift, start);
        self.valid_until = extended.await?;
        Ok(())
    }

    /// Lets go of the lock without releasing it, and returns its value: the way to hand
    /// the lock to another process, which takes it over with
    /// [`Options::value`](crate::Options::value) and [`Mutex::adopt`](crate::Mutex::adopt).
    /// The keys stay until they expire or the new holder releases them.
    #[must_use = "the value is the only way to reach the lock once the guard is gone"]
    pub fn detach(mut self) -> String {
        self.held = false;
        self.value.to_string()
    }

    /// Releases the lock on every node and reports how that went.
    ///
    /// # Errors
    ///
    /// [`Error::Expired`](crate::Error::Expired) when the key had already expired on too
    /// many nodes (the protected work may have overrun the lock),
    /// [`Error::Taken`](crate::Error::Taken) when another owner holds it on a node,
    /// [`Error::NoQuorum`](crate::Error::NoQuorum) when too many nodes failed. In every
    /// case the keys that were still ours are deleted.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future part-way drops the guard, which releases in the background.
    pub async fn unlock(mut self) -> Result<()> {
        let span = observe::call_span(HeldCall::Unlock, self.target.name());
        let unlock = self.target.unlock(&self.value, &mut self.in_flight);
        let unlocked = observe::instrument(&span, unlock).await;
        self.held = false;
        observe::call_end(&span, HeldCall::Unlock, unlocked.as_ref().err(), None, None);
        unlocked
    }
}

impl<P: Pool> Drop for Guard<P> {
    fn drop(&mut self) {
        if self.held {
            let (all, in_flight) = (self.target.all_nodes(), self.in_flight.take());
            self.target
                .release_in_background(all, in_flight, &self.value, true);
        }
    }
}
