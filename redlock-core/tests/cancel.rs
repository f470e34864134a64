//! Cancellation, deadlines and fail-fast: cutting an acquire short never leaves a key.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use redlock_core::{Error, Instant, Options};

/// 10 s expiry with a 5 s per-node timeout, so a 1 s slow node still gets its answer in.
/// Random values: a cancelled attempt may then release every node.
fn patient() -> Options {
    Options::new()
        .expiry(ms(10_000))
        .timeout_factor(0.5)
        .tries(3)
        .retry_delay(ms(10), ms(10))
}

/// Whether every node holds some value under [`KEY`].
fn all_set(pools: &[redlock_core::memory::MemoryPool]) -> bool {
    values(pools).iter().all(Option::is_some)
}

#[tokio::test(start_paused = true)]
async fn dropping_lock_future_by_timeout_leaves_no_key() {
    let pools = warm_pools(3).await;
    pools[2].set_latency(ms(1000));
    let m = mutex(&pools, patient());
    assert!(tokio::time::timeout(ms(100), m.lock()).await.is_err());
    assert!(all_set(&pools), "set before the drop: {:?}", values(&pools));
    advance(ms(1)).await;
    assert_none_hold(&pools);
}

/// A fixed value might be another holder's, so a cancelled attempt releases only the
/// nodes that confirmed it; the node whose reply was still out keeps the key until it
/// expires (liveness, never safety).
#[tokio::test(start_paused = true)]
async fn dropping_lock_future_with_a_fixed_value_releases_confirmed_nodes() {
    let pools = warm_pools(3).await;
    pools[2].set_latency(ms(1000));
    let m = mutex(&pools, patient().value("mine"));
    assert!(tokio::time::timeout(ms(100), m.lock()).await.is_err());
    advance(ms(1)).await;
    let mine = Some("mine".to_owned());
    assert_eq!(values(&pools), vec![None, None, mine]);
    advance(ms(10_000)).await;
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn dropping_lock_future_in_select_leaves_no_key() {
    let pools = warm_pools(5).await;
    pools[3].set_latency(ms(1000));
    pools[4].set_hang(true);
    let m = mutex(&pools, patient());
    tokio::select! {
        _ = m.lock() => panic!("the lock cannot finish before the slow node answers"),
        () = tokio::time::sleep(ms(100)) => {}
    }
    advance(ms(1)).await;
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn dropping_lock_future_with_a_set_in_flight_leaves_no_key() {
    let pools = warm_pools(3).await;
    pools[2].set_request_latency(ms(300));
    let m = mutex(&pools, patient());
    assert!(tokio::time::timeout(ms(100), m.lock()).await.is_err());
    advance(ms(250)).await; // t = 350: the SET sent at 0 landed at 300
    assert!(pools[2].get(KEY).is_some());
    advance(ms(100)).await; // t = 450: the release sent at 100 landed at 400
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn dropping_lock_future_during_retry_delay_leaves_no_key() {
    let pools = warm_pools(3).await;
    occupy(&pools[..2], ms(60_000));
    let m = mutex(&pools, patient().retry_delay(ms(1000), ms(1000)));
    assert!(tokio::time::timeout(ms(500), m.lock()).await.is_err());
    advance(ms(1)).await;
    assert_eq!(pools[2].get(KEY), None);
    assert_eq!(pools[0].get(KEY).as_deref(), Some(OTHER));
}

#[tokio::test(start_paused = true)]
async fn lock_or_cancel_returns_cancelled_and_cleans_up() {
    let pools = warm_pools(3).await;
    pools[2].set_latency(ms(1000));
    let m = mutex(&pools, patient());
    let start = Instant::now();
    let err = m
        .lock_or_cancel(tokio::time::sleep(ms(100)))
        .await
        .unwrap_err();
    assert!(
        err.is_cancelled() && matches!(err, Error::Cancelled { .. }),
        "{err}"
    );
    assert_eq!(start.elapsed(), ms(100));
    advance(ms(1)).await;
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn lock_or_cancel_with_a_fired_signal_sends_nothing() {
    let pools = warm_pools(3).await;
    let before = calls(&pools);
    let err = mutex(&pools, patient())
        .lock_or_cancel(async {})
        .await
        .unwrap_err();
    assert!(err.is_cancelled());
    advance(ms(1)).await;
    assert_eq!(calls(&pools), before);
}

#[tokio::test(start_paused = true)]
async fn lock_or_cancel_that_never_fires_locks() {
    let pools = warm_pools(3).await;
    let m = mutex(&pools, patient());
    let guard = m.lock_or_cancel(std::future::pending()).await.unwrap();
    assert_all_hold(&pools, guard.value());
}

#[tokio::test(start_paused = true)]
async fn lock_until_taken_lock_is_deadline_with_last_failure() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(60_000));
    // Polling, as with a driver that has no subscriber.
    let m = mutex(&pools, patient().tries(1000).notify_release(false));
    let start = Instant::now();
    let err = m.lock_until(start + ms(100)).await.unwrap_err();
    assert!(err.is_deadline(), "{err}");
    assert_eq!(
        start.elapsed(),
        ms(90),
        "no retry starts that would end past the deadline"
    );
    assert!(matches!(err, Error::DeadlineExceeded { last: Some(ref last), .. } if last.is_taken()));
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(
        source.as_deref(),
        Some("lock \"lock:test\" not acquired: held by another owner on 3 of 3 nodes")
    );
}

#[tokio::test(start_paused = true)]
async fn deadline_source_downcasts_to_the_crate_error() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(60_000));
    let m = mutex(&pools, patient().tries(1000));
    let err = m.lock_until(Instant::now() + ms(100)).await.unwrap_err();
    let last = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<Error>());
    assert!(
        last.is_some_and(Error::is_taken),
        "source is not an Error: {last:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn lock_until_succeeds_when_the_lock_frees_in_time() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(50));
    let m = mutex(&pools, patient().tries(1000));
    let guard = m.lock_until(Instant::now() + ms(200)).await.unwrap();
    assert_all_hold(&pools, guard.value());
}

