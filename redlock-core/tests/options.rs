//! Bad input: every invalid option or argument is a config error, never a panic, and
//! nothing reaches a node.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use redlock_core::memory::MemoryPool;
use redlock_core::{MAX_EXPIRY, MAX_NODES, MAX_TRIES, Options, Redlock};

fn bad_options() -> Vec<(&'static str, Options, &'static str)> {
    let o = fast;
    vec![
        (
            "zero expiry",
            o().expiry(Duration::ZERO),
            "greater than zero",
        ),
        (
            "expiry above 365 days",
            o().expiry(MAX_EXPIRY + ms(1)),
            "365 days",
        ),
        (
            "Duration::MAX expiry",
            o().expiry(Duration::MAX),
            "365 days",
        ),
        ("expiry under the drift", o().expiry(ms(2)), "drift"),
        (
            "sub-millisecond expiry",
            o().expiry(Duration::from_micros(500)),
            "1 ms",
        ),
        ("timeout under 1 ms", o().expiry(ms(10)), "per-node timeout"),
        ("zero tries", o().tries(0), "tries"),
        ("too many tries", o().tries(MAX_TRIES + 1), "tries"),
        ("negative drift", o().drift_factor(-0.1), "drift factor"),
        ("drift factor one", o().drift_factor(1.0), "drift factor"),
        ("NaN drift", o().drift_factor(f64::NAN), "drift factor"),
        (
            "infinite drift",
            o().drift_factor(f64::INFINITY),
            "drift factor",
        ),
        ("zero timeout", o().timeout_factor(0.0), "timeout factor"),
        (
            "NaN timeout",
            o().timeout_factor(f64::NAN),
            "timeout factor",
        ),
        (
            "timeout factor one",
            o().timeout_factor(1.0),
            "timeout factor",
        ),
        (
            "negative timeout",
            o().timeout_factor(-1.0),
            "timeout factor",
        ),
        (
            "min delay above max",
            o().retry_delay(ms(20), ms(10)),
            "retry delay",
        ),
        ("empty fixed value", o().value(""), "empty"),
        ("quorum zero", o().quorum(0), "quorum"),
        ("quorum above nodes", o().quorum(4), "quorum"),
    ]
}

#[tokio::test(start_paused = true)]
async fn bad_options_are_rejected_by_the_manager() {
    for (case, options, needle) in bad_options() {
        let pools = pools(3);
        let err = Redlock::with_options(pools.clone(), options).unwrap_err();
        assert_config(&err, needle);
        assert_eq!(calls(&pools), [0, 0, 0], "{case}");
    }
}

#[tokio::test(start_paused = true)]
async fn bad_options_are_rejected_per_mutex() {
    let pools = pools(3);
    let redlock = manager(&pools, fast());
    for (case, options, needle) in bad_options() {
        let err = redlock.mutex_with(KEY, options).unwrap_err();
        assert_config(&err, needle);
        assert_eq!(calls(&pools), [0, 0, 0], "{case}");
    }
}

#[tokio::test(start_paused = true)]
async fn empty_name_is_config_error() {
    let pools = pools(3);
    let redlock = manager(&pools, fast());
    assert_config(&redlock.mutex("").unwrap_err(), "name");
    assert_config(&redlock.mutex_with("", fast()).unwrap_err(), "name");
    assert_config(&redlock.lock("").await.unwrap_err(), "name");
    assert_eq!(calls(&pools), [0, 0, 0]);
}

#[tokio::test(start_paused = true)]
async fn zero_nodes_is_config_error() {
    let err = Redlock::<MemoryPool>::new(Vec::new()).unwrap_err();
    assert_config(&err, "node");
    let err = Redlock::<MemoryPool>::with_options(Vec::new(), fast()).unwrap_err();
    assert_config(&err, "node");
}

#[tokio::test(start_paused = true)]
async fn more_than_max_nodes_is_config_error() {
    let too_many = pools(MAX_NODES + 1);
    let err = Redlock::new(too_many.clone()).unwrap_err();
    assert_config(&err, "at most 64 nodes");
    assert!(calls(&too_many).iter().all(|&c| c == 0));
}

#[tokio::test(start_paused = true)]
async fn max_nodes_lock_and_release_every_node() {
    let all = warm_pools(MAX_NODES).await;
    let m = mutex(&all, fast());
    assert_eq!(m.quorum(), 33);
    let guard = m.try_lock().await.unwrap();
    let value = guard.value().to_owned();
    assert_all_hold(&all, &value);
    guard.unlock().await.unwrap();
    assert_none_hold(&all);

    // The nodes above 32 count like any other (node sets are 64-bit masks).
    for pool in &all[33..] {
        pool.set_down(true);
    }
    let guard = m.try_lock().await.unwrap();
    assert_all_hold(&all[..33], guard.value());
    guard.unlock().await.unwrap();
    for pool in &all[33..] {
        pool.set_down(false);
    }
    occupy(&all[32..], ms(60_000));
    let err = m.try_lock().await.unwrap_err();
    assert!(err.is_taken(), "{err}");
    let taken: Vec<usize> = (32..64).collect();
    assert!(
        matches!(&err, redlock_core::Error::NoQuorum { taken: t, .. } if *t == taken),
        "{err:?}"
    );
    assert_none_hold(&all[..32]);
}

