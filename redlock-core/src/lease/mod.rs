//! Leases: a held lock that keeps itself alive, [`Lease`], and the handle that tells the
//! protected work when it is lost, [`LeaseSignal`]. Running work under a lease is in
//! `run`.

mod renewer;
mod run;
mod signal;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::conn::Pool;
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::runtime;

use renewer::{Command, Renewer};
use signal::Shared;
pub use signal::{LeaseSignal, LeaseState};

/// A held lock that keeps itself alive: one background task extends it before its
/// validity runs low, until it is unlocked, detached or dropped, or lost.
///
/// Get one from [`Mutex::lease`](crate::Mutex::lease) or [`Guard::keep_alive`]; the work it protects watches
/// [`Lease::signal`]. Renewals follow [`Guard::extend`] (refresh only where the key still
/// holds our value, re-create only with [`Options::recreate_on_extend`]), start when about
/// [`Options::renew_factor`] of the usable time is left, and are retried after the retry
/// delay while one can still finish before the lease ends. The lease is lost, and stays
/// lost, at the first of: a renewal finding another owner or the key gone, renewals
/// failing until no time is left for another, its end (validity less
/// [`Options::safety_margin`]), [`Options::max_hold`], or the holder ending it. A lost
/// lease is not renewed and not released: that is left to the holder, once the work has
/// stopped, so that the lock cannot pass to another owner while the work still runs.
///
/// A lease adds no round trip to acquiring or releasing, and one task per lease.
///
/// Dropping a lease releases the lock in the background, after any renewal in flight;
/// as with [`Guard`], that needs the lease's tokio runtime to still run.
///
/// [`Options::recreate_on_extend`]: crate::Options::recreate_on_extend
/// [`Options::renew_factor`]: crate::Options::renew_factor
/// [`Options::safety_margin`]: crate::Options::safety_margin
/// [`Options::max_hold`]: crate::Options::max_hold
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use redlock_core::{Options, Redlock, memory::MemoryPool};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> redlock_core::Result<()> {
/// let nodes = vec![MemoryPool::new(), MemoryPool::new(), MemoryPool::new()];
/// let redlock = Redlock::with_options(nodes, Options::new().expiry(Duration::from_secs(5)))?;
/// let lease = redlock.mutex("report:daily")?.lease().await?;
/// let signal = lease.signal().clone();
/// tokio::select! {
///     reason = signal.lost() => println!("lost: {reason}"),
///     () = tokio::time::sleep(Duration::from_millis(10)) => println!("work done"),
/// }
/// lease.unlock().await?;
/// # Ok(()) }
/// ```
#[must_use = "dropping the lease releases the lock"]
pub struct Lease {
    commands: mpsc::Sender<Command>,
    signal: LeaseSignal,
    value: Arc<str>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("name", &self.signal.name())
            .field("state", &self.signal.state())
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// The lock's name.
    pub fn name(&self) -> &str {
        self.signal.name()
    }

    /// The value that marks this holder on every node; see [`Guard::value`].
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The fencing token, for a fenced lock; see [`Guard::token`].
    pub fn token(&self) -> Option<crate::fence::Token> {
        self.signal.token()
    }

    /// The lease's state, for the work it protects: clone it into any task.
    pub fn signal(&self) -> &LeaseSignal {
        &self.signal
    }

    /// Renews the lease now, in turn with the automatic renewals (never at the same time).
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] when the lease is lost, or this renewal lost it; otherwise the
    /// renewal's failure, as [`Guard::extend`] reports it, after which the lease retries
    /// by itself while there is time.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future part-way lets the renewal finish; its outcome is in the signal.
    pub async fn extend(&self) -> Result<()> {
        let (reply, outcome) = oneshot::channel();
        if self.commands.send(Command::Extend(reply)).await.is_err() {
            return Err(self.ended());
        }
        outcome.await.unwrap_or_else(|_| Err(self.ended()))
    }

    /// Stops the renewals, waits for one in flight, then releases the lock on every node
    /// and reports how that went, as [`Guard::unlock`] does. The signal reads
    /// [`LostReason::Released`](crate::LostReason::Released) from the moment the renewals
    /// stop, unless the lease was lost before.
    ///
    /// # Errors
    ///
    /// As [`Guard::unlock`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future part-way releases the lock all the same, in the background.
    pub async fn unlock(self) -> Result<()> {
        let (reply, outcome) = oneshot::channel();
        if self.commands.send(Command::Unlock(reply)).await.is_err() {
            return Err(self.ended());
        }
        outcome.await.unwrap_or_else(|_| Err(self.ended()))
    }

    /// Stops the renewals, waits for one in flight, and lets go of the lock without
    /// releasing it; returns its value, as [`Guard::detach`] does, or `None` when the
    /// lease's task is gone (its runtime shut down).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future part-way releases the lock, as dropping the lease does, unless
    /// the value was already on its way, in which case the keys expire by themselves.
    pub async fn detach(self) -> Option<String> {
        let (reply, outcome) = oneshot::channel();
        self.commands.send(Command::Detach(reply)).await.ok()?;
        outcome.await.ok()
    }

    /// The error for a lease whose task is gone.
    fn ended(&self) -> Error {
        // A task that ended without its holder recorded the loss (`Abandoned`) as it went.
        self.signal.lost_error()
    }
}

