//! Leases on real servers: a lease outlives many expiries and stays exclusive, its signal
//! fires before the deadline when a majority dies, a takeover is reported as `Taken`,
//! unlocking stops the renewals, and run-under-lock releases when the work is done.

use std::time::Duration;

use redlock_core::{Error, Instant, Lease, LeaseState, LostReason, Options, Pool};

use super::{Factory, Testbed, quick};

/// Two-second leases with a per-node timeout of 200 ms: short enough to see several
/// renewals in a test, long enough that a loaded machine's stalls do not lose them.
fn leased() -> Options {
    quick(2_000).timeout_factor(0.1)
}

const EXPIRY: Duration = Duration::from_secs(2);

/// How long a test waits for a signal that must come within one expiry.
const PATIENCE: Duration = Duration::from_secs(10);

/// A lease on `name` through the testbed's lock manager.
async fn lease_on<P: Pool>(c: &Testbed<P>, name: &str) -> Lease {
    let mutex = c.redlock.mutex(name).expect("name");
    mutex.lease().await.expect("lease")
}

fn held_until(state: LeaseState) -> Instant {
    match state {
        LeaseState::Held { until } => until,
        LeaseState::Lost { reason, .. } => panic!("lease lost: {reason}"),
    }
}

/// A lease held for three expiries stays held on every node, and no other client gets the
/// lock meanwhile.
pub async fn lease_outlives_three_expiries_and_stays_exclusive<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, leased(), factory, "lease_outlives");
    let name = c.key("lock");
    let lease = lease_on(&c, &name).await;
    let signal = lease.signal().clone();
    let first = held_until(signal.state());
    let end = Instant::now() + EXPIRY * 3;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            signal.is_held(),
            "lease lost while healthy: {:?}",
            signal.state()
        );
        assert_eq!(
            c.holders(&name, lease.value()),
            3,
            "every node holds the lease"
        );
        let other = c.redlock.try_lock(&name).await.expect_err("exclusive");
        assert!(other.is_taken(), "{other}");
    }
    assert!(
        held_until(signal.state()) > first + EXPIRY * 2,
        "renewed all along"
    );
    lease.unlock().await.expect("unlock");
    assert!(matches!(signal.lost().await, LostReason::Released));
    assert_eq!(c.values(&name), vec![None; 3]);
}

/// Killing a majority while a lease is held makes the signal fire, with the renewals'
/// quorum failure, before the validity deadline.
pub async fn majority_killed_under_a_lease_fires_before_the_deadline<P: Pool>(
    factory: &impl Factory<P>,
) {
    let mut c = Testbed::start(3, leased(), factory, "lease_majority_killed");
    let name = c.key("lock");
    let lease = lease_on(&c, &name).await;
    c.fleet.kill(0).expect("kill");
    c.fleet.kill(1).expect("kill");
    // No renewal can succeed from here on: this is the last deadline.
    let deadline = held_until(lease.signal().state());
    let reason = tokio::time::timeout(PATIENCE, lease.signal().lost())
        .await
        .expect("the signal fires");
    let LostReason::RenewalFailed(error) = &reason else {
        panic!("want failed renewals, got {reason:?}");
    };
    assert!(error.is_no_quorum() && !error.is_taken(), "{error}");
    let failed: Vec<usize> = error.node_errors().iter().map(|e| e.node).collect();
    assert!(failed.contains(&0) && failed.contains(&1), "{error}");
    let LeaseState::Lost { at, .. } = lease.signal().state() else {
        panic!("lost stays lost");
    };
    assert!(
        at < deadline,
        "fired {:?} after the deadline",
        at - deadline
    );
}

/// Another client writing the key (a takeover) is reported as `Taken` by the next
/// renewal, and the holder's unlock deletes nothing of the new owner's.
pub async fn takeover_is_reported_as_taken<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, leased(), factory, "lease_takeover");
    let name = c.key("lock");
    let lease = lease_on(&c, &name).await;
    for i in 0..3 {
        c.fleet.set(i, &name, "new-owner", 60_000).expect("set");
    }
    let reason = tokio::time::timeout(PATIENCE, lease.signal().lost())
        .await
        .expect("the signal fires");
    assert!(
        matches!(&reason, LostReason::Taken(e) if e.is_taken()),
        "{reason:?}"
    );
    let e = lease.unlock().await.expect_err("taken");
    assert!(e.is_taken(), "{e}");
    assert_eq!(c.values(&name), vec![Some("new-owner".to_owned()); 3]);
}

/// Once unlocked, a lease renews nothing: no renewal reaches any node, and no key
/// reappears, though its renewals would re-create one (`recreate_on_extend`).
pub async fn unlocked_lease_renews_nothing<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(
        3,
        leased().recreate_on_extend(true),
        factory,
        "lease_unlocked",
    );
    let name = c.key("lock");
    let lease = lease_on(&c, &name).await;
    let first = held_until(lease.signal().state());
    // Past the first renewal, so that renewals are scheduled.
    tokio::time::sleep(EXPIRY).await;
    assert!(held_until(lease.signal().state()) > first, "renewed once");
    lease.unlock().await.expect("unlock");
    let calls: Vec<u64> = (0..3)
        .map(|i| c.fleet.command_count(i, "evalsha").expect("stats"))
        .collect();
    let end = Instant::now() + EXPIRY * 2;
    while Instant::now() < end {
        assert_eq!(c.values(&name), vec![None; 3], "a key reappeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after: Vec<u64> = (0..3)
        .map(|i| c.fleet.command_count(i, "evalsha").expect("stats"))
        .collect();
    assert_eq!(after, calls, "a renewal reached a node after unlock");
}

/// Run-under-lock keeps the lock through work longer than the expiry, returns the work's
/// output, and leaves no key; work that outlives a lost lease is stopped with `Lost`.
pub async fn run_under_lock_releases_and_stops_on_loss<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, leased(), factory, "lease_run");
    let name = c.key("lock");
    let mutex = c.redlock.mutex(&name).expect("name");
    let out = mutex
        .run(|lease| async move {
            tokio::time::sleep(EXPIRY * 2 + EXPIRY / 2).await;
            lease.check(Duration::from_millis(100)).map(|()| "done")
        })
        .await
        .expect("ran");
    assert_eq!(out.expect("held throughout"), "done");
    assert_eq!(c.values(&name), vec![None; 3]);

    let fleet = &c.fleet;
    let e = mutex
        .run(|_| async move {
            for i in 0..3 {
                fleet.set(i, &name, "new-owner", 60_000).expect("set");
            }
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
}
