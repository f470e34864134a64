//! Failed attempts: no key of ours is left anywhere, slow and hanging nodes included, and
//! the per-node timeout bounds every call.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use redlock_core::{ConnErrorKind, Error, Instant};

/// Random values, so a failed attempt may release every node that did not say "taken".
fn mine() -> redlock_core::Options {
    fast()
}

/// What `pool` holds under [`KEY`], other than another owner's value.
fn ours(pool: &redlock_core::memory::MemoryPool) -> Option<String> {
    pool.get(KEY).filter(|v| v != OTHER)
}

#[tokio::test(start_paused = true)]
async fn failed_attempt_with_majority_down_leaves_no_key() {
    let pools = warm_pools(5).await;
    pools[..3].iter().for_each(|p| p.set_down(true));
    let err = mutex(&pools, mine()).try_lock().await.unwrap_err();
    assert!(err.is_no_quorum() && !err.is_taken(), "{err}");
    pools[..3].iter().for_each(|p| p.set_down(false));
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn taken_attempt_releases_the_nodes_it_did_set() {
    let pools = warm_pools(3).await;
    occupy(&pools[..2], ms(60_000));
    let err = mutex(&pools, mine()).try_lock().await.unwrap_err();
    assert!(
        matches!(err, Error::Taken { ref nodes, .. } if nodes == &[0, 1]),
        "{err}"
    );
    let other = Some(OTHER.to_owned());
    assert_eq!(values(&pools), vec![other.clone(), other, None]);
}

#[tokio::test(start_paused = true)]
async fn failed_attempt_releases_a_node_whose_reply_timed_out() {
    let pools = warm_pools(5).await;
    occupy(&pools[..2], ms(60_000));
    pools[2].set_down(true);
    pools[3].set_latency(ms(200)); // above the 50 ms per-node timeout: the SET lands, late reply
    let err = mutex(&pools, mine()).try_lock().await.unwrap_err();
    let Error::NoQuorum { agreed, taken, .. } = &err else {
        panic!("expected no quorum, got {err:?}");
    };
    assert_eq!((*agreed, taken.as_slice()), (1, &[0, 1][..]));
    let failed: Vec<_> = err
        .node_errors()
        .iter()
        .map(|e| (e.node, e.error.kind()))
        .collect();
    assert_eq!(
        failed,
        [(2, ConnErrorKind::Connection), (3, ConnErrorKind::Timeout)]
    );
    assert_eq!(pools[3].get(KEY), None);
    assert_eq!(pools[4].get(KEY), None);
    assert_eq!(pools[0].get(KEY).as_deref(), Some(OTHER));
}

#[tokio::test(start_paused = true)]
async fn failed_attempt_releases_a_set_that_lands_after_the_timeout() {
    let pools = warm_pools(3).await;
    occupy(&pools[..2], ms(60_000));
    pools[2].set_request_latency(ms(200)); // the SET itself arrives after the 50 ms timeout
    let err = mutex(&pools, mine()).try_lock().await.unwrap_err();
    assert!(err.is_taken());
    // The call returned at 100 ms. The SET lands at 200 ms; the release, sent at 50 ms,
    // lands at 250 ms.
    advance(ms(120)).await;
    assert!(ours(&pools[2]).is_some(), "the late SET landed");
    advance(ms(60)).await;
    assert_eq!(pools[2].get(KEY), None, "a late SET must be released");
}

/// A fixed value might be another holder's: a failed attempt releases only the nodes that
/// confirmed it, and a node whose reply timed out keeps the key until it expires.
#[tokio::test(start_paused = true)]
async fn failed_attempt_with_a_fixed_value_releases_only_confirmed_nodes() {
    let pools = warm_pools(3).await;
    occupy(&pools[..1], ms(60_000));
    pools[1].set_latency(ms(200));
    let options = fast().value("mine").tries(1);
    let err = mutex(&pools, options).try_lock().await.unwrap_err();
    assert!(err.is_no_quorum(), "{err}");
    let mine = Some("mine".to_owned());
    assert_eq!(values(&pools), [Some(OTHER.to_owned()), mine, None]);
    advance(ms(1000)).await;
    assert_eq!(pools[1].get(KEY), None, "expired, not released");
}

#[tokio::test(start_paused = true)]
async fn hanging_node_costs_one_timeout_and_one_vote() {
    let pools = warm_pools(3).await;
    pools[2].set_hang(true);
    let start = Instant::now();
    let guard = mutex(&pools, mine()).try_lock().await.unwrap();
    assert_eq!(start.elapsed(), ms(50), "1 s expiry x 0.05");
    assert_eq!(guard.valid_until(), start + ms(1000 - 12));
    let held = Some(guard.value().to_owned());
    assert_eq!(values(&pools)[..2], [held.clone(), held]);
}

#[tokio::test(start_paused = true)]
async fn hanging_majority_reports_timeouts_and_leaves_no_key() {
    let pools = warm_pools(3).await;
    pools[1].set_hang(true);
    pools[2].set_hang(true);
    let start = Instant::now();
    let err = mutex(&pools, mine()).try_lock().await.unwrap_err();
    // One timeout for the attempt, one for the release that follows it.
    assert_eq!(start.elapsed(), ms(100));
    let failed: Vec<_> = err
        .node_errors()
        .iter()
        .map(|e| (e.node, e.error.is_timeout()))
        .collect();
    assert_eq!(failed, [(1, true), (2, true)]);
    assert_eq!(err.node_errors()[0].error.kind(), ConnErrorKind::Timeout);
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn valid_until_is_attempt_start_plus_expiry_minus_drift() {
    let pools = warm_pools(3).await;
    pools.iter().for_each(|p| p.set_latency(ms(30)));
    let m = mutex(&pools, redlock_core::Options::new());
    let start = Instant::now();
    let guard = m.try_lock().await.unwrap();
    // Default drift for 8 s: 8 s x 0.01 + 2 ms = 82 ms.
    assert_eq!(guard.valid_until(), start + ms(8000 - 82));
    assert_eq!(guard.remaining(), ms(8000 - 82 - 30));
    assert!(guard.is_valid());
}

#[tokio::test(start_paused = true)]
async fn validity_counts_from_the_successful_attempt() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(50));
    let m = mutex(&pools, fast().tries(10).retry_delay(ms(20), ms(20)));
    let start = Instant::now();
    let guard = m.lock().await.unwrap();
    // Attempts at 0 and 20 find the key taken and wait the retry delay; the one at 40
    // learns that it frees in 10 ms and retries at 51 (1 ms of slack), which wins.
    assert_eq!(start.elapsed(), ms(51));
    assert_eq!(guard.valid_until(), start + ms(51 + 1000 - 12));
}

