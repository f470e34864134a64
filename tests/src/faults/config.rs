//! The shape of the runs, from the environment.

use std::time::Duration;

use redlock_core::Options;

use super::HarnessError;
use super::clients::Workload;
use super::schedule::{Plan, Spec};

/// Environment variable that fixes the seed (a `u64`) to reproduce a run's schedule.
pub const SEED_VAR: &str = "REDLOCK_FAULTS_SEED";
/// Environment variable that sets the seconds of the run inside the model (default 8).
pub const SECS_VAR: &str = "REDLOCK_FAULTS_SECS";

const DEFAULT_SECS: u64 = 8;
/// Margin past the longest TTL before a killed node comes back.
const KILL_MARGIN: Duration = Duration::from_millis(200);
/// Margin past the TTL before the leftover keys are looked for.
pub(super) const SETTLE: Duration = Duration::from_millis(300);
/// The shape of the runs; [`Config::from_env`] gives the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The seed every schedule and client draws from.
    pub seed: u64,
    /// Length of the run inside the model.
    pub model: Duration,
    /// Length of the run with a fixed minority down, for liveness figures.
    pub minority: Duration,
    /// Length of the run outside the model.
    pub outside: Duration,
    /// Length of the canary run.
    pub canary: Duration,
    /// Servers (each behind a proxy).
    pub nodes: usize,
    /// Concurrent lock users.
    pub clients: usize,
    /// Lock names they share.
    pub names: usize,
    /// The locks' expiry, which is also the longest TTL any key gets.
    pub expiry: Duration,
    /// How the clients behave.
    pub workload: Workload,
}

impl Default for Config {
    fn default() -> Self {
        Self::with_secs(rand::random(), DEFAULT_SECS)
    }
}

impl Config {
    /// 5 nodes, 8 clients, 3 names, 1 s expiry; a run inside the model of `secs`
    /// seconds, a 3.6 s run with a minority down, one outside the model of 3/8 of `secs`
    /// (at least 3 s), and a 1.5 s canary.
    pub fn with_secs(seed: u64, secs: u64) -> Self {
        let model = Duration::from_secs(secs);
        Self {
            seed,
            model,
            minority: Duration::from_millis(3_600),
            outside: (model * 3 / 8).max(Duration::from_secs(3)),
            canary: Duration::from_millis(1_500),
            nodes: 5,
            clients: 8,
            names: 3,
            expiry: Duration::from_secs(1),
            workload: Workload::default(),
        }
    }

    /// The defaults, with the seed from [`SEED_VAR`] (random when unset) and the length
    /// from [`SECS_VAR`].
    ///
    /// # Errors
    ///
    /// [`HarnessError::Env`] when a variable is set but is not a number (or is 0 seconds).
    pub fn from_env() -> Result<Self, HarnessError> {
        let seed = env_u64(SEED_VAR)?.unwrap_or_else(rand::random);
        let secs = env_u64(SECS_VAR)?.unwrap_or(DEFAULT_SECS);
        if secs == 0 {
            return Err(HarnessError::Env(format!("{SECS_VAR} must be at least 1")));
        }
        Ok(Self::with_secs(seed, secs))
    }

    /// The clients' lock options: the expiry, a per-node timeout of a tenth of it, and
    /// quick retries.
    pub fn options(&self) -> Options {
        Options::new()
            .expiry(self.expiry)
            .timeout_factor(0.1)
            .tries(10_000)
            .retry_delay(Duration::from_millis(10), Duration::from_millis(50))
    }

    /// How long `plan` runs.
    pub fn duration(&self, plan: Plan) -> Duration {
        match plan {
            Plan::Model => self.model,
            Plan::Minority => self.minority,
            Plan::Outside => self.outside,
            Plan::Canary => self.canary,
        }
    }

    /// How the clients behave in `plan`: the minority plan gives each client a name of
    /// its own (no waiting on each other); outside the model, holds are longer (20 ms to
    /// 200 ms), to give faults there a chance to land while a lock is held; the canary's
    /// holders never overrun.
    pub fn workload(&self, plan: Plan) -> Workload {
        match plan {
            Plan::Minority => Workload {
                dedicated: true,
                ..self.workload
            },
            Plan::Outside => Workload {
                hold: (Duration::from_millis(20), Duration::from_millis(200)),
                ..self.workload
            },
            // Holdings that run out would only make the canary's run longer.
            Plan::Canary => Workload {
                overrun_chance: 0.0,
                ..self.workload
            },
            Plan::Model => self.workload,
        }
    }

    pub(super) fn spec(&self, plan: Plan) -> Spec {
        Spec {
            nodes: self.nodes,
            duration: self.duration(plan),
            kill_hold: self.expiry + KILL_MARGIN,
        }
    }
}

fn env_u64(var: &str) -> Result<Option<u64>, HarnessError> {
    match std::env::var(var) {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| HarnessError::Env(format!("{var}={v:?} is not a u64: {e}"))),
        Err(_) => Ok(None),
    }
}

/// A seed of its own for each plan and client, derived from the run's seed (splitmix64).
pub(super) fn derive(seed: u64, salt: u64) -> u64 {
    let mut z = seed ^ salt.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(super) fn plan_salt(plan: Plan) -> u64 {
    match plan {
        Plan::Model => 1 << 32,
        Plan::Minority => 4 << 32,
        Plan::Outside => 2 << 32,
        Plan::Canary => 3 << 32,
    }
}
