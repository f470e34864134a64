//! Restart quarantine: a node that started less than the period ago gets no vote in an
//! acquire, its age is read once per connection, and a driver that cannot read it leaves
//! quarantine unenforced.

#![allow(clippy::unwrap_used)]

mod common;

use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use redlock_core::memory::MemoryPool;
use redlock_core::{Conn, ConnError, Options, Pool, Redlock, Reply, ScriptRef, scripts};

/// The default period for [`fast`] (the 1 s expiry plus its 12 ms drift allowance), and a
/// second for the error of `uptime_in_seconds`.
const PERIOD_MS: u64 = 2012;

#[tokio::test(start_paused = true)]
async fn a_restarted_node_gets_no_vote_until_the_period_has_passed() {
    let pools = warm_pools(3).await;
    let mutex = mutex(&pools, fast().tries(1));
    pools[0].restart(false);
    pools[1].restart(true);
    let err = mutex.lock().await.unwrap_err();
    assert!(err.is_no_quorum(), "{err}");
    let text = format!("{err:?}");
    assert!(text.contains("restarted too recently"), "{text}");
    assert_none_hold(&pools);
    advance(ms(PERIOD_MS - 1)).await;
    assert!(
        mutex.lock().await.unwrap_err().is_no_quorum(),
        "a millisecond early"
    );
    advance(ms(1)).await;
    mutex.lock().await.unwrap().unlock().await.unwrap();
}

/// The hazard quarantine closes: a holder on nodes 0 and 1 (node 2 down), node 0
/// restarts empty, node 2 comes back: without quarantine nodes 0 and 2 grant the lock
/// to a second owner while the first still holds it.
#[tokio::test(start_paused = true)]
async fn a_node_that_lost_its_keys_cannot_grant_a_held_lock() {
    for quarantine in [true, false] {
        let pools = warm_pools(3).await;
        let options = |o: Options| if quarantine { o } else { o.quarantine(ms(0)) };
        pools[2].set_down(true);
        let holder = mutex(&pools, options(fast())).try_lock().await.unwrap();
        pools[2].set_down(false);
        pools[0].restart(false);
        let second = mutex(&pools, options(fast())).try_lock().await;
        assert!(holder.is_valid());
        assert_eq!(second.is_ok(), !quarantine, "quarantine {quarantine}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_age_is_read_once_per_connection() {
    let pools = warm_pools(3).await;
    let infos = || pools.iter().map(MemoryPool::info_calls).collect::<Vec<_>>();
    let before = infos();
    let mutex = mutex(&pools, fast());
    for _ in 0..5 {
        mutex.lock().await.unwrap().unlock().await.unwrap();
    }
    let read = |after: Vec<u64>| {
        after
            .iter()
            .zip(&before)
            .map(|(a, b)| a - b)
            .collect::<Vec<_>>()
    };
    assert_eq!(read(infos()), [1, 1, 1], "once, by the new manager");
    pools[1].restart(true);
    advance(ms(PERIOD_MS)).await;
    for _ in 0..5 {
        mutex.lock().await.unwrap().unlock().await.unwrap();
    }
    // Before the script on the new connection, and after the grant: the node had lost a
    // script it ran, so the connection was suspect while the script ran.
    assert_eq!(read(infos()), [1, 3, 1], "again after a restart");
    let off = manager(&pools, fast().quarantine(ms(0)))
        .mutex(KEY)
        .unwrap();
    off.lock().await.unwrap().unlock().await.unwrap();
    assert_eq!(read(infos()), [1, 3, 1], "never when switched off");
}

/// A driver that reads the age but cannot tell a new connection: the restart shows as a
/// `NOSCRIPT`, and the age is read again before the vote counts.
#[derive(Clone)]
struct NoEpoch(MemoryPool);

#[async_trait]
impl Pool for NoEpoch {
    type Conn = NoEpoch;
    async fn get(&self) -> Result<NoEpoch, ConnError> {
        Ok(self.clone())
    }
}

#[async_trait]
impl Conn for NoEpoch {
    async fn eval(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        self.0.eval(script, keys, args).await
    }

    async fn command(&mut self, args: &[&str]) -> Result<Reply, ConnError> {
        self.0.command(args).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_restart_shows_as_an_empty_script_cache_when_the_driver_has_no_epoch() {
    let pools = warm_pools(3).await;
    let nodes: Vec<NoEpoch> = pools.iter().cloned().map(NoEpoch).collect();
    let redlock = Redlock::with_options(nodes, fast().tries(1)).unwrap();
    redlock.lock(KEY).await.unwrap().unlock().await.unwrap();
    let before = pools[0].info_calls();
    redlock.lock(KEY).await.unwrap().unlock().await.unwrap();
    assert_eq!(pools[0].info_calls(), before, "nothing new to read");
    pools[0].restart(false);
    pools[1].restart(false);
    assert!(redlock.lock(KEY).await.unwrap_err().is_no_quorum());
    assert_eq!(pools[0].info_calls(), before + 1);
}

#[tokio::test(start_paused = true)]
async fn a_driver_without_commands_votes_as_before() {
    let pools = warm_pools(3).await;
    let nodes: Vec<ScriptsOnly> = pools.iter().cloned().map(ScriptsOnly).collect();
    let redlock = Redlock::with_options(nodes, fast().tries(1)).unwrap();
    let before = pools[0].info_calls();
    pools[0].restart(false);
    pools[1].restart(false);
    let guard = redlock.lock(KEY).await.unwrap();
    guard.unlock().await.unwrap();
    assert_eq!(pools[0].info_calls(), before);
}

/// A connection that the node restarts under: on its armed call, the node restarts
/// (keeping its data, so that only its age tells) just before the script runs, and the
/// script goes by its source, so no `NOSCRIPT` gives the restart away.
#[derive(Clone)]
struct RestartsUnderCall {
    pool: MemoryPool,
    armed: Arc<AtomicBool>,
}

#[async_trait]
impl Pool for RestartsUnderCall {
    type Conn = RestartsUnderCall;
    async fn get(&self) -> Result<RestartsUnderCall, ConnError> {
        Ok(self.clone())
    }
}

#[async_trait]
impl Conn for RestartsUnderCall {
    async fn eval(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.pool.restart(true);
        }
        let all = [scripts::LOCK, scripts::UNLOCK, scripts::FENCE];
        let source = all.iter().find(|s| ScriptRef::Sha1(s.sha1()) == script);
        let script = source.map_or(script, |s| ScriptRef::Source(s.source()));
        self.pool.eval(script, keys, args).await
    }

    async fn command(&mut self, args: &[&str]) -> Result<Reply, ConnError> {
        self.pool.command(args).await
    }

    fn epoch(&self) -> Option<u64> {
        self.pool.epoch()
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_restarted_under_a_call_is_read_again_before_its_grant_counts() {
    let pools = warm_pools(3).await;
    let nodes: Vec<RestartsUnderCall> = pools
        .iter()
        .map(|pool| RestartsUnderCall {
            pool: pool.clone(),
            armed: Arc::new(AtomicBool::new(false)),
        })
        .collect();
    let redlock = Redlock::with_options(nodes.clone(), fast().tries(1)).unwrap();
    redlock.lock(KEY).await.unwrap().unlock().await.unwrap();
    nodes[0].armed.store(true, Ordering::SeqCst);
    nodes[1].armed.store(true, Ordering::SeqCst);
    let err = redlock.lock(KEY).await.unwrap_err();
    assert!(
        format!("{err:?}").contains("restarted too recently"),
        "{err}"
    );
    assert_none_hold(&pools);
}
