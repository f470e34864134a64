//! One lock's target (its nodes, name and settings) and the rounds made on it: acquire
//! attempts and their retries, extend, unlock, and the cleanup of whatever a failed or
//! dropped round may have set. [`Mutex`](crate::Mutex) and [`Guard`](crate::Guard) both
//! stand on it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::time::Instant;

use crate::call::{Call, WaitAof};
use crate::conn::Pool;
use crate::error::{Action, Error, Result};
use crate::fan_out::{InFlight, Plan, Release, fan_out, finish, release_in_background};
use crate::fence::Token;
use crate::nodes::Nodes;
use crate::options::{RetryDelay, ValueSource};
use crate::runtime;
use crate::scripts::LockMode;
use crate::settings::{Settings, Ttl};
use crate::tally::{NodeSet, Subject, Tally};
use crate::validity::validity;

mod cleanup;

use cleanup::Round;

/// Why an acquire attempt failed, and what a waiter needs to know to wait well.
pub(crate) struct Refusal {
    pub(crate) error: Error,
    /// How long until other owners' keys free a quorum, when the nodes said.
    pub(crate) frees_in: Option<Duration>,
    /// Whether another owner's key stood in the way on some node, so that its release is
    /// worth waiting for.
    pub(crate) contended: bool,
    /// Whether the attempt set its key on some nodes but not a quorum: a split vote
    /// between waiters, after which nobody may hold the lock.
    pub(crate) split: bool,
    /// How long the attempt's votes took.
    pub(crate) took: Duration,
    /// Whether some node found the attempt's fencing token not above its fence: the next
    /// attempt proposes one above every fence seen, and may be made at once.
    pub(crate) stale: bool,
}

impl Refusal {
    fn plain(error: Error) -> Self {
        Self {
            error,
            frees_in: None,
            contended: false,
            split: false,
            took: Duration::ZERO,
            stale: false,
        }
    }
}

/// One lock's nodes, name and settings. Cheap to clone.
pub(crate) struct Target<P> {
    nodes: Arc<Nodes<P>>,
    name: Arc<str>,
    /// The key of the lock's fence, for a fenced lock.
    fence_key: Option<Arc<str>>,
    settings: Arc<Settings>,
}

impl<P> Clone for Target<P> {
    fn clone(&self) -> Self {
        Self {
            nodes: self.nodes.clone(),
            name: self.name.clone(),
            fence_key: self.fence_key.clone(),
            settings: self.settings.clone(),
        }
    }
}

/// What a successful acquire hands to its guard.
pub(crate) struct Held {
    /// The value that marks this holder on every node.
    pub(crate) value: Arc<str>,
    /// Until when the lock may be relied on.
    pub(crate) valid_until: Instant,
    /// Calls of the acquire still in flight (fail-fast, or cut by a deadline).
    pub(crate) in_flight: InFlight,
    /// The fencing token, for a fenced lock.
    pub(crate) token: Option<Token>,
    /// How many nodes agreed (for what is recorded: see `observe`).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) agreed: usize,
    /// How long the winning round took (for what is recorded).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) took: Duration,
}

