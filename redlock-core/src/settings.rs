//! Options checked against a node count, with the values the algorithm derives from them.

use std::sync::Arc;
use std::time::Duration;

use crate::call::WaitAof;
use crate::error::{Error, Result};
use crate::fence;
use crate::options::{MAX_EXPIRY, MAX_NODES, MAX_TRIES, Options, RetryDelay, ValueSource};
use crate::validity;

/// Options checked against a node count, with the derived values.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) options: Options,
    pub(crate) quorum: usize,
    /// The TTL the nodes are sent; validity is counted from it, not from the expiry.
    pub(crate) ttl: Ttl,
    /// The drift allowance for `ttl`.
    pub(crate) drift: Duration,
    pub(crate) node_timeout: Duration,
    /// The restart quarantine period, if on.
    pub(crate) quarantine: Option<Duration>,
    /// `WAITAOF`'s arguments, with durable votes.
    pub(crate) durable: Option<WaitAof>,
}

/// A TTL as the nodes get it: whole milliseconds, formatted once as the script argument.
#[derive(Clone, Debug)]
pub(crate) struct Ttl {
    ms: u64,
    arg: Arc<str>,
}

impl Ttl {
    fn new(ms: u64) -> Self {
        let arg = ms.to_string().into();
        Self { ms, arg }
    }

    /// The TTL as a duration.
    pub(crate) fn duration(&self) -> Duration {
        Duration::from_millis(self.ms)
    }

    /// The TTL as the script's argument.
    pub(crate) fn arg(&self) -> &Arc<str> {
        &self.arg
    }
}

impl Settings {
    /// Checks the options for `nodes` nodes and derives the values the algorithm uses.
    pub(crate) fn new(options: &Options, nodes: usize) -> Result<Self> {
        if nodes == 0 {
            return Err(Error::config("at least one node is required"));
        }
        if nodes > MAX_NODES {
            return Err(Error::config(format!(
                "at most {MAX_NODES} nodes are supported, got {nodes}"
            )));
        }
        let quorum = check_quorum(options, nodes)?;
        let ttl = Ttl::new(check_expiry(options)?);
        check_retry(options)?;
        if let ValueSource::Fixed(v) = &options.value
            && v.is_empty()
        {
            return Err(Error::config("lock value must not be empty"));
        }
        let drift = validity::drift(ttl.duration(), options.drift_factor);
        if drift >= ttl.duration() {
            return Err(Error::config(format!(
                "expiry {:?} does not exceed the clock drift allowance {drift:?}",
                options.expiry
            )));
        }
        let node_timeout = options.get_node_timeout();
        if node_timeout < Duration::from_millis(1) {
            return Err(Error::config(
                "per-node timeout (expiry x timeout factor) is under 1 ms",
            ));
        }
        check_lease_options(options)?;
        let quarantine = options
            .quarantine
            .unwrap_or(ttl.duration() + drift)
            .min(MAX_EXPIRY * 2);
        Ok(Settings {
            options: options.clone(),
            quorum,
            ttl,
            drift,
            node_timeout,
            quarantine: (!quarantine.is_zero()).then_some(quarantine),
            durable: options.durable_votes.map(|replicas| WaitAof {
                replicas: replicas.to_string().into(),
                timeout_ms: node_timeout.as_millis().max(1).to_string().into(),
            }),
        })
    }
}

fn check_quorum(options: &Options, nodes: usize) -> Result<usize> {
    let majority = validity::majority(nodes);
    let quorum = options.quorum.unwrap_or(majority);
    if quorum < majority || quorum > nodes {
        return Err(Error::config(format!(
            "quorum {quorum} is outside {majority}..={nodes} for {nodes} node(s)"
        )));
    }
    let tolerance = options.fence_loss_tolerance;
    if !options.fenced && tolerance == 0 {
        return Ok(quorum);
    }
    if !options.fenced {
        return Err(Error::config("a fence loss tolerance needs a fenced lock"));
    }
    match fence::quorum(nodes, tolerance) {
        Some(fenced) => Ok(quorum.max(fenced)),
        None => Err(Error::config(format!(
            "a fence loss tolerance of {tolerance} needs more than {nodes} node(s)"
        ))),
    }
}

fn check_expiry(options: &Options) -> Result<u64> {
    if options.expiry.is_zero() {
        return Err(Error::config("expiry must be greater than zero"));
    }
    if options.expiry > MAX_EXPIRY {
        return Err(Error::config("expiry must be at most 365 days"));
    }
    let ms = u64::try_from(options.expiry.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Err(Error::config("expiry must be at least 1 ms"));
    }
    Ok(ms)
}

fn check_retry(options: &Options) -> Result<()> {
    if options.tries == 0 || options.tries > MAX_TRIES {
        return Err(Error::config(format!(
            "tries must be in 1..={MAX_TRIES}, got {}",
            options.tries
        )));
    }
    for (name, f) in [
        ("drift", options.drift_factor),
        ("timeout", options.timeout_factor),
    ] {
        let ok = (0.0..1.0).contains(&f) && !(name == "timeout" && f == 0.0);
        if !ok {
            return Err(Error::config(format!("{name} factor {f} is out of range")));
        }
    }
    if let RetryDelay::Uniform(min, max) = options.retry_delay
        && min > max
    {
        return Err(Error::config(format!(
            "minimum retry delay {min:?} exceeds the maximum {max:?}"
        )));
    }
    Ok(())
}

fn check_lease_options(options: &Options) -> Result<()> {
    let factor = options.renew_factor;
    if !(factor > 0.0 && factor < 1.0) {
        return Err(Error::config(format!(
            "renew factor {factor} is out of range"
        )));
    }
    if options.max_hold.is_some_and(|max| max.is_zero()) {
        return Err(Error::config("max hold must be greater than zero"));
    }
    Ok(())
}

impl Settings {
    /// How long before a lease would end it renews: the renew factor of its usable time
    /// (validity less the safety margin), and at least one per-node timeout.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the usable time is under two per-node timeouts: a lease
    /// would renew again as soon as a renewal finished.
    pub(crate) fn renew_lead(&self) -> Result<Duration> {
        let validity = self.ttl.duration().saturating_sub(self.drift);
        let (margin, timeout) = (self.options.safety_margin, self.node_timeout);
        let usable = validity.saturating_sub(margin);
        if usable < timeout.saturating_mul(2) {
            return Err(Error::config(format!(
                "a lease needs its validity ({validity:?}) less the safety margin \
                 ({margin:?}) to cover two per-node timeouts ({timeout:?} each)"
            )));
        }
        Ok(usable.mul_f64(self.options.renew_factor).max(timeout))
    }
}
