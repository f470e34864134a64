//! Driver-specific checks against real `redis-server`s; the shared behaviours live in the
//! conformance suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use redlock_conformance::suite::{Testbed, quick};
use redlock_conformance::{Fleet, unique_prefix};
use redlock_deadpool::deadpool_redis::{self, PoolConfig, Runtime, Timeouts};
use redlock_deadpool::{ConnErrorKind, DeadpoolPool, Redlock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_cycle_costs_exactly_its_own_commands() {
    let c = Testbed::start(3, quick(5_000), &DeadpoolPool::from_url, "deadpool_count");
    let (fleet, redlock, key) = (&c.fleet, &c.redlock, c.key("lock"));
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
    let options = quick(5_000).tries(1);
    let redlock = Redlock::with_options(vec![DeadpoolPool::new(pool).unwrap()], options).unwrap();
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

#[tokio::test]
async fn nodes_are_named_by_address_without_credentials() {
    use redlock_deadpool::Pool as _;
    let pool = DeadpoolPool::from_url("redis://user:s3cret@127.0.0.1:6390/2").unwrap();
    assert_eq!(pool.address().as_deref(), Some("127.0.0.1:6390"));
    assert!(!format!("{pool:?}").contains("s3cret"));
    assert!(!format!("{:?}", pool.get_now()).contains("s3cret"));
}

/// The crate re-exports the core whole, under the core's names: a user needs no other
/// redlock crate, and no name of this crate shadows one of the core's.
#[test]
fn reexports_the_core() {
    let _: fn(redlock_deadpool::Mutex<DeadpoolPool>) -> redlock_core::Mutex<DeadpoolPool> = |m| m;
    let _: fn(redlock_deadpool::Error) -> redlock_core::Error = |e| e;
    let _: fn(redlock_deadpool::Options) -> redlock_core::Options = |o| o;
}

/// Without a TLS feature, a `rediss://` URL is refused with the feature to enable, and
/// without the password; with one (this crate's, or `redlock-redis-rs`'s turned on by
/// another crate of the build, as `redlock-cli` does in a workspace build), the pool is
/// built. `.ci/run` runs this crate's tests alone too, without TLS.
#[tokio::test]
async fn rediss_without_a_tls_feature_names_the_feature() {
    let built = DeadpoolPool::from_url("rediss://locker:pw-secret@127.0.0.1:1/");
    if redlock_redis_rs::TLS_BUILT {
        assert!(built.is_ok(), "a TLS build takes a rediss:// URL");
        return;
    }
    let err = built.unwrap_err();
    let message = err.to_string();
    assert!(
        err.is_config() && message.contains("`tls-rustls`"),
        "{message}"
    );
    assert!(!message.contains("pw-secret"), "{message}");
}

/// Like every driver's constructors, building a node outside a tokio runtime is a
/// configuration error, not a panic.
#[test]
fn outside_a_runtime_is_a_config_error() {
    let err = DeadpoolPool::from_url("redis://127.0.0.1:1/").unwrap_err();
    assert!(err.is_config(), "{err:?}");
}
