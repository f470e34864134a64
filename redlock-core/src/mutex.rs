//! One named lock, [`Mutex`]: the ways to acquire it.

use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use crate::conn::Pool;
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::listen::Hub;
use crate::options::Options;
use crate::round::Target;
use crate::wait;

/// One named lock over the manager's nodes. Cheap to clone.
///
/// Get one from [`Redlock::mutex`](crate::Redlock::mutex).
pub struct Mutex<P: Pool> {
    target: Target<P>,
    hub: Arc<Hub>,
}

impl<P: Pool> Clone for Mutex<P> {
    fn clone(&self) -> Self {
        Self {
            target: self.target.clone(),
            hub: self.hub.clone(),
        }
    }
}

impl<P: Pool> std::fmt::Debug for Mutex<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutex")
            .field("name", self.target.name())
            .field("nodes", &self.target.node_count())
            .field("quorum", &self.quorum())
            .finish_non_exhaustive()
    }
}

impl<P: Pool> Mutex<P> {
    pub(crate) fn new(target: Target<P>, hub: Arc<Hub>) -> Self {
        Self { target, hub }
    }

    pub(crate) fn target(&self) -> &Target<P> {
        &self.target
    }

    /// The lock's name, which is its key on every node.
    pub fn name(&self) -> &str {
        self.target.name()
    }

    /// How many nodes must agree.
    pub fn quorum(&self) -> usize {
        self.target.settings().quorum
    }

    /// The lock's options.
    pub fn options(&self) -> &Options {
        &self.target.settings().options
    }

    /// Acquires the lock, making up to [`Options::tries`] attempts with the retry delay
    /// between them.
    ///
    /// When another owner holds the lock, the wait between attempts ends early when the
    /// lock frees: the waiter listens on the lock's release channel (with
    /// [`Options::notify_release`], the default, and a driver that has a subscriber), is
    /// woken by the release, in turn with this manager's other waiters, and tries again at
    /// once; such attempts come on top of the tries. A call that finds this manager's
    /// waiters already queued for the lock joins the queue without an attempt of its own.
    /// The delay after a refusal is also cut short to when the holder's keys expire.
    ///
    /// An attempt sets the key, with a fresh value, on every node at once, each call
    /// bounded by the per-node timeout; it only creates keys, never takes one over. It
    /// succeeds when a quorum agreed and validity is left after subtracting the time taken
    /// and the drift allowance from the TTL sent; otherwise the key is released on every
    /// node that may hold the value before the next attempt.
    ///
    /// # Errors
    ///
    /// The last attempt's failure: [`Error::Taken`], [`Error::NoQuorum`] (with each failed
    /// node's error) or [`Error::ValidityExhausted`]. It stops before the last try when
    /// retrying cannot help ([`Error::is_retryable`]: say every node refused the
    /// credentials). [`Error::Config`] when the value generator returns an empty value, or
    /// when called outside a tokio runtime with timers enabled.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the sense that matters: dropping the future part-way (say, from a
    /// `tokio::select!` or `tokio::time::timeout`) leaves no key behind: a release is sent
    /// in the background to every node that may hold the attempt's value. Keys are left to
    /// expire only if the drop happens after the tokio runtime has shut down, and, for a
    /// value that might be another owner's ([`Options::value`],
    /// [`Options::value_generator`]), on nodes that had not confirmed it.
    pub async fn lock(&self) -> Result<Guard<P>> {
        let tries = self.options().get_tries();
        let held = wait::acquire(&self.target, &self.hub, tries, None, "lock").await?;
        Ok(Guard::new(self.target.clone(), held))
    }

    /// Makes one attempt to acquire the lock, at once: it neither waits nor queues.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`], from its single attempt.
    ///
    /// # Cancel safety
    ///
    /// As [`Mutex::lock`].
    pub async fn try_lock(&self) -> Result<Guard<P>> {
        let held = wait::acquire(&self.target, &self.hub, 1, None, "try_lock").await?;
        Ok(Guard::new(self.target.clone(), held))
    }

    /// Acquires the lock as [`Mutex::lock`] does, but gives up at `deadline`.
    ///
    /// An attempt still waiting for nodes at the deadline stops there: it succeeds if a
    /// quorum has agreed with validity left, and fails otherwise; its calls still in
    /// flight finish in the background, where they are released.
    ///
    /// # Errors
    ///
    /// [`Error::DeadlineExceeded`] when the deadline passes first; when polling (no
    /// release notifications), also as soon as it would pass during the next retry delay,
    /// since nothing could end that delay early. Its source is the failure of the attempt
    /// the deadline ended or cut short, if any. Otherwise as [`Mutex::lock`].
    ///
    /// # Cancel safety
    ///
    /// As [`Mutex::lock`].
    pub async fn lock_until(&self, deadline: Instant) -> Result<Guard<P>> {
        let tries = self.options().get_tries();
        let acquired = wait::acquire(&self.target, &self.hub, tries, Some(deadline), "lock_until");
        let held = acquired.await?;
        Ok(Guard::new(self.target.clone(), held))
    }

    /// Acquires the lock as [`Mutex::lock`] does, unless `cancel` completes first.
    ///
    /// `cancel` is any future: a `CancellationToken::cancelled()`, a shutdown channel, a
    /// signal handler.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] when `cancel` completes first; otherwise as [`Mutex::lock`].
    ///
    /// # Cancel safety
    ///
    /// As [`Mutex::lock`]; an attempt cut short by `cancel` is released in the background.
    pub async fn lock_or_cancel(&self, cancel: impl Future<Output = ()>) -> Result<Guard<P>> {
        tokio::select! {
            biased;
            () = cancel => Err(Error::Cancelled { lock: self.target.name().clone() }),
            result = self.lock() => result,
        }
    }

    /// Takes over a lock that another process acquired with the value set by
    /// [`Options::value`], by extending it on a quorum.
    ///
    /// The process handing the lock over must let go of its guard with
    /// [`Guard::detach`] (not drop it: a dropped guard releases the lock). Two processes
    /// adopting one value both get a guard: hand a value to one heir only.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when no fixed value was set; otherwise as [`Guard::extend`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future part-way may leave some nodes extended; the lock's keys are
    /// never deleted by this call.
    pub async fn adopt(&self) -> Result<Guard<P>> {
        let held = self.target.adopt().await?;
        Ok(Guard::new(self.target.clone(), held))
    }
}