impl<P: Pool> Target<P> {
    pub(crate) fn new(
        nodes: Arc<Nodes<P>>,
        name: Arc<str>,
        fence_key: Option<Arc<str>>,
        settings: Arc<Settings>,
    ) -> Self {
        Self {
            nodes,
            name,
            fence_key,
            settings,
        }
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(crate) fn nodes(&self) -> &Arc<Nodes<P>> {
        &self.nodes
    }

    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// One acquire round with a fresh value. On failure, every node that may hold the
    /// value has been released (or is being released in the background, when the
    /// deadline leaves no time to wait), and the refusal says whether other owners stood
    /// in the way and how long until their keys free a quorum, when the nodes said.
    pub(crate) async fn attempt(&self, deadline: Option<Instant>) -> Result<Held, Refusal> {
        let s = &*self.settings;
        let value = self.new_value().map_err(Refusal::plain)?;
        let (call, token) = self.acquire_call(&value).map_err(Refusal::plain)?;
        let plan = self.plan(deadline);
        let start = Instant::now();
        let mut round = Round::new(self, value);
        let pending = match fan_out(plan, call.clone(), &mut round.tally).await {
            Ok(pending) => pending,
            Err(e) => {
                // Nothing was sent.
                round.armed = false;
                return Err(Refusal::plain(e));
            }
        };
        let elapsed = start.elapsed();
        if let Some(key) = &self.fence_key {
            // A node that granted the token keeps it as its fence, whatever the outcome.
            let granted = token.filter(|_| !round.tally.yes_nodes().is_empty());
            self.nodes
                .saw_fence(key, call.fence_seen().max(granted.map_or(0, Token::get)));
        }
        let reached = round.tally.reached();
        let left = validity(s.ttl.duration(), elapsed, s.drift).filter(|_| reached);
        if let Some(left) = left {
            round.armed = false;
            return Ok(Held {
                value: round.value.clone(),
                valid_until: start + elapsed + left,
                in_flight: pending.finish_in_background(None),
                token,
                agreed: round.tally.yes_nodes().len(),
                took: elapsed,
            });
        }
        let frees_in = round.tally.frees_in();
        let contended = !round.tally.taken_nodes().is_empty();
        let split = contended && !round.tally.yes_nodes().is_empty();
        let stale = round.tally.has_stale();
        let error = if reached {
            self.validity_exhausted(Action::Acquire, elapsed, &s.ttl)
        } else {
            round.tally.error(&self.subject(Action::Acquire))
        };
        let release = Release {
            plan,
            call: self.unlock_call(&round.value, false),
            only_yes: !round.unique,
        };
        let in_flight = pending.finish_in_background(Some(release.clone()));
        round.release(release, in_flight).await;
        Err(Refusal {
            error,
            frees_in,
            contended,
            split,
            took: elapsed,
            stale,
        })
    }

    /// Adopts a lock that another process acquired with the fixed value, by extending it.
    pub(crate) async fn adopt(&self) -> Result<Held> {
        let Some(value) = self.settings.options.get_value() else {
            return Err(Error::config("adopt needs a fixed value (Options::value)"));
        };
        let value: Arc<str> = value.into();
        let s = &*self.settings;
        let valid_until = self.extend(&value, &s.ttl, s.drift, Instant::now()).await?;
        Ok(Held {
            value,
            valid_until,
            in_flight: None,
            token: None,
            agreed: 0,
            took: Duration::ZERO,
        })
    }

    /// Refreshes the key to `ttl` on every node that holds `value`; returns the new
    /// validity deadline.
    ///
    /// `start` must be taken before the call is made: the deadline is `start + ttl -
    /// drift`, and the caller caps its current deadline there before sending, since a
    /// shorter TTL takes effect on every node reached even if the call fails.
    pub(crate) async fn extend(
        &self,
        value: &Arc<str>,
        ttl: &Ttl,
        drift: Duration,
        start: Instant,
    ) -> Result<Instant> {
        let mode = if self.settings.options.get_recreate_on_extend() {
            LockMode::CreateOrRefresh
        } else {
            LockMode::Refresh
        };
        let (nodes, name) = (self.nodes.clone(), self.name.clone());
        let call = Call::lock(nodes, name, value.clone(), ttl.arg().clone(), mode);
        let call = Arc::new(call.with_durable(self.durable()));
        let mut tally = self.tally();
        // Every node answers or times out before this returns: nothing is left in flight.
        fan_out(self.plan(None).everyone(), call, &mut tally).await?;
        let elapsed = start.elapsed();
        if !tally.reached() {
            return Err(tally.held_error(&self.subject(Action::Extend)));
        }
        let left = validity(ttl.duration(), elapsed, drift);
        let exhausted = || self.validity_exhausted(Action::Extend, elapsed, ttl);
        left.map(|left| start + elapsed + left)
            .ok_or_else(exhausted)
    }

    /// Releases the key on every node, once the acquire's calls still in flight are done.
    pub(crate) async fn unlock(&self, value: &Arc<str>, in_flight: &mut InFlight) -> Result<()> {
        finish(in_flight).await;
        let mut tally = self.tally();
        let call = self.unlock_call(value, true);
        fan_out(self.plan(None).everyone(), call, &mut tally).await?;
        if tally.reached() {
            return Ok(());
        }
        Err(tally.held_error(&self.subject(Action::Release)))
    }

    /// Releases the key on `targets` in the background, once `in_flight` is done; a
    /// held lock's release is announced to waiters if `announce`.
    pub(crate) fn release_in_background(
        &self,
        targets: NodeSet,
        in_flight: InFlight,
        value: &Arc<str>,
        announce: bool,
    ) {
        if runtime::check().is_err() {
            // Without timers no call could be bounded; the keys expire on their own.
            return;
        }
        let plan = self.plan(None).everyone();
        release_in_background(targets, in_flight, plan, self.unlock_call(value, announce));
    }

    /// Every node of this lock.
    pub(crate) fn all_nodes(&self) -> NodeSet {
        NodeSet::all(self.nodes.len())
    }

    fn plan(&self, deadline: Option<Instant>) -> Plan {
        let s = &*self.settings;
        Plan {
            timeout: s.node_timeout,
            fail_fast: s.options.get_fail_fast(),
            shuffle: s.options.get_shuffle_nodes(),
            deadline,
        }
    }

    fn tally(&self) -> Tally {
        Tally::new(self.nodes.len(), self.settings.quorum)
    }

    fn subject(&self, action: Action) -> Subject<'_> {
        Subject {
            lock: &self.name,
            action,
            addresses: self.nodes.addresses(),
        }
    }

