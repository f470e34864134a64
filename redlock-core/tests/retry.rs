//! The retry schedule when waiters poll (notifications off, as with a driver that has no
//! subscriber; `wait.rs` tests waiting with them), and the fresh value of each attempt.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use common::*;
use redlock_core::{Instant, Options};

#[tokio::test(start_paused = true)]
async fn fixed_delay_schedule_is_exact() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(3_600_000));
    pools.iter().for_each(|p| p.set_latency(ms(7)));
    let before = calls(&pools);
    let m = mutex(&pools, polling().tries(5).retry_delay(ms(20), ms(20)));
    let start = Instant::now();
    assert!(m.lock().await.unwrap_err().is_taken());
    // 5 rounds of 7 ms and 4 delays of 20 ms; every node is taken, so nothing to release.
    assert_eq!(start.elapsed(), ms(5 * 7 + 4 * 20));
    let after: Vec<u64> = before.iter().map(|c| c + 5).collect();
    assert_eq!(calls(&pools), after);
}

#[tokio::test(start_paused = true)]
async fn each_failed_round_pays_its_release_before_the_delay() {
    let pools = warm_pools(3).await;
    occupy(&pools[..2], ms(3_600_000));
    pools.iter().for_each(|p| p.set_latency(ms(7)));
    let m = mutex(&pools, polling().tries(4).retry_delay(ms(20), ms(20)));
    let start = Instant::now();
    assert!(m.lock().await.unwrap_err().is_taken());
    // Each round: 7 ms to vote, 7 ms to release node 2; then 3 delays of 20 ms.
    assert_eq!(start.elapsed(), ms(4 * 14 + 3 * 20));
    assert_eq!(pools[2].get(KEY), None);
}

#[tokio::test(start_paused = true)]
async fn retry_delay_fn_gets_attempts_one_to_tries_minus_one() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(3_600_000));
    let seen = Arc::new(StdMutex::new(Vec::new()));
    let log = seen.clone();
    let options = polling().tries(6).retry_delay_fn(move |attempt| {
        log.lock().unwrap().push(attempt);
        ms(u64::from(attempt) * 10)
    });
    let start = Instant::now();
    assert!(mutex(&pools, options).lock().await.is_err());
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3, 4, 5]);
    assert_eq!(start.elapsed(), ms(10 + 20 + 30 + 40 + 50));
}

#[tokio::test(start_paused = true)]
async fn default_delay_is_uniform_in_50_to_250_ms() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(3_600_000));
    let m = mutex(&pools, Options::new().tries(2));
    let mut delays = Vec::new();
    for _ in 0..100 {
        let start = Instant::now();
        assert!(m.lock().await.is_err());
        delays.push(start.elapsed());
    }
    // tokio's timer rounds a sleep up to the next whole millisecond, so a delay just under
    // 250 ms is observed as 250 ms.
    assert!(
        delays.iter().all(|d| *d >= ms(50) && *d <= ms(250)),
        "{delays:?}"
    );
    let mean = delays.iter().sum::<std::time::Duration>() / 100;
    assert!(
        mean > ms(120) && mean < ms(180),
        "mean {mean:?} of {delays:?}"
    );
    let distinct: BTreeSet<_> = delays.into_iter().collect();
    assert!(distinct.len() > 30, "delays should vary: {distinct:?}");
}

#[tokio::test(start_paused = true)]
async fn try_lock_makes_exactly_one_attempt() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(3_600_000));
    let before = calls(&pools);
    let start = Instant::now();
    assert!(mutex(&pools, polling().tries(9)).try_lock().await.is_err());
    assert_eq!(start.elapsed(), ms(0));
    let after: Vec<u64> = before.iter().map(|c| c + 1).collect();
    assert_eq!(calls(&pools), after);
}

/// [`fast`] without release notifications.
fn polling() -> Options {
    fast().notify_release(false)
}

fn counting(counter: &Arc<AtomicUsize>) -> Options {
    let counter = counter.clone();
    polling()
        .tries(10)
        .retry_delay(ms(20), ms(20))
        .value_generator(move || format!("v-{}", counter.fetch_add(1, Ordering::SeqCst)))
}

/// Each attempt has a value of its own, so that no late reply or late release of one
/// attempt can be taken for another's.
#[tokio::test(start_paused = true)]
async fn every_attempt_has_a_fresh_value() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(50));
    let counter = Arc::new(AtomicUsize::new(0));
    let m = mutex(&pools, counting(&counter));
    let guard = m.lock().await.unwrap(); // the fourth attempt wins
    assert_eq!(counter.load(Ordering::SeqCst), 4);
    assert!(guard.value().starts_with("v-3:"), "{}", guard.value());
    assert_all_hold(&pools, guard.value());
    guard.unlock().await.unwrap();
    assert!(m.lock().await.unwrap().value().starts_with("v-4:"));
    assert_eq!(counter.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn failed_lock_call_generates_one_value_per_attempt() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(3_600_000));
    let counter = Arc::new(AtomicUsize::new(0));
    assert!(mutex(&pools, counting(&counter)).lock().await.is_err());
    assert_eq!(counter.load(Ordering::SeqCst), 10);
}

#[tokio::test(start_paused = true)]
async fn empty_generated_value_is_config_error_and_sends_nothing() {
    let pools = pools(3);
    let m = mutex(&pools, polling().value_generator(String::new));
    assert_config(&m.lock().await.unwrap_err(), "empty");
    assert_config(&m.try_lock().await.unwrap_err(), "empty");
    let deadline = Instant::now() + ms(100);
    assert_config(&m.lock_until(deadline).await.unwrap_err(), "empty");
    assert_eq!(calls(&pools), vec![0; 3]);
}

#[tokio::test(start_paused = true)]
async fn default_values_are_random_and_distinct() {
    let pools = warm_pools(3).await;
    let m = mutex(&pools, polling());
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        let guard = m.try_lock().await.unwrap();
        // 16 bytes in standard base64: 24 characters with padding.
        assert_eq!(guard.value().len(), 24, "{}", guard.value());
        seen.insert(guard.value().to_owned());
        guard.unlock().await.unwrap();
    }
    assert_eq!(seen.len(), 20);
}

/// Behind a holder that never unlocks (say it crashed), a waiter retries when the holder's
/// keys expire, not after its 30 s retry delay: the refusal says how long they have left.
#[tokio::test(start_paused = true)]
async fn a_waiter_retries_when_the_holders_keys_expire() {
    let pools = warm_pools(3).await;
    // Different ttls per node: the lock frees when the second soonest expires.
    pools[0].set(KEY, OTHER, ms(300));
    pools[1].set(KEY, OTHER, ms(700));
    pools[2].set(KEY, OTHER, ms(5_000));
    let m = mutex(&pools, polling().retry_delay(ms(30_000), ms(30_000)));
    let start = Instant::now();
    let guard = m.lock().await.expect("acquired once the keys expired");
    assert_eq!(
        start.elapsed(),
        ms(701),
        "retried 1 ms after the quorum-th key expired"
    );
    assert_eq!(
        values(&pools)[2].as_deref(),
        Some(OTHER),
        "the longest key is untouched"
    );
    guard.unlock().await.expect("unlock");
}
