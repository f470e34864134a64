//! Quickstart: lock, contention, extend, unlock, and locking on with a minority of nodes
//! down.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Uses the comma-separated `REDLOCK_URLS` when set (it then skips the node-killing part,
//! since those servers are not its own); otherwise starts five throwaway local
//! `redis-server`s and stops them at the end.

use std::error::Error;
use std::time::Duration;

use redlock_conformance::Fleet;
use redlock_redis_rs::{Options, RedisPool, Redlock};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (urls, mut fleet) = match std::env::var("REDLOCK_URLS") {
        Ok(list) => (list.split(',').map(|u| u.trim().to_owned()).collect(), None),
        Err(_) => {
            let fleet = Fleet::start(5)?;
            println!("started 5 local redis-servers on ports {:?}", ports(&fleet));
            (fleet.urls(), Some(fleet))
        }
    };

    let options = Options::new().expiry(Duration::from_secs(10)).tries(3);
    // Servers this example started are new: restart quarantine would give them no vote for
    // the expiry. Against servers of your own, keep it (the default).
    let options = match fleet {
        Some(_) => options.quarantine(Duration::ZERO),
        None => options,
    };
    let redlock = Redlock::with_options(RedisPool::from_urls(&urls)?, options)?;
    let mutex = redlock.mutex("quickstart:report")?;

    let mut guard = mutex.lock().await?;
    println!(
        "locked {:?} on {} nodes, valid for {:?}",
        guard.name(),
        urls.len(),
        guard.remaining()
    );

    match mutex.try_lock().await {
        Err(e) if e.is_taken() => println!("a second contender is refused: {e}"),
        other => println!("unexpected: {other:?}"),
    }

    guard.extend_to(Duration::from_secs(30)).await?;
    println!("extended: now valid for {:?}", guard.remaining());

    guard.unlock().await?;
    println!("unlocked");

    if let Some(fleet) = fleet.as_mut() {
        fleet.kill(0)?;
        fleet.kill(1)?;
        println!("killed 2 of 5 nodes (kill -9)");
        let guard = mutex.lock().await?;
        println!(
            "locked again with 3 of 5 nodes: valid for {:?}",
            guard.remaining()
        );
        guard.unlock().await?;
        println!("unlocked");
    }
    drop(fleet);
    println!("done");
    Ok(())
}

fn ports(fleet: &Fleet) -> Vec<u16> {
    (0..fleet.len()).map(|i| fleet.port(i)).collect()
}
