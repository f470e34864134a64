//! Waiters woken by release announcements, on real servers: a waiter with a 30 s retry
//! delay acquires promptly after the holder unlocks, waiters of one manager share one
//! subscription per node and leave none behind, and a server that denies pub/sub leaves
//! waiters polling.
//!
//! No duration is asserted: a generous timeout (well under the 30 s delay) turns a
//! waiter that was not woken into a failure.

use std::time::Duration;

use redlock_core::{Options, Pool};

use super::{Factory, Testbed, manager, quick};

/// Far longer than any wake takes on a loaded machine, far shorter than the delay.
const WAKE_LIMIT: Duration = Duration::from_secs(10);

/// Waiters that would poll every 30 s, and hold for a minute (so that a waiter behind
/// them that polled would retry only when their keys expire).
fn slow_poll() -> Options {
    quick(60_000)
        .tries(100)
        .retry_delay(Duration::from_secs(30), Duration::from_secs(30))
}

/// How many subscribers each node has on the release channel of `name` (`PUBSUB
/// NUMSUB`).
fn subscribers<P: Pool>(c: &Testbed<P>, name: &str) -> Vec<i64> {
    (0..c.fleet.len())
        .map(|i| c.fleet.subscribers(i, name).expect("pubsub numsub"))
        .collect()
}

/// Waits, up to 10 s, until every node has `n` subscribers on the channel of `name`.
async fn await_subscribers<P: Pool>(c: &Testbed<P>, name: &str, n: i64) {
    let start = tokio::time::Instant::now();
    loop {
        let now = subscribers(c, name);
        if now.iter().all(|&m| m == n) {
            return;
        }
        assert!(
            start.elapsed() < WAKE_LIMIT,
            "subscribers per node stayed {now:?}, expected {n} on each"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The holder's options: a minute of expiry, so that a waiter that polled (it retries
/// when the holder's key expires, as the refusal says) would come after [`WAKE_LIMIT`].
fn holding() -> Options {
    quick(60_000)
}

/// A waiter with a 30 s retry delay acquires promptly once the holder (another lock
/// manager, as another process would be) unlocks: the announcement woke it.
pub async fn waiter_is_woken_when_the_holder_unlocks<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, slow_poll(), factory, "woken_waiter");
    let name = c.key("lock");
    let holder = manager(&c.fleet, holding(), factory);
    let held = holder.lock(&name).await.expect("holder locks");
    let waiter = c.redlock.mutex(&name).expect("name");
    let waiting = tokio::spawn(async move { waiter.lock().await });
    await_subscribers(&c, &name, 1).await;
    held.unlock().await.expect("holder unlocks");
    let guard = tokio::time::timeout(WAKE_LIMIT, waiting)
        .await
        .expect("the waiter was not woken by the release (it polls every 30 s)")
        .expect("waiter task")
        .expect("waiter locks");
    // A quorum at least: woken by the first node's announcement, the waiter may get there
    // before the holder's release reached every node.
    assert!(c.holders(&name, guard.value()) >= 2);
    guard.unlock().await.expect("unlock");
}

/// Three waiters of one manager share one subscriber connection per node, and no
/// subscription is left on any node once they are all gone.
pub async fn waiters_share_one_subscription_and_leave_none<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, slow_poll(), factory, "shared_subscription");
    let name = c.key("lock");
    let holder = manager(&c.fleet, holding(), factory);
    let held = holder.lock(&name).await.expect("holder locks");
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let waiter = c.redlock.mutex(&name).expect("name");
            tokio::spawn(async move {
                let guard = waiter.lock().await.expect("waiter locks");
                tokio::time::sleep(Duration::from_millis(5)).await;
                guard.unlock().await.expect("waiter unlocks");
            })
        })
        .collect();
    await_subscribers(&c, &name, 1).await;
    // By now all three wait: still one subscriber per node, not one per waiter.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        subscribers(&c, &name),
        [1, 1, 1],
        "one subscription per node"
    );
    held.unlock().await.expect("holder unlocks");
    for waiter in waiters {
        tokio::time::timeout(3 * WAKE_LIMIT, waiter)
            .await
            .expect("every waiter gets the lock in turn, each woken by the last release")
            .expect("waiter task");
    }
    await_subscribers(&c, &name, 0).await;
}

/// A server whose default user may neither publish nor subscribe (`ACL SETUSER default
/// resetchannels`) still locks and releases, and its waiters fall back to polling.
pub async fn waiters_poll_where_pubsub_is_denied<P: Pool>(factory: &impl Factory<P>) {
    let options = quick(10_000)
        .tries(200)
        .retry_delay(Duration::from_millis(50), Duration::from_millis(100));
    let c = Testbed::start(3, options, factory, "pubsub_denied");
    for i in 0..3 {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg("default").arg("resetchannels");
        c.fleet.query::<()>(i, &cmd).expect("acl setuser");
    }
    let name = c.key("lock");
    let holder = manager(&c.fleet, quick(10_000), factory);
    let held = holder.lock(&name).await.expect("holder locks");
    let waiter = c.redlock.mutex(&name).expect("name");
    let waiting = tokio::spawn(async move { waiter.lock().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.unlock()
        .await
        .expect("unlock where publishing is denied");
    let guard = tokio::time::timeout(WAKE_LIMIT, waiting)
        .await
        .expect("the waiter polls and gets the lock")
        .expect("waiter task")
        .expect("waiter locks");
    // A quorum at least: polling, the waiter may get there before the holder's release
    // reached every node.
    assert!(c.holders(&name, guard.value()) >= 2);
    guard.unlock().await.expect("unlock");
}
