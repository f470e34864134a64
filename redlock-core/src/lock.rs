//! The lock manager ([`Redlock`]) and one named lock ([`Mutex`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::time::Instant;

use crate::conn::Pool;
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::options::{Options, RetryDelay, Settings, ValueSource};
use crate::quorum::{self, Call, InFlight, LockMode, Nodes, Plan, Release};
use crate::validity;

/// A lock manager over N independent Redis masters, one [`Pool`] per node.
///
/// Cheap to clone; clones share the nodes. Make one per set of nodes and take locks from
/// it by name.
///
/// # Examples
///
/// ```
/// use redlock_core::{Redlock, memory::MemoryPool};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> redlock_core::Result<()> {
/// let nodes = vec![MemoryPool::new(), MemoryPool::new(), MemoryPool::new()];
/// let redlock = Redlock::new(nodes)?;
///
/// let guard = redlock.lock("invoice:42").await?;
/// // ... the protected work, while guard.remaining() is above zero ...
/// guard.unlock().await?;
/// # Ok(()) }
/// ```
pub struct Redlock<P: Pool> {
    nodes: Nodes<P>,
    /// The default options, checked once for this node count.
    settings: Arc<Settings>,
}

impl<P: Pool> Clone for Redlock<P> {
    fn clone(&self) -> Self {
        Self {
            nodes: self.nodes.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<P: Pool> std::fmt::Debug for Redlock<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redlock")
            .field("nodes", &self.nodes.len())
            .field("options", &self.settings.options)
            .finish()
    }
}

impl<P: Pool> Redlock<P> {
    /// A lock manager over `pools` with the default [`Options`].
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `pools` is empty or has more than
    /// [`MAX_NODES`](crate::MAX_NODES) pools.
    pub fn new(pools: Vec<P>) -> Result<Self> {
        Self::with_options(pools, Options::new())
    }

    /// A lock manager over `pools` whose locks use `options` unless told otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `pools` is empty or has more than
    /// [`MAX_NODES`](crate::MAX_NODES) pools, or an option is out of range.
    pub fn with_options(pools: Vec<P>, options: Options) -> Result<Self> {
        let settings = Arc::new(options.validate(pools.len())?);
        Ok(Self {
            nodes: pools.into(),
            settings,
        })
    }

    /// How many nodes this manager spans.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The options locks get by default.
    pub fn options(&self) -> &Options {
        &self.settings.options
    }

    /// The lock named `name`, with this manager's options.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `name` is empty.
    pub fn mutex(&self, name: &str) -> Result<Mutex<P>> {
        self.named(name, self.settings.clone())
    }

    /// The lock named `name`, with its own `options`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `name` is empty or an option is out of range.
    pub fn mutex_with(&self, name: &str, options: Options) -> Result<Mutex<P>> {
        let settings = Arc::new(options.validate(self.nodes.len())?);
        self.named(name, settings)
    }

    fn named(&self, name: &str, settings: Arc<Settings>) -> Result<Mutex<P>> {
        if name.is_empty() {
            return Err(Error::config("lock name must not be empty"));
        }
        Ok(Mutex {
            nodes: self.nodes.clone(),
            name: name.into(),
            settings,
        })
    }

    /// Acquires the lock named `name`, retrying; shorthand for
    /// `self.mutex(name)?.lock().await`.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`], and [`Error::Config`] when `name` is empty.
    ///
    /// # Cancel safety
    ///
    /// As [`Mutex::lock`].
    pub async fn lock(&self, name: &str) -> Result<Guard<P>> {
        self.mutex(name)?.lock().await
    }
}

/// One named lock over the manager's nodes. Cheap to clone.
pub struct Mutex<P: Pool> {
    pub(crate) nodes: Nodes<P>,
    pub(crate) name: Arc<str>,
    pub(crate) settings: Arc<Settings>,
}

impl<P: Pool> Clone for Mutex<P> {
    fn clone(&self) -> Self {
        Self {
            nodes: self.nodes.clone(),
            name: self.name.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<P: Pool> std::fmt::Debug for Mutex<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutex")
            .field("name", &self.name)
            .field("nodes", &self.nodes.len())
            .field("quorum", &self.settings.quorum)
            .finish_non_exhaustive()
    }
}

impl<P: Pool> Mutex<P> {
    /// The lock's name, which is its key on every node.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many nodes must agree.
    pub fn quorum(&self) -> usize {
        self.settings.quorum
    }

    /// Acquires the lock, making up to [`Options::tries`] attempts with the retry delay
    /// between them.
    ///
    /// An attempt sets the key on every node at once, each call bounded by the per-node
    /// timeout. It succeeds when a quorum agreed and validity is left after subtracting the
    /// time taken and the drift allowance; otherwise the key is released on every node
    /// before the next attempt. One random value serves all attempts of this call.
    ///
    /// # Errors
    ///
    /// The last attempt's failure: [`Error::Taken`], [`Error::NoQuorum`] (with each failed
    /// node's error) or [`Error::ValidityExhausted`]; [`Error::Config`] when the value
    /// generator returns an empty value.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the sense that matters: dropping the future part-way (say, from a
    /// `tokio::select!` or `tokio::time::timeout`) leaves no key behind: a release is sent
    /// to every node in the background. Keys are left to expire only if the drop happens
    /// after the tokio runtime has shut down.
    pub async fn lock(&self) -> Result<Guard<P>> {
        self.acquire(self.settings.options.tries, None).await
    }

