//! A Redis Cluster as one node of the lock: a 3-master cluster and two plain servers make a
//! 3-node Redlock. Each call goes to the master serving the lock key's slot (no server
//! ever redirects one), also after the slot moves to another master, the NOSCRIPT
//! fallback works on that master, the cluster's vote counts while a plain node is down,
//! and a cluster that is down when its pool is built is a failed vote until it is back.

use std::time::Duration;

use redlock_core::{BoxPool, Pool, PoolExt, Redlock};

use super::{ClusterFactory, options};
use crate::Factory;
use crate::fleet::{Fleet, unique_prefix};

/// The cluster's masters.
const MASTERS: usize = 3;
/// Generous: a hang must turn into a failure, never pass.
const PATIENCE: Duration = Duration::from_secs(20);

/// A 3-master cluster, two plain servers, and the lock whose node 0 is the cluster.
struct Setup {
    cluster: Fleet,
    plain: Fleet,
    redlock: Redlock<BoxPool>,
}

fn setup<P: Pool, Q: Pool>(
    factory: &impl Factory<P>,
    cluster_factory: &impl ClusterFactory<Q>,
) -> Setup {
    let cluster = Fleet::start_cluster(MASTERS)
        .unwrap_or_else(|e| panic!("cannot start a {MASTERS}-master cluster: {e}"));
    let plain = Fleet::start(2).unwrap_or_else(|e| panic!("cannot start 2 redis-servers: {e}"));
    let mut pools = vec![cluster_factory(&cluster.urls()).expect("cluster").boxed()];
    for url in plain.urls() {
        pools.push(factory(&url).expect("plain node").boxed());
    }
    let redlock = Redlock::with_options(pools, options(3)).expect("options");
    for i in 0..MASTERS {
        cluster.reset_stats(i).expect("reset stats");
    }
    Setup {
        cluster,
        plain,
        redlock,
    }
}

/// The masters that hold a key matching `pattern`.
fn holders(cluster: &Fleet, pattern: &str) -> Vec<usize> {
    (0..MASTERS)
        .filter(|&i| !cluster.keys(i, pattern).expect("keys").is_empty())
        .collect()
}

fn assert_no_redirects(cluster: &Fleet) {
    for i in 0..MASTERS {
        let redirects = cluster.redirect_count(i).expect("errorstats");
        assert_eq!(
            redirects, 0,
            "master {i} redirected calls: a key went to the wrong slot"
        );
    }
}

/// Lock, extend and unlock with the cluster as one of three nodes: the key lands on the
/// master that serves its slot and on no other, and the node is named by its first seed.
pub async fn cluster_node_locks_extends_and_unlocks<P: Pool, Q: Pool>(
    factory: &impl Factory<P>,
    cluster_factory: &impl ClusterFactory<Q>,
) {
    let s = setup(factory, cluster_factory);
    let address = cluster_factory(&s.cluster.urls())
        .expect("cluster")
        .address();
    let seed = format!("127.0.0.1:{}", s.cluster.port(0));
    assert!(
        address.as_deref().is_some_and(|a| a.contains(&seed)),
        "{address:?} should name {seed}"
    );
    let name = unique_prefix("cluster");
    let mut guard = s.redlock.lock(&name).await.expect("lock");
    let owner = s.cluster.slot_owner(&name).expect("slot owner");
    assert_eq!(holders(&s.cluster, &name), vec![owner]);
    let value = Some(guard.value());
    assert_eq!(s.cluster.get(owner, &name).expect("get").as_deref(), value);
    for i in 0..2 {
        assert_eq!(s.plain.get(i, &name).expect("get").as_deref(), value);
    }
    guard.extend().await.expect("extend");
    assert!(s.cluster.pttl(owner, &name).expect("pttl") > 0);
    guard.unlock().await.expect("unlock");
    assert_eq!(s.cluster.get(owner, &name).expect("get"), None);
    assert_no_redirects(&s.cluster);
}

