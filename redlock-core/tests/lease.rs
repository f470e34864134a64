//! Leases under paused time: the renewal schedule, the lost signal and its deadline,
//! renewals serialised with manual extends and waited for by unlock, detach and drop, and
//! `Mutex::run` on every exit path.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redlock_core::memory::MemoryPool;
use redlock_core::{
    Conn, ConnError, Error, Instant, LeaseState, LostReason, Mutex, Options, Pool, Redlock, Reply,
    ScriptRef,
};
use tokio::time::sleep;

use common::*;

/// The timing of [`fast`]: usable time 988 ms, renewed with a third of it left.
const VALIDITY: Duration = Duration::from_millis(988);
const LEAD: Duration = Duration::from_nanos(329_333_333);
const NODE_TIMEOUT: Duration = Duration::from_millis(50);

fn until(state: LeaseState) -> Instant {
    match state {
        LeaseState::Held { until } => until,
        LeaseState::Lost { reason, .. } => panic!("lease lost: {reason}"),
    }
}

fn lost_at(state: LeaseState) -> (LostReason, Instant) {
    match state {
        LeaseState::Lost { reason, at } => (reason, at),
        LeaseState::Held { until } => panic!("lease held until {until:?}"),
    }
}

fn calls(pools: &[MemoryPool]) -> u64 {
    pools.iter().map(MemoryPool::calls).sum()
}

