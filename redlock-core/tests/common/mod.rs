//! Helpers shared by the core's deterministic tests: in-memory nodes, a lock over them,
//! and what each node holds.

// Each test binary uses a subset of these helpers.
#![allow(dead_code, clippy::expect_used)]

use std::time::Duration;

use redlock_core::memory::MemoryPool;
use redlock_core::{Conn, ConnError, Error, Mutex, Options, Pool, Redlock, Reply, ScriptRef};

/// The lock name every test uses; it is the key on every node.
pub(crate) const KEY: &str = "lock:test";
/// The value another owner holds the key with.
pub(crate) const OTHER: &str = "someone-else";

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `n` fresh nodes. Their script caches are empty, so the first call on each answers
/// NOSCRIPT; use [`warm_pools`] where call counts or timings must be exact.
pub(crate) fn pools(n: usize) -> Vec<MemoryPool> {
    (0..n).map(|_| MemoryPool::new()).collect()
}

/// `n` nodes that already know the scripts (one lock and unlock ran on another key).
pub(crate) async fn warm_pools(n: usize) -> Vec<MemoryPool> {
    let pools = pools(n);
    let guard = manager(&pools, fast())
        .lock("warm-up")
        .await
        .expect("warm-up lock");
    guard.unlock().await.expect("warm-up unlock");
    pools
}

/// Quick, exact options: 1 s expiry (drift 12 ms, per-node timeout 50 ms), 3 tries, a
/// fixed 10 ms delay.
pub(crate) fn fast() -> Options {
    Options::new()
        .expiry(ms(1000))
        .tries(3)
        .retry_delay(ms(10), ms(10))
}

pub(crate) fn manager(pools: &[MemoryPool], options: Options) -> Redlock<MemoryPool> {
    Redlock::with_options(pools.to_vec(), options).expect("valid options")
}

pub(crate) fn mutex(pools: &[MemoryPool], options: Options) -> Mutex<MemoryPool> {
    manager(pools, options).mutex(KEY).expect("valid name")
}

/// What each node holds under [`KEY`].
pub(crate) fn values(pools: &[MemoryPool]) -> Vec<Option<String>> {
    pools.iter().map(|p| p.get(KEY)).collect()
}

/// Asserts that every node holds `value` under [`KEY`].
pub(crate) fn assert_all_hold(pools: &[MemoryPool], value: &str) {
    let want = vec![Some(value.to_owned()); pools.len()];
    assert_eq!(values(pools), want, "every node should hold {value:?}");
}

/// Asserts that no node holds [`KEY`] at all.
pub(crate) fn assert_none_hold(pools: &[MemoryPool]) {
    assert_eq!(
        values(pools),
        vec![None; pools.len()],
        "no node should hold the key"
    );
}

/// Sets [`KEY`] to [`OTHER`] for `ttl` on `pools`, as another owner's lock.
pub(crate) fn occupy(pools: &[MemoryPool], ttl: Duration) {
    for p in pools {
        p.set(KEY, OTHER, ttl);
    }
}

pub(crate) fn calls(pools: &[MemoryPool]) -> Vec<u64> {
    pools.iter().map(MemoryPool::calls).collect()
}

/// Lets the paused clock run for `d`, so background tasks get to run.
pub(crate) async fn advance(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Asserts that `err` is a configuration error whose message is short, lowercase, has no
/// trailing period, and mentions `needle`.
pub(crate) fn assert_config(err: &Error, needle: &str) {
    let Error::Config(reason) = err else {
        panic!("expected a config error, got {err:?}");
    };
    assert!(err.is_config());
    assert!(
        reason.contains(needle),
        "{reason:?} should mention {needle:?}"
    );
    assert!(reason.starts_with(|c: char| c.is_lowercase()), "{reason:?}");
    assert!(!reason.ends_with('.'), "{reason:?}");
    assert_eq!(err.to_string(), format!("invalid configuration: {reason}"));
}

/// A driver that runs scripts only: no `command`, no `epoch`, no `eval_then`, as a
/// driver written before those optional capabilities.
#[derive(Clone)]
pub(crate) struct ScriptsOnly(pub(crate) MemoryPool);

#[async_trait::async_trait]
impl Pool for ScriptsOnly {
    type Conn = ScriptsOnly;
    async fn get(&self) -> Result<ScriptsOnly, ConnError> {
        Ok(self.clone())
    }
}

#[async_trait::async_trait]
impl Conn for ScriptsOnly {
    async fn eval(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        self.0.eval(script, keys, args).await
    }
}
