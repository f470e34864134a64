//! Behaviours under node faults: kills, restarts, pauses, lost script caches, and
//! cancellation.

use std::time::Duration;

use redlock_core::{ConnErrorKind, Pool, Redlock};

use super::{Factory, Testbed, manager, quick};
use crate::fleet::Fleet;

/// With two of five nodes killed, locking still works and uses the three left.
pub async fn minority_killed_still_locks<P: Pool>(factory: &impl Factory<P>) {
    let mut c = Testbed::start(5, quick(5_000), factory, "minority_killed");
    c.fleet.kill(0).expect("kill");
    c.fleet.kill(1).expect("kill");
    let name = c.key("lock");
    let guard = c
        .redlock
        .lock(&name)
        .await
        .expect("lock with a minority down");
    assert_eq!(c.holders(&name, guard.value()), 3);
    guard.unlock().await.expect("unlock with a minority down");
    assert!(c.values(&name).iter().all(Option::is_none));
}

/// With three of five nodes killed, locking fails, names the dead nodes, and leaves no
/// key on the live ones.
pub async fn majority_killed_fails_and_leaves_no_key<P: Pool>(factory: &impl Factory<P>) {
    let mut c = Testbed::start(5, quick(5_000).tries(2), factory, "majority_killed");
    for i in 0..3 {
        c.fleet.kill(i).expect("kill");
    }
    let name = c.key("lock");
    let err = c
        .redlock
        .lock(&name)
        .await
        .expect_err("lock with a majority down");
    assert!(err.is_no_quorum() && !err.is_taken(), "{err:?}");
    let failed: Vec<usize> = err.node_errors().iter().map(|e| e.node).collect();
    assert_eq!(failed, vec![0, 1, 2], "{err:?}");
    // The message names the lock, counts plainly, and names the dead nodes by address.
    let message = err.to_string();
    let counts = "not acquired: 2 of 5 nodes agreed, 3 needed; 3 could not be reached";
    assert!(
        message.starts_with(&format!("lock {name:?} {counts}")),
        "{message}"
    );
    for i in 0..3 {
        let address = format!("127.0.0.1:{}", c.fleet.port(i));
        assert!(message.contains(&address), "{message}");
    }
    assert_eq!(
        c.values(&name),
        vec![None; 5],
        "no key left on the live nodes"
    );
}

/// A paused (SIGSTOP) node costs an attempt no more than the per-node timeout: it is a
/// failed vote with a timeout error, and the other nodes decide.
pub async fn paused_node_is_bounded_by_node_timeout<P: Pool>(factory: &impl Factory<P>) {
    // The warm-up and the last lock have 1 s per node and three tries; only the attempt
    // that meets the paused node is cut to 200 ms and one try.
    let c = Testbed::start(3, quick(2_000), factory, "paused_node");
    let name = c.key("lock");
    c.cycle(&name).await;
    c.fleet.pause(0).expect("pause");
    c.fleet.set(1, &name, "other", 5_000).expect("set");
    let short = quick(2_000).timeout_factor(0.1).tries(1);
    let mutex = c.redlock.mutex_with(&name, short).expect("mutex");
    let attempt = tokio::time::timeout(Duration::from_secs(10), mutex.lock());
    let err = attempt
        .await
        .expect("attempt bounded")
        .expect_err("one paused, one taken");
    let paused = err
        .node_errors()
        .iter()
        .find(|e| e.node == 0)
        .expect("node 0 failed");
    assert_eq!(paused.error.kind(), ConnErrorKind::Timeout, "{err:?}");
    c.fleet.del(1, &name).expect("del");
    let attempt = tokio::time::timeout(Duration::from_secs(10), c.redlock.lock(&name));
    let guard = attempt
        .await
        .expect("attempt bounded")
        .expect("two healthy nodes");
    assert!(guard.is_valid());
    c.fleet.resume(0).expect("resume");
    guard.unlock().await.expect("unlock");
}

/// After `SCRIPT FLUSH` on every node, lock, extend and unlock still work (EVAL fallback).
pub async fn flushed_scripts_still_work<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, quick(5_000), factory, "flushed_scripts");
    let name = c.key("lock");
    c.cycle(&name).await;
    for i in 0..3 {
        c.fleet.flush_scripts(i).expect("flush");
        c.fleet.reset_stats(i).expect("reset");
    }
    let mut guard = c.redlock.lock(&name).await.expect("lock after flush");
    guard.extend().await.expect("extend after flush");
    guard.unlock().await.expect("unlock after flush");
    for i in 0..3 {
        // Lock and unlock each met NOSCRIPT once, then EVAL loaded them; extend reused the
        // lock script: exactly one extra round trip per flushed script, no more.
        let count = |cmd| c.fleet.command_count(i, cmd).expect("stats");
        assert_eq!(count("evalsha"), 3, "node {i}: lock, extend, unlock");
        assert_eq!(count("eval"), 2, "node {i}: one EVAL per flushed script");
    }
    assert!(c.values(&name).iter().all(Option::is_none));
}

/// A node killed and restarted (empty) takes part in locks again.
pub async fn restarted_node_is_used_again<P: Pool>(factory: &impl Factory<P>) {
    let mut c = Testbed::start(3, quick(5_000), factory, "restarted_node");
    let name = c.key("lock");
    c.cycle(&name).await;
    c.fleet.kill(2).expect("kill");
    let guard = c
        .redlock
        .lock(&name)
        .await
        .expect("lock with one node down");
    assert_eq!(c.holders(&name, guard.value()), 2);
    guard.unlock().await.expect("unlock");
    c.fleet.restart(2).expect("restart");
    assert_eventually_all_nodes_lock(&c, &name).await;
}

