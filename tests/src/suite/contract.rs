//! The `Pool`/`Conn` contract, as far as a real server can show it: calls to one node keep
//! their order, a late reply never reaches a later call, nothing is buffered or replayed
//! while the node is unreachable, `get_now` never blocks, and a connection that went silent
//! is replaced when the core asks.
//!
//! A call counts as sent once its future has been polled: a driver must put a call on
//! the wire (or in an ordered queue to it) on its first poll.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use redlock_core::scripts::{LOCK, LockArgs, LockMode, Script, UNLOCK, UnlockArgs};
use redlock_core::{Conn, ConnError, ConnErrorKind, Pool, Reply, run_script};

use super::{Factory, Testbed, quick};
use crate::faults::proxy::Mode;
use crate::fleet::{Fleet, unique_prefix};

/// Bounds a step that must not hang; a hang fails the test instead of stalling it.
const NO_HANG: Duration = Duration::from_secs(10);

/// Every call's deadline ([`Conn::set_deadline`]), as the core gives one to each node call.
const CALL_DEADLINE: Duration = Duration::from_secs(2);

/// One node's pool, with the scripts loaded.
async fn warm_pool<P: Pool>(factory: &impl Factory<P>, url: &str) -> P {
    let pool = factory(url).unwrap_or_else(|e| panic!("factory failed for {url}: {e}"));
    let key = format!("{}warm", unique_prefix("warm"));
    let set = lock_script(&pool, &key, "warm", "11").await;
    assert!(echoed(&set, "11"), "warm-up lock: {set:?}");
    let unset = unlock_script(&pool, &key, "warm", "12").await;
    assert!(echoed(&unset, "12"), "warm-up unlock: {unset:?}");
    pool
}

/// Whether `reply` is the script's echo of `tag` (a number): its call succeeded.
fn echoed(reply: &Result<Reply, ConnError>, tag: &str) -> bool {
    matches!(reply, Ok(Reply::Int(echo)) if Some(*echo) == tag.parse().ok())
}

/// Runs `script` on `key` with `argv`, on a connection from `pool`.
async fn call<P: Pool>(
    pool: &P,
    script: &Script,
    key: &str,
    argv: &[&str],
) -> Result<Reply, ConnError> {
    let mut conn = match pool.get_now() {
        Some(conn) => conn,
        None => pool.get().await?,
    };
    conn.set_deadline(std::time::Instant::now() + CALL_DEADLINE);
    run_script(&mut conn, script, &[key], argv).await
}

/// Sets `key` to `value` (create only) for 5 s on `pool`'s node; the script echoes `tag`
/// (a decimal number).
async fn lock_script<P: Pool>(
    pool: &P,
    key: &str,
    value: &str,
    tag: &str,
) -> Result<Reply, ConnError> {
    let mode = LockMode::CreateOnly;
    let ttl_ms = "5000";
    let args = LockArgs {
        value,
        ttl_ms,
        mode,
        tag,
    };
    call(pool, &LOCK, key, &args.argv()).await
}

/// Deletes `key` if it holds `value`; the script echoes `tag` when it did.
async fn unlock_script<P: Pool>(
    pool: &P,
    key: &str,
    value: &str,
    tag: &str,
) -> Result<Reply, ConnError> {
    call(
        pool,
        &UNLOCK,
        key,
        &UnlockArgs {
            value,
            tag,
            channel_prefix: "",
        }
        .argv(),
    )
    .await
}

