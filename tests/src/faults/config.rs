//! The shape of the runs, from the environment.

use std::time::Duration;

use redlock_core::Options;

use super::HarnessError;
use super::clients::Workload;
use super::long_work::LongWork;
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
/// Attempts of a long-work client's acquire: about a second while the other long-work
/// client holds the name, so that an acquire started just before the run's end cannot
/// wait out a whole long holding and then start another.
const LONG_WORK_TRIES: u32 = 30;
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
    /// Long-work clients, on top of `clients`: they hold a name of their own under
    /// `Mutex::run` for several expiries at a time (see [`Config::long_work_name`]).
    pub long_workers: usize,
    /// Lock names they share.
    pub names: usize,
    /// The locks' expiry, which is also the longest TTL any key gets.
    pub expiry: Duration,
    /// How the clients behave.
    pub workload: Workload,
    /// How the long-work clients behave.
    pub long_work: LongWork,
}

impl Default for Config {
    fn default() -> Self {
        Self::with_secs(rand::random(), DEFAULT_SECS)
    }
}

impl Config {
    /// 5 nodes, 8 clients and 2 long-work clients, 3 names, 1 s expiry; a run inside the
    /// model of `secs` seconds, a 3.6 s run with a minority down, one outside the model of
    /// 3/8 of `secs` (at least 3 s), and a 1.5 s canary. Long work lasts 2.5 to 4
    /// expiries, so that every holding stands on renewals.
    pub fn with_secs(seed: u64, secs: u64) -> Self {
        let model = Duration::from_secs(secs);
        let expiry = Duration::from_secs(1);
        let workload = Workload::default();
        Self {
            seed,
            model,
            minority: Duration::from_millis(3_600),
            outside: (model * 3 / 8).max(Duration::from_secs(3)),
            canary: Duration::from_millis(1_500),
            nodes: 5,
            clients: 8,
            long_workers: 2,
            names: 3,
            expiry,
            workload,
            long_work: LongWork {
                length: (expiry * 5 / 2, expiry * 4),
                step: workload.hold,
                think: workload.think,
                margin: workload.margin,
                heeds: true,
            },
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

    /// The clients' lock options: the expiry, a per-node timeout of a tenth of it, quick
    /// retries, and no restart quarantine (the servers are new; the plans that test
    /// quarantine switch it on).
    pub fn options(&self) -> Options {
        Options::new()
            .expiry(self.expiry)
            .timeout_factor(0.1)
            .tries(10_000)
            .retry_delay(Duration::from_millis(10), Duration::from_millis(50))
            .quarantine(Duration::ZERO)
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

    /// How long-work client `worker` (from 0) behaves in `plan`: in the canary, the last
    /// one ignores its lease, so that the checker must find its writes after a loss.
    pub fn long_work(&self, plan: Plan, worker: usize) -> LongWork {
        let broken = plan == Plan::Canary && worker + 1 == self.long_workers;
        LongWork {
            heeds: !broken,
            ..self.long_work
        }
    }

    /// The long-work clients' lock options: the clients' ones, with an acquire of about a
    /// second.
    pub fn long_work_options(&self) -> Options {
        self.options().tries(LONG_WORK_TRIES)
    }

    /// How many names the clients lock in `plan`: one per client in the minority plan,
    /// else the shared names.
    pub fn names(&self, plan: Plan) -> usize {
        match plan {
            Plan::Minority => self.clients,
            _ => self.names,
        }
    }

    /// How many names the long-work clients hold in `plan`, after the clients' names.
    pub fn long_work_names(&self, plan: Plan) -> usize {
        match plan {
            _ if self.long_workers == 0 => 0,
            Plan::Minority => self.long_workers,
            _ => 1,
        }
    }

    /// Which name (index) long-work client `worker` holds in `plan`. In the minority plan,
    /// one of its own, so that no call waits for another client. Otherwise all share one
    /// name that the clients do not use: each long holding is contended by the other
    /// long-work clients' acquires, while the clients' traffic stays what it was (a client
    /// that drew a name held for seconds would spend its whole acquire budget waiting).
    pub fn long_work_name(&self, plan: Plan, worker: usize) -> usize {
        match plan {
            Plan::Minority => self.names(plan) + worker,
            _ => self.names(plan),
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
