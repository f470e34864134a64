//! Leases: a lock that renews itself while the work runs, and a signal that fires before
//! the lock's validity runs out once renewals can no longer succeed.
//!
//! ```text
//! cargo run --example lease
//! ```
//!
//! Takes a 2 s lease and works for three expiries, checking every 100 ms that it is still
//! held and every 500 ms that another client is refused; then kills two of the three
//! nodes and prints one line, `lease lost: reason=<kind> before_deadline_ms=<n>`: why the
//! lease was lost and how long before its validity deadline the signal fired. Exits
//! non-zero, saying why, if the lease was not held throughout or the signal fired late.
//!
//! Uses the comma-separated `REDLOCK_URLS` when set (it then skips the node-killing part,
//! since those servers are not its own); otherwise starts three throwaway local
//! `redis-server`s and stops them at the end.

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use redlock_conformance::Fleet;
use redlock_redis_rs::{Instant, Lease, LeaseSignal, LeaseState, Options, RedisPool, Redlock};
use tokio::time::sleep;

const EXPIRY: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(100);

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn Error>> {
    let (urls, mut fleet) = match std::env::var("REDLOCK_URLS") {
        Ok(list) => (list.split(',').map(|u| u.trim().to_owned()).collect(), None),
        Err(_) => {
            let fleet = Fleet::start(3)?;
            println!("started 3 local redis-servers");
            (fleet.urls(), Some(fleet))
        }
    };
    // Servers this example started are new: restart quarantine would give them no vote for
    // the expiry. Against servers of your own, keep it (the default).
    let fresh = fleet.is_some();
    let options = || {
        let options = Options::new().expiry(EXPIRY).tries(3);
        match fresh {
            true => options.quarantine(Duration::ZERO),
            false => options,
        }
    };
    let redlock = Redlock::with_options(RedisPool::from_urls(&urls)?, options())?;
    let mutex = redlock.mutex("example:lease")?;
    // Another client: its own connections, the same lock name.
    let other = Redlock::with_options(RedisPool::from_urls(&urls)?, options())?;
    let rival = other.mutex("example:lease")?;

    // The short form: work under a lease, released when it ends, dropped if the lease is lost.
    let rows = mutex
        .run(|signal| async move {
            signal.check(TICK)?; // right before a side effect
            Ok::<_, redlock_redis_rs::Error>(42)
        })
        .await??;
    println!("mutex.run: the work returned {rows}; the lock is released");

    let lease = mutex.lease().await?;
    let signal = lease.signal().clone();
    println!(
        "leased {:?}, held for {:?}",
        lease.name(),
        signal.remaining()
    );
    if let Err(why) = work(&signal, &rival, EXPIRY * 3).await {
        println!("FAIL: {why}");
        return Ok(ExitCode::FAILURE);
    }

    let Some(fleet) = fleet.as_mut() else {
        println!("REDLOCK_URLS is set: not killing servers that are not ours");
        lease.unlock().await?;
        println!("unlocked");
        return Ok(ExitCode::SUCCESS);
    };
    kill_majority(fleet, lease).await
}

/// Kills two of the three nodes and checks that the lease's signal fires before the
/// validity deadline, once renewals can no longer reach a quorum.
async fn kill_majority(fleet: &mut Fleet, lease: Lease) -> Result<ExitCode, Box<dyn Error>> {
    fleet.kill(0)?;
    fleet.kill(1)?;
    println!("killed 2 of 3 nodes (kill -9): renewals can no longer reach a quorum");
    let Some((kind, at, deadline)) = watch_loss(lease.signal()).await else {
        println!("FAIL: the lease was already lost when the nodes were killed");
        return Ok(ExitCode::FAILURE);
    };
    let early = deadline.saturating_duration_since(at);
    println!(
        "lease lost: reason={kind} before_deadline_ms={}",
        early.as_millis()
    );
    if let Err(e) = lease.unlock().await {
        println!("unlock with 2 of 3 nodes down fails, as it should: {e}");
    }
    if at >= deadline {
        println!(
            "FAIL: the signal fired {:?} after the deadline",
            at - deadline
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Works for `length`, checking every tick that the lease is held and every fifth tick
/// that `rival` (another client) cannot take the lock; counts the renewals seen.
async fn work(
    signal: &LeaseSignal,
    rival: &redlock_redis_rs::Mutex<RedisPool>,
    length: Duration,
) -> Result<(), String> {
    let (start, mut last_until, mut renewals) = (Instant::now(), held_until(signal)?, 0);
    for tick in 1.. {
        sleep(TICK).await;
        let until = held_until(signal)?;
        renewals += u32::from(until > last_until);
        last_until = until;
        if tick % 5 == 0 {
            match rival.try_lock().await {
                Err(e) if e.is_taken() => {}
                Err(e) => return Err(format!("another client's try_lock failed oddly: {e}")),
                Ok(_) => return Err("another client took the lock".into()),
            }
        }
        if start.elapsed() >= length {
            break;
        }
    }
    println!(
        "worked {:?}: held throughout, renewed {renewals} times, another client refused each time",
        start.elapsed()
    );
    Ok(())
}

fn held_until(signal: &LeaseSignal) -> Result<Instant, String> {
    match signal.state() {
        LeaseState::Held { until } => Ok(until),
        LeaseState::Lost { reason, .. } => {
            Err(format!("lease lost while the nodes were up: {reason}"))
        }
    }
}

/// Waits for the loss, keeping the last `Held { until }` seen: a renewal in flight when
/// the nodes died may still move it. Returns the reason's kind, when the signal fired and
/// that deadline; `None` if the lease was lost before anything was read.
async fn watch_loss(signal: &LeaseSignal) -> Option<(&'static str, Instant, Instant)> {
    let mut deadline = held_until(signal).ok()?;
    let reason = loop {
        tokio::select! {
            reason = signal.lost() => break reason,
            () = sleep(Duration::from_millis(10)) => {
                if let Ok(until) = held_until(signal) {
                    deadline = until;
                }
            }
        }
    };
    let LeaseState::Lost { at, .. } = signal.state() else {
        return None;
    };
    Some((reason.kind(), at, deadline))
}
