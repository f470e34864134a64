//! Behaviours on healthy nodes: acquire, release, ownership, extend, TTLs, quorum.

use std::time::Duration;

use redlock_core::{Error, Options, Pool};

use super::{Factory, Testbed, quick};

/// Acquire sets the key with one value on every node; unlock removes it everywhere.
pub async fn acquire_and_release<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, quick(5_000), factory, "acquire_and_release");
    let name = c.key("lock");
    let guard = c
        .redlock
        .lock(&name)
        .await
        .expect("lock on three healthy nodes");
    assert_eq!(guard.name(), name);
    assert_eq!(
        c.holders(&name, guard.value()),
        3,
        "every node holds the value"
    );
    assert!(guard.is_valid() && guard.remaining() <= Duration::from_millis(5_000));
    guard.unlock().await.expect("unlock by the owner");
    assert_eq!(
        c.values(&name),
        vec![None, None, None],
        "unlock removes every key"
    );
}

/// While one owner holds the lock, nobody else gets it; after unlock, someone does.
pub async fn second_acquire_fails_while_held<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, quick(5_000), factory, "second_acquire");
    let mutex = c.redlock.mutex(&c.key("lock")).expect("mutex");
    let first = mutex.lock().await.expect("first lock");
    let err = mutex.try_lock().await.expect_err("second lock while held");
    assert!(err.is_taken(), "expected taken, got {err}");
    assert!(
        matches!(err, Error::Taken { ref nodes, .. } if nodes == &[0, 1, 2]),
        "{err:?}"
    );
    assert_eq!(
        c.holders(mutex.name(), first.value()),
        3,
        "the failed attempt kept the holder's keys"
    );
    first.unlock().await.expect("unlock");
    let second = mutex.try_lock().await.expect("lock after unlock");
    second.unlock().await.expect("unlock");
}

/// A non-owner can neither unlock nor take over the lock; the owner's keys stay.
pub async fn unlock_by_non_owner_changes_nothing<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, quick(1_000), factory, "non_owner_unlock");
    let name = c.key("lock");
    let stale = c.redlock.lock(&name).await.expect("first owner");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // The owner's keys must outlive the checks below, however slow the machine.
    let owner = c
        .redlock
        .mutex_with(&name, quick(10_000))
        .expect("mutex")
        .lock()
        .await
        .expect("second owner after expiry");
    let err = stale
        .unlock()
        .await
        .expect_err("unlock by the expired owner");
    assert!(
        matches!(err, Error::Taken { .. }),
        "expected taken, got {err:?}"
    );
    assert_eq!(
        c.holders(&name, owner.value()),
        3,
        "the owner's keys are untouched"
    );

    let intruder = c
        .redlock
        .mutex_with(&name, quick(1_000).value("not-the-owner"))
        .expect("mutex");
    let err = intruder
        .adopt()
        .await
        .expect_err("adopt with a wrong value");
    assert!(err.is_taken(), "expected taken, got {err:?}");
    assert_eq!(
        c.holders(&name, owner.value()),
        3,
        "the owner's keys are untouched"
    );
    owner.unlock().await.expect("owner unlock");
}

/// The owner can extend; the new TTL lands on every node and validity moves forward.
pub async fn extend_by_owner_only<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, quick(5_000), factory, "extend_by_owner");
    let name = c.key("lock");
    let mut guard = c.redlock.lock(&name).await.expect("lock");
    let before = guard.valid_until();
    tokio::time::sleep(Duration::from_millis(100)).await;
    guard
        .extend_to(Duration::from_secs(20))
        .await
        .expect("extend by the owner");
    assert!(
        guard.valid_until() > before + Duration::from_secs(5),
        "validity moved forward"
    );
    for i in 0..3 {
        let pttl = c.fleet.pttl(i, &name).expect("pttl");
        assert!(pttl > 10_000 && pttl <= 20_000, "node {i} pttl {pttl}");
    }
    let other = c
        .redlock
        .mutex_with(&name, quick(1_000).value("someone-else"))
        .expect("mutex");
    assert!(
        other
            .adopt()
            .await
            .expect_err("extend by a non-owner")
            .is_taken()
    );
    assert_eq!(c.holders(&name, guard.value()), 3);
    guard.unlock().await.expect("unlock");
}

/// Once the lock has expired, extend fails and does not bring the keys back.
pub async fn extend_fails_after_expiry<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, quick(1_000), factory, "extend_after_expiry");
    let name = c.key("lock");
    let mut guard = c.redlock.lock(&name).await.expect("lock");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let err = guard.extend().await.expect_err("extend after expiry");
    assert!(err.is_expired(), "expected expired, got {err:?}");
    assert_eq!(
        c.values(&name),
        vec![None, None, None],
        "extend revived no key"
    );
    assert!(
        guard
            .unlock()
            .await
            .expect_err("unlock after expiry")
            .is_expired()
    );
}

/// No node ever holds the key longer than the expiry asked for.
pub async fn node_ttl_never_exceeds_expiry<P: Pool>(factory: &impl Factory<P>) {
    // Seconds long, so that no key expires before it is read on a slow machine.
    let c = Testbed::start(3, quick(6_000), factory, "node_ttl");
    let name = c.key("lock");
    let mut guard = c.redlock.lock(&name).await.expect("lock");
    assert_pttl(&c, &name, 1, 6_000);
    guard
        .extend_to(Duration::from_millis(3_000))
        .await
        .expect("extend shorter");
    assert_pttl(&c, &name, 1, 3_000);
    guard
        .extend()
        .await
        .expect("extend to the lock's own expiry");
    assert_pttl(&c, &name, 1, 6_000);
    guard.unlock().await.expect("unlock");
}

