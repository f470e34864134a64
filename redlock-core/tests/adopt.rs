//! Taking over a lock by its value, and what a fixed value must not allow.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use redlock_core::Instant;

#[tokio::test(start_paused = true)]
async fn second_manager_adopts_by_value_and_unlocks() {
    let pools = warm_pools(3).await;
    let first = mutex(&pools, fast()).try_lock().await.unwrap();
    advance(ms(400)).await;
    let heir = mutex(&pools, fast().value(first.value()));
    let start = Instant::now();
    let adopted = heir.adopt().await.unwrap();
    assert_eq!(adopted.value(), first.value());
    assert_eq!(adopted.valid_until(), start + ms(988));
    assert_eq!(
        pools[0].ttl(KEY),
        Some(ms(1000)),
        "adopting extends the keys"
    );
    adopted.unlock().await.unwrap();
    assert_none_hold(&pools);
    assert!(first.unlock().await.unwrap_err().is_expired());
}

#[tokio::test(start_paused = true)]
async fn adopt_without_a_fixed_value_is_config_error() {
    let pools = warm_pools(3).await;
    let before = calls(&pools);
    let err = mutex(&pools, fast()).adopt().await.unwrap_err();
    assert_config(&err, "fixed value");
    assert_eq!(calls(&pools), before);
}

#[tokio::test(start_paused = true)]
async fn adopt_of_an_expired_lock_is_expired_and_recreates_nothing() {
    let pools = warm_pools(3).await;
    let first = mutex(&pools, fast()).try_lock().await.unwrap();
    let value = first.value().to_owned();
    advance(ms(1000)).await;
    let err = mutex(&pools, fast().value(value))
        .adopt()
        .await
        .unwrap_err();
    assert!(err.is_expired(), "{err}");
    assert_none_hold(&pools);
    drop(first);
}

#[tokio::test(start_paused = true)]
async fn adopt_with_a_wrong_value_is_taken_and_changes_nothing() {
    let pools = warm_pools(3).await;
    let first = mutex(&pools, fast()).try_lock().await.unwrap();
    let err = mutex(&pools, fast().value("not-it"))
        .adopt()
        .await
        .unwrap_err();
    assert!(err.is_taken(), "{err}");
    assert_all_hold(&pools, first.value());
}

#[tokio::test(start_paused = true)]
async fn empty_fixed_value_is_config_error() {
    let pools = pools(3);
    let err = redlock_core::Redlock::with_options(pools.clone(), fast().value("")).unwrap_err();
    assert_config(&err, "empty");
    assert_eq!(calls(&pools), [0, 0, 0]);
}

#[tokio::test(start_paused = true)]
async fn lock_with_a_fixed_value_does_not_share_a_held_lock() {
    let pools = warm_pools(3).await;
    let options = fast().value("shared");
    let _holder = mutex(&pools, options.clone()).try_lock().await.unwrap();
    let second = mutex(&pools, options).try_lock().await;
    assert!(second.is_err(), "two owners hold the lock at once");
}

#[tokio::test(start_paused = true)]
async fn failed_attempt_with_a_fixed_value_keeps_the_holders_keys() {
    let pools = warm_pools(3).await;
    let options = fast().value("shared");
    let holder = mutex(&pools, options.clone()).try_lock().await.unwrap();
    pools[2].set_down(true);
    let contender = mutex(&pools, options.quorum(3));
    assert!(contender.try_lock().await.is_err());
    pools[2].set_down(false);
    assert!(holder.is_valid());
    assert_all_hold(&pools, "shared"); // the holder's lock is still within validity
}
