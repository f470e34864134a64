//! Mutual exclusion under the subtle paths a reviewer found: fail-fast retries, extends
//! that shorten the TTL, and handing a lock over by value. Each test ends by asking a
//! second contender for the lock while the first guard still claims validity.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use redlock_core::Options;
use redlock_core::memory::MemoryPool;

/// A second contender's attempt, which must fail while `holder_valid` is true.
async fn assert_exclusive(pools: &[MemoryPool], holder_valid: bool) {
    let other = mutex(pools, Options::new().expiry(ms(10_000)).tries(1))
        .try_lock()
        .await;
    assert!(
        !(holder_valid && other.is_ok()),
        "two holders at once: {:?}",
        values(pools)
    );
}

/// With fail-fast, a failed round's release of a slow node must not land after the next
/// round (same value) counted that node as a yes vote.
#[tokio::test(start_paused = true)]
async fn fail_fast_retry_is_not_undone_by_the_previous_rounds_release() {
    let pools = warm_pools(3).await;
    pools[0].set(KEY, OTHER, ms(5));
    pools[1].set_down(true);
    pools[2].set_latency(ms(300));
    let slow = pools[2].clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(5)).await;
        slow.set_latency(ms(0));
    });
    let options = Options::new().expiry(ms(10_000)).tries(2).fail_fast(true);
    let guard = mutex(&pools, options.retry_delay(ms(10), ms(10)))
        .lock()
        .await
        .unwrap();
    advance(ms(400)).await;
    pools[1].set_down(false);
    assert_eq!(values(&pools)[2].as_deref(), Some(guard.value()));
    assert_exclusive(&pools, guard.is_valid()).await;
}

/// An `extend_to` with a shorter TTL that fails (validity used up) has shortened the
/// keys it reached: the guard's validity must shrink with them.
#[tokio::test(start_paused = true)]
async fn failed_shortening_extend_caps_validity() {
    let pools = warm_pools(3).await;
    let mut guard = mutex(&pools, Options::new().expiry(ms(10_000)))
        .try_lock()
        .await
        .unwrap();
    pools.iter().for_each(|p| p.set_latency(ms(38)));
    assert!(
        guard
            .extend_to(ms(40))
            .await
            .unwrap_err()
            .is_validity_exhausted()
    );
    pools.iter().for_each(|p| p.set_latency(ms(0)));
    advance(ms(3)).await;
    assert!(!guard.is_valid(), "remaining {:?}", guard.remaining());
    assert_exclusive(&pools, guard.is_valid()).await;
}

/// The same, when the shortening extend is cancelled part-way.
#[tokio::test(start_paused = true)]
async fn cancelled_shortening_extend_caps_validity() {
    let pools = warm_pools(3).await;
    let mut guard = mutex(&pools, Options::new().expiry(ms(10_000)))
        .try_lock()
        .await
        .unwrap();
    pools.iter().for_each(|p| p.set_latency(ms(50)));
    assert!(
        tokio::time::timeout(ms(10), guard.extend_to(ms(100)))
            .await
            .is_err()
    );
    pools.iter().for_each(|p| p.set_latency(ms(0)));
    advance(ms(100)).await;
    assert!(!guard.is_valid(), "remaining {:?}", guard.remaining());
    assert_exclusive(&pools, guard.is_valid()).await;
}

/// A successful extend's deadline counts from before the call, not from its return.
#[tokio::test(start_paused = true)]
async fn extend_deadline_counts_from_before_the_call() {
    let pools = warm_pools(3).await;
    let mut guard = mutex(&pools, Options::new().expiry(ms(1_000)))
        .try_lock()
        .await
        .unwrap();
    pools.iter().for_each(|p| p.set_latency(ms(20)));
    let start = redlock_core::Instant::now();
    guard.extend().await.unwrap();
    // 1 s less the drift allowance (10 ms + 2 ms), from the start of the call.
    assert_eq!(guard.valid_until(), start + ms(1_000 - 12));
}

/// Handing a lock over: the first holder detaches, the heir adopts, and nobody else can
/// take the lock while the heir holds it.
#[tokio::test(start_paused = true)]
async fn detached_guard_hands_over_without_releasing() {
    let pools = warm_pools(3).await;
    let first = mutex(&pools, fast()).try_lock().await.unwrap();
    let value = first.detach();
    advance(ms(1)).await;
    assert_all_hold(&pools, &value);
    let heir = mutex(&pools, fast().value(value.clone()))
        .adopt()
        .await
        .unwrap();
    assert_exclusive(&pools, heir.is_valid()).await;
    heir.unlock().await.unwrap();
    assert_none_hold(&pools);
}