#[tokio::test(start_paused = true)]
async fn lock_until_cutting_an_attempt_without_quorum_leaves_no_key() {
    let pools = warm_pools(3).await;
    pools[1].set_latency(ms(1000));
    pools[2].set_latency(ms(1000));
    let m = mutex(&pools, patient());
    let start = Instant::now();
    let err = m.lock_until(start + ms(100)).await.unwrap_err();
    assert!(err.is_deadline(), "{err}");
    assert_eq!(start.elapsed(), ms(100), "the deadline ends the attempt");
    advance(ms(1)).await;
    assert_eq!(
        pools[0].get(KEY),
        None,
        "the node that answered is released"
    );
    advance(ms(2000)).await;
    assert_none_hold(&pools);
}

/// A deadline that finds a quorum already agreed ends the wait with the lock: the slow
/// node's call goes on in the background, and unlock waits for it.
#[tokio::test(start_paused = true)]
async fn lock_until_cutting_an_attempt_with_quorum_locks() {
    let pools = warm_pools(3).await;
    pools[2].set_request_latency(ms(300));
    let m = mutex(&pools, patient());
    let start = Instant::now();
    let guard = m.lock_until(start + ms(100)).await.unwrap();
    assert_eq!(start.elapsed(), ms(100));
    assert!(guard.is_valid());
    guard.unlock().await.unwrap();
    advance(ms(1000)).await;
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn lock_until_reports_the_cut_attempts_own_failure() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(60_000));
    pools.iter().for_each(|p| p.set_latency(ms(10)));
    let polling = patient().notify_release(false);
    let m = mutex(&pools, polling.tries(1000).retry_delay(ms(5), ms(5)));
    let start = Instant::now();
    // Attempt 1 fails (taken) at 10 ms; attempt 2 runs from 15 ms and is cut at 22 ms,
    // before any node answered: its own failure is the one reported.
    let err = m.lock_until(start + ms(22)).await.unwrap_err();
    assert!(err.is_deadline(), "{err}");
    let Error::DeadlineExceeded {
        last: Some(last), ..
    } = &err
    else {
        panic!("expected a deadline with the last failure, got {err:?}");
    };
    assert!(!last.is_taken(), "the previous attempt's failure: {last}");
    let cut: Vec<_> = last.node_errors().iter().map(|e| e.node).collect();
    assert_eq!(cut, [0, 1, 2], "{last:?}");
    assert!(last.to_string().contains("3 timed out"), "{last}");
}

