//! `leases`: many leases held at once in one process on three nodes, to show that they
//! all renew in time while every node is healthy, what the renewals cost, and that a
//! lease sends what a plain lock sends to acquire and release.
//!
//! Renewals are counted twice: by the servers (script calls during the hold, divided by
//! the node count) and by the client (each rise of a lease's `Held { until }`). The CPU is
//! this process's during the hold less the sampling thread's, so it is what the renewal
//! tasks and the driver cost; the servers' CPU is reported beside it.

use std::time::{Duration, Instant as StdInstant};

use cpu_time::{ProcessTime, ThreadTime};
use futures::{StreamExt as _, TryStreamExt as _};
use redlock_conformance::Fleet;
use redlock_redis_rs::validity::drift;
use redlock_redis_rs::{Instant, Lease, LeaseState, Options, RedisPool, Redlock};
use tokio::runtime::Runtime;

use crate::{Result, fail, server, setup};

const NODES: usize = 3;
/// How often the main thread reads every lease's state during the hold.
const SAMPLE: Duration = Duration::from_millis(200);

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct LeasePlan {
    /// Leases held at once, each on its own name.
    pub(crate) count: usize,
    /// The lock expiry of every lease.
    pub(crate) expiry: Duration,
    /// How long all of them are held.
    pub(crate) hold: Duration,
    /// Leases acquired (and released) at a time.
    pub(crate) concurrency: usize,
}

impl Default for LeasePlan {
    fn default() -> Self {
        Self {
            count: 10_000,
            expiry: Duration::from_secs(5),
            hold: Duration::from_secs(20),
            concurrency: 64,
        }
    }
}

impl LeasePlan {
    fn options(&self) -> Options {
        Options::new().expiry(self.expiry)
    }

    /// How long before its end a lease renews, and the gap between one on-time renewal
    /// and the next: the usable time (validity less the safety margin) less that lead.
    fn timing(&self) -> (Duration, Duration) {
        let o = self.options();
        let usable = o
            .get_expiry()
            .saturating_sub(drift(o.get_expiry(), o.get_drift_factor()))
            .saturating_sub(o.get_safety_margin());
        let lead = usable
            .mul_f64(o.get_renew_factor())
            .max(o.get_node_timeout());
        (lead, usable.saturating_sub(lead))
    }
}

/// What the hold phase saw.
struct Held {
    elapsed: Duration,
    /// Server calls during the hold, all nodes together.
    calls: u64,
    /// CPU of this process less the sampler's.
    cpu: Duration,
    server_cpu: Duration,
    watch: Watch,
}

/// Starts three servers, takes `plan.count` leases, holds them, releases them, reports.
///
/// # Errors
///
/// Setup failures, and any lease lost or not released: every lease must stay held while
/// the nodes are healthy.
pub(crate) fn run(plan: &LeasePlan) -> Result<()> {
    let fleet = setup::start_fleet(NODES)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let urls = fleet.urls();
    let redlock = runtime
        .block_on(async { Redlock::with_options(RedisPool::from_urls(&urls)?, plan.options()) })?;
    let prefix = format!("rlbench:{:08x}:lease:", std::process::id());
    let trips = round_trips(&fleet, &runtime, &redlock, &prefix)?;
    let started = StdInstant::now();
    let leases = runtime.block_on(acquire(&redlock, plan, &prefix))?;
    let acquired = started.elapsed();
    eprintln!(
        "  {} leases acquired in {acquired:.2?}; holding",
        leases.len()
    );
    let held = hold(&fleet, &leases, plan)?;
    let unlock_failures = runtime.block_on(release(leases, plan.concurrency));
    drop(runtime);
    drop(fleet);
    println!("machine: {}", setup::machine());
    println!("lock()+unlock() on {NODES} nodes: {}", trips.0);
    println!("lease()+unlock() on {NODES} nodes: {}", trips.1);
    report(plan, acquired, &held);
    verdict(&held.watch, &unlock_failures, trips.0 == trips.1)
}