    /// The call of an acquire attempt, and the token it proposes for a fenced lock: one
    /// above the largest fence this manager has seen on the lock.
    fn acquire_call(&self, value: &Arc<str>) -> Result<(Arc<Call<P>>, Option<Token>)> {
        let ttl = self.settings.ttl.arg().clone();
        let quarantine = self.settings.quarantine;
        let Some(key) = &self.fence_key else {
            let (nodes, name) = (self.nodes.clone(), self.name.clone());
            let call = Call::lock(nodes, name, value.clone(), ttl, LockMode::CreateOnly);
            let call = call.with_quarantine(quarantine);
            return Ok((Arc::new(call.with_durable(self.durable())), None));
        };
        let hint = self.nodes.fence_hint(key);
        let Some(token) = hint.checked_add(1).and_then(Token::new) else {
            let message = format!("the lock's fence {hint} leaves no larger fencing token");
            return Err(Error::config(message));
        };
        let (nodes, name, fence_key) = (self.nodes.clone(), self.name.clone(), key.clone());
        let call = Call::fence(nodes, name, fence_key, value.clone(), ttl, token);
        let call = call
            .with_quarantine(quarantine)
            .with_durable(self.durable());
        Ok((Arc::new(call), Some(token)))
    }

    /// `WAITAOF`'s arguments for acquire and extend calls, with durable votes.
    fn durable(&self) -> Option<WaitAof> {
        self.settings.durable.clone()
    }

    /// The call that deletes the key if it holds `value`, announcing the release if
    /// `announce` and the options allow. Only a held lock's release is announced: the
    /// cleanup of a failed attempt would wake every waiter for nothing, and their own
    /// failed attempts' cleanups would wake them again.
    fn unlock_call(&self, value: &Arc<str>, announce: bool) -> Arc<Call<P>> {
        let (nodes, name) = (self.nodes.clone(), self.name.clone());
        let notify = announce && self.settings.options.get_notify_release();
        Arc::new(Call::unlock(nodes, name, value.clone(), notify))
    }

    /// A value for one attempt. A generated value gets a random suffix, so that it is the
    /// attempt's alone even if the generator repeats itself: release and extend match a
    /// key by value, and a value shared by two holders would let one's stale unlock or
    /// extend act on the other's keys.
    fn new_value(&self) -> Result<Arc<str>> {
        match &self.settings.options.value {
            ValueSource::Random => Ok(random_value()),
            ValueSource::Generator(f) => {
                let prefix = f();
                if prefix.is_empty() {
                    return Err(Error::config("value generator returned an empty value"));
                }
                Ok(format!("{prefix}:{}", random_value()).into())
            }
            ValueSource::Fixed(v) => Ok(v.as_str().into()),
        }
    }

    /// The delay after failed attempt number `attempt` (1-based).
    pub(crate) fn retry_delay(&self, attempt: u32) -> Duration {
        match &self.settings.options.retry_delay {
            RetryDelay::Uniform(min, max) if min < max => {
                let span = max.saturating_sub(*min).as_nanos().min(u64::MAX.into()) as u64;
                *min + Duration::from_nanos(rand::random_range(0..span))
            }
            RetryDelay::Uniform(min, _) => *min,
            RetryDelay::Custom(f) => f(attempt),
        }
    }

    pub(crate) fn deadline_exceeded(&self, last: Option<Error>) -> Error {
        Error::DeadlineExceeded {
            lock: self.name.clone(),
            last: last.map(Box::new),
        }
    }

    fn validity_exhausted(&self, action: Action, elapsed: Duration, ttl: &Ttl) -> Error {
        Error::ValidityExhausted {
            lock: self.name.clone(),
            action,
            elapsed,
            ttl: ttl.duration(),
        }
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
