//! One locking function, run unchanged through each driver.
//!
//! ```text
//! cargo run --example swap -- --driver redis-rs
//! cargo run --example swap -- --driver fred
//! cargo run --example swap -- --driver deadpool
//! ```
//!
//! Uses the comma-separated `REDLOCK_URLS` when set; otherwise starts three throwaway local
//! `redis-server`s and stops them at the end.

use std::error::Error;
use std::time::Duration;

use redlock_conformance::Fleet;
use redlock_core::{Options, Pool, Redlock};

/// The locking code: generic over the driver, it never names one.
async fn run_jobs<P: Pool>(pools: Vec<P>, fresh: bool) -> redlock_core::Result<()> {
    let options = Options::new().expiry(Duration::from_secs(5));
    // Servers this example started are new: restart quarantine would give them no vote for
    // the expiry. Against servers of your own, keep it (the default).
    let options = match fresh {
        true => options.quarantine(Duration::ZERO),
        false => options,
    };
    let redlock = Redlock::with_options(pools, options)?;
    for job in 1..=3 {
        let mut guard = redlock.lock("swap:nightly-report").await?;
        guard.extend().await?;
        println!(
            "  job {job}: {:?} held for {:?} more",
            guard.name(),
            guard.remaining()
        );
        guard.unlock().await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let driver = driver_arg()?;
    let (urls, fleet) = match std::env::var("REDLOCK_URLS") {
        Ok(list) => (list.split(',').map(|u| u.trim().to_owned()).collect(), None),
        Err(_) => {
            let fleet = Fleet::start(3)?;
            (fleet.urls(), Some(fleet))
        }
    };
    println!("driver {driver} over {} nodes", urls.len());
    let fresh = fleet.is_some();
    match driver.as_str() {
        "redis-rs" => run_jobs(redlock_redis_rs::RedisPool::from_urls(&urls)?, fresh).await?,
        "fred" => run_jobs(redlock_fred::FredPool::from_urls(&urls)?, fresh).await?,
        "deadpool" => run_jobs(redlock_deadpool::DeadpoolPool::from_urls(&urls)?, fresh).await?,
        other => {
            return Err(format!("unknown driver {other:?}: use redis-rs, fred or deadpool").into());
        }
    }
    drop(fleet);
    println!("done");
    Ok(())
}

const USAGE: &str = "usage: swap --driver <redis-rs|fred|deadpool>";

fn driver_arg() -> Result<String, String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (Some("--driver"), Some(name)) if DRIVERS.contains(&name.as_str()) => Ok(name),
        (Some("--driver"), Some(name)) => Err(format!("unknown driver {name:?}; {USAGE}")),
        _ => Err(USAGE.into()),
    }
}

const DRIVERS: [&str; 3] = ["redis-rs", "fred", "deadpool"];
