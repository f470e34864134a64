//! Lock options, their defaults, and their validation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

mod get;

/// Default expiry of a lock: 8 s.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(8);
/// Default number of attempts of [`Mutex::lock`](crate::Mutex::lock): 32.
pub const DEFAULT_TRIES: u32 = 32;
/// Default lower bound of the random delay between attempts: 50 ms.
pub const DEFAULT_MIN_RETRY_DELAY: Duration = Duration::from_millis(50);
/// Default upper bound (exclusive) of the random delay between attempts: 250 ms.
pub const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_millis(250);
/// Default clock drift factor: 0.01 of the expiry (plus a fixed 2 ms).
pub const DEFAULT_DRIFT_FACTOR: f64 = 0.01;
/// Default per-node timeout factor: 0.05 of the expiry.
pub const DEFAULT_TIMEOUT_FACTOR: f64 = 0.05;
/// The longest expiry accepted: 365 days.
pub const MAX_EXPIRY: Duration = Duration::from_secs(365 * 24 * 3600);
/// The most attempts accepted by [`Options::tries`].
pub const MAX_TRIES: u32 = 1_000_000;
/// Default fraction of a lease's usable time left when it renews: one third.
pub const DEFAULT_RENEW_FACTOR: f64 = 1.0 / 3.0;
/// The most nodes one lock manager may span (a round's bookkeeping is a 64-bit mask).
pub const MAX_NODES: usize = 64;

type DelayFn = Arc<dyn Fn(u32) -> Duration + Send + Sync>;
type ValueFn = Arc<dyn Fn() -> String + Send + Sync>;

/// How long to wait between two attempts.
#[derive(Clone)]
pub(crate) enum RetryDelay {
    /// Uniformly random in `[min, max)`.
    Uniform(Duration, Duration),
    /// A function of the number of the attempt that just failed (1-based).
    Custom(DelayFn),
}

/// Where a lock's value comes from.
#[derive(Clone)]
pub(crate) enum ValueSource {
    /// 16 random bytes, base64.
    Random,
    /// The user's generator, called once per attempt.
    Generator(ValueFn),
    /// A fixed value, to take over a lock another process holds.
    Fixed(String),
}

impl ValueSource {
    /// Whether every value is sure to be this attempt's alone: random values are, and so
    /// are generated ones (the core adds a random suffix); a fixed value is shared on
    /// purpose.
    pub(crate) fn is_unique(&self) -> bool {
        !matches!(self, Self::Fixed(_))
    }
}

/// The options of a lock: a consuming builder whose every setter states its default.
///
/// Options are checked when a [`Redlock`](crate::Redlock) or
/// [`Mutex`](crate::Mutex) is built from them, before anything is sent to Redis.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use redlock_core::Options;
///
/// let options = Options::new()
///     .expiry(Duration::from_secs(30))
///     .tries(5)
///     .retry_delay(Duration::from_millis(10), Duration::from_millis(20));
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) expiry: Duration,
    pub(crate) tries: u32,
    pub(crate) retry_delay: RetryDelay,
    pub(crate) drift_factor: f64,
    pub(crate) timeout_factor: f64,
    pub(crate) value: ValueSource,
    pub(crate) fail_fast: bool,
    pub(crate) shuffle: bool,
    pub(crate) recreate_on_extend: bool,
    pub(crate) quorum: Option<usize>,
    pub(crate) safety_margin: Duration,
    pub(crate) max_hold: Option<Duration>,
    pub(crate) renew_factor: f64,
    pub(crate) notify_release: bool,
    pub(crate) fenced: bool,
    pub(crate) fence_loss_tolerance: usize,
    pub(crate) quarantine: Option<Duration>,
    pub(crate) durable_votes: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            expiry: DEFAULT_EXPIRY,
            tries: DEFAULT_TRIES,
            retry_delay: RetryDelay::Uniform(DEFAULT_MIN_RETRY_DELAY, DEFAULT_MAX_RETRY_DELAY),
            drift_factor: DEFAULT_DRIFT_FACTOR,
            timeout_factor: DEFAULT_TIMEOUT_FACTOR,
            value: ValueSource::Random,
            fail_fast: false,
            shuffle: false,
            recreate_on_extend: false,
            quorum: None,
            safety_margin: Duration::ZERO,
            max_hold: None,
            renew_factor: DEFAULT_RENEW_FACTOR,
            notify_release: true,
            fenced: false,
            fence_loss_tolerance: 0,
            quarantine: None,
            durable_votes: None,
        }
    }
}