/// The same when the cut attempt met a hanging node: the report names it.
#[tokio::test(start_paused = true)]
async fn lock_until_names_the_node_the_cut_attempt_waited_for() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(15));
    let hang = pools[0].clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(5)).await;
        hang.set_hang(true);
    });
    let m = mutex(&pools, patient().tries(100));
    let err = m.lock_until(Instant::now() + ms(30)).await.unwrap_err();
    assert!(err.is_deadline(), "{err:?}");
    let waited: Vec<_> = err.node_errors().iter().map(|e| e.node).collect();
    assert_eq!(waited, [0], "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn lock_until_with_a_huge_retry_delay_does_not_panic() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(60_000));
    let options = patient().retry_delay(Duration::MAX, Duration::MAX);
    let err = mutex(&pools, options)
        .lock_until(Instant::now() + ms(100))
        .await;
    assert!(err.unwrap_err().is_deadline());
}

#[tokio::test(start_paused = true)]
async fn fail_fast_success_decides_early_and_still_locks_the_slow_node() {
    let pools = warm_pools(3).await;
    pools[2].set_request_latency(ms(300));
    let m = mutex(&pools, patient().fail_fast(true));
    let start = Instant::now();
    let guard = m.try_lock().await.unwrap();
    assert_eq!(start.elapsed(), ms(0));
    assert_eq!(guard.valid_until(), start + ms(10_000 - 102));
    assert_eq!(pools[2].get(KEY), None, "still in flight");
    advance(ms(400)).await;
    assert_all_hold(&pools, guard.value());
}

#[tokio::test(start_paused = true)]
async fn without_fail_fast_the_attempt_waits_for_the_slow_node() {
    let pools = warm_pools(3).await;
    pools[2].set_request_latency(ms(300));
    let start = Instant::now();
    let guard = mutex(&pools, patient()).try_lock().await.unwrap();
    assert_eq!(start.elapsed(), ms(300));
    assert_all_hold(&pools, guard.value());
}

#[tokio::test(start_paused = true)]
async fn fail_fast_failure_still_releases_the_slow_node() {
    let pools = warm_pools(3).await;
    occupy(&pools[..2], ms(60_000));
    pools[2].set_request_latency(ms(300));
    let m = mutex(&pools, patient().fail_fast(true));
    assert!(m.try_lock().await.unwrap_err().is_taken());
    advance(ms(1000)).await;
    assert_eq!(pools[2].get(KEY), None);
    assert_eq!(pools[0].get(KEY).as_deref(), Some(OTHER));
}

#[tokio::test(start_paused = true)]
async fn fail_fast_failure_releases_the_late_nodes_side_by_side() {
    // Three nodes say "taken" at once, so the round fails before the two hung nodes
    // answer; their calls time out at the deadline and each is then released, which on a
    // hung node takes a full timeout. Side by side that is one timeout, not two.
    let pools = warm_pools(5).await;
    occupy(&pools[..3], ms(60_000));
    pools[3].set_hang(true);
    pools[4].set_hang(true);
    let m = mutex(&pools, patient().fail_fast(true).tries(1));
    let start = Instant::now();
    assert!(m.try_lock().await.unwrap_err().is_taken());
    let timeout = ms(5_000);
    assert_eq!(start.elapsed(), timeout + timeout);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_unlock_right_after_success_leaves_no_key() {
    let pools = warm_pools(3).await;
    pools[2].set_request_latency(ms(300));
    let m = mutex(&pools, patient().fail_fast(true));
    let guard = m.try_lock().await.unwrap();
    guard.unlock().await.unwrap();
    advance(ms(1000)).await; // every call sent so far has landed
    assert_eq!(
        pools[2].get(KEY),
        None,
        "unlock returned Ok but node 2 keeps our key"
    );
}

/// A failed fail-fast round that still waits for a hung node must not hold `lock_until`
/// past its deadline: the hung call and its release go on in the background.
#[tokio::test(start_paused = true)]
async fn lock_until_returns_at_its_deadline_while_a_failed_round_finishes() {
    let pools = warm_pools(3).await;
    occupy(&pools[..2], ms(60_000));
    pools[2].set_hang(true);
    let m = mutex(&pools, patient().fail_fast(true).tries(1000));
    let start = Instant::now();
    let err = m.lock_until(start + ms(100)).await.unwrap_err();
    assert!(err.is_deadline(), "{err}");
    assert_eq!(start.elapsed(), ms(100));
}