#[tokio::test(start_paused = true)]
async fn edge_values_inside_the_ranges_are_accepted() {
    let pools = warm_pools(3).await;
    let o = fast;
    let good = [
        o().expiry(MAX_EXPIRY),
        o().expiry(ms(20)),
        o().tries(1),
        o().tries(MAX_TRIES),
        o().drift_factor(0.0),
        o().drift_factor(0.99),
        o().timeout_factor(0.999),
        o().retry_delay(ms(0), ms(0)),
        o().retry_delay(ms(5), ms(5)),
        o().quorum(3),
    ];
    for options in good {
        let debug = format!("{options:?}");
        let guard = mutex(&pools, options).try_lock().await;
        assert!(guard.is_ok(), "{debug}");
        guard.unwrap().unlock().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn longest_expiry_sets_its_ttl_without_overflow() {
    let pools = warm_pools(3).await;
    let start = redlock_core::Instant::now();
    let guard = mutex(&pools, fast().expiry(MAX_EXPIRY))
        .try_lock()
        .await
        .unwrap();
    assert_eq!(pools[0].ttl(KEY), Some(MAX_EXPIRY));
    let drift = MAX_EXPIRY.mul_f64(0.01) + ms(2);
    assert_eq!(guard.valid_until(), start + MAX_EXPIRY - drift);
}

#[tokio::test(start_paused = true)]
async fn defaults_are_those_of_redsync() {
    use redlock_core::*;
    assert_eq!(DEFAULT_EXPIRY, Duration::from_secs(8));
    assert_eq!(DEFAULT_TRIES, 32);
    assert_eq!(
        (DEFAULT_MIN_RETRY_DELAY, DEFAULT_MAX_RETRY_DELAY),
        (ms(50), ms(250))
    );
    assert_eq!((DEFAULT_DRIFT_FACTOR, DEFAULT_TIMEOUT_FACTOR), (0.01, 0.05));
    let redlock = Redlock::new(pools(3)).unwrap();
    assert_eq!(redlock.node_count(), 3);
    assert_eq!(redlock.mutex(KEY).unwrap().quorum(), 2);
}

#[test]
fn getters_read_back_every_setting() {
    let options = Options::new()
        .expiry(ms(1_500))
        .tries(7)
        .retry_delay(ms(3), ms(9))
        .drift_factor(0.02)
        .timeout_factor(0.1)
        .fail_fast(true)
        .shuffle_nodes(true)
        .recreate_on_extend(true)
        .quorum(3)
        .value("v");
    assert_eq!(options.get_expiry(), ms(1_500));
    assert_eq!(options.get_tries(), 7);
    assert_eq!(options.get_retry_delay(), Some((ms(3), ms(9))));
    assert_eq!(options.get_drift_factor(), 0.02);
    assert_eq!(options.get_timeout_factor(), 0.1);
    assert_eq!(options.get_node_timeout(), ms(150));
    assert_eq!(options.get_drift(), ms(32));
    assert!(options.get_fail_fast() && options.get_shuffle_nodes());
    assert!(options.get_recreate_on_extend());
    assert_eq!(options.get_quorum(), Some(3));
    assert_eq!(options.get_value(), Some("v"));
    let custom = Options::new().retry_delay_fn(|_| ms(1));
    assert_eq!(custom.get_retry_delay(), None);
    assert_eq!((custom.get_quorum(), custom.get_value()), (None, None));
    let defaults = Options::new();
    assert_eq!(defaults.get_node_timeout(), ms(400));
    assert_eq!(defaults.get_drift(), ms(82));
}

#[test]
fn getters_never_panic_on_options_a_lock_would_reject() {
    for factor in [f64::NAN, f64::INFINITY, -1.0, 2.0] {
        let options = Options::new().timeout_factor(factor).drift_factor(factor);
        let _ = (options.get_node_timeout(), options.get_drift());
    }
    let huge = Options::new().expiry(Duration::MAX).timeout_factor(1.0);
    assert_eq!(huge.get_node_timeout(), Duration::MAX);
    assert_eq!(
        Options::new().timeout_factor(f64::NAN).get_node_timeout(),
        Duration::ZERO
    );
}