/// [`Guard::keep_alive`] failed; the guard is handed back, still held.
pub struct KeepAliveError<P: Pool> {
    // Boxed: a `Result` carrying it stays small.
    refused: Box<(Error, Guard<P>)>,
}

impl<P: Pool> KeepAliveError<P> {
    /// Why.
    pub fn error(&self) -> &Error {
        &self.refused.0
    }

    /// The guard, still held.
    pub fn into_guard(self) -> Guard<P> {
        self.refused.1
    }

    /// The error; the guard is dropped, which releases the lock.
    pub fn into_error(self) -> Error {
        self.refused.0
    }
}

impl<P: Pool> std::fmt::Debug for KeepAliveError<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeepAliveError")
            .field("error", self.error())
            .field("guard", &self.refused.1)
            .finish()
    }
}

impl<P: Pool> std::fmt::Display for KeepAliveError<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lock {:?} not kept alive", self.refused.1.name())
    }
}

impl<P: Pool> std::error::Error for KeepAliveError<P> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.error())
    }
}

impl<P: Pool> From<KeepAliveError<P>> for Error {
    /// The error; the guard is dropped, which releases the lock.
    fn from(refused: KeepAliveError<P>) -> Self {
        refused.into_error()
    }
}

impl<P: Pool> Guard<P> {
    /// Turns the guard into a [`Lease`] that keeps itself alive, with the timing of the
    /// lock's options ([`Options::renew_factor`](crate::Options::renew_factor),
    /// [`Options::safety_margin`](crate::Options::safety_margin),
    /// [`Options::max_hold`](crate::Options::max_hold), the last counted from now).
    /// Sends nothing: the first renewal is due when about a third of the usable time is
    /// left, or at once if less is.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the options leave a lease no time to renew, or outside a
    /// tokio runtime with timers; the guard comes back in the error, still held.
    pub fn keep_alive(self) -> Result<Lease, KeepAliveError<P>> {
        let lead = match lease_check(self.target().settings()) {
            Ok(lead) => lead,
            Err(error) => {
                let refused = Box::new((error, self));
                return Err(KeepAliveError { refused });
            }
        };
        let options = &self.target().settings().options;
        let (margin, max_hold) = (options.get_safety_margin(), options.get_max_hold());
        let name = self.target().name().clone();
        let (token, valid_until) = (self.token(), self.valid_until());
        let shared = Arc::new(Shared::new(name, token, valid_until, margin, max_hold));
        let value: Arc<str> = self.value().into();
        let (commands, receiver) = mpsc::channel(1);
        let renewer = Renewer::new(self, shared.clone(), receiver, lead);
        // One task per lease; it ends when the lease is unlocked, detached or dropped.
        drop(tokio::spawn(renewer.run()));
        Ok(Lease {
            commands,
            signal: LeaseSignal::new(shared),
            value,
        })
    }
}

/// What starting a lease needs: lease options that leave time to renew, and timers.
pub(crate) fn lease_check(settings: &crate::settings::Settings) -> Result<std::time::Duration> {
    let lead = settings.renew_lead()?;
    runtime::check()?;
    Ok(lead)
}