    /// Makes one attempt to acquire the lock.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`], from its single attempt.
    ///
    /// # Cancel safety
    ///
    /// As [`Mutex::lock`].
    pub async fn try_lock(&self) -> Result<Guard<P>> {
        self.acquire(1, None).await
    }

    /// Acquires the lock as [`Mutex::lock`] does, but gives up at `deadline`.
    ///
    /// # Errors
    ///
    /// [`Error::DeadlineExceeded`] (with the last attempt's failure as its source) when the
    /// deadline passes first, or would pass during the next retry delay; otherwise as
    /// [`Mutex::lock`].
    ///
    /// # Cancel safety
    ///
    /// As [`Mutex::lock`]; an attempt cut short by the deadline is released in the
    /// background.
    pub async fn lock_until(&self, deadline: Instant) -> Result<Guard<P>> {
        self.acquire(self.settings.options.tries, Some(deadline))
            .await
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
            () = cancel => Err(Error::Cancelled),
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
        let ValueSource::Fixed(value) = &self.settings.options.value else {
            return Err(Error::config("adopt needs a fixed value (Options::value)"));
        };
        let value: Arc<str> = value.as_str().into();
        let (ttl, drift) = (self.settings.expiry_ms, self.settings.drift);
        let valid_until = self.extend_with(&value, ttl, drift, Instant::now()).await?;
        Ok(Guard::new(self.clone(), value, valid_until, None))
    }

    async fn acquire(&self, tries: u32, deadline: Option<Instant>) -> Result<Guard<P>> {
        let value = self.new_value()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::DeadlineExceeded { last: None });
        }
        let mut cleanup = Cleanup {
            mutex: self,
            value: value.clone(),
            armed: self.value_is_unique(),
        };
        let mut last = None;
        for attempt in 1..=tries {
            let round = match deadline {
                Some(d) => tokio::time::timeout_at(d, self.attempt(&value)).await,
                None => Ok(self.attempt(&value).await),
            };
            match round {
                Ok(Ok((valid_until, pending))) => {
                    cleanup.armed = false;
                    return Ok(Guard::new(self.clone(), value, valid_until, pending));
                }
                Ok(Err(e)) => last = Some(e),
                // Cut short: the armed cleanup releases what the round may have set.
                Err(_) => return Err(deadline_exceeded(last)),
            }
            if attempt == tries {
                break;
            }
            let delay = retry_delay(&self.settings.options.retry_delay, attempt);
            let wake = Instant::now().checked_add(delay);
            if deadline.is_some_and(|d| wake.is_none_or(|w| w >= d)) {
                cleanup.armed = false;
                return Err(deadline_exceeded(last));
            }
            tokio::time::sleep(delay).await;
        }
        cleanup.armed = false;
        Err(last.unwrap_or_else(|| Error::config("tries must be at least 1")))
    }

    /// One acquire round. On success, the validity deadline and the calls still in flight
    /// (fail-fast); on failure, every node that may hold the value is released first.
    async fn attempt(&self, value: &Arc<str>) -> Result<(Instant, InFlight)> {
        let s = &self.settings;
        let ttl_ms = s.expiry_arg.clone();
        let call = self.lock_call(value, ttl_ms, self.acquire_mode());
        let plan = self.plan();
        let start = Instant::now();
        let (tally, pending) = quorum::fan_out(plan, call).await;
        let elapsed = start.elapsed();
        let unique = self.value_is_unique();
        // A node that answered "taken" did not set our value (a unique value's replay would
        // have answered yes), so releasing it would be a wasted round trip.
        let ours = match unique {
            true => tally.answered_nodes().without(tally.taken_nodes()),
            false => tally.yes_nodes(),
        };
        match validity::acquire_verdict(tally, s.options.expiry, elapsed, s.drift) {
            Ok(left) => Ok((
                start + elapsed + left,
                pending.finish_in_background::<P>(None),
            )),
            Err(e) => {
                let unlock = self.unlock_call(value);
                let release = Release {
                    plan,
                    call: unlock.clone(),
                    only_yes: !unique,
                };
                let in_flight = pending.finish_in_background(Some(release));
                quorum::release_on(ours, plan, unlock).await;
                // The next round reuses the value: a release of this round that lands
                // after it would delete its keys. Each call is bounded by the timeout.
                if let Some(task) = in_flight {
                    let _ = task.await;
                }
                Err(e)
            }
        }
    }

    /// Whether the value is unique to one lock call: random and generated values are (a
    /// generator must promise it); a fixed value might be another owner's too.
    fn value_is_unique(&self) -> bool {
        !matches!(self.settings.options.value, ValueSource::Fixed(_))
    }