fn assert_pttl<P: Pool>(c: &Testbed<P>, key: &str, min: i64, max: i64) {
    for i in 0..c.fleet.len() {
        let pttl = c.fleet.pttl(i, key).expect("pttl");
        assert!(
            (min..=max).contains(&pttl),
            "node {i}: pttl {pttl} outside {min}..={max}"
        );
    }
}

/// With N = 1, 3, 5: a lock succeeds while another owner holds a minority of nodes, and
/// fails once it holds a majority.
pub async fn quorum_for_one_three_and_five_nodes<P: Pool>(factory: &impl Factory<P>) {
    for n in [1usize, 3, 5] {
        let c = Testbed::start(n, quick(5_000).tries(1), factory, "quorum");
        let quorum = n / 2 + 1;
        let minority = c.key("minority");
        for i in 0..n - quorum {
            c.fleet.set(i, &minority, "other", 5_000).expect("set");
        }
        let guard = c
            .redlock
            .lock(&minority)
            .await
            .unwrap_or_else(|e| panic!("n={n}: {e}"));
        assert_eq!(c.holders(&minority, guard.value()), quorum, "n={n}");
        guard.unlock().await.expect("unlock");

        let majority = c.key("majority");
        for i in 0..quorum {
            c.fleet.set(i, &majority, "other", 5_000).expect("set");
        }
        let err = c
            .redlock
            .lock(&majority)
            .await
            .expect_err("majority held by another owner");
        assert!(err.is_taken(), "n={n}: {err:?}");
        assert_eq!(
            c.holders(&majority, "other"),
            quorum,
            "n={n}: the other owner's keys stay"
        );
    }
}

/// Two lock managers whose value generator repeats one string: the core makes each value
/// unique and an acquire only creates keys, so the second never shares the first's lock,
/// its failed attempt leaves the first's keys alone, and the first, once expired, cannot
/// touch the keys of whoever holds the lock next.
pub async fn repeating_value_generator_never_gives_two_holders<P: Pool>(factory: &impl Factory<P>) {
    let same = || quick(5_000).tries(1).value_generator(|| "same".to_owned());
    let bed = Testbed::start(3, same(), factory, "repeating_value");
    let second = super::manager(&bed.fleet, same(), factory);
    let name = bed.key("lock");
    let first = bed.redlock.lock(&name).await.expect("first lock");
    let err = second
        .lock(&name)
        .await
        .expect_err("the first still holds it");
    assert!(err.is_taken(), "{err}");
    assert_eq!(
        bed.holders(&name, first.value()),
        3,
        "the first's keys stay"
    );
    assert!(first.is_valid());
    for i in 0..3 {
        bed.fleet
            .del(i, &name)
            .expect("early expiry of the first's keys");
    }
    let next = second.lock(&name).await.expect("free again");
    assert!(
        first.unlock().await.is_err(),
        "the stale holder's unlock failed"
    );
    assert_eq!(
        bed.holders(&name, next.value()),
        3,
        "the next holder's keys stay"
    );
    next.unlock().await.expect("unlock");
}

/// Bad names, options and URLs are rejected before anything reaches a server.
pub async fn bad_inputs_are_rejected_before_sending<P: Pool>(factory: &impl Factory<P>) {
    let c = Testbed::start(3, quick(1_000), factory, "bad_inputs");
    for i in 0..3 {
        c.fleet.reset_stats(i).expect("reset stats");
    }
    let bad: Vec<(&str, Options)> = vec![
        ("zero expiry", Options::new().expiry(Duration::ZERO)),
        ("huge expiry", Options::new().expiry(Duration::MAX)),
        (
            "expiry under drift",
            Options::new().expiry(Duration::from_millis(2)),
        ),
        ("zero tries", Options::new().tries(0)),
        ("drift factor 1", Options::new().drift_factor(1.0)),
        (
            "nan timeout factor",
            Options::new().timeout_factor(f64::NAN),
        ),
        ("quorum below majority", Options::new().quorum(1)),
        ("quorum above n", Options::new().quorum(4)),
        ("empty value", Options::new().value("")),
        (
            "min delay above max",
            Options::new().retry_delay(Duration::from_secs(2), Duration::from_secs(1)),
        ),
    ];
    for (what, options) in bad {
        let err = c
            .redlock
            .mutex_with(&c.key("lock"), options)
            .expect_err(what);
        assert!(err.is_config(), "{what}: {err:?}");
    }
    assert!(
        c.redlock
            .lock("")
            .await
            .expect_err("empty name")
            .is_config()
    );
    assert_eq!(scripts_run(&c), 0, "bad options reached a server");
    let mut guard = c.redlock.lock(&c.key("lock")).await.expect("lock");
    for i in 0..3 {
        c.fleet.reset_stats(i).expect("reset stats");
    }
    for ttl in [Duration::ZERO, Duration::MAX] {
        let err = guard.extend_to(ttl).await.expect_err("bad extend ttl");
        assert!(err.is_config(), "{err:?}");
    }
    assert_eq!(scripts_run(&c), 0, "a bad extend reached a server");
    guard.unlock().await.expect("unlock");
    for url in ["", "not a url", "http://127.0.0.1:1/"] {
        let err = factory(url)
            .err()
            .unwrap_or_else(|| panic!("factory accepted {url:?}"));
        assert!(err.is_config(), "{url:?}: {err:?}");
    }
}

fn scripts_run<P: Pool>(c: &Testbed<P>) -> u64 {
    let count = |i, cmd| c.fleet.command_count(i, cmd).expect("stats");
    (0..c.fleet.len())
        .map(|i| count(i, "evalsha") + count(i, "eval"))
        .sum()
}
