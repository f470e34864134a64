//! Running work under a lease: [`Mutex::lease`], [`Mutex::run`] and [`Lease::run`].

use std::future::Future;

use crate::conn::Pool;
use crate::error::{Error, Result};
use crate::lease::{KeepAliveError, Lease, LeaseSignal, lease_check};
use crate::mutex::Mutex;

impl<P: Pool> Mutex<P> {
    /// Acquires the lock as [`Mutex::lock`] does and keeps it alive, as
    /// [`Guard::keep_alive`](crate::Guard::keep_alive) does.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the options leave a lease no time to renew (checked before
    /// anything is sent); otherwise as [`Mutex::lock`].
    ///
    /// # Cancel safety
    ///
    /// As [`Mutex::lock`].
    pub async fn lease(&self) -> Result<Lease> {
        lease_check(self.target().settings())?;
        let guard = self.lock().await?;
        guard.keep_alive().map_err(KeepAliveError::into_error)
    }

    /// Runs `work` under the lock: acquires it as [`Mutex::lease`] does, runs the future
    /// `work` returns, and releases the lock when it ends, on every path.
    ///
    /// `work` gets the lease's [`LeaseSignal`], to check right before each side effect
    /// ([`LeaseSignal::check`]) or hand to other tasks. The moment the lease is lost (at
    /// the latest at its end: validity less [`Options::safety_margin`]), the future is
    /// dropped, so it stops at its next `.await`, and this returns [`Error::Lost`] with the
    /// reason. A future that blocks a thread cannot be stopped so: work that does must
    /// watch the signal itself.
    ///
    /// The lock is released after the future is dropped or done: when it finishes, when
    /// it is lost, when it panics (the panic goes on once the release is under way in the
    /// background), and when this call is dropped. The work's output is returned even if
    /// the release then fails: the work ran while the lease was held, and keys that were
    /// not deleted expire by themselves.
    ///
    /// [`Options::safety_margin`]: crate::Options::safety_margin
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] when the lease was lost before the work finished; otherwise as
    /// [`Mutex::lease`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future part-way drops the work and releases the lock in the
    /// background.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use redlock_core::{Redlock, memory::MemoryPool};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> redlock_core::Result<()> {
    /// let redlock = Redlock::new(vec![MemoryPool::new(), MemoryPool::new(), MemoryPool::new()])?;
    /// let rows = redlock
    ///     .mutex("nightly-import")?
    ///     .run(|lease| async move {
    ///         // ... long work, checking before each write:
    ///         lease.check(Duration::from_millis(100))?;
    ///         Ok::<_, redlock_core::Error>(42)
    ///     })
    ///     .await??;
    /// assert_eq!(rows, 42);
    /// # Ok(()) }
    /// ```
    pub async fn run<F, Fut>(&self, work: F) -> Result<Fut::Output>
    where
        F: FnOnce(LeaseSignal) -> Fut,
        Fut: Future,
    {
        self.lease().await?.run(work).await
    }
}

impl Lease {
    /// Runs `work` under this lease, as [`Mutex::run`] does, and ends the lease when the
    /// work ends: the way to run work under a lock acquired some other way
    /// (`mutex.lock_until(deadline).await?.keep_alive()?.run(work)`, or after
    /// [`Mutex::try_lock`], [`Mutex::lock_or_cancel`], [`Mutex::adopt`]).
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] when the lease is lost before the work finishes (at once when it
    /// already is).
    ///
    /// # Cancel safety
    ///
    /// As [`Mutex::run`].
    pub async fn run<F, Fut>(self, work: F) -> Result<Fut::Output>
    where
        F: FnOnce(LeaseSignal) -> Fut,
        Fut: Future,
    {
        let signal = self.signal().clone();
        let outcome = {
            let work = work(signal.clone());
            tokio::select! {
                biased;
                reason = signal.lost() => Err(reason),
                output = work => Ok(output),
            }
        };
        // The work is dropped by now: the lock is released after it stopped.
        let released = self.unlock().await;
        match outcome {
            Ok(output) => {
                // Reported by the signal's holders only; the work ran under the lease.
                let _expire_by_themselves = released;
                Ok(output)
            }
            Err(reason) => Err(Error::Lost {
                lock: signal.name().into(),
                reason,
            }),
        }
    }
}