    /// With a unique value, finding our own value can only mean a replayed call of ours;
    /// with any other, it may be another owner's lock, which must not be shared.
    fn acquire_mode(&self) -> LockMode {
        match self.value_is_unique() {
            true => LockMode::CreateOrRefresh,
            false => LockMode::CreateOnly,
        }
    }

    /// Refreshes the key to `ttl_ms` on every node that holds `value`; returns the new
    /// validity deadline.
    ///
    /// `start` must be taken before the call is made: the deadline is `start + ttl - drift`,
    /// and the caller caps its current deadline there before sending, since a shorter TTL
    /// takes effect on every node reached even if the call fails.
    pub(crate) async fn extend_with(
        &self,
        value: &Arc<str>,
        ttl_ms: u64,
        drift: Duration,
        start: Instant,
    ) -> Result<Instant> {
        let mode = if self.settings.options.recreate_on_extend {
            LockMode::CreateOrRefresh
        } else {
            LockMode::Refresh
        };
        let ttl_arg = match ttl_ms == self.settings.expiry_ms {
            true => self.settings.expiry_arg.clone(),
            false => ttl_ms.to_string().into(),
        };
        let call = self.lock_call(value, ttl_arg, mode);
        let (tally, _) = quorum::fan_out(self.plan_all(), call).await;
        let elapsed = start.elapsed();
        if !tally.reached() {
            return Err(tally.into_release_error());
        }
        let expiry = Duration::from_millis(ttl_ms);
        validity::validity(expiry, elapsed, drift)
            .map(|left| start + elapsed + left)
            .ok_or(Error::ValidityExhausted { elapsed, expiry })
    }

    /// The plan for calls that must hear from every node (extend, unlock, cleanup), even
    /// when acquire rounds decide early.
    pub(crate) fn plan_all(&self) -> Plan {
        Plan {
            fail_fast: false,
            ..self.plan()
        }
    }

    /// The call that deletes the key if it holds `value`.
    pub(crate) fn unlock_call(&self, value: &Arc<str>) -> Arc<Call<P>> {
        let (nodes, name) = (self.nodes.clone(), self.name.clone());
        Arc::new(Call::unlock(nodes, name, value.clone()))
    }

    /// The call that sets or refreshes the key to `value` for `ttl_ms`, as `mode` allows.
    fn lock_call(&self, value: &Arc<str>, ttl_ms: Arc<str>, mode: LockMode) -> Arc<Call<P>> {
        let (nodes, name) = (self.nodes.clone(), self.name.clone());
        Arc::new(Call::lock(nodes, name, value.clone(), ttl_ms, mode))
    }

    pub(crate) fn plan(&self) -> Plan {
        let s = &self.settings;
        Plan {
            quorum: s.quorum,
            timeout: s.node_timeout,
            fail_fast: s.options.fail_fast,
            shuffle: s.options.shuffle,
        }
    }

    fn new_value(&self) -> Result<Arc<str>> {
        let value: Arc<str> = match &self.settings.options.value {
            ValueSource::Random => random_value(),
            ValueSource::Generator(f) => f().into(),
            ValueSource::Fixed(v) => v.as_str().into(),
        };
        if value.is_empty() {
            return Err(Error::config("value generator returned an empty value"));
        }
        Ok(value)
    }
}

fn deadline_exceeded(last: Option<Error>) -> Error {
    Error::DeadlineExceeded {
        last: last.map(Box::new),
    }
}

/// 16 random bytes, base64: the default lock value.
fn random_value() -> Arc<str> {
    let mut text = [0u8; 24];
    let engine = &base64::engine::general_purpose::STANDARD;
    match engine.encode_slice(rand::random::<[u8; 16]>(), &mut text) {
        // Base64 is ASCII, so this is always `Ok`.
        Ok(len) => std::str::from_utf8(&text[..len]).unwrap_or_default().into(),
        // Unreachable (24 bytes hold 16 encoded); a longer value is as good.
        Err(_) => engine.encode(rand::random::<[u8; 16]>()).into(),
    }
}

/// The delay after failed attempt number `attempt` (1-based).
pub(crate) fn retry_delay(delay: &RetryDelay, attempt: u32) -> Duration {
    match delay {
        RetryDelay::Uniform(min, max) if min < max => {
            let span = max.saturating_sub(*min).as_nanos().min(u64::MAX.into()) as u64;
            *min + Duration::from_nanos(rand::random_range(0..span))
        }
        RetryDelay::Uniform(min, _) => *min,
        RetryDelay::Custom(f) => f(attempt),
    }
}

/// Releases the key on every node if an acquire future is dropped part-way.
struct Cleanup<'a, P: Pool> {
    mutex: &'a Mutex<P>,
    value: Arc<str>,
    armed: bool,
}

impl<P: Pool> Drop for Cleanup<'_, P> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let m = self.mutex;
        quorum::release_in_background(m.plan_all(), m.unlock_call(&self.value));
    }
}