impl Options {
    /// The defaults (those of go-redsync/redsync v4).
    pub fn new() -> Self {
        Self::default()
    }

    /// How long the key lives on each node. Default: 8 s. Must be at least 1 ms, above the
    /// drift allowance, and at most 365 days. Redis counts whole milliseconds, so a
    /// fraction of a millisecond is dropped, and validity is counted from what is left.
    pub fn expiry(mut self, expiry: Duration) -> Self {
        self.expiry = expiry;
        self
    }

    /// How many attempts [`Mutex::lock`](crate::Mutex::lock) makes after a retry delay ran
    /// out (counting the first), so how many delays it waits before it gives up. Default:
    /// 32. At least 1. A waiter woken by a release (see
    /// [`Options::notify_release`]) makes attempts in between, which do not count: on a
    /// busy lock they would use up the tries in as many releases.
    pub fn tries(mut self, tries: u32) -> Self {
        self.tries = tries;
        self
    }

    /// The delay between attempts, uniformly random in `[min, max)`. Default: 50 ms to
    /// 250 ms. `min` must not exceed `max`; equal bounds give a fixed delay.
    ///
    /// Whatever the delay, when the nodes that refused said how long the other owner's
    /// keys have left, the next attempt comes 1 ms after enough of them expire for a
    /// quorum, if that is sooner: a waiter behind a crashed holder does not sleep past it.
    pub fn retry_delay(mut self, min: Duration, max: Duration) -> Self {
        self.retry_delay = RetryDelay::Uniform(min, max);
        self
    }

    /// The delay between attempts as a function of the number of the attempt that just
    /// failed (1 after the first). Default: see [`Options::retry_delay`].
    pub fn retry_delay_fn(mut self, f: impl Fn(u32) -> Duration + Send + Sync + 'static) -> Self {
        self.retry_delay = RetryDelay::Custom(Arc::new(f));
        self
    }