/// The server calls of one `lock()`+`unlock()` and of one `lease()`+`unlock()`, once the
/// connections are up.
fn round_trips(
    fleet: &Fleet,
    runtime: &Runtime,
    redlock: &Redlock<RedisPool>,
    prefix: &str,
) -> Result<(String, String)> {
    let lock = |name: String| async move {
        redlock.mutex(&name)?.lock().await?.unlock().await?;
        Ok::<_, redlock_redis_rs::Error>(())
    };
    let lease = |name: String| async move {
        redlock.mutex(&name)?.lease().await?.unlock().await?;
        Ok::<_, redlock_redis_rs::Error>(())
    };
    runtime.block_on(lock(format!("{prefix}warm")))?;
    server::reset(fleet)?;
    runtime.block_on(lock(format!("{prefix}lock")))?;
    let locked = server::describe(&server::calls(fleet)?);
    server::reset(fleet)?;
    runtime.block_on(lease(format!("{prefix}lease")))?;
    let leased = server::describe(&server::calls(fleet)?);
    Ok((locked, leased))
}

/// Takes `plan.count` leases on distinct names, `plan.concurrency` at a time.
async fn acquire(
    redlock: &Redlock<RedisPool>,
    plan: &LeasePlan,
    prefix: &str,
) -> Result<Vec<Lease>> {
    let leases = futures::stream::iter(0..plan.count)
        .map(|i| async move { redlock.mutex(&format!("{prefix}{i}"))?.lease().await })
        .buffer_unordered(plan.concurrency)
        .try_collect()
        .await?;
    Ok(leases)
}

/// Holds the leases for `plan.hold`, reading every lease's state each [`SAMPLE`] from
/// this (the main) thread, while the runtime's workers renew them.
fn hold(fleet: &Fleet, leases: &[Lease], plan: &LeasePlan) -> Result<Held> {
    let mut watch = Watch::new(leases, plan.timing().1);
    server::reset(fleet)?;
    let server_cpu = server::cpu(fleet)?;
    let (process, sampler) = (ProcessTime::try_now()?, ThreadTime::try_now()?);
    let start = StdInstant::now();
    while start.elapsed() < plan.hold {
        std::thread::sleep(SAMPLE.min(plan.hold.saturating_sub(start.elapsed())));
        watch.sample(leases);
    }
    let cpu = process
        .try_elapsed()?
        .saturating_sub(sampler.try_elapsed()?);
    let elapsed = start.elapsed();
    let calls = server::script_calls(&server::calls(fleet)?);
    let server_cpu = server::cpu(fleet)?.saturating_sub(server_cpu);
    Ok(Held {
        elapsed,
        calls,
        cpu,
        server_cpu,
        watch,
    })
}

/// Releases every lease, `concurrency` at a time; returns the failures.
async fn release(leases: Vec<Lease>, concurrency: usize) -> Vec<String> {
    futures::stream::iter(leases)
        .map(|lease| async move { lease.unlock().await.err().map(|e| e.to_string()) })
        .buffer_unordered(concurrency)
        .filter_map(|failure| async move { failure })
        .collect()
        .await
}

/// What the sampler saw of every lease: renewals, how late each was, losses.
struct Watch {
    /// The last `until` seen per lease; `None` once lost.
    last: Vec<Option<Instant>>,
    /// The gap between `until`s of on-time renewals.
    interval: Duration,
    renewals: u64,
    /// How much later than scheduled each renewal started.
    lateness: Vec<Duration>,
    lost: usize,
    first_loss: Option<String>,
}

impl Watch {
    fn new(leases: &[Lease], interval: Duration) -> Self {
        let mut watch = Self {
            last: vec![None; leases.len()],
            interval,
            renewals: 0,
            lateness: Vec::new(),
            lost: 0,
            first_loss: None,
        };
        for (i, lease) in leases.iter().enumerate() {
            match lease.signal().state() {
                LeaseState::Held { until } => watch.last[i] = Some(until),
                LeaseState::Lost { reason, .. } => {
                    watch.lose(lease, &format!("{} ({reason})", reason.kind()));
                }
            }
        }
        watch
    }

