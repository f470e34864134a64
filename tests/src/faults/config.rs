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
/// Environment variable that runs one plan instead of the default ones: `soak` (a long
/// run on many names) or `durable` (kill -9 with the data kept, and durable votes; the
/// servers need `WAITAOF`, so set `REDLOCK_SERVER` to a Valkey 8 or Redis 7.2+ server).
pub const PLAN_VAR: &str = "REDLOCK_FAULTS_PLAN";
/// How long each driver's soak runs, unless `REDLOCK_FAULTS_SECS` says.
const SOAK_SECS: u64 = 170;
/// The names of the soak.
const SOAK_NAMES: usize = 256;
/// The soak's servers.
const SOAK_NODES: usize = 3;
/// The soak's clients, per client of the other plans.
const SOAK_CLIENTS_PER_CLIENT: usize = 6;
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
    /// Length of each soak run (`REDLOCK_FAULTS_PLAN=soak`).
    pub soak: Duration,
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
    /// The plan that [`PLAN_VAR`] asks for instead of the default ones, if any.
    pub extra: Option<Plan>,
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
            soak: Duration::from_secs(SOAK_SECS),
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
            extra: None,
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
        let secs = env_u64(SECS_VAR)?;
        if secs == Some(0) {
            return Err(HarnessError::Env(format!("{SECS_VAR} must be at least 1")));
        }
        let mut config = Self::with_secs(seed, secs.unwrap_or(DEFAULT_SECS));
        if let Some(secs) = secs {
            config.soak = Duration::from_secs(secs);
        }
        config.extra = match std::env::var(PLAN_VAR).as_deref() {
            Err(_) | Ok("") => None,
            Ok("soak") => Some(Plan::Soak),
            Ok("durable") => Some(Plan::Durable),
            Ok(other) => {
                let message = format!("{PLAN_VAR}={other:?}: use soak or durable");
                return Err(HarnessError::Env(message));
            }
        };
        Ok(config)
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

    /// The lock options of `plan`'s clients: [`Config::options`], fenced in the fenced
    /// plan, with restart quarantine (its default period) in the quarantine plan, and
    /// durable votes in the durable plan.
    pub fn plan_options(&self, plan: Plan) -> Options {
        let options = self.options();
        match plan {
            Plan::Fenced => options.fenced(true),
            // A round decides as soon as it can: a paused node costs nothing then.
            Plan::Soak => options.fail_fast(true),
            Plan::Quarantine => {
                let period = self.expiry + options.get_drift();
                options.quarantine(period)
            }
            Plan::Durable => options.durable_votes(0),
            _ => options,
        }
    }

    /// How long `plan` runs: the fenced plan as long as the model's (its stalled holders
    /// hold a name for a second each), the quarantine and durable plans as long as the one
    /// outside the model; the soak, `SOAK_SECS` (or [`SECS_VAR`]).
    pub fn duration(&self, plan: Plan) -> Duration {
        match plan {
            Plan::Model | Plan::Fenced => self.model,
            Plan::Minority => self.minority,
            Plan::Canary => self.canary,
            Plan::Outside | Plan::Quarantine | Plan::Unquarantined | Plan::Durable => self.outside,
            Plan::Soak => self.soak,
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
            // Holders that stall past their lock before a fenced write, which the
            // resource must refuse once a newer holder wrote; waiters wait out a stalled
            // holding, so that one takes the lock and writes first.
            Plan::Fenced => Workload {
                stall_chance: 0.1,
                acquire_budget: self.expiry * 2,
                ..self.workload
            },
            // Short holdings on many names, for many operations.
            Plan::Soak => Workload {
                hold: (Duration::ZERO, Duration::from_millis(1)),
                think: (Duration::ZERO, Duration::ZERO),
                overrun_chance: 0.0005,
                extend_chance: 0.02,
                release_in_background: true,
                ..self.workload
            },
            Plan::Model | Plan::Quarantine | Plan::Unquarantined | Plan::Durable => self.workload,
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
            Plan::Soak => SOAK_NAMES,
            _ => self.names,
        }
    }

    /// How many clients lock in `plan`: more in the soak.
    pub fn clients(&self, plan: Plan) -> usize {
        match plan {
            Plan::Soak => self.clients * SOAK_CLIENTS_PER_CLIENT,
            _ => self.clients,
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

    /// How many servers `plan` runs: three in the soak, which goes straight to them
    /// (see [`Plan::direct`]), so that two cores serve more operations.
    pub fn nodes(&self, plan: Plan) -> usize {
        match plan {
            Plan::Soak => SOAK_NODES,
            _ => self.nodes,
        }
    }

    pub(super) fn spec(&self, plan: Plan) -> Spec {
        Spec {
            nodes: self.nodes(plan),
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
        Plan::Fenced => 5 << 32,
        // One nemesis for both: the runs differ only in quarantine.
        Plan::Quarantine | Plan::Unquarantined => 6 << 32,
        Plan::Durable => 7 << 32,
        Plan::Soak => 8 << 32,
    }
}
