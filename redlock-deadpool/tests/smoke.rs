//! Driver-specific checks against real `redis-server`s; the shared behaviours live in the
//! conformance suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use redlock_conformance::{Fleet, unique_prefix};
use redlock_deadpool::deadpool_redis::{self, PoolConfig, Runtime, Timeouts};
use redlock_deadpool::{ConnErrorKind, DeadpoolPool, Options, Redlock};

fn options() -> Options {
    Options::new()
        .expiry(Duration::from_secs(5))
        .tries(3)
        .retry_delay(Duration::from_millis(5), Duration::from_millis(15))
}

fn redlock(fleet: &Fleet, options: Options) -> Redlock<DeadpoolPool> {
    let pools = DeadpoolPool::from_urls(&fleet.urls()).expect("pools");
    Redlock::with_options(pools, options).expect("redlock")
}

fn holders(fleet: &Fleet, key: &str, value: &str) -> usize {
    (0..fleet.len())
        .filter(|&i| fleet.get(i, key).ok().flatten().as_deref() == Some(value))
        .count()
}

async fn eventually_all_hold(fleet: &Fleet, redlock: &Redlock<DeadpoolPool>, key: &str) {
    for _ in 0..50 {
        let guard = redlock.lock(key).await.expect("lock");
        let n = holders(fleet, key, guard.value());
        guard.unlock().await.expect("unlock");
        if n == fleet.len() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("a node never took part in a lock again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_cycle_costs_exactly_its_own_commands() {
    let fleet = Fleet::start(3).expect("fleet");
    let redlock = redlock(&fleet, options());
    let key = format!("{}lock", unique_prefix("deadpool_count"));
    // The first cycle opens the connections; count from the second on.
    redlock.lock(&key).await.unwrap().unlock().await.unwrap();
    for i in 0..3 {
        fleet.reset_stats(i).unwrap();
    }
    for _ in 0..5 {
        redlock.lock(&key).await.unwrap().unlock().await.unwrap();
    }
    for i in 0..3 {
        let count = |cmd: &str| fleet.command_count(i, cmd).unwrap();
        assert_eq!(
            count("evalsha"),
            10,
            "node {i}: one acquire and one release per cycle"
        );
        for extra in [
            "eval",
            "ping",
            "unwatch",
            "client|setinfo",
            "hello",
            "select",
        ] {
            assert_eq!(count(extra), 0, "node {i} ran {extra}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noscript_falls_back_to_eval() {
    let fleet = Fleet::start(3).expect("fleet");
    let redlock = redlock(&fleet, options());
    let key = format!("{}lock", unique_prefix("deadpool_noscript"));
    redlock.lock(&key).await.unwrap().unlock().await.unwrap();
    for i in 0..3 {
        fleet.flush_scripts(i).unwrap();
        fleet.reset_stats(i).unwrap();
    }
    let guard = redlock.lock(&key).await.expect("lock after flush");
    assert_eq!(holders(&fleet, &key, guard.value()), 3);
    guard.unlock().await.expect("unlock after flush");
    for i in 0..3 {
        assert_eq!(fleet.command_count(i, "evalsha").unwrap(), 2, "node {i}");
        assert_eq!(fleet.command_count(i, "eval").unwrap(), 2, "node {i}");
        assert!(fleet.get(i, &key).unwrap().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_node_fails_fast_and_is_used_once_up() {
    let mut fleet = Fleet::start(3).expect("fleet");
    fleet.kill(0).unwrap();
    // A generous per-node timeout (2.5 s): a down node must fail well before it.
    let redlock = redlock(&fleet, options().timeout_factor(0.5));
    let key = format!("{}lock", unique_prefix("deadpool_down"));
    let guard = redlock.lock(&key).await.expect("lock with node 0 down");
    assert_eq!(holders(&fleet, &key, guard.value()), 2);
    guard.unlock().await.expect("unlock");

    let single = DeadpoolPool::from_url(&fleet.url(0)).unwrap();
    let single = Redlock::with_options(vec![single], options().tries(1).timeout_factor(0.5));
    let err = single
        .unwrap()
        .lock(&key)
        .await
        .expect_err("node 0 is down");
    let kinds: Vec<_> = err.node_errors().iter().map(|e| e.error.kind()).collect();
    assert_eq!(kinds, vec![ConnErrorKind::Connection], "{err:?}");

    fleet.restart(0).unwrap();
    eventually_all_hold(&fleet, &redlock, &key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pool_is_a_failed_vote_not_a_hang() {
    let fleet = Fleet::start(1).expect("fleet");
    // A user's pool of one connection, with deadpool's default of no timeouts at all.
    let mut config = deadpool_redis::Config::from_url(fleet.url(0));
    config.pool = Some(PoolConfig {
        max_size: 1,
        timeouts: Timeouts::new(),
        ..PoolConfig::default()
    });
    let pool = config.create_pool(Some(Runtime::Tokio1)).unwrap();
    let held = pool.get().await.expect("the app holds the only connection");
    let options = options().tries(1).timeout_factor(0.5);
    let redlock = Redlock::with_options(vec![DeadpoolPool::new(pool)], options).unwrap();
    let key = format!("{}lock", unique_prefix("deadpool_exhausted"));
    let err = redlock.lock(&key).await.expect_err("pool exhausted");
    let kinds: Vec<_> = err.node_errors().iter().map(|e| e.error.kind()).collect();
    assert_eq!(kinds, vec![ConnErrorKind::PoolExhausted], "{err:?}");
    drop(held);
    redlock
        .lock(&key)
        .await
        .expect("free again")
        .unlock()
        .await
        .unwrap();
}

#[test]
fn bad_urls_are_config_errors() {
    for url in ["not a url", "redis://:99999999/", "http://127.0.0.1/"] {
        let err = DeadpoolPool::from_url(url).expect_err(url);
        assert!(err.is_config(), "{url}: {err:?}");
    }
}
