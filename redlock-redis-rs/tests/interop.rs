//! Other languages' Redlock clients on the same names: the Python `redlock` package
//! (`RedLockFactory`) and node-redlock v5, against the same `redis-server`s as our lock.
//!
//! The guarantee rests on the layout every one of them shares with redsync: the key is the
//! lock's name, its value a random string, its TTL set with `PX`, and a release deletes the
//! key only if it still holds the releaser's value. So each side is refused while the other
//! holds, neither side's release (late or failed) deletes the other's key, and a counter
//! written by all of them under one name loses no update. The scripts may grow (fencing,
//! release notifications) but must keep that layout: these tests are what holds them to it.
//!
//! One driver is enough: drivers never write protocol, they run the core's scripts, so the
//! keys on the wire are the same whichever driver sends them.
//!
//! The foreign clients must be installed first (`tests/interop/install.sh`, which `.ci/run`
//! calls); without them every test here fails and says how to install them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "interop/foreign.rs"]
mod foreign;

use std::time::Duration;

use foreign::{Client, Foreign, Work};
use redlock_conformance::{Fleet, unique_prefix};
use redlock_redis_rs::redis::{self, aio::MultiplexedConnection};
use redlock_redis_rs::{Mutex, Options, RedisPool, Redlock};

const NODES: usize = 3;
/// The TTL every holder asks for: long enough that no lock here expires on its own, so
/// that every "expiry" is one the test makes happen.
const TTL: Duration = Duration::from_secs(30);
/// A bound on a whole contended run, so that a hang fails the test.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

struct Setup {
    fleet: Fleet,
    redlock: Redlock<RedisPool>,
    foreign: Vec<(Client, Foreign)>,
    prefix: String,
}

async fn setup(test: &str) -> Setup {
    let fleet = Fleet::start(NODES).expect("start the redis-server fleet");
    let urls = fleet.urls();
    let pools = RedisPool::from_urls(&urls).unwrap();
    // New servers: with restart quarantine they would get no vote for the expiry.
    let options = Options::new().expiry(TTL).quarantine(Duration::ZERO);
    let redlock = Redlock::with_options(pools, options).unwrap();
    let (python, node) = tokio::join!(
        Foreign::start(Client::Python, &urls),
        Foreign::start(Client::Node, &urls)
    );
    let foreign = vec![(Client::Python, python), (Client::Node, node)];
    let prefix = unique_prefix(test);
    Setup {
        fleet,
        redlock,
        foreign,
        prefix,
    }
}

fn ttl_ms() -> u64 {
    TTL.as_millis().try_into().unwrap()
}

/// Every node holds `name` with exactly `value`, and with a TTL.
fn assert_held(fleet: &Fleet, name: &str, value: &str, by: &str) {
    for i in 0..fleet.len() {
        let held = fleet.get(i, name).unwrap();
        assert_eq!(held.as_deref(), Some(value), "node {i}, key {name}: {by}");
        assert!(
            fleet.pttl(i, name).unwrap() > 0,
            "node {i}: {name} has no TTL"
        );
    }
}

fn assert_gone(fleet: &Fleet, name: &str) {
    for i in 0..fleet.len() {
        assert_eq!(
            fleet.get(i, name).unwrap(),
            None,
            "node {i}: {name} left behind"
        );
    }
}

fn pttls(fleet: &Fleet, name: &str) -> Vec<i64> {
    (0..fleet.len())
        .map(|i| fleet.pttl(i, name).unwrap())
        .collect()
}

