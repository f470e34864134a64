//! Fenced locks: tokens that grow across managers, the stale proposal retried at once,
//! the fence quorum, and the resource-side write.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use redlock_core::fence::{self, Token, Write};
use redlock_core::memory::MemoryPool;
use redlock_core::{Options, Redlock};

fn fenced() -> Options {
    fast().fenced(true)
}

/// How many calls the nodes got since `before` (from [`calls`]).
fn sent_since(pools: &[MemoryPool], before: &[u64]) -> u64 {
    calls(pools)
        .iter()
        .zip(before)
        .map(|(now, then)| now - then)
        .sum()
}

fn token(n: u64) -> Option<Token> {
    Token::new(n)
}

const FENCE_KEY: &str = "{lock:test}:fence";

#[tokio::test(start_paused = true)]
async fn tokens_grow_with_every_holding_across_managers() {
    let pools = warm_pools(3).await;
    let (a, b) = (mutex(&pools, fenced()), mutex(&pools, fenced()));
    let mut last = None;
    for round in 0..6 {
        let who = if round % 3 == 0 { &b } else { &a };
        let guard = who.lock().await.unwrap();
        assert!(
            guard.token() > last,
            "round {round}: {:?} after {last:?}",
            guard.token()
        );
        last = guard.token();
        guard.unlock().await.unwrap();
    }
    assert_eq!(last, token(6), "no token is skipped when nobody races");
    for pool in &pools {
        assert_eq!(pool.get(FENCE_KEY).as_deref(), Some("6"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_stale_proposal_is_released_and_made_again_at_once() {
    let pools = warm_pools(3).await;
    let first = mutex(&pools, fenced());
    for _ in 0..3 {
        first.lock().await.unwrap().unlock().await.unwrap();
    }
    let newcomer = mutex(&pools, fenced());
    let before = calls(&pools);
    let start = redlock_core::Instant::now();
    let guard = newcomer.try_lock().await.unwrap();
    assert_eq!(guard.token(), token(4));
    assert_eq!(start.elapsed(), ms(0), "no retry delay");
    // The stale attempt (3 calls), its release (3), the attempt that held (3).
    assert_eq!(sent_since(&pools, &before), 9);
    guard.unlock().await.unwrap();
    let before = calls(&pools);
    let guard = newcomer.try_lock().await.unwrap();
    assert_eq!(guard.token(), token(5));
    assert_eq!(
        sent_since(&pools, &before),
        3,
        "the manager now knows the fence"
    );
    guard.unlock().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_refusal_teaches_the_waiter_the_fence() {
    let pools = warm_pools(3).await;
    let (holder, waiter) = (mutex(&pools, fenced()), mutex(&pools, fenced()));
    for _ in 0..4 {
        holder.lock().await.unwrap().unlock().await.unwrap();
    }
    let held = holder.lock().await.unwrap();
    assert_eq!(held.token(), token(5));
    assert!(waiter.try_lock().await.unwrap_err().is_taken());
    held.unlock().await.unwrap();
    let before = calls(&pools);
    let guard = waiter.try_lock().await.unwrap();
    assert_eq!(guard.token(), token(6));
    assert_eq!(
        sent_since(&pools, &before),
        3,
        "no stale proposal after a refusal"
    );
    guard.unlock().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn fenced_and_unfenced_holders_exclude_each_other() {
    let pools = warm_pools(3).await;
    let (plain, fenced) = (mutex(&pools, fast()), mutex(&pools, fenced()));
    let held = plain.try_lock().await.unwrap();
    assert_eq!(held.token(), None);
    assert!(fenced.try_lock().await.unwrap_err().is_taken());
    held.unlock().await.unwrap();
    let held = fenced.try_lock().await.unwrap();
    assert_eq!(held.token(), token(1));
    assert!(plain.try_lock().await.unwrap_err().is_taken());
    held.unlock().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_loss_tolerance_needs_the_larger_quorum() {
    let pools = warm_pools(3).await;
    let options = fenced().fence_loss_tolerance(1);
    let mutex = mutex(&pools, options);
    pools[2].set_down(true);
    let err = mutex.try_lock().await.unwrap_err();
    assert!(err.is_no_quorum(), "{err}");
    assert!(err.to_string().contains("3 needed"), "{err}");
    pools[2].set_down(false);
    mutex.try_lock().await.unwrap().unlock().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn with_a_loss_tolerance_a_node_that_lost_its_fences_cannot_turn_tokens_back() {
    let pools = warm_pools(3).await;
    let options = fenced().fence_loss_tolerance(1);
    let first = mutex(&pools, options.clone()).try_lock().await.unwrap();
    assert_eq!(first.token(), token(1));
    first.unlock().await.unwrap();
    pools[0].lose_data();
    let next = mutex(&pools, options).try_lock().await.unwrap();
    assert_eq!(next.token(), token(2));
    next.unlock().await.unwrap();
}

/// The limit `FENCING.md` states: with no tolerance, a node that lost its fences and a
/// node that missed the last holding can form a quorum that never saw its token.
#[tokio::test(start_paused = true)]
async fn without_a_loss_tolerance_a_lost_fence_can_turn_tokens_back() {
    let pools = warm_pools(3).await;
    pools[2].set_down(true);
    let first = mutex(&pools, fenced()).try_lock().await.unwrap();
    assert_eq!(first.token(), token(1));
    first.unlock().await.unwrap();
    pools[2].set_down(false);
    pools[0].lose_data();
    let next = mutex(&pools, fenced()).try_lock().await.unwrap();
    assert_eq!(next.token(), token(1), "the claim's assumption is needed");
    next.unlock().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn bad_fenced_settings_are_refused_before_anything_is_sent() {
    let pools = warm_pools(3).await;
    let before = calls(&pools);
    let redlock = manager(&pools, fenced());
    assert_config(&redlock.mutex("a}b").unwrap_err(), "hash tag");
    assert!(redlock.mutex("{a}b").is_ok());
    let no_fence = Redlock::with_options(pools.clone(), fast().fence_loss_tolerance(1));
    assert_config(&no_fence.unwrap_err(), "needs a fenced lock");
    let too_many = Redlock::with_options(pools.clone(), fenced().fence_loss_tolerance(3));
    assert_config(&too_many.unwrap_err(), "more than 3 node(s)");
    assert_eq!(calls(&pools), before);
}

#[tokio::test(start_paused = true)]
async fn extend_and_lease_keep_the_token() {
    let pools = warm_pools(3).await;
    let mutex = mutex(&pools, fenced());
    let mut guard = mutex.lock().await.unwrap();
    let first = guard.token();
    guard.extend().await.unwrap();
    assert_eq!(guard.token(), first);
    let lease = guard.keep_alive().unwrap();
    assert_eq!(lease.token(), first);
    assert_eq!(lease.signal().token(), first);
    lease.unlock().await.unwrap();
    let seen = mutex.run(|signal| async move { signal.token() }).await;
    assert_eq!(seen.unwrap(), token(2));
}

async fn write(pool: &MemoryPool, value: &str, token: u64) -> Write {
    let mut conn = redlock_core::Pool::get(pool).await.unwrap();
    let token = Token::new(token).unwrap();
    let (key, fence_key) = ("{invoice:42}", "{invoice:42}:fence");
    fence::fenced_set(&mut conn, key, fence_key, value, token)
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_resource_refuses_a_write_under_an_older_token() {
    let pool = MemoryPool::new();
    assert_eq!(write(&pool, "a", 5).await, Write::Written);
    assert_eq!(
        write(&pool, "b", 5).await,
        Write::Written,
        "a holding writes again"
    );
    assert_eq!(write(&pool, "c", 7).await, Write::Written);
    assert_eq!(write(&pool, "d", 6).await, Write::Stale { newer: 7 });
    assert_eq!(pool.get("{invoice:42}").as_deref(), Some("c"));
    assert_eq!(pool.get("{invoice:42}:fence").as_deref(), Some("7"));
}
