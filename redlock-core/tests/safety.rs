//! Mutual exclusion on the subtle paths: fail-fast retries, extends that shorten the TTL,
//! handing a lock over by value, values that repeat, and pools that break the `Pool`
//! contract (commands delivered out of order, late replies handed to later calls). Each
//! test ends by asking a second contender for the lock while the first guard still claims
//! validity.

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

/// Two managers whose value generator repeats one string: the core makes each value
/// unique (a random suffix), and an acquire only creates keys, so the second can never
/// take over the first's lock.
#[tokio::test(start_paused = true)]
async fn repeating_value_generator_never_gives_two_holders() {
    let pools = warm_pools(3).await;
    let same = || fast().tries(1).value_generator(|| "same".to_owned());
    let first = mutex(&pools, same()).try_lock().await.unwrap();
    assert!(first.value().starts_with("same:"), "{}", first.value());
    let err = mutex(&pools, same()).try_lock().await.unwrap_err();
    assert!(err.is_taken(), "{err}");
    assert_all_hold(&pools, first.value());
    assert_exclusive(&pools, first.is_valid()).await;
}

/// The cleanup of a failed attempt must not delete the holder's key on a node whose reply
/// timed out, even when both got their value from one repeating generator.
#[tokio::test(start_paused = true)]
async fn repeating_value_generator_cleanup_spares_the_holders_keys() {
    let pools = warm_pools(3).await;
    let same = || fast().tries(1).value_generator(|| "same".to_owned());
    pools[2].set_down(true);
    let first = mutex(&pools, same()).try_lock().await.unwrap(); // holds nodes 0 and 1
    pools[2].set_down(false);
    pools[0].set_latency(ms(200)); // the second's call times out there (after "taken")
    let err = mutex(&pools, same()).try_lock().await.unwrap_err();
    assert!(err.is_no_quorum(), "{err}");
    pools[0].set_latency(ms(0));
    advance(ms(300)).await;
    assert_eq!(
        pools[0].get(KEY).as_deref(),
        Some(first.value()),
        "the holder's key"
    );
    assert_exclusive(&pools, first.is_valid()).await;
}

/// A holder whose lock expired while it stalled (GC, swap) must not act on the keys of
/// the next holder, even when both got their value from one repeating generator: neither
/// its extend nor its unlock may touch them.
#[tokio::test(start_paused = true)]
async fn stale_holder_never_touches_the_next_holders_keys() {
    let pools = warm_pools(3).await;
    let same = || fast().tries(1).value_generator(|| "same".to_owned());
    let mut stale = mutex(&pools, same()).try_lock().await.unwrap();
    advance(ms(1_000)).await; // its keys expire
    let next = mutex(&pools, same()).try_lock().await.unwrap();
    assert!(stale.extend().await.unwrap_err().is_taken());
    assert!(stale.unlock().await.unwrap_err().is_taken());
    assert_all_hold(&pools, next.value());
    assert_exclusive(&pools, next.is_valid()).await;
}

/// A pool of independent connections may deliver a failed attempt's `SET` and its
/// release after a later attempt's `SET` (breaking contract rule 1). Each attempt's value
/// is its own and an acquire only creates keys, so neither can touch the later attempt's
/// key.
#[tokio::test(start_paused = true)]
async fn commands_delivered_after_later_ones_never_give_two_holders() {
    let pools = warm_pools(3).await;
    occupy(&pools[1..], ms(30));
    pools[0].set_queueing(true); // holds attempt 1's SET and its release
    let (zero, two) = (pools[0].clone(), pools[2].clone());
    tokio::spawn(async move {
        tokio::time::sleep(ms(120)).await; // between attempt 1 (0-100 ms) and 2 (160 ms)
        zero.set_queueing(false);
        two.set_down(true);
    });
    // Polling, so that attempt 2 starts at 160 ms.
    let options = fast()
        .tries(2)
        .retry_delay(ms(60), ms(60))
        .notify_release(false);
    let holder = mutex(&pools, options).lock().await.unwrap(); // nodes 0 and 1
    assert_eq!(values(&pools)[0].as_deref(), Some(holder.value()));
    pools[0].deliver_queued();
    pools[2].set_down(false);
    assert_eq!(values(&pools)[0].as_deref(), Some(holder.value()));
    assert_exclusive(&pools, holder.is_valid()).await;
}

/// A connection reused after a timeout hands each call the reply of the call before
/// (breaking contract rule 2). Every reply must echo its own call's tag, so a late "yes"
/// is a failed vote, never a vote for the call that reads it.
#[tokio::test(start_paused = true)]
async fn late_replies_read_by_later_calls_never_give_two_holders() {
    let pools = warm_pools(3).await;
    let theirs: Vec<MemoryPool> = pools.iter().map(MemoryPool::second_client).collect();
    theirs[0].set_stale_replies(true);
    theirs[1].set_stale_replies(true);
    // Their attempt and its release land on nodes 0 and 1, but both replies come too late:
    // each connection now holds a reply that says "done".
    pools[0].set_latency(ms(100));
    pools[1].set_latency(ms(100));
    let contender = mutex(&theirs, fast().tries(1));
    assert!(contender.try_lock().await.is_err());
    pools[0].set_latency(ms(0));
    pools[1].set_latency(ms(0));
    let holder = mutex(&pools, fast()).try_lock().await.unwrap();
    let second = contender.try_lock().await;
    let late: Vec<_> = second
        .as_ref()
        .err()
        .map(|e| e.node_errors())
        .unwrap_or_default()
        .iter()
        .map(|e| (e.node, e.error.kind()))
        .collect();
    assert!(
        !(holder.is_valid() && second.is_ok()),
        "two holders: {:?}",
        values(&pools)
    );
    let out_of_step = redlock_core::ConnErrorKind::Connection;
    assert_eq!(
        late,
        [(0, out_of_step), (1, out_of_step)],
        "the late replies were read"
    );
    let err = second.unwrap_err();
    assert!(
        err.is_retryable(),
        "a new attempt may read its own replies: {err}"
    );
}