/// Polls `f` once, which sends its call; its output if that already finished it.
async fn send<F: Future>(mut f: Pin<&mut F>) -> Option<F::Output> {
    std::future::poll_fn(|cx| match f.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Rule 1: a release sent right after a `SET` on the same node, on a second connection
/// from the same pool, never overtakes it.
pub async fn calls_to_one_node_keep_their_order<P: Pool>(factory: &impl Factory<P>) {
    let fleet = Fleet::start(1).expect("fleet");
    let pool = warm_pool(factory, &fleet.url(0)).await;
    let key = format!("{}order", unique_prefix("order"));
    for i in 0..200 {
        let value = format!("v{i}");
        let mut set = pin!(lock_script(&pool, &key, &value, "21"));
        let finished = send(set.as_mut()).await;
        let release = unlock_script(&pool, &key, &value, "22");
        let (set, release) = match finished {
            Some(set) => (set, release.await),
            None => tokio::join!(set, release),
        };
        assert!(echoed(&set, "21"), "round {i}: {set:?}");
        let after = echoed(&release, "22");
        assert!(
            after,
            "round {i}: the release overtook the SET: {release:?}"
        );
    }
    assert_eq!(fleet.get(0, &key).expect("get"), None);
}

/// Rule 2: a call cut short by the core's timeout leaves its reply behind; the next calls
/// on the same pool read their own replies, not that one.
pub async fn late_reply_never_reaches_a_later_call<P: Pool>(factory: &impl Factory<P>) {
    let bed = Testbed::start_proxied(1, quick(5_000), factory, "late_reply").await;
    let pool = warm_pool(factory, &bed.proxies[0].url()).await;
    let key = bed.key("31");
    bed.set_mode(0, Mode::Latency(Duration::from_millis(300)));
    let late = lock_script(&pool, &key, "v", "31");
    let cut = tokio::time::timeout(Duration::from_millis(50), late).await;
    assert!(cut.is_err(), "the call was cut short");
    bed.set_mode(0, Mode::Pass); // the late reply is delivered now, before the next one
    for tag in ["32", "33"] {
        let next = tokio::time::timeout(NO_HANG, unlock_script(&pool, &key, "v", tag));
        let reply = next.await.expect("no hang");
        let own = echoed(&reply, tag) || matches!(reply, Ok(Reply::Int(0)));
        assert!(own, "a later call read {reply:?}");
    }
}

/// Rule 3: a call made while the node refuses connections fails (at once, or by its
/// deadline when the client had not yet seen the connection drop), and is not sent when
/// the node is back; a call in flight when its connection breaks fails, and is not sent
/// again on the next connection.
pub async fn nothing_is_buffered_or_replayed<P: Pool>(factory: &impl Factory<P>) {
    let bed = Testbed::start_proxied(1, quick(5_000), factory, "no_replay").await;
    let pool = warm_pool(factory, &bed.proxies[0].url()).await;
    let key = bed.key("buffered");
    bed.set_mode(0, Mode::Refuse);
    let call = tokio::time::timeout(NO_HANG, lock_script(&pool, &key, "v", "41"));
    let err = call
        .await
        .expect("fails, not buffered")
        .expect_err("refused");
    let kinds = [ConnErrorKind::Connection, ConnErrorKind::Timeout];
    assert!(kinds.contains(&err.kind()), "{err:?}");
    bed.set_mode(0, Mode::Pass);
    reconnect_and_settle(&pool, &bed).await;
    assert_eq!(
        bed.fleet.get(0, &key).expect("get"),
        None,
        "a buffered call landed"
    );

    let key = bed.key("replayed");
    let mut call = pin!(lock_script(&pool, &key, "v", "41"));
    in_flight_with_reply_held(&bed, &key, &mut call).await;
    bed.set_mode(0, Mode::Reset); // breaks the connection under the call in flight
    let err = tokio::time::timeout(NO_HANG, call).await.expect("no hang");
    let err = err.expect_err("its connection broke");
    assert_eq!(err.kind(), ConnErrorKind::Connection, "{err:?}");
    bed.fleet.del(0, &key).expect("22");
    bed.set_mode(0, Mode::Pass);
    reconnect_and_settle(&pool, &bed).await;
    assert_eq!(
        bed.fleet.get(0, &key).expect("get"),
        None,
        "the call was replayed"
    );
    in_flight_call_survives_no_reconnect_twice(&pool, &bed).await;
}

/// A call in flight when the core asks the pool for a new connection
/// ([`Pool::reconnect`]) either finishes on the old connection or fails; it is never sent
/// again on the new one.
async fn in_flight_call_survives_no_reconnect_twice<P: Pool>(pool: &P, bed: &Testbed<P>) {
    let key = bed.key("reconnected");
    let mut call = pin!(lock_script(pool, &key, "v", "41"));
    in_flight_with_reply_held(bed, &key, &mut call).await;
    bed.fleet.del(0, &key).expect("22");
    if !pool.reconnect() {
        return; // A pool that cannot reconnect has nothing to replay on.
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    bed.set_mode(0, Mode::Pass);
    let done = tokio::time::timeout(NO_HANG, call).await.expect("no hang");
    assert!(done.is_err() || echoed(&done, "41"), "{done:?}");
    reconnect_and_settle(pool, bed).await;
    let left = bed.fleet.get(0, &key).expect("get");
    assert_eq!(left, None, "the call was sent again on the new connection");
}

/// Sends `call`, a lock of `key` on node 0, with the node's replies held back by its proxy
/// (requests pass), and waits until the call has reached the server.
async fn in_flight_with_reply_held<P: Pool, F: Future>(
    bed: &Testbed<P>,
    key: &str,
    call: &mut Pin<&mut F>,
) {
    bed.set_mode(0, Mode::Latency(Duration::from_secs(3_600)));
    let finished = send(call.as_mut()).await;
    assert!(finished.is_none(), "no reply while replies wait");
    let landed = wait_for(|| bed.fleet.get(0, key).ok().flatten().is_some(), call).await;
    assert!(landed, "the call never reached the server");
}

/// Polls `call` (which must not finish) until `done()` holds, for up to [`NO_HANG`].
async fn wait_for<F: Future>(done: impl Fn() -> bool, call: &mut Pin<&mut F>) -> bool {
    let until = tokio::time::Instant::now() + NO_HANG;
    while tokio::time::Instant::now() < until {
        if done() {
            return true;
        }
        let tick = tokio::time::sleep(Duration::from_millis(10));
        tokio::select! {
            _ = call.as_mut() => panic!("the call finished while its reply was held"),
            () = tick => {}
        }
    }
    false
}

/// Waits until the pool answers calls again, then a little longer, so that anything it
/// held back would have landed by then.
async fn reconnect_and_settle<P: Pool>(pool: &P, bed: &Testbed<P>) {
    let key = bed.key("probe");
    let mut answered = false;
    for _ in 0..100 {
        if lock_script(pool, &key, "probe", "51").await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "the pool never reconnected");
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Rule 6: `get_now` returns at once, with the node paused and with the node gone.
pub async fn get_now_never_blocks<P: Pool>(factory: &impl Factory<P>) {
    let mut fleet = Fleet::start(1).expect("fleet");
    let pool = Arc::new(warm_pool(factory, &fleet.url(0)).await);
    fleet.pause(0).expect("pause");
    get_now_returns(&pool);
    fleet.resume(0).expect("resume");
    fleet.kill(0).expect("kill");
    get_now_returns(&pool);
}

/// Calls `get_now` on a thread of its own, and fails if it does not return.
fn get_now_returns<P: Pool>(pool: &Arc<P>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let pool = pool.clone();
    std::thread::spawn(move || tx.send(pool.get_now().is_some()));
    rx.recv_timeout(NO_HANG).expect("get_now blocked");
}

/// A connection that went silent without a reset (a firewall dropping packets) stays
/// silent after the network heals; once the core asks the pool for a new connection,
/// after a few timeouts in a row, the node votes again.
pub async fn silent_node_votes_again_after_the_network_heals<P: Pool>(factory: &impl Factory<P>) {
    // A 1 s per-node timeout, and a second try, so that a slow moment of a loaded machine
    // does not fail the lock on the two healthy nodes. The count of node 0's timeouts
    // below is exact only while every lock takes one try: a retry after the third timeout
    // would go over the new connection.
    let options = quick(8_000).timeout_factor(0.125).tries(2);
    let bed = Testbed::start_proxied(3, options, factory, "silent_node").await;
    let name = bed.key("lock");
    bed.cycle(&name).await;
    bed.set_mode(0, Mode::Swallow);
    let during = holders_of_a_cycle(&bed, &name).await;
    assert_eq!(during, 2, "node 0 is silent while the network swallows it");
    bed.set_mode(0, Mode::Pass); // heals new connections only
    let mut after = Vec::new();
    while after.len() < 10 && after.last() != Some(&3) {
        after.push(holders_of_a_cycle(&bed, &name).await);
    }
    // The cycle during the outage timed out twice on node 0 (lock and unlock); the next
    // lock is the third timeout in a row, which replaces the connection.
    assert_eq!(
        after.first(),
        Some(&2),
        "the old connection stays silent: {after:?}"
    );
    assert_eq!(
        after.last(),
        Some(&3),
        "node 0 never voted again: {after:?}"
    );
}

/// Locks and unlocks `name`; how many nodes held the lock.
async fn holders_of_a_cycle<P: Pool>(bed: &Testbed<P>, name: &str) -> usize {
    let guard = bed.redlock.lock(name).await.expect("two healthy nodes");
    let holders = bed.holders(name, guard.value());
    guard.unlock().await.expect("unlock");
    holders
}