/// A node that is down when the lock manager is built does not make building fail, and is
/// used once it is up.
pub async fn node_down_at_build_is_used_once_up<P: Pool>(factory: &impl Factory<P>) {
    let mut fleet = Fleet::start(3).expect("fleet");
    fleet.kill(0).expect("kill");
    let redlock = manager(&fleet, quick(5_000), factory);
    let c = Testbed::from_parts(fleet, redlock, "down_at_build");
    let name = c.key("lock");
    let guard = c.redlock.lock(&name).await.expect("lock with node 0 down");
    assert_eq!(c.holders(&name, guard.value()), 2);
    guard.unlock().await.expect("unlock");
    // With a 2.5 s per-node timeout, the down node must fail as refused, not time out.
    let pool = factory(&c.fleet.url(0)).expect("factory");
    let single = Redlock::with_options(vec![pool], quick(5_000).tries(1)).expect("options");
    let err = single.lock(&name).await.expect_err("node 0 is down");
    let kinds: Vec<_> = err.node_errors().iter().map(|e| e.error.kind()).collect();
    assert_eq!(kinds, vec![ConnErrorKind::Connection], "{err:?}");
    let mut c = c;
    c.fleet.restart(0).expect("restart");
    assert_eventually_all_nodes_lock(&c, &name).await;
}

async fn assert_eventually_all_nodes_lock<P: Pool>(c: &Testbed<P>, name: &str) {
    for _ in 0..50 {
        let guard = c.redlock.lock(name).await.expect("lock");
        let holders = c.holders(name, guard.value());
        guard.unlock().await.expect("unlock");
        if holders == c.fleet.len() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the restarted node never took part in a lock");
}

/// Dropping an acquire future part-way leaves no key: the healthy nodes are released at
/// once, and the node whose reply was pending is clean by the time its key would expire.
pub async fn cancelled_acquire_leaves_no_key<P: Pool>(factory: &impl Factory<P>) {
    let options = quick(3_000).timeout_factor(0.9).tries(1);
    let c = Testbed::start(3, options, factory, "cancelled_acquire");
    let name = c.key("lock");
    c.cycle(&name).await;
    c.fleet.pause(0).expect("pause");
    let cut = tokio::time::timeout(Duration::from_millis(300), c.redlock.lock(&name)).await;
    assert!(
        cut.is_err(),
        "the attempt waited on the paused node and was cut short"
    );
    let healthy = |c: &Testbed<P>| {
        (1..3)
            .filter_map(|i| c.fleet.get(i, &name).expect("get"))
            .count()
    };
    let until = tokio::time::Instant::now() + Duration::from_millis(1_500);
    while healthy(&c) > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        healthy(&c),
        0,
        "healthy nodes released well before the 3 s expiry"
    );
    c.fleet.resume(0).expect("resume");
    let left = c.wait_gone(&name, Duration::from_millis(4_000)).await;
    assert_eq!(left, vec![None; 3], "no key left anywhere");
}

/// A guard dropped without `unlock` releases in the background, long before expiry.
pub async fn dropped_guard_releases<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, quick(30_000), factory, "dropped_guard");
    let name = c.key("lock");
    let guard = c.redlock.lock(&name).await.expect("lock");
    assert_eq!(c.holders(&name, guard.value()), 3);
    drop(guard);
    let left = c.wait_gone(&name, Duration::from_secs(3)).await;
    assert_eq!(left, vec![None; 3], "released in the background");
    let again = c
        .redlock
        .mutex(&name)
        .expect("mutex")
        .try_lock()
        .await
        .expect("free again");
    again.unlock().await.expect("unlock");
}

/// A node that answers later than the client library's own default timeout, but within
/// the lock's per-node timeout, still casts its vote: the lock's timeout is the only bound.
pub async fn slow_reply_within_node_timeout_counts<P: Pool>(factory: &impl Factory<P>) {
    let options = quick(20_000).timeout_factor(0.1).tries(1);
    let c = Testbed::start(1, options, factory, "slow_reply");
    let name = c.key("lock");
    c.cycle(&name).await;
    c.fleet.pause(0).expect("pause");
    let resume = tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(800)).await;
    });
    let attempt = c.redlock.lock(&name);
    let (guard, _) = tokio::join!(attempt, async {
        let _ = resume.await;
        c.fleet.resume(0).expect("resume");
    });
    let guard = guard.expect("a reply after 800 ms is within the 2 s per-node timeout");
    assert_eq!(c.holders(&name, guard.value()), 1);
    guard.unlock().await.expect("unlock");
}

/// With fail-fast, a lock still ends up on every healthy node, and unlock removes it from
/// all of them.
pub async fn fail_fast_locks_and_releases_every_node<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(5, quick(5_000).fail_fast(true), factory, "fail_fast");
    let name = c.key("lock");
    for _ in 0..5 {
        let guard = c.redlock.lock(&name).await.expect("lock");
        guard.unlock().await.expect("unlock");
        assert!(
            c.values(&name).iter().all(Option::is_none),
            "unlock left a key behind"
        );
    }
    let guard = c.redlock.lock(&name).await.expect("lock");
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while c.holders(&name, guard.value()) < 5 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        c.holders(&name, guard.value()),
        5,
        "every node locked, not only a quorum"
    );
    guard.unlock().await.expect("unlock");
}