/// Deletes `name` everywhere: the holder's TTL running out, without waiting for it.
fn expire(fleet: &Fleet, name: &str) {
    for i in 0..fleet.len() {
        fleet.del(i, name).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_clients_are_refused_while_rust_holds() {
    let mut s = setup("interop_refused_while_rust_holds").await;
    let name = format!("{}lock", s.prefix);
    let guard = s.redlock.try_lock(&name).await.unwrap();
    assert_held(&s.fleet, &name, guard.value(), "the key is the name");
    for (client, foreign) in &mut s.foreign {
        assert_eq!(
            foreign.lock(&name, ttl_ms()).await,
            None,
            "{client:?} got in"
        );
        // The refused attempt released with its own value on every node: ours stays.
        assert_held(&s.fleet, &name, guard.value(), &format!("after {client:?}"));
    }
    guard.unlock().await.unwrap();
    assert_gone(&s.fleet, &name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_is_refused_while_a_foreign_client_holds() {
    let mut s = setup("interop_refused_while_foreign_holds").await;
    for holder in Client::ALL {
        let name = format!("{}{holder:?}", s.prefix);
        let value = foreign(&mut s, holder).lock(&name, ttl_ms()).await;
        let value = value.unwrap_or_else(|| panic!("{holder:?} refused a free name"));
        // Their layout is ours: the name is the key, the value a plain string.
        assert_held(&s.fleet, &name, &value, &format!("{holder:?} holds"));
        let err = s.redlock.try_lock(&name).await.unwrap_err();
        assert!(err.is_taken(), "{holder:?} holds, yet: {err:?}");
        for (client, other) in s.foreign.iter_mut().filter(|(c, _)| *c != holder) {
            assert_eq!(other.lock(&name, ttl_ms()).await, None, "{client:?} got in");
        }
        assert_held(&s.fleet, &name, &value, "after the refused attempts");
        foreign(&mut s, holder).unlock(&name).await;
        assert_gone(&s.fleet, &name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_foreign_release_leaves_the_rust_key() {
    let mut s = setup("interop_late_foreign_release").await;
    for late in Client::ALL {
        let name = format!("{}{late:?}", s.prefix);
        foreign(&mut s, late).lock(&name, ttl_ms()).await.unwrap();
        expire(&s.fleet, &name);
        let guard = s.redlock.try_lock(&name).await.unwrap();
        foreign(&mut s, late).unlock(&name).await;
        assert_held(
            &s.fleet,
            &name,
            guard.value(),
            &format!("{late:?} released late"),
        );
        guard.unlock().await.unwrap();
        assert_gone(&s.fleet, &name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_rust_release_leaves_the_foreign_key() {
    let mut s = setup("interop_late_rust_release").await;
    for holder in Client::ALL {
        let name = format!("{}{holder:?}", s.prefix);
        let mut guard = s.redlock.try_lock(&name).await.unwrap();
        expire(&s.fleet, &name);
        let value = foreign(&mut s, holder).lock(&name, ttl_ms()).await.unwrap();
        let before = pttls(&s.fleet, &name);
        let err = guard.extend().await.unwrap_err();
        assert!(err.is_taken(), "extend over {holder:?}: {err:?}");
        assert_held(&s.fleet, &name, &value, "after our late extend");
        // Our extend refreshed none of their TTLs: each is still counting down.
        let after = pttls(&s.fleet, &name);
        let refreshed = before.iter().zip(&after).any(|(b, a)| a > b);
        assert!(
            !refreshed,
            "TTLs of {holder:?}'s key were {before:?}, now {after:?}"
        );
        let err = guard.unlock().await.unwrap_err();
        assert!(err.is_taken(), "unlock over {holder:?}: {err:?}");
        assert_held(&s.fleet, &name, &value, "after our late unlock");
        foreign(&mut s, holder).unlock(&name).await;
        assert_gone(&s.fleet, &name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_written_by_every_language_under_one_name_loses_no_update() {
    let mut s = setup("interop_counter").await;
    let name = format!("{}lock", s.prefix);
    let (total, written) = run_counter(&mut s, |_| name.clone()).await;
    println!("one name: counter {written}, held per worker (py, node, rs, rs) {total:?}");
    assert_eq!(
        written,
        total.iter().sum::<u32>(),
        "lost updates; per worker {total:?}"
    );
    for (worker, done) in ["python", "node", "rust-1", "rust-2"].iter().zip(&total) {
        assert!(*done > 0, "{worker} never held the lock: {total:?}");
    }
}

/// The canary: the same run with a name per worker is a run without exclusion, and the
/// counter must show it, or the test above could pass without proving anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counter_check_sees_lost_updates_when_the_names_differ() {
    let mut s = setup("interop_counter_canary").await;
    let prefix = s.prefix.clone();
    let (total, written) = run_counter(&mut s, |worker| format!("{prefix}{worker}")).await;
    println!("a name each: counter {written}, held per worker {total:?}");
    let total: u32 = total.iter().sum();
    assert!(
        written < total,
        "no update lost without exclusion: {written} of {total}"
    );
}

/// Runs the counter workload: Python, Node and two Rust workers at once, each doing
/// read-modify-writes of one counter on node 0 under the lock `name(worker)`. Returns each
/// worker's count of held iterations (Python, Node, Rust, Rust) and the counter's value.
async fn run_counter(s: &mut Setup, name: impl Fn(usize) -> String) -> (Vec<u32>, u32) {
    let counter_key = format!("{}counter", s.prefix);
    let work = |worker| Work {
        name: name(worker),
        counter_url: s.fleet.url(0),
        counter_key: counter_key.clone(),
        iterations: 20,
        ttl_ms: ttl_ms(),
        hold_ms: 5,
    };
    let works: Vec<Work> = (0..4).map(work).collect();
    let [python, node] = &mut s.foreign[..] else {
        unreachable!("setup starts two foreign clients")
    };
    let run = async {
        tokio::join!(
            python.1.work(&works[0]),
            node.1.work(&works[1]),
            rust_worker(&s.redlock, &works[2]),
            rust_worker(&s.redlock, &works[3]),
        )
    };
    let (p, n, r1, r2) = tokio::time::timeout(RUN_TIMEOUT, run)
        .await
        .expect("the counter run hung");
    let written = s.fleet.get(0, &counter_key).unwrap();
    let written = written.map_or(0, |n| n.parse().expect("the counter is a number"));
    (vec![p, n, r1, r2], written)
}

async fn rust_worker(redlock: &Redlock<RedisPool>, work: &Work) -> u32 {
    // Short, many retries, like the foreign workers': contention is what is tested.
    let options = Options::new()
        .expiry(TTL)
        .tries(400)
        .retry_delay(Duration::from_millis(5), Duration::from_millis(45))
        .quarantine(Duration::ZERO);
    let mutex = redlock.mutex_with(&work.name, options).unwrap();
    let client = redis::Client::open(work.counter_url.as_str()).unwrap();
    let mut counter = client.get_multiplexed_async_connection().await.unwrap();
    let mut done = 0;
    for _ in 0..work.iterations {
        done += u32::from(increment(&mutex, &mut counter, work).await);
    }
    done
}

/// One read-modify-write under the lock; false when the lock was not had.
async fn increment(
    mutex: &Mutex<RedisPool>,
    counter: &mut MultiplexedConnection,
    work: &Work,
) -> bool {
    let guard = match mutex.lock().await {
        Ok(guard) => guard,
        Err(e) if e.is_taken() => return false,
        Err(e) => panic!("rust worker: {e}"),
    };
    let key = work.counter_key.as_str();
    let value: Option<u64> = redis::cmd("GET")
        .arg(key)
        .query_async(counter)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(work.hold_ms)).await;
    let next = value.unwrap_or(0) + 1;
    let () = redis::cmd("SET")
        .arg(key)
        .arg(next)
        .query_async(counter)
        .await
        .unwrap();
    guard.unlock().await.unwrap();
    true
}

fn foreign(s: &mut Setup, client: Client) -> &mut Foreign {
    let found = s.foreign.iter_mut().find(|(c, _)| *c == client);
    &mut found.expect("every client is started").1
}
