//! The servers and the contender list: one line per contender.

use std::sync::Arc;
use std::time::Duration;

use redlock_conformance::Fleet;
use redlock_deadpool::DeadpoolPool;
use redlock_fred::FredPool;
use redlock_redis_rs::redis;
use redlock_redis_rs::scripts::{LOCK, UNLOCK};
use redlock_redis_rs::{Options, RedisPool, Redlock};

use crate::contender::{Client, CycleEntry, Entry, LockEntry, Role};
use crate::floor::{DeadpoolFloor, FredFloor, RedisFloor};
use crate::locks::Rslock;
use crate::waits::Planter;
use crate::{Context as _, Result, fail};

/// Starts `n` throwaway `redis-server`s on loopback ports (killed when the fleet drops),
/// and waits until they are older than the lock's default restart quarantine (the default
/// expiry plus its drift allowance, and two seconds for `INFO`'s whole seconds): the
/// contenders run with the lock's defaults, quarantine on, and new servers get no vote
/// before then.
pub(crate) fn start_fleet(n: usize) -> Result<Fleet> {
    let fleet =
        Fleet::start(n).map_err(|e| fail(format!("cannot start {n} redis-server(s): {e}")))?;
    let defaults = Options::new();
    let quarantine = defaults.get_expiry() + defaults.get_drift() + Duration::from_secs(2);
    eprintln!("waiting {quarantine:?} for the new servers to leave restart quarantine");
    std::thread::sleep(quarantine);
    Ok(fleet)
}

/// Every contender over the nodes at `urls`. A new driver is one more line here.
pub(crate) async fn entries(urls: &[String]) -> Result<Vec<Box<dyn Entry>>> {
    use Client::{Deadpool, Fred, RedisRs};
    let redis_rs = || -> Result<_> {
        let pools = RedisPool::from_urls(urls).context("redis-rs driver")?;
        Ok(Redlock::new(pools)?)
    };
    let fred = || -> Result<_> {
        let pools = FredPool::from_urls(urls).context("fred driver")?;
        Ok(Redlock::new(pools)?)
    };
    let deadpool = || -> Result<_> {
        let pools = DeadpoolPool::from_urls(urls).context("deadpool driver")?;
        Ok(Redlock::new(pools)?)
    };
    let rslock = || Rslock::new(urls).context("rslock");
    let planter = Arc::new(Planter::connect(urls).await?);
    Ok(vec![
        CycleEntry::boxed(
            Role::Floor(RedisRs),
            RedisFloor::new(urls).context("redis-rs floor")?,
        ),
        CycleEntry::boxed(
            Role::Floor(Fred),
            FredFloor::connect(urls).await.context("fred floor")?,
        ),
        CycleEntry::boxed(
            Role::Floor(Deadpool),
            DeadpoolFloor::connect(urls)
                .await
                .context("deadpool floor")?,
        ),
        LockEntry::boxed(
            Role::Driver(RedisRs),
            [redis_rs()?, redis_rs()?],
            planter.clone(),
            urls,
        ),
        LockEntry::boxed(
            Role::Driver(Fred),
            [fred()?, fred()?],
            planter.clone(),
            urls,
        ),
        LockEntry::boxed(
            Role::Driver(Deadpool),
            [deadpool()?, deadpool()?],
            planter.clone(),
            urls,
        ),
        LockEntry::boxed(Role::Rslock, [rslock()?, rslock()?], planter, urls),
    ])
}

/// Loads the core's scripts on every node, so that the floors' EVALSHA finds them, and
/// checks the SHA1s the server computes against the core's constants.
pub(crate) async fn load_scripts(urls: &[String]) -> Result<()> {
    for url in urls {
        let client = redis::Client::open(url.as_str()).context(url)?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .context(url)?;
        for script in [LOCK, UNLOCK] {
            let sha1: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(script.source())
                .query_async(&mut conn)
                .await
                .context(url)?;
            if sha1 != script.sha1() {
                let name = script.name();
                return Err(fail(format!(
                    "{url}: script {name} has SHA1 {sha1}, core says {}",
                    script.sha1()
                )));
            }
        }
    }
    Ok(())
}

/// A line naming the machine, for the results.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown cpu", str::trim);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let redis = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cores} cores ({model}); {redis}")
}
