//! Quorum: how many nodes must agree, and what a successful lock leaves on the nodes.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use redlock_core::memory::MemoryPool;
use redlock_core::{BoxPool, ConnError, ConnErrorKind, Options, Pool, PoolExt, Redlock};

#[tokio::test(start_paused = true)]
async fn majority_of_live_nodes_is_needed_for_one_to_seven_nodes() {
    for n in 1..=7 {
        for down in 0..=n {
            let pools = pools(n);
            pools[..down].iter().for_each(|p| p.set_down(true));
            let result = mutex(&pools, fast()).try_lock().await;
            assert_eq!(result.is_ok(), n - down > n / 2, "n={n} down={down}");
            if let Err(e) = result {
                assert!(e.is_no_quorum(), "n={n} down={down}: {e}");
                let failed: Vec<usize> = e.node_errors().iter().map(|e| e.node).collect();
                assert_eq!(failed, (0..down).collect::<Vec<_>>());
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn raised_quorum_is_needed_for_one_to_seven_nodes() {
    for n in 1usize..=7 {
        for quorum in n / 2 + 1..=n {
            for down in 0..=n {
                let pools = pools(n);
                pools[n - down..].iter().for_each(|p| p.set_down(true));
                let m = mutex(&pools, fast().quorum(quorum));
                assert_eq!(m.quorum(), quorum);
                let ok = m.try_lock().await.is_ok();
                assert_eq!(ok, n - down >= quorum, "n={n} quorum={quorum} down={down}");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn quorum_below_majority_or_above_node_count_is_rejected() {
    for n in 1usize..=7 {
        let pools = pools(n);
        for quorum in (0..=n / 2).chain([n + 1, usize::MAX]) {
            let err = Redlock::with_options(pools.clone(), fast().quorum(quorum)).unwrap_err();
            assert_config(&err, "quorum");
        }
        assert_eq!(calls(&pools), vec![0; n]);
    }
}

#[tokio::test(start_paused = true)]
async fn default_quorum_is_a_majority() {
    for n in 1usize..=7 {
        assert_eq!(mutex(&pools(n), fast()).quorum(), n / 2 + 1);
    }
}

#[tokio::test(start_paused = true)]
async fn success_locks_every_healthy_node_not_only_a_quorum() {
    let pools = warm_pools(7).await;
    pools[5].set_down(true);
    pools[6].set_request_latency(ms(30)); // its SET lands after a quorum has answered
    let start = redlock_core::Instant::now();
    let guard = mutex(&pools, fast()).try_lock().await.unwrap();
    assert_eq!(start.elapsed(), ms(30), "the attempt waits for every node");
    for (i, p) in pools.iter().enumerate().filter(|(i, _)| *i != 5) {
        assert_eq!(p.get(KEY).as_deref(), Some(guard.value()), "node {i}");
        let ttl = p.ttl(KEY).unwrap();
        assert!(ttl <= ms(1000) && ttl >= ms(970), "node {i}: ttl {ttl:?}");
    }
    assert_eq!(pools[5].get(KEY), None);
}

#[tokio::test(start_paused = true)]
async fn success_with_shuffled_order_locks_every_node() {
    let pools = warm_pools(5).await;
    let m = mutex(&pools, fast().shuffle_nodes(true));
    for _ in 0..10 {
        let guard = m.try_lock().await.unwrap();
        assert_all_hold(&pools, guard.value());
        guard.unlock().await.unwrap();
        assert_none_hold(&pools);
    }
}

#[tokio::test(start_paused = true)]
async fn down_nodes_are_reported_with_their_index_and_kind() {
    let pools = warm_pools(5).await;
    for i in [1, 3, 4] {
        pools[i].set_down(true);
    }
    let err = mutex(&pools, fast()).try_lock().await.unwrap_err();
    let failed: Vec<_> = err
        .node_errors()
        .iter()
        .map(|e| (e.node, e.error.kind()))
        .collect();
    let kind = ConnErrorKind::Connection;
    assert_eq!(failed, vec![(1, kind), (3, kind), (4, kind)]);
    assert!(!err.is_taken());
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test(start_paused = true)]
async fn second_contender_sees_taken_with_node_list() {
    let pools = warm_pools(3).await;
    let m = mutex(&pools, fast());
    let guard = m.try_lock().await.unwrap();
    let err = m.try_lock().await.unwrap_err();
    assert!(err.is_taken() && err.is_no_quorum(), "{err}");
    assert!(matches!(err, redlock_core::Error::Taken { ref nodes, .. } if nodes == &[0, 1, 2]));
    assert_all_hold(&pools, guard.value());
}

#[tokio::test(start_paused = true)]
async fn lock_works_after_script_cache_flush() {
    let pools = pools(3);
    let m = mutex(&pools, fast());
    // Fresh nodes know no script: EVALSHA answers NOSCRIPT, then EVAL runs it.
    let guard = m.try_lock().await.unwrap();
    assert_all_hold(&pools, guard.value());
    assert_eq!(calls(&pools), vec![2; 3]);
    guard.unlock().await.unwrap();
    assert_eq!(calls(&pools), vec![3; 3]);

    pools.iter().for_each(|p| p.flush_scripts());
    let guard = m.try_lock().await.unwrap();
    assert_all_hold(&pools, guard.value());
    assert_eq!(calls(&pools), vec![5; 3]);
    guard.unlock().await.unwrap();
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn boxed_pools_mix_in_one_lock() {
    let pools = warm_pools(3).await;
    let boxed: Vec<BoxPool> = pools.iter().cloned().map(PoolExt::boxed).collect();
    let redlock = Redlock::with_options(boxed, fast()).unwrap();
    assert_eq!(redlock.node_count(), 3);
    let guard = redlock.lock(KEY).await.unwrap();
    assert_all_hold(&pools, guard.value());
    assert!(
        redlock
            .mutex(KEY)
            .unwrap()
            .try_lock()
            .await
            .unwrap_err()
            .is_taken()
    );
    guard.unlock().await.unwrap();
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn default_options_lock_and_unlock() {
    let pools = warm_pools(3).await;
    let guard = Redlock::with_options(pools.clone(), Options::new())
        .unwrap()
        .lock(KEY)
        .await
        .unwrap();
    assert_eq!(pools[0].ttl(KEY), Some(redlock_core::DEFAULT_EXPIRY));
    guard.unlock().await.unwrap();
    assert_none_hold(&pools);
}

/// A pool that hands out connections only through [`Pool::get_now`]; its `get` fails.
#[derive(Clone)]
struct NowOnly(MemoryPool);

#[async_trait::async_trait]
impl Pool for NowOnly {
    type Conn = MemoryPool;

    async fn get(&self) -> Result<MemoryPool, ConnError> {
        Err(ConnError::new(ConnErrorKind::Other, "get was called"))
    }

    fn get_now(&self) -> Option<MemoryPool> {
        Some(self.0.clone())
    }
}

#[tokio::test(start_paused = true)]
async fn get_now_is_tried_before_get_directly_and_boxed() {
    let pools = warm_pools(3).await;
    let now_only: Vec<NowOnly> = pools.iter().cloned().map(NowOnly).collect();
    let direct = Redlock::with_options(now_only.clone(), fast()).unwrap();
    let boxed: Vec<BoxPool> = now_only.into_iter().map(PoolExt::boxed).collect();
    let boxed = Redlock::with_options(boxed, fast()).unwrap();

    let guard = direct.lock(KEY).await.unwrap();
    assert_all_hold(&pools, guard.value());
    guard.unlock().await.unwrap();
    assert_none_hold(&pools);

    let guard = boxed.lock(KEY).await.unwrap();
    assert_all_hold(&pools, guard.value());
    guard.unlock().await.unwrap();
    assert_none_hold(&pools);
}