/// Many names, spread over every master's slots, are held at once and released, each
/// key on its own slot's master.
pub async fn cluster_node_locks_names_on_every_master<P: Pool, Q: Pool>(
    factory: &impl Factory<P>,
    cluster_factory: &impl ClusterFactory<Q>,
) {
    let s = setup(factory, cluster_factory);
    let prefix = unique_prefix("cluster_many");
    let mut guards = Vec::new();
    for n in 0..64 {
        let name = format!("{prefix}{n}");
        guards.push(s.redlock.lock(&name).await.expect("lock"));
        let owner = s.cluster.slot_owner(&name).expect("slot owner");
        assert_eq!(holders(&s.cluster, &name), vec![owner], "{name}");
    }
    let pattern = format!("{prefix}*");
    let per_master: Vec<usize> = (0..MASTERS)
        .map(|i| s.cluster.keys(i, &pattern).expect("keys").len())
        .collect();
    assert_eq!(per_master.iter().sum::<usize>(), 64, "{per_master:?}");
    assert!(per_master.iter().all(|&n| n > 0), "{per_master:?}");
    for guard in guards {
        guard.unlock().await.expect("unlock");
    }
    assert!(holders(&s.cluster, &pattern).is_empty());
    assert_no_redirects(&s.cluster);
}

/// After every master and node forgot the scripts, the lock falls back to EVAL on the
/// master that serves the key: one EVAL per script there, none elsewhere.
pub async fn cluster_node_falls_back_to_eval_after_a_script_flush<P: Pool, Q: Pool>(
    factory: &impl Factory<P>,
    cluster_factory: &impl ClusterFactory<Q>,
) {
    let s = setup(factory, cluster_factory);
    let name = unique_prefix("cluster_noscript");
    let guard = s.redlock.lock(&name).await.expect("lock");
    guard.unlock().await.expect("unlock");
    for (fleet, n) in [(&s.cluster, MASTERS), (&s.plain, 2)] {
        for i in 0..n {
            fleet.flush_scripts(i).expect("flush");
            fleet.reset_stats(i).expect("reset stats");
        }
    }
    let guard = s.redlock.lock(&name).await.expect("lock after a flush");
    guard.unlock().await.expect("unlock");
    let owner = s.cluster.slot_owner(&name).expect("slot owner");
    for i in 0..MASTERS {
        let evals = s.cluster.command_count(i, "eval").expect("stats");
        let want = if i == owner { 2 } else { 0 };
        assert_eq!(evals, want, "EVALs on master {i} (the key's is {owner})");
    }
    for i in 0..2 {
        assert_eq!(s.plain.command_count(i, "eval").expect("stats"), 2);
    }
    assert_no_redirects(&s.cluster);
}