    /// Reads every lease once. A renewal starts `lead` before the old `until` and sets the
    /// new one a usable time after it starts, so `new - old - interval` is its lateness.
    fn sample(&mut self, leases: &[Lease]) {
        for (i, lease) in leases.iter().enumerate() {
            let Some(Some(previous)) = self.last.get(i).copied() else {
                continue;
            };
            match lease.signal().state() {
                LeaseState::Held { until } if until > previous => {
                    self.renewals += 1;
                    let gap = until.saturating_duration_since(previous);
                    self.lateness.push(gap.saturating_sub(self.interval));
                    self.last[i] = Some(until);
                }
                LeaseState::Held { .. } => {}
                LeaseState::Lost { reason, .. } => {
                    self.last[i] = None;
                    self.lose(lease, &format!("{} ({reason})", reason.kind()));
                }
            }
        }
    }

    fn lose(&mut self, lease: &Lease, why: &str) {
        self.lost += 1;
        let first = || format!("{:?}: {why}", lease.name());
        self.first_loss.get_or_insert_with(first);
    }

    /// The lateness at quantile `q`, zero when no renewal was seen.
    fn lateness(&self, q: f64) -> Duration {
        let mut sorted = self.lateness.clone();
        sorted.sort_unstable();
        let last = sorted.len().saturating_sub(1);
        let at = (last as f64 * q).round() as usize;
        sorted.get(at.min(last)).copied().unwrap_or_default()
    }
}

fn report(plan: &LeasePlan, acquired: Duration, held: &Held) {
    let (lead, interval) = plan.timing();
    let w = &held.watch;
    let secs = held.elapsed.as_secs_f64();
    let renewals = held.calls as f64 / NODES as f64;
    let per_lease_s = |cpu: Duration| cpu.as_secs_f64() * 1e6 / plan.count as f64 / secs;
    println!(
        "plan: {} leases on {NODES} nodes, expiry {:?} (renewed {lead:.2?} before the end, \
         every {interval:.2?}), acquired {} at a time in {acquired:.2?}, held {:.1?}",
        plan.count, plan.expiry, plan.concurrency, held.elapsed
    );
    println!();
    println!(
        "| leases | nodes | expiry | held | renewals | renewals/s | lost | CPU ms / 1,000 \
         renewals | CPU µs / lease / s | servers' CPU µs / lease / s | lateness p50 / p99 / max |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    println!(
        "| {} | {NODES} | {:?} | {secs:.1} s | {renewals:.0} | {:.0} | {} | {:.1} | {:.1} | {:.1} \
         | {:.1?} / {:.1?} / {:.1?} |",
        plan.count,
        plan.expiry,
        renewals / secs,
        w.lost,
        held.cpu.as_secs_f64() * 1e3 / renewals.max(1.0) * 1000.0,
        per_lease_s(held.cpu),
        per_lease_s(held.server_cpu),
        w.lateness(0.5),
        w.lateness(0.99),
        w.lateness(1.0),
    );
    println!();
    println!(
        "renewals: {renewals:.0} by the servers ({} script calls / {NODES} nodes), {} seen by \
         the client; per lease {:.1}",
        held.calls,
        w.renewals,
        renewals / plan.count as f64
    );
}

/// Fails the run if any lease was lost or not released, or a lease sent more calls to
/// acquire and release than a lock.
fn verdict(watch: &Watch, unlock_failures: &[String], same_calls: bool) -> Result<()> {
    println!(
        "summary: lost={} unlock_failed={} max_lateness_ms={} lease_calls_as_lock={same_calls}",
        watch.lost,
        unlock_failures.len(),
        watch.lateness(1.0).as_millis()
    );
    if let Some(first) = &watch.first_loss {
        let lost = watch.lost;
        return Err(fail(format!(
            "{lost} lease(s) lost while every node was healthy; first: {first}"
        )));
    }
    if let Some(first) = unlock_failures.first() {
        let n = unlock_failures.len();
        return Err(fail(format!("{n} unlock(s) failed; first: {first}")));
    }
    if !same_calls {
        return Err(fail(
            "lease()+unlock() sent other calls than lock()+unlock()",
        ));
    }
    Ok(())
}