#[tokio::test(start_paused = true)]
async fn validity_runs_out_when_expiry_passes_and_guard_knows() {
    let pools = warm_pools(3).await;
    let guard = mutex(&pools, fast()).try_lock().await.unwrap();
    advance(ms(988)).await;
    assert!(!guard.is_valid());
    assert_eq!(guard.remaining(), ms(0));
}

#[tokio::test(start_paused = true)]
async fn round_slower_than_expiry_minus_drift_is_validity_exhausted_and_released() {
    let pools = warm_pools(3).await;
    pools.iter().for_each(|p| p.set_latency(ms(500)));
    // 1 s expiry, drift 1 s x 0.5 + 2 ms = 502 ms, per-node timeout 900 ms.
    let options = mine().drift_factor(0.5).timeout_factor(0.9);
    let m = mutex(&pools, options);
    let task = tokio::spawn(async move { m.try_lock().await });
    advance(ms(501)).await; // the round took 500 ms; the release landed at once
    assert_none_hold(&pools);
    let err = task.await.unwrap().unwrap_err();
    assert!(err.is_validity_exhausted(), "{err}");
    assert!(matches!(err, Error::ValidityExhausted { elapsed, .. } if elapsed == ms(500)));
}

#[tokio::test(start_paused = true)]
async fn round_just_inside_validity_succeeds() {
    let pools = warm_pools(3).await;
    pools.iter().for_each(|p| p.set_latency(ms(497)));
    let options = mine().drift_factor(0.5).timeout_factor(0.9);
    let start = Instant::now();
    let guard = mutex(&pools, options).try_lock().await.unwrap();
    assert_eq!(guard.valid_until(), start + ms(498));
    assert_eq!(guard.remaining(), ms(1));
}

/// A connection that went silent without a reset (a firewall dropping packets) stays
/// silent after the network heals. Three timeouts in a row make the core ask for a new
/// connection, and the node votes again.
#[tokio::test(start_paused = true)]
async fn silent_connection_is_replaced_and_the_node_votes_again() {
    let pools = warm_pools(3).await;
    let m = mutex(&pools, fast());
    pools[0].set_swallowing(true);
    pools[0].set_swallowing(false); // healed, but only for new connections
    let mut held_by_node_zero = Vec::new();
    for _ in 0..3 {
        let guard = m.try_lock().await.unwrap();
        held_by_node_zero.push(values(&pools)[0].is_some());
        guard.unlock().await.unwrap();
    }
    // Cycle 1: lock and unlock time out on node 0; cycle 2: the lock is the third timeout
    // in a row, which replaces the connection; cycle 3 locks node 0 again.
    assert_eq!(held_by_node_zero, [false, false, true]);
    assert_eq!(pools[0].reconnects(), 1);
    assert_eq!(pools[1].reconnects(), 0);
}

/// A node that answers as a replica (`READONLY`: a failover demoted its master) has its
/// connection replaced at once, so that a Sentinel-aware driver reaches the new master.
#[tokio::test(start_paused = true)]
async fn a_replica_answer_replaces_the_connection_at_once() {
    let pools = warm_pools(3).await;
    let m = mutex(&pools, fast());
    let readonly = "READONLY You can't write against a read only replica.";
    pools[0].set_failure(Some((ConnErrorKind::ReadOnly, readonly)));
    let guard = m.try_lock().await.unwrap();
    assert_eq!(pools[0].reconnects(), 1, "replaced after one READONLY");
    guard.unlock().await.unwrap();
    pools[0].set_failure(None);
    let guard = m.try_lock().await.unwrap();
    assert!(values(&pools)[0].is_some(), "the node votes again");
    guard.unlock().await.unwrap();
}