#[tokio::test(start_paused = true)]
async fn renews_when_a_third_of_the_usable_time_is_left() {
    let pools = warm_pools(3).await;
    let lease = mutex(&pools, fast()).lease().await.expect("lease");
    let first = until(lease.signal().state());
    let before = calls(&pools);
    // Due when a third is left, up to an eighth of that earlier at random.
    let earliest = first - LEAD - LEAD / 8;
    tokio::time::sleep_until(earliest - ms(1)).await;
    assert_eq!(calls(&pools), before, "no renewal before it is due");
    tokio::time::sleep_until(first - LEAD + ms(1)).await;
    assert_eq!(calls(&pools), before + 3, "one renewal, to every node");
    let second = until(lease.signal().state());
    assert!(
        second >= earliest + VALIDITY - ms(1),
        "renewed to a full validity"
    );
    lease.unlock().await.expect("unlock");
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn a_lease_held_for_five_expiries_stays_held_and_exclusive() {
    let pools = warm_pools(3).await;
    let m = mutex(&pools, fast());
    let lease = m.lease().await.expect("lease");
    let signal = lease.signal().clone();
    for _ in 0..50 {
        sleep(ms(100)).await;
        assert!(signal.is_held(), "held at {:?}", signal.state());
        assert_all_hold(&pools, lease.value());
        assert!(m.try_lock().await.expect_err("exclusive").is_taken());
    }
    let lost = tokio::time::timeout(ms(10), signal.lost()).await;
    assert!(lost.is_err(), "the signal must not fire while held");
    lease.unlock().await.expect("unlock");
    assert!(matches!(signal.lost().await, LostReason::Released));
}

#[tokio::test(start_paused = true)]
async fn failing_renewals_fire_the_signal_before_the_deadline() {
    let pools = warm_pools(3).await;
    let lease = mutex(&pools, fast()).lease().await.expect("lease");
    pools[0].set_down(true);
    pools[1].set_down(true);
    let deadline = until(lease.signal().state());
    let reason = lease.signal().lost().await;
    let fired = Instant::now();
    let LostReason::RenewalFailed(error) = &reason else {
        panic!("want a failed renewal, got {reason:?}");
    };
    assert!(error.is_no_quorum(), "{error}");
    assert_eq!(error.node_errors().len(), 2);
    assert!(fired < deadline, "fired {:?} early", deadline - fired);
    assert!(
        fired >= deadline - NODE_TIMEOUT,
        "retried while a round could finish"
    );
    let (_, at) = lost_at(lease.signal().state());
    assert_eq!(at, fired);
    let e = lease.extend().await.expect_err("lost stays lost");
    assert!(e.is_lost() && e.node_errors().len() == 2, "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_renewal_still_fires_at_the_deadline() {
    let pools = warm_pools(3).await;
    let guard = mutex(&pools, fast()).lock().await.expect("lock");
    let deadline = guard.valid_until();
    // Less validity left than one per-node timeout: the renewal that starts now cannot
    // answer before the deadline.
    tokio::time::sleep_until(deadline - ms(20)).await;
    pools.iter().for_each(|p| p.set_hang(true));
    let lease = guard.keep_alive().expect("keep alive");
    let reason = lease.signal().lost().await;
    assert!(matches!(reason, LostReason::Expired), "{reason:?}");
    assert_eq!(Instant::now(), deadline, "fired at the deadline");
    let (_, at) = lost_at(lease.signal().state());
    assert_eq!(at, deadline);
    pools.iter().for_each(|p| p.set_hang(false));
    drop(lease);
}

#[tokio::test(start_paused = true)]
async fn another_owner_taking_the_key_is_reported_at_the_next_renewal() {
    let pools = warm_pools(3).await;
    let lease = mutex(&pools, fast()).lease().await.expect("lease");
    let deadline = until(lease.signal().state());
    occupy(&pools, ms(60_000));
    let reason = lease.signal().lost().await;
    assert!(
        matches!(&reason, LostReason::Taken(e) if e.is_taken()),
        "{reason:?}"
    );
    let now = Instant::now();
    let due = deadline - LEAD - LEAD / 8..=deadline - LEAD + ms(1);
    assert!(due.contains(&now), "reported by the next renewal");
    // A lost lease is not released behind the holder's back, and unlock deletes nothing
    // of another owner's.
    let e = lease.unlock().await.expect_err("taken");
    assert!(e.is_taken(), "{e}");
    assert_eq!(values(&pools), vec![Some(OTHER.to_owned()); 3]);
}

#[tokio::test(start_paused = true)]
async fn a_key_gone_from_the_nodes_is_reported() {
    let pools = warm_pools(3).await;
    let lease = mutex(&pools, fast()).lease().await.expect("lease");
    pools.iter().for_each(|p| p.expire_now(KEY));
    let reason = lease.signal().lost().await;
    assert!(
        matches!(&reason, LostReason::Gone(e) if e.is_expired()),
        "{reason:?}"
    );
    assert_eq!(reason.kind(), "gone");
}

#[tokio::test(start_paused = true)]
async fn the_maximum_hold_ends_the_lease_and_its_renewals() {
    let pools = warm_pools(3).await;
    let options = fast().max_hold(ms(1500));
    let lease = mutex(&pools, options).lease().await.expect("lease");
    let started = Instant::now();
    let reason = lease.signal().lost().await;
    assert!(matches!(reason, LostReason::MaxHold), "{reason:?}");
    assert_eq!(Instant::now(), started + ms(1500));
    let after = calls(&pools);
    sleep(ms(3000)).await;
    assert_eq!(calls(&pools), after, "no renewal after the maximum hold");
    assert!(lease.extend().await.expect_err("lost").is_lost());
}

#[tokio::test(start_paused = true)]
async fn the_safety_margin_ends_the_lease_earlier() {
    let pools = warm_pools(3).await;
    let options = fast().safety_margin(ms(200));
    let guard = mutex(&pools, options).lock().await.expect("lock");
    let valid_until = guard.valid_until();
    let lease = guard.keep_alive().expect("keep alive");
    assert_eq!(until(lease.signal().state()), valid_until - ms(200));
    pools.iter().for_each(|p| p.set_down(true));
    lease.signal().lost().await;
    assert!(Instant::now() <= valid_until - ms(200));
}

/// A pool that counts the calls running on its node at once.
#[derive(Clone)]
struct Tracked {
    inner: MemoryPool,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

struct TrackedConn(Tracked);

struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Pool for Tracked {
    type Conn = TrackedConn;

    async fn get(&self) -> Result<TrackedConn, ConnError> {
        Ok(TrackedConn(self.clone()))
    }
}

#[async_trait]
impl Conn for TrackedConn {
    async fn eval(
        &mut self,
        script: ScriptRef<'_>,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ConnError> {
        let now = self.0.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.most.fetch_max(now, Ordering::SeqCst);
        let _running = Running(&self.0.running);
        self.0.inner.clone().eval(script, keys, args).await
    }
}

/// The nodes of `pools`, each counting the calls running on it, and a lock over them.
#[allow(clippy::expect_used)] // A test helper: a failure is the test's.
fn tracked(pools: &[MemoryPool], options: Options) -> (Vec<Tracked>, Mutex<Tracked>) {
    let tracked: Vec<Tracked> = pools
        .iter()
        .map(|p| Tracked {
            inner: p.clone(),
            running: Arc::default(),
            most: Arc::default(),
        })
        .collect();
    let m = Redlock::with_options(tracked.clone(), options)
        .expect("options")
        .mutex(KEY)
        .expect("name");
    (tracked, m)
}

#[tokio::test(start_paused = true)]
async fn manual_and_automatic_extends_never_run_at_once() {
    let pools = warm_pools(3).await;
    pools.iter().for_each(|p| p.set_latency(ms(40)));
    let (tracked, m) = tracked(&pools, fast());
    let lease = m.lease().await.expect("lease");
    for i in 0..40u64 {
        // Every few milliseconds: some land inside an automatic renewal.
        sleep(ms(37 + i % 11)).await;
        lease.extend().await.expect("manual extend");
    }
    assert!(lease.signal().is_held());
    lease.unlock().await.expect("unlock");
    for t in &tracked {
        assert_eq!(
            t.most.load(Ordering::SeqCst),
            1,
            "calls overlapped on a node"
        );
    }
}

/// Starts a renewal whose `SET` lands 30 ms after it is sent, then lets later commands
/// arrive at once: a release that did not wait for the renewal would be overtaken by it.
/// Returns once the renewal is in flight (its start is random within its window).
async fn renewal_in_flight(pools: &[MemoryPool], nodes: &[Tracked], lease: &redlock_core::Lease) {
    let end = until(lease.signal().state());
    tokio::time::sleep_until(end - LEAD - LEAD / 8 - ms(1)).await;
    pools.iter().for_each(|p| p.set_request_latency(ms(30)));
    while nodes.iter().all(|t| t.running.load(Ordering::SeqCst) == 0) {
        assert!(
            Instant::now() <= end - LEAD + ms(1),
            "no renewal in its window"
        );
        sleep(ms(1)).await;
    }
    pools
        .iter()
        .for_each(|p| p.set_request_latency(Duration::ZERO));
}

fn recreating() -> Options {
    // Renewals that re-create the key are the ones that could revive a released lock.
    fast().recreate_on_extend(true)
}

#[tokio::test(start_paused = true)]
async fn unlock_waits_for_a_renewal_in_flight() {
    let pools = warm_pools(3).await;
    let (nodes, m) = tracked(&pools, recreating());
    let lease = m.lease().await.expect("lease");
    renewal_in_flight(&pools, &nodes, &lease).await;
    lease.unlock().await.expect("unlock");
    sleep(ms(200)).await;
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_lease_releases_after_the_renewal_in_flight() {
    let pools = warm_pools(3).await;
    let (nodes, m) = tracked(&pools, recreating());
    let lease = m.lease().await.expect("lease");
    let signal = lease.signal().clone();
    renewal_in_flight(&pools, &nodes, &lease).await;
    drop(lease);
    sleep(ms(200)).await;
    assert_none_hold(&pools);
    assert!(matches!(signal.lost().await, LostReason::Released));
}

#[tokio::test(start_paused = true)]
async fn detach_waits_for_the_renewal_and_hands_back_the_value() {
    let pools = warm_pools(3).await;
    let (nodes, m) = tracked(&pools, recreating());
    let lease = m.lease().await.expect("lease");
    let signal = lease.signal().clone();
    renewal_in_flight(&pools, &nodes, &lease).await;
    let value = lease.detach().await.expect("value");
    assert!(matches!(signal.lost().await, LostReason::Released));
    let calls_then = calls(&pools);
    sleep(ms(200)).await;
    assert_all_hold(&pools, &value);
    assert_eq!(
        calls(&pools),
        calls_then,
        "nothing sent after detach returned"
    );
}

#[tokio::test(start_paused = true)]
async fn check_needs_the_time_asked_for() {
    let pools = warm_pools(3).await;
    let lease = mutex(&pools, fast()).lease().await.expect("lease");
    let signal = lease.signal().clone();
    signal.check(ms(500)).expect("held for 500 ms more");
    let e = signal.check(ms(5000)).expect_err("not for 5 s");
    assert!(e.is_validity_low(), "{e}");
    assert!(e.to_string().contains("5s needed"), "{e}");
    lease.unlock().await.expect("unlock");
    let e = signal.check(Duration::ZERO).expect_err("released");
    assert!(
        matches!(
            e,
            Error::Lost {
                reason: LostReason::Released,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn lease_options_are_checked_before_anything_is_sent() {
    let pools = pools(3);
    let no_time = fast().safety_margin(ms(900));
    let m = mutex(&pools, no_time.clone());
    let e = m.lease().await.expect_err("margin too large");
    assert!(
        e.is_config() && e.to_string().contains("safety margin"),
        "{e}"
    );
    let e = m.run(|_| async {}).await.expect_err("margin too large");
    assert!(e.is_config(), "{e}");
    assert_eq!(calls(&pools), 0, "nothing sent");
    for bad in [
        fast().renew_factor(0.0),
        fast().renew_factor(1.0),
        fast().renew_factor(f64::NAN),
        fast().max_hold(Duration::ZERO),
    ] {
        let e = Redlock::with_options(pools.clone(), bad).expect_err("rejected");
        assert!(e.is_config(), "{e}");
    }
    // A guard that cannot be kept alive comes back still held.
    let guard = m.lock().await.expect("lock");
    let refused = guard.keep_alive().expect_err("margin too large");
    assert!(refused.error().is_config());
    let guard = refused.into_guard();
    assert_all_hold(&pools, guard.value());
    guard.unlock().await.expect("unlock");
}

fn mutex_on(pools: &[MemoryPool]) -> Mutex<MemoryPool> {
    mutex(pools, fast())
}

#[tokio::test(start_paused = true)]
async fn run_returns_the_output_and_releases() {
    let pools = warm_pools(3).await;
    let m = mutex_on(&pools);
    let out = m
        .run(|lease| async move {
            sleep(ms(3000)).await;
            lease.check(ms(100)).map(|()| 7)
        })
        .await
        .expect("ran");
    assert_eq!(out.expect("work"), 7);
    assert_none_hold(&pools);
    let out = m.run(|_| async { Err::<(), _>("work failed") }).await;
    assert_eq!(out.expect("ran"), Err("work failed"));
    assert_none_hold(&pools);
}

/// Sets a flag when dropped: shows that the work was dropped, not left running.
struct Dropped(Arc<AtomicBool>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn run_drops_the_work_when_the_lease_is_lost() {
    let pools = warm_pools(3).await;
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Dropped(dropped.clone());
    let taker = pools.clone();
    tokio::spawn(async move {
        sleep(ms(100)).await;
        occupy(&taker, ms(60_000));
    });
    let e = mutex_on(&pools)
        .run(|_| async move {
            let _flag = flag;
            std::future::pending::<()>().await
        })
        .await
        .expect_err("lost");
    assert!(
        matches!(
            &e,
            Error::Lost {
                reason: LostReason::Taken(_),
                ..
            }
        ),
        "{e}"
    );
    assert!(dropped.load(Ordering::SeqCst), "the work was dropped");
    assert_eq!(
        values(&pools),
        vec![Some(OTHER.to_owned()); 3],
        "other owner kept"
    );
}

#[tokio::test(start_paused = true)]
async fn run_stops_the_work_at_the_safety_margin_when_renewals_fail() {
    let pools = warm_pools(3).await;
    let m = mutex(&pools, fast().safety_margin(ms(300)));
    let down = pools.clone();
    let started = Instant::now();
    let e = m
        .run(|_| async move {
            down[1].set_down(true);
            down[2].set_down(true);
            std::future::pending::<()>().await
        })
        .await
        .expect_err("lost");
    let Error::Lost {
        reason: LostReason::RenewalFailed(cause),
        ..
    } = &e
    else {
        panic!("want a failed renewal, got {e}");
    };
    assert!(cause.is_no_quorum(), "{cause}");
    assert!(Instant::now() < started + VALIDITY - ms(300));
}

#[tokio::test(start_paused = true)]
async fn run_releases_when_the_work_panics() {
    let pools = warm_pools(3).await;
    let m = mutex_on(&pools);
    let task = tokio::spawn(async move {
        m.run(|_| async {
            sleep(ms(1500)).await;
            panic!("work panicked");
        })
        .await
    });
    let joined = task.await.expect_err("panicked");
    assert!(joined.is_panic());
    sleep(ms(100)).await;
    assert_none_hold(&pools);
}

#[tokio::test(start_paused = true)]
async fn run_releases_when_the_call_is_dropped() {
    let pools = warm_pools(3).await;
    let m = mutex_on(&pools);
    let run = m.run(|_| std::future::pending::<()>());
    assert!(tokio::time::timeout(ms(2500), run).await.is_err());
    sleep(ms(100)).await;
    assert_none_hold(&pools);
}

#[cfg(feature = "tokio-util")]
#[tokio::test(start_paused = true)]
async fn the_cancellation_token_is_cancelled_on_loss() {
    let pools = warm_pools(3).await;
    let lease = mutex_on(&pools).lease().await.expect("lease");
    let token = lease.signal().cancellation_token();
    pools.iter().for_each(|p| p.set_down(true));
    token.cancelled().await;
    assert!(!lease.signal().is_held());
}

#[tokio::test(start_paused = true)]
async fn a_lease_from_any_acquire_runs_work_the_same_way() {
    let pools = warm_pools(3).await;
    let m = mutex_on(&pools);
    let run = async {
        let deadline = Instant::now() + ms(500);
        let lease = m.lock_until(deadline).await?.keep_alive()?;
        lease
            .run(|signal| async move {
                sleep(ms(2500)).await;
                signal.check(ms(100))
            })
            .await
    };
    let out: Result<Result<(), Error>, Error> = run.await;
    out.expect("ran").expect("held throughout");
    assert_none_hold(&pools);
}

/// A lease whose end passed before its task first ran (a guard kept alive too late, or a
/// task not polled in time) is recorded as lost at once: its token is cancelled and its
/// task sends nothing and sleeps, instead of spinning on a renewal that is long due.
#[cfg(feature = "tokio-util")]
#[tokio::test(start_paused = true)]
async fn a_lease_past_its_end_is_recorded_lost_and_renews_nothing() {
    let pools = warm_pools(3).await;
    let guard = mutex_on(&pools).lock().await.expect("lock");
    tokio::time::sleep_until(guard.valid_until() + ms(10)).await;
    let lease = guard.keep_alive().expect("keep alive");
    let token = lease.signal().cancellation_token();
    let cancelled = tokio::time::timeout(ms(1000), token.cancelled()).await;
    assert!(cancelled.is_ok(), "the token must be cancelled");
    assert!(matches!(lease.signal().lost().await, LostReason::Expired));
    let sent = calls(&pools);
    sleep(ms(5_000)).await;
    assert_eq!(calls(&pools), sent, "nothing renewed after the end");
    drop(lease);
}

/// A lease whose runtime shuts down is recorded as abandoned: the signal, held by another
/// runtime's task, does not keep reading held while nothing renews the lock.
#[test]
fn a_lease_whose_runtime_shuts_down_reads_abandoned() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pools = pools(3);
    let (lease, signal) = runtime.block_on(async {
        let lease = mutex_on(&pools).lease().await.expect("lease");
        let signal = lease.signal().clone();
        (lease, signal)
    });
    assert!(signal.is_held());
    drop(runtime);
    let state = signal.state();
    assert!(
        matches!(
            state,
            LeaseState::Lost {
                reason: LostReason::Abandoned,
                ..
            }
        ),
        "{state:?}"
    );
    drop(lease);
}
