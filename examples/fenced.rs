//! Fencing tokens: a holder that stalls past its lock is refused by the resource.
//!
//! ```text
//! cargo run --example fenced
//! ```
//!
//! Uses the comma-separated `REDLOCK_URLS` when set; otherwise starts three throwaway
//! local `redis-server`s and stops them at the end. The protected data is a key on the
//! first node, written with `fence::fenced_set`, which refuses a write under a token
//! older than the last writer's.

use std::error::Error;
use std::time::Duration;

use redlock_conformance::Fleet;
use redlock_redis_rs::fence::{Write, fenced_set};
use redlock_redis_rs::{Options, Pool, RedisPool, Redlock};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (urls, fleet) = match std::env::var("REDLOCK_URLS") {
        Ok(list) => (list.split(',').map(|u| u.trim().to_owned()).collect(), None),
        Err(_) => {
            let fleet = Fleet::start(3)?;
            (fleet.urls(), Some(fleet))
        }
    };
    let options = Options::new()
        .expiry(Duration::from_millis(500))
        .fenced(true);
    // Servers this example started are new: restart quarantine would give them no vote for
    // the expiry. Against servers of your own, keep it (the default).
    let options = match fleet {
        Some(_) => options.quarantine(Duration::ZERO),
        None => options,
    };
    let redlock = Redlock::with_options(RedisPool::from_urls(&urls)?, options)?;
    let data = RedisPool::from_url(&urls[0])?;
    let (key, fence_key) = ("{example:fenced}:total", "{example:fenced}:total:fence");

    let slow = redlock.lock("example:fenced").await?;
    let old = slow.token().ok_or("a fenced lock has a token")?;
    println!("the first holder got token {old}, and stalls past its 500 ms lock");
    tokio::time::sleep(Duration::from_millis(600)).await;

    let next = redlock.lock("example:fenced").await?;
    let new = next.token().ok_or("a fenced lock has a token")?;
    let written = fenced_set(&mut data.get().await?, key, fence_key, "by the second", new).await?;
    println!("the second holder got token {new} and wrote: {written:?}");

    match fenced_set(&mut data.get().await?, key, fence_key, "by the first", old).await? {
        Write::Stale { newer } => {
            println!("the first holder wakes and writes under {old}: refused, {newer} wrote first")
        }
        Write::Written => return Err("a stale write went through".into()),
    }
    next.unlock().await?;
    drop(slow);
    drop(fleet);
    Ok(())
}
