//! The held lock: release on drop, unlock outcomes, extend.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use redlock_core::{Error, Instant, MAX_EXPIRY};

#[tokio::test(start_paused = true)]
async fn dropped_guard_releases_in_the_background() {
    let pools = warm_pools(3).await;
    let guard = mutex(&pools, fast()).try_lock().await.unwrap();
    let value = guard.value().to_owned();
    drop(guard);
    assert_all_hold(&pools, &value); // nothing ran yet: the release is a background task
    advance(ms(1)).await;
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn unlock_of_a_held_lock_is_ok_and_deletes_every_key() {
    let pools = warm_pools(3).await;
    let m = mutex(&pools, fast());
    m.try_lock().await.unwrap().unlock().await.unwrap();
    assert_none_hold(&pools);
    let before = calls(&pools);
    advance(ms(1)).await;
    assert_eq!(calls(&pools), before, "no second release after unlock");
    assert!(m.try_lock().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn unlock_after_the_keys_expired_is_expired() {
    let pools = warm_pools(3).await;
    let guard = mutex(&pools, fast()).try_lock().await.unwrap();
    advance(ms(1000)).await;
    let err = guard.unlock().await.unwrap_err();
    assert!(
        err.is_expired() && matches!(err, Error::Expired { .. }),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn unlock_when_another_owner_holds_the_key_is_taken() {
    let pools = warm_pools(3).await;
    let guard = mutex(&pools, fast()).try_lock().await.unwrap();
    advance(ms(1000)).await;
    occupy(&pools, ms(60_000));
    let err = guard.unlock().await.unwrap_err();
    assert!(
        matches!(err, Error::Taken { ref nodes, .. } if nodes == &[0, 1, 2]),
        "{err}"
    );
    assert_all_hold(&pools, OTHER);
}

#[tokio::test(start_paused = true)]
async fn unlock_without_quorum_still_deletes_the_keys_left() {
    let pools = warm_pools(3).await;
    let guard = mutex(&pools, fast()).try_lock().await.unwrap();
    pools[0].expire_now(KEY);
    pools[1].expire_now(KEY);
    assert!(guard.unlock().await.unwrap_err().is_expired());
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn unlock_with_a_quorum_left_is_ok() {
    let pools = warm_pools(3).await;
    let guard = mutex(&pools, fast()).try_lock().await.unwrap();
    pools[0].expire_now(KEY);
    guard.unlock().await.unwrap();
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn unlock_with_too_many_nodes_down_is_no_quorum() {
    let pools = warm_pools(3).await;
    let guard = mutex(&pools, fast()).try_lock().await.unwrap();
    pools[1].set_down(true);
    pools[2].set_hang(true);
    let start = Instant::now();
    let err = guard.unlock().await.unwrap_err();
    assert!(err.is_no_quorum() && !err.is_expired(), "{err}");
    assert_eq!(
        start.elapsed(),
        ms(50),
        "unlock is bounded by the per-node timeout"
    );
    let failed: Vec<usize> = err.node_errors().iter().map(|e| e.node).collect();
    assert_eq!(failed, [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn unlock_also_releases_a_node_whose_lock_vote_timed_out() {
    let pools = warm_pools(3).await;
    pools[2].set_latency(ms(200)); // the SET lands, the reply misses the 50 ms timeout
    let guard = mutex(&pools, fast()).try_lock().await.unwrap();
    assert_all_hold(&pools, guard.value());
    guard.unlock().await.unwrap();
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn extend_is_bounded_by_the_per_node_timeout() {
    let pools = warm_pools(3).await;
    let mut guard = mutex(&pools, fast()).try_lock().await.unwrap();
    pools[2].set_hang(true);
    let start = Instant::now();
    guard.extend().await.unwrap();
    assert_eq!(start.elapsed(), ms(50));
    // Validity counts from the start of the extend round.
    assert_eq!(guard.valid_until(), start + ms(988));
}

#[tokio::test(start_paused = true)]
async fn extend_refreshes_ttl_everywhere_and_moves_valid_until() {
    let pools = warm_pools(3).await;
    let mut guard = mutex(&pools, fast()).try_lock().await.unwrap();
    let start = Instant::now();
    assert_eq!(guard.valid_until(), start + ms(988));
    advance(ms(600)).await;
    guard.extend().await.unwrap();
    assert_eq!(guard.valid_until(), start + ms(600 + 988));
    for p in &pools {
        assert_eq!(p.ttl(KEY), Some(ms(1000)));
    }
}

#[tokio::test(start_paused = true)]
async fn extend_to_sets_the_new_ttl() {
    let pools = warm_pools(3).await;
    let mut guard = mutex(&pools, fast()).try_lock().await.unwrap();
    let start = Instant::now();
    guard.extend_to(ms(5000)).await.unwrap();
    // Drift for 5 s: 50 ms + 2 ms.
    assert_eq!(guard.valid_until(), start + ms(5000 - 52));
    for p in &pools {
        assert_eq!(p.ttl(KEY), Some(ms(5000)));
    }
}

#[tokio::test(start_paused = true)]
async fn extend_after_expiry_is_expired_and_recreates_nothing() {
    let pools = warm_pools(3).await;
    let mut guard = mutex(&pools, fast()).try_lock().await.unwrap();
    let valid_until = guard.valid_until();
    advance(ms(1000)).await;
    assert!(guard.extend().await.unwrap_err().is_expired());
    assert_eq!(guard.valid_until(), valid_until);
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn extend_after_expiry_recreates_when_asked() {
    let pools = warm_pools(3).await;
    let options = fast().recreate_on_extend(true);
    let mut guard = mutex(&pools, options).try_lock().await.unwrap();
    advance(ms(1000)).await;
    guard.extend().await.unwrap();
    assert_all_hold(&pools, guard.value());
    assert!(guard.is_valid());
}

#[tokio::test(start_paused = true)]
async fn failed_extend_on_expired_majority_deletes_nothing() {
    let pools = warm_pools(3).await;
    let mut guard = mutex(&pools, fast()).try_lock().await.unwrap();
    let valid_until = guard.valid_until();
    pools[0].expire_now(KEY);
    pools[1].expire_now(KEY);
    assert!(guard.extend().await.unwrap_err().is_expired());
    assert_eq!(guard.valid_until(), valid_until);
    assert_eq!(values(&pools), [None, None, Some(guard.value().to_owned())]);
}

#[tokio::test(start_paused = true)]
async fn failed_extend_on_taken_majority_deletes_nothing() {
    let pools = warm_pools(3).await;
    let mut guard = mutex(&pools, fast()).try_lock().await.unwrap();
    occupy(&pools[..2], ms(60_000));
    let err = guard.extend().await.unwrap_err();
    assert!(
        matches!(err, Error::Taken { ref nodes, .. } if nodes == &[0, 1]),
        "{err}"
    );
    let (other, mine) = (Some(OTHER.to_owned()), Some(guard.value().to_owned()));
    assert_eq!(values(&pools), [other.clone(), other, mine]);
}

#[tokio::test(start_paused = true)]
async fn failed_extend_on_down_majority_is_no_quorum() {
    let pools = warm_pools(3).await;
    let mut guard = mutex(&pools, fast()).try_lock().await.unwrap();
    pools[0].set_down(true);
    pools[1].set_down(true);
    let err = guard.extend().await.unwrap_err();
    assert!(err.is_no_quorum() && !err.is_expired(), "{err}");
    assert_eq!(pools[2].get(KEY).as_deref(), Some(guard.value()));
}

#[tokio::test(start_paused = true)]
async fn extend_to_out_of_range_is_config_error_before_sending() {
    let pools = warm_pools(3).await;
    let mut guard = mutex(&pools, fast()).try_lock().await.unwrap();
    let before = calls(&pools);
    let too_long = MAX_EXPIRY + ms(1);
    let cases = [
        (Duration::ZERO, "greater than zero"),
        (too_long, "365 days"),
        (Duration::MAX, "365 days"),
        (ms(2), "drift"),
    ];
    for (ttl, needle) in cases {
        assert_config(&guard.extend_to(ttl).await.unwrap_err(), needle);
    }
    assert_eq!(calls(&pools), before);
    assert_eq!(pools[0].ttl(KEY), Some(ms(1000)));
}

#[tokio::test(start_paused = true)]
async fn guard_reports_its_name_and_value() {
    let pools = warm_pools(3).await;
    let guard = mutex(&pools, fast().value("v1")).try_lock().await.unwrap();
    assert_eq!((guard.name(), guard.value()), (KEY, "v1"));
    assert_all_hold(&pools, "v1");
}

/// An unlock that finds the key gone on one node and another owner's on another: the lock
/// was lost to another owner, which says more than "expired".
#[tokio::test(start_paused = true)]
async fn unlock_finding_one_node_taken_and_one_empty_is_taken() {
    let pools = warm_pools(3).await;
    let guard = mutex(&pools, fast()).try_lock().await.unwrap();
    pools[0].set(KEY, OTHER, ms(60_000));
    pools[1].expire_now(KEY);
    let err = guard.unlock().await.unwrap_err();
    assert!(
        matches!(err, Error::Taken { ref nodes, .. } if nodes == &[0]),
        "{err:?}"
    );
    assert_eq!(values(&pools), [Some(OTHER.to_owned()), None, None]);
}

/// Redis counts whole milliseconds: an expiry of 10.9 ms sets a 10 ms TTL, and validity is
/// counted from those 10 ms, in acquire and extend alike.
#[tokio::test(start_paused = true)]
async fn validity_counts_from_the_ttl_sent() {
    let pools = warm_pools(3).await;
    let expiry = Duration::from_micros(10_900);
    let options = fast().expiry(expiry).timeout_factor(0.5);
    let drift = redlock_core::validity::drift(ms(10), 0.01);
    let start = Instant::now();
    let mut guard = mutex(&pools, options).try_lock().await.unwrap();
    assert_eq!(pools[0].ttl(KEY), Some(ms(10)));
    assert_eq!(guard.valid_until(), start + ms(10) - drift);
    guard.extend_to(expiry).await.unwrap();
    assert_eq!(guard.valid_until(), start + ms(10) - drift);
}

#[tokio::test(start_paused = true)]
async fn debug_output_never_shows_the_value() {
    let pools = warm_pools(3).await;
    let m = mutex(&pools, fast().value("the-takeover-token"));
    let guard = m.try_lock().await.unwrap();
    for shown in [
        format!("{guard:?}"),
        format!("{m:?}"),
        format!("{:?}", m.options()),
    ] {
        assert!(!shown.contains("the-takeover-token"), "{shown}");
    }
    let random = mutex(&pools, fast()).try_lock().await;
    let err = random.unwrap_err(); // held by the first guard
    for shown in [format!("{err:?}"), err.to_string()] {
        assert!(!shown.contains("the-takeover-token"), "{shown}");
    }
    assert!(format!("{guard:?}").contains(KEY));
}

#[tokio::test(start_paused = true)]
async fn redlock_try_lock_makes_one_attempt() {
    let pools = warm_pools(3).await;
    let redlock = manager(&pools, fast().tries(50));
    let guard = redlock.try_lock(KEY).await.unwrap();
    let before = calls(&pools);
    assert!(redlock.try_lock(KEY).await.unwrap_err().is_taken());
    let after: Vec<u64> = before.iter().map(|c| c + 1).collect();
    assert_eq!(calls(&pools), after, "one call per node, no retries");
    assert!(redlock.try_lock("").await.unwrap_err().is_config());
    guard.unlock().await.unwrap();
}

/// A release is announced on the lock's channel, on every node that deleted the key; a
/// refused one announces nothing; `notify_release(false)` switches it off.
#[tokio::test(start_paused = true)]
async fn a_release_is_published_on_the_lock_channel() {
    let pools = warm_pools(3).await;
    let channel = redlock_core::scripts::release_channel(KEY);
    assert_eq!(channel, format!("redlock:released:{KEY}"));
    let before: Vec<usize> = pools.iter().map(|p| p.published().len()).collect();
    mutex(&pools, fast())
        .lock()
        .await
        .unwrap()
        .unlock()
        .await
        .unwrap();
    for (p, n) in pools.iter().zip(before.iter()) {
        assert_eq!(p.published()[*n..], *std::slice::from_ref(&channel));
    }

    // Another owner's key: nothing deleted, nothing announced.
    let guard = mutex(&pools, fast()).lock().await.unwrap();
    occupy(&pools, ms(60_000));
    assert!(guard.unlock().await.is_err());
    let counts: Vec<usize> = pools.iter().map(|p| p.published().len()).collect();
    assert_eq!(counts, vec![before[0] + 1; 3]);
    pools.iter().for_each(|p| p.expire_now(KEY));

    let quiet = mutex(&pools, fast().notify_release(false));
    quiet.lock().await.unwrap().unlock().await.unwrap();
    let after: Vec<usize> = pools.iter().map(|p| p.published().len()).collect();
    assert_eq!(after, counts, "switched off");
}