    /// The clock drift allowance as a share of the expiry; 2 ms are always added.
    /// Default: 0.01. Must be in `[0, 1)`.
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }

    /// The time each node gets to answer one call, as a share of the expiry.
    /// Default: 0.05. Must be in `(0, 1)` and give at least 1 ms.
    pub fn timeout_factor(mut self, factor: f64) -> Self {
        self.timeout_factor = factor;
        self
    }

    /// A prefix for the lock's values, to tell holders apart when you look at the keys
    /// (`"worker-7"`, a host name). Called once per attempt; the value is the generated
    /// string, a `:`, and 16 random bytes in base64, so it is unique to the attempt even
    /// if the generator repeats itself: no two holders can ever share a value, and no late
    /// reply or late release of one attempt can be taken for another's. Default: no
    /// prefix (the value is the 16 random bytes alone). An empty string is rejected when
    /// the lock is attempted. [`Guard::value`](crate::Guard::value) gives the whole value.
    pub fn value_generator(mut self, f: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.value = ValueSource::Generator(Arc::new(f));
        self
    }

    /// A fixed value, to take over a lock that another process acquired and handed over
    /// (see [`Mutex::adopt`](crate::Mutex::adopt)). Default: none (random values). Must not
    /// be empty.
    ///
    /// A value is what identifies a holder to Redis: two guards with one value are one
    /// holder, and each can extend or release the other's keys. So a fixed value must
    /// have one live holder at a time: hand it to one heir only, and do not `lock` with it
    /// in two places. What the core does guard against: `lock` with a fixed value never
    /// takes a key that already holds it, and a failed or cancelled attempt releases only
    /// the nodes that confirmed it, leaving the rest to expire rather than risk deleting
    /// another holder's keys.
    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = ValueSource::Fixed(value.into());
        self
    }

    /// Decide an attempt as soon as its outcome is certain (a quorum agreed, or too many
    /// nodes refused), instead of waiting for every node. The calls still in flight finish in
    /// the background, so every node still gets locked or released. Default: false.
    pub fn fail_fast(mut self, yes: bool) -> Self {
        self.fail_fast = yes;
        self
    }

    /// Contact nodes in a random order on every attempt. Default: false.
    pub fn shuffle_nodes(mut self, yes: bool) -> Self {
        self.shuffle = yes;
        self
    }

    /// On extend, set the key again on nodes where it has expired (redsync's
    /// `WithSetNXOnExtend`). Default: false, so an extend never revives a lock that
    /// another owner could have taken in between.
    pub fn recreate_on_extend(mut self, yes: bool) -> Self {
        self.recreate_on_extend = yes;
        self
    }

    /// How many nodes must agree. Default: a majority, `N / 2 + 1`. May be raised up to `N`,
    /// never lowered below a majority.
    pub fn quorum(mut self, quorum: usize) -> Self {
        self.quorum = Some(quorum);
        self
    }

    /// Announce each release on the lock's channel
    /// ([`scripts::release_channel`](crate::scripts::release_channel): `PUBLISH
    /// redlock:released:NAME TAG:SHA1` from the release script), and have waiters listen on
    /// it, through the driver's [`Subscriber`](crate::Subscriber), so that they retry as
    /// soon as the lock frees instead of only after their retry delay. Default: true.
    ///
    /// A server that denies the publish (an ACL user without the channel) still releases,
    /// and one that denies the subscription leaves waiters polling. Switch it off to spare
    /// the servers both: waiters then poll, as with a driver that has no subscriber.
    pub fn notify_release(mut self, yes: bool) -> Self {
        self.notify_release = yes;
        self
    }

    /// Restart quarantine: for this long after a node starts, its grants do not count in
    /// an acquire (it still takes the key, and is released with the rest). Default: the
    /// expiry plus the drift allowance. `Duration::ZERO` switches it off.
    ///
    /// A node that restarts without its data forgets the keys it held and would grant a
    /// lock that is still held elsewhere; by the end of the period every key it could
    /// have held has expired everywhere. **Every client of a set of nodes must use a period
    /// at least the longest expiry any of them uses, plus its drift allowance.**
    ///
    /// The core learns a node's start from `INFO server` (`uptime_in_seconds`), read once
    /// per connection (see [`Conn::epoch`](crate::Conn::epoch)); an ACL user needs
    /// `+info`. A driver without [`Conn::command`](crate::Conn::command), or a Redis
    /// Cluster node, cannot send it, and quarantine is not enforced on that node.
    pub fn quarantine(mut self, period: Duration) -> Self {
        self.quarantine = Some(period);
        self
    }

    /// Durable votes: a node's grant (or extend) counts only once `WAITAOF 1 replicas
    /// timeout` confirms that the key reached its append-only file, and `replicas` of its
    /// replicas' (0 for none). Default: off.
    ///
    /// `WAITAOF` goes on the same connection right after the script, pipelined, so a
    /// reconnect in between cannot confirm a write it never saw; its timeout is the
    /// per-node timeout. It needs Redis 7.2+ or Valkey 8, a master with `appendonly yes`,
    /// and a driver with [`Conn::eval_then`](crate::Conn::eval_then); a node without them
    /// fails its vote with an error that says why, never a silent yes. An ACL user needs
    /// `+waitaof`.
    ///
    /// `WAITAOF` holds up the connection it runs on: the server reads nothing more from it
    /// until the wait ends, and the drivers here send every call to a node over one
    /// multiplexed connection, so releases, extends and other acquires to that node wait
    /// behind it. With `appendfsync always` it returns at once (the write was synced before
    /// the reply); with `everysec` each one waits for the next fsync, up to a second, and
    /// with `replicas` above 0 a slow replica can hold it for the whole per-node timeout,
    /// long enough to cost held locks their extends. Use `appendfsync always`.
    pub fn durable_votes(mut self, replicas: u32) -> Self {
        self.durable_votes = Some(replicas);
        self
    }

    /// Acquire with a fencing token ([`Guard::token`](crate::Guard::token)): a number larger
    /// for every later holding of the lock, for the protected resource to check on every
    /// write (see [`fence`](crate::fence) and `FENCING.md`). Default: false.
    ///
    /// A fenced acquire runs the [`FENCE`](crate::scripts::FENCE) script, which also keeps
    /// the lock's fence, a key without expiry ([`fence::key`](crate::fence::key)), on each
    /// node; it costs one `GET` and one `SET` more of server time, and no round trip
    /// except when another manager took the lock since this one last saw it (then the
    /// proposal is stale on some nodes: the attempt is released and made again at once,
    /// with a larger token). Fenced and unfenced clients exclude each other on one name;
    /// only fenced holders get tokens.
    pub fn fenced(mut self, yes: bool) -> Self {
        self.fenced = yes;
        self
    }

    /// For fenced locks: how many nodes may lose their data (restart empty) between two
    /// holdings of a lock without a token going backwards. Default: 0. Raises the number
    /// of nodes a fenced acquire needs to [`fence::quorum`](crate::fence::quorum)`(N,
    /// tolerance)`: with 3 nodes and a tolerance of 1, all 3; with 5 nodes and 1 or 2, 4.
    /// It must leave that at most N. Restarts that keep the data (AOF, or RDB saved on
    /// shutdown) need no tolerance.
    pub fn fence_loss_tolerance(mut self, nodes: usize) -> Self {
        self.fence_loss_tolerance = nodes;
        self
    }

    /// For leases: how long before the end of its validity a lease counts as lost, so that
    /// work told of the loss has that long to stop before another owner can get the lock.
    /// Default: zero (a lease is lost no later than its validity deadline). The validity
    /// left after the drift allowance and this margin must cover two per-node timeouts,
    /// so that a renewal has time to run.
    pub fn safety_margin(mut self, margin: Duration) -> Self {
        self.safety_margin = margin;
        self
    }

    /// For leases: the longest a lease is kept alive, counted from when it starts; then it
    /// is lost with [`LostReason::MaxHold`](crate::LostReason::MaxHold) and no longer
    /// renewed. Default: no maximum. Must be greater than zero.
    pub fn max_hold(mut self, max: Duration) -> Self {
        self.max_hold = Some(max);
        self
    }

    /// For leases: the fraction of a lease's usable time (expiry less drift and safety
    /// margin) that is left when it renews. Default: [`DEFAULT_RENEW_FACTOR`], a third.
    /// Must be above 0 and below 1. A renewal starts no later than one per-node timeout
    /// before the lease would end, whatever the factor.
    pub fn renew_factor(mut self, factor: f64) -> Self {
        self.renew_factor = factor;
        self
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("expiry", &self.expiry)
            .field("tries", &self.tries)
            .field("drift_factor", &self.drift_factor)
            .field("timeout_factor", &self.timeout_factor)
            .field("fail_fast", &self.fail_fast)
            .field("shuffle", &self.shuffle)
            .field("recreate_on_extend", &self.recreate_on_extend)
            .field("quorum", &self.quorum)
            .field("safety_margin", &self.safety_margin)
            .field("max_hold", &self.max_hold)
            .field("renew_factor", &self.renew_factor)
            .field("notify_release", &self.notify_release)
            .field("fenced", &self.fenced)
            .field("fence_loss_tolerance", &self.fence_loss_tolerance)
            .field("quarantine", &self.quarantine)
            .field("durable_votes", &self.durable_votes)
            .finish_non_exhaustive()
    }
}
