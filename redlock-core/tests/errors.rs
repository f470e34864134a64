//! Errors a person can act on: the lock's name, plain counts, the dominant cause first,
//! nodes by address, the client's error once at the end of the chain; and no retrying of
//! failures that retrying cannot fix.

#![allow(clippy::unwrap_used)]

mod common;

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::*;
use redlock_core::memory::MemoryPool;
use redlock_core::{ConnErrorKind, Error, Options};

/// Five nodes named `10.0.0.1:6379` to `10.0.0.5:6379`, that know the scripts.
async fn named_pools() -> Vec<MemoryPool> {
    let pools: Vec<MemoryPool> = (1..=5)
        .map(|i| MemoryPool::with_address(&format!("10.0.0.{i}:6379")))
        .collect();
    let warm_up = manager(&pools, fast()).lock("warm-up").await.unwrap();
    warm_up.unlock().await.unwrap();
    pools
}

/// The error's `source()` chain, as strings, top first.
fn chain(err: &Error) -> Vec<String> {
    let mut out = vec![err.to_string()];
    let mut next = err.source();
    while let Some(e) = next {
        out.push(e.to_string());
        next = e.source();
    }
    out
}

#[tokio::test(start_paused = true)]
async fn no_quorum_names_lock_counts_cause_and_addresses() {
    let pools = named_pools().await;
    pools[2..].iter().for_each(|p| p.set_down(true));
    let err = manager(&pools, fast().tries(1))
        .lock("invoice:42")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "lock \"invoice:42\" not acquired: 2 of 5 nodes agreed, 3 needed; 3 could not be \
         reached (10.0.0.3:6379, 10.0.0.4:6379, 10.0.0.5:6379)"
    );
    assert_eq!(err.lock_name(), Some("invoice:42"));
    assert_eq!(
        chain(&err),
        [
            err.to_string(),
            "node 2 (10.0.0.3:6379) failed".to_owned(),
            "connection refused".to_owned()
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_most_common_cause_comes_first() {
    let pools = named_pools().await;
    occupy(&pools[..1], ms(60_000));
    pools[1].set_hang(true);
    pools[2].set_hang(true);
    let err = manager(&pools, fast().tries(1))
        .lock(KEY)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "lock \"lock:test\" not acquired: 2 of 5 nodes agreed, 3 needed; 2 timed out \
         (10.0.0.2:6379, 10.0.0.3:6379), 1 held by another owner"
    );
    let source = err.source().map(ToString::to_string);
    assert_eq!(source.as_deref(), Some("node 1 (10.0.0.2:6379) failed"));
}

#[tokio::test(start_paused = true)]
async fn many_failed_nodes_are_counted_not_all_listed() {
    let pools: Vec<MemoryPool> = (0..7).map(|_| MemoryPool::new()).collect();
    pools.iter().for_each(|p| p.set_down(true));
    let err = manager(&pools, fast().tries(1))
        .lock(KEY)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.ends_with("7 could not be reached (node 0, node 1, node 2 and 4 more)"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn taken_and_lost_locks_say_so() {
    let pools = named_pools().await;
    let redlock = manager(&pools, fast().tries(1));
    let guard = redlock.lock(KEY).await.unwrap();
    let err = redlock.lock(KEY).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "lock \"lock:test\" not acquired: held by another owner on 5 of 5 nodes"
    );
    advance(ms(1_000)).await;
    let err = guard.unlock().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "lock \"lock:test\" lost before release: it had already expired"
    );
}

/// Counts the retry delays a lock call asks for, i.e. its retries.
fn counting_retries(counter: &Arc<AtomicU32>) -> Options {
    let counter = counter.clone();
    fast().tries(32).retry_delay_fn(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        ms(10)
    })
}

#[tokio::test(start_paused = true)]
async fn refused_credentials_everywhere_stop_at_once() {
    let pools = named_pools().await;
    let wrong = (
        ConnErrorKind::Auth,
        "WRONGPASS invalid username-password pair",
    );
    pools.iter().for_each(|p| p.set_failure(Some(wrong)));
    let retries = Arc::new(AtomicU32::new(0));
    let err = manager(&pools, counting_retries(&retries))
        .lock(KEY)
        .await
        .unwrap_err();
    assert_eq!(retries.load(Ordering::SeqCst), 0, "no retry: {err}");
    assert!(!err.is_retryable(), "{err}");
    let kinds: Vec<_> = err.node_errors().iter().map(|e| e.error.kind()).collect();
    assert_eq!(kinds, [ConnErrorKind::Auth; 5]);
    assert!(
        err.to_string().contains("5 refused the credentials"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_that_leave_no_quorum_stop_at_once() {
    let pools = named_pools().await;
    let denied = (ConnErrorKind::Permission, "NOPERM no permissions");
    pools[..3].iter().for_each(|p| p.set_failure(Some(denied)));
    let retries = Arc::new(AtomicU32::new(0));
    let err = manager(&pools, counting_retries(&retries))
        .lock(KEY)
        .await
        .unwrap_err();
    assert_eq!(retries.load(Ordering::SeqCst), 0, "{err}");
    assert!(err.to_string().contains("3 denied permission"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn failures_that_may_pass_are_retried() {
    let pools = named_pools().await;
    let denied = (ConnErrorKind::Permission, "NOPERM no permissions");
    pools[..2].iter().for_each(|p| p.set_failure(Some(denied)));
    occupy(&pools[2..], ms(60_000)); // taken: may be released any moment
    let retries = Arc::new(AtomicU32::new(0));
    let err = manager(&pools, counting_retries(&retries).tries(4))
        .lock(KEY)
        .await
        .unwrap_err();
    assert_eq!(retries.load(Ordering::SeqCst), 3, "{err}");
    assert!(err.is_retryable());
    // With a minority refused, the others still make a quorum.
    let pools = named_pools().await;
    pools[..2].iter().for_each(|p| p.set_failure(Some(denied)));
    assert!(manager(&pools, fast()).lock(KEY).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn config_errors_name_no_lock_and_are_not_retryable() {
    let err = Error::Config("lock name must not be empty".into());
    assert_eq!(err.lock_name(), None);
    assert!(!err.is_retryable());
    let pools = pools(3);
    let err = manager(&pools, fast()).lock("").await.unwrap_err();
    assert!(err.is_config() && !err.is_retryable());
}