/// After the key's slot moves to another master, the cluster's vote fails at most for
/// the calls that meet `MOVED`, and later calls go to the slot's new master.
pub async fn cluster_node_follows_a_moved_slot<P: Pool, Q: Pool>(
    factory: &impl Factory<P>,
    cluster_factory: &impl ClusterFactory<Q>,
) {
    let s = setup(factory, cluster_factory);
    let name = unique_prefix("cluster_moved");
    let guard = s.redlock.lock(&name).await.expect("lock");
    guard.unlock().await.expect("unlock");
    let old = s.cluster.slot_owner(&name).expect("slot owner");
    let new = (old + 1) % MASTERS;
    s.cluster.move_slot_of(&name, new).expect("move the slot");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let guard = s
            .redlock
            .lock(&name)
            .await
            .expect("lock: the plain nodes agree");
        let held = holders(&s.cluster, &name);
        guard.unlock().await.expect("unlock");
        if held == vec![new] {
            break;
        }
        assert!(
            held.is_empty(),
            "the key went to master {held:?}, not {new}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "calls never reached the slot's new master"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let redirects = s.cluster.redirect_count(old).expect("errorstats");
    assert!(
        redirects > 0,
        "the client never met MOVED: the test proved nothing"
    );
}

/// With one plain node down, the cluster's vote and the other plain node's make the
/// quorum.
pub async fn cluster_node_votes_while_a_plain_node_is_down<P: Pool, Q: Pool>(
    factory: &impl Factory<P>,
    cluster_factory: &impl ClusterFactory<Q>,
) {
    let mut s = setup(factory, cluster_factory);
    s.plain.kill(0).expect("kill");
    let name = unique_prefix("cluster_vote");
    let guard = tokio::time::timeout(PATIENCE, s.redlock.lock(&name))
        .await
        .expect("no hang")
        .expect("lock with the cluster and one plain node");
    let owner = s.cluster.slot_owner(&name).expect("slot owner");
    let value = Some(guard.value());
    assert_eq!(s.cluster.get(owner, &name).expect("get").as_deref(), value);
    assert_eq!(s.plain.get(1, &name).expect("get").as_deref(), value);
    guard.unlock().await.expect("unlock");
    assert_eq!(s.cluster.get(owner, &name).expect("get"), None);
}

/// A pool built while every master is down is a failed vote, not a hang, and is used
/// again once the cluster is back.
pub async fn cluster_down_at_build_time_is_a_failed_vote_until_it_is_back<P: Pool, Q: Pool>(
    _factory: &impl Factory<P>,
    cluster_factory: &impl ClusterFactory<Q>,
) {
    let mut cluster = Fleet::start_cluster(MASTERS)
        .unwrap_or_else(|e| panic!("cannot start a {MASTERS}-master cluster: {e}"));
    for i in 0..MASTERS {
        cluster.kill(i).expect("kill");
    }
    let pool = cluster_factory(&cluster.urls()).expect("building never needs the cluster");
    let redlock = Redlock::with_options(vec![pool], options(3)).expect("options");
    let name = unique_prefix("cluster_down");
    let refused = tokio::time::timeout(PATIENCE, redlock.lock(&name))
        .await
        .expect("no hang")
        .expect_err("the cluster is down");
    assert!(refused.is_no_quorum() && !refused.is_taken(), "{refused}");
    for i in 0..MASTERS {
        cluster.restart(i).expect("restart");
    }
    cluster
        .await_cluster_ok()
        .expect("the cluster is whole again");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let guard = loop {
        match redlock.lock(&name).await {
            Ok(guard) => break guard,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                panic!("the cluster is back but the lock fails: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    guard.unlock().await.expect("unlock");
}

/// A waiter on a cluster node is woken by the holder's release: the node's subscriber
/// hears it (Redis Cluster passes a message published on any master to every node).
pub async fn cluster_node_wakes_its_waiters<P: Pool, Q: Pool>(
    _factory: &impl Factory<P>,
    cluster_factory: &impl ClusterFactory<Q>,
) {
    let cluster = Fleet::start_cluster(MASTERS)
        .unwrap_or_else(|e| panic!("cannot start a {MASTERS}-master cluster: {e}"));
    let urls = cluster.urls();
    let name = format!("{}wake", unique_prefix("cluster"));
    let pool = || cluster_factory(&urls).expect("cluster");
    super::waiter_is_woken_through(pool, &name).await;
}

/// Fenced locks on a cluster node: the fence key hashes to the lock's own slot, so the
/// fenced acquire (which touches both) runs on one master, with no `CROSSSLOT` error and
/// no redirect, for names with and without a `{hash tag}`.
pub async fn cluster_node_keeps_fences_in_the_locks_slot<P: Pool, Q: Pool>(
    factory: &impl Factory<P>,
    cluster_factory: &impl ClusterFactory<Q>,
) {
    let s = setup(factory, cluster_factory);
    let prefix = unique_prefix("cluster_fenced");
    for n in 0..16 {
        let name = match n % 2 {
            0 => format!("{prefix}{n}"),
            _ => format!("{{{prefix}{n}}}:job"),
        };
        let mutex = s.redlock.mutex_with(&name, options(3).fenced(true));
        let guard = mutex.expect("fenced mutex").lock().await.expect("lock");
        assert_eq!(guard.token().map(|t| t.get()), Some(1), "{name}");
        let fence_key = redlock_core::fence::key(&name).expect("fence key");
        let owner = s.cluster.slot_owner(&name).expect("slot owner");
        assert_eq!(holders(&s.cluster, &fence_key), vec![owner], "{fence_key}");
        guard.unlock().await.expect("unlock");
    }
    assert_no_redirects(&s.cluster);
}
