//! Restart quarantine and durable votes against real servers: nodes that restarted without their data get no
//! vote until the quarantine period after their start has passed, and a driver reads a
//! node's age once per connection, not once per call.

use std::time::Duration;

use redlock_core::Pool;
use tokio::time::Instant;

use super::{Factory, Testbed, quick};

/// `INFO` calls node `i` answered since its stats were reset.
fn info_calls(c: &Testbed<impl Pool>, i: usize) -> u64 {
    c.fleet.command_count(i, "info").expect("commandstats")
}

/// Once the new servers are older than the period, ten lock cycles read each node's age once (one `INFO` per node: the driver's epoch
/// does not change while its connection stays). Two of three nodes then restart without
/// their data: until the quarantine period has nearly passed, every `try_lock` is refused,
/// and the refusals say the nodes restarted too recently; after the period, the lock is
/// acquired again.
pub async fn restarted_nodes_get_no_vote_until_their_quarantine_ends<P: Pool>(
    factory: &impl Factory<P>,
) {
    let period = Duration::from_secs(2);
    let mut c = Testbed::start(3, quick(1_000).quarantine(period), factory, "quarantine");
    // `INFO` counts whole seconds, and the lock adds one for their error: two seconds more
    // and the servers are surely old enough.
    tokio::time::sleep(period + Duration::from_secs(2)).await;
    for i in 0..3 {
        c.fleet.reset_stats(i).expect("reset stats");
    }
    let name = c.key("lock");
    for _ in 0..10 {
        c.cycle(&name).await;
    }
    let infos: Vec<u64> = (0..3).map(|i| info_calls(&c, i)).collect();
    assert_eq!(infos, [1, 1, 1], "INFO server once per connection");
    let restarted = Instant::now();
    for i in 0..2 {
        c.fleet.kill(i).expect("kill");
        c.fleet.restart(i).expect("restart empty");
    }
    // Until shortly before the period ends (counted from before the kills, so never too
    // late), every try is refused; at least one refusal names the quarantine (the first
    // may only say the old connection broke, and a driver may take a while to reconnect).
    let mut quarantined = 0;
    while restarted.elapsed() < period - Duration::from_millis(200) {
        match c.redlock.try_lock(&name).await {
            Ok(_) => panic!("locked {:?} after two nodes restarted", restarted.elapsed()),
            Err(e) => quarantined += usize::from(format!("{e:?}").contains("restarted too")),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(quarantined > 0, "no refusal named the quarantine");
    let until = restarted + period + Duration::from_secs(10);
    loop {
        match c.redlock.try_lock(&name).await {
            Ok(guard) => break guard.unlock().await.expect("unlock"),
            Err(e) if Instant::now() >= until => panic!("no lock after the quarantine: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(
        restarted.elapsed() >= period,
        "locked before the quarantine ended"
    );
}

/// Durable votes: on a server with `WAITAOF` and `appendonly yes`, a durable lock is
/// taken, extended and released; with `appendonly no` (or on a server without `WAITAOF`,
/// such as Redis 7.0) every vote fails, at once, with an error that names `WAITAOF`:
/// never a silent yes.
pub async fn durable_votes_count_only_what_reached_the_append_only_file<P: Pool>(
    factory: &impl Factory<P>,
) {
    let c = Testbed::start(3, quick(5_000).durable_votes(0), factory, "durable");
    let name = c.key("lock");
    let refused = c.redlock.lock(&name).await.expect_err("appendonly is off");
    assert!(!refused.is_retryable(), "{refused}");
    let text = crate::printed(&refused);
    assert!(text.contains("WAITAOF"), "{text}");
    assert_eq!(c.values(&name), vec![None; 3], "no key left");
    if !c.fleet.has_waitaof(0).expect("command info") {
        return;
    }
    for i in 0..3 {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("SET").arg("appendonly").arg("yes");
        c.fleet.query::<()>(i, &cmd).expect("appendonly yes");
    }
    let until = Instant::now() + Duration::from_secs(10);
    let mut guard = loop {
        match c.redlock.lock(&name).await {
            Ok(guard) => break guard,
            // The first rewrite of the append-only file may still run.
            Err(e) if Instant::now() < until => {
                drop(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no durable lock with appendonly yes: {e}"),
        }
    };
    guard.extend().await.expect("durable extend");
    guard.unlock().await.expect("unlock");
}
