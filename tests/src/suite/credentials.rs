//! Credentials: a refused password is a clear, immediate error that names the nodes, and
//! no password ever shows in a message, a `Debug` or an error chain.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use redlock_core::{ConnErrorKind, Pool, Redlock};

use super::{Factory, manager_over, quick};
use crate::fleet::{Fleet, unique_prefix};
use crate::printed;

/// The password every test here uses; it must never show anywhere.
const SECRET: &str = "s3cret-hunter2";

/// Adds an ACL user `locker` with password `password`, allowed everything, on every node.
fn add_user(fleet: &Fleet, password: &str) {
    for i in 0..fleet.len() {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg("locker")
            .arg("on")
            .arg(format!(">{password}"));
        cmd.arg("~*").arg("&*").arg("+@all");
        fleet.query::<()>(i, &cmd).expect("acl setuser");
    }
}

/// `redis://locker:PASSWORD@127.0.0.1:PORT/` for node `i`.
fn url_as(fleet: &Fleet, i: usize, password: &str) -> String {
    format!("redis://locker:{password}@127.0.0.1:{}/", fleet.port(i))
}

/// A wrong password stops `lock()` at once, without retries, with an error that says the
/// credentials were refused and names every node by its address.
pub async fn wrong_password_fails_at_once_and_says_so<P: Pool>(factory: &impl Factory<P>) {
    let fleet = Fleet::start(3).expect("fleet");
    add_user(&fleet, "the-right-one");
    let urls: Vec<String> = (0..3).map(|i| url_as(&fleet, i, SECRET)).collect();
    let retries = Arc::new(AtomicU32::new(0));
    let counter = retries.clone();
    let options = quick(5_000).tries(32).retry_delay_fn(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Duration::from_millis(10)
    });
    let redlock = manager_over(&urls, options, factory);
    let err = redlock.lock("wrong-password").await.expect_err("refused");
    assert_eq!(retries.load(Ordering::SeqCst), 0, "retried: {err}");
    // Asked again, once the driver has given up on its first connection, it still says why.
    let err = redlock.lock("wrong-password").await.expect_err("refused");
    assert_eq!(retries.load(Ordering::SeqCst), 0, "retried: {err}");
    assert!(!err.is_retryable(), "{err}");
    let kinds: Vec<_> = err.node_errors().iter().map(|e| e.error.kind()).collect();
    assert_eq!(kinds, [ConnErrorKind::Auth; 3], "{}", printed(&err));
    let message = err.to_string();
    assert!(message.contains("3 refused the credentials"), "{message}");
    for i in 0..3 {
        let address = format!("127.0.0.1:{}", fleet.port(i));
        assert!(message.contains(&address), "{message}");
    }
    assert!(!printed(&err).contains(SECRET), "{}", printed(&err));
    let right: Vec<String> = (0..3).map(|i| url_as(&fleet, i, "the-right-one")).collect();
    let redlock = manager_over(&right, quick(5_000), factory);
    let guard = redlock
        .lock("right-password")
        .await
        .expect("the right password");
    guard.unlock().await.expect("unlock");
}

/// No password shows in a pool's or a manager's `Debug`, in the error of a malformed URL,
/// or in the errors of a lock whose nodes are down.
pub async fn passwords_never_appear_in_output<P: Pool>(factory: &impl Factory<P>) {
    let mut fleet = Fleet::start(2).expect("fleet");
    add_user(&fleet, SECRET);
    let bad = [
        format!("redis://locker:{SECRET}@127.0.0.1:notaport/"),
        format!("redis://locker:{SECRET}@/"),
        format!("rediss://locker:{SECRET}@127.0.0.1:1/"),
        format!("http://locker:{SECRET}@127.0.0.1:1/"),
    ];
    for url in &bad {
        if let Err(err) = factory(url) {
            assert!(!printed(&err).contains(SECRET), "{url}: {}", printed(&err));
        }
    }
    let urls: Vec<String> = (0..2).map(|i| url_as(&fleet, i, SECRET)).collect();
    let pools: Vec<P> = urls.iter().map(|u| factory(u).expect("factory")).collect();
    let redlock = Redlock::with_options(pools, quick(2_000).tries(1)).expect("options");
    let name = format!("{}lock", unique_prefix("secrets"));
    let guard = redlock.lock(&name).await.expect("the right password");
    assert!(!format!("{guard:?} {redlock:?}").contains(SECRET));
    guard.unlock().await.expect("unlock");
    fleet.kill(0).expect("kill");
    fleet.kill(1).expect("kill");
    let err = redlock.lock(&name).await.expect_err("nodes down");
    assert!(err.is_no_quorum(), "{err}");
    assert!(!printed(&err).contains(SECRET), "{}", printed(&err));
    assert!(!format!("{redlock:?}").contains(SECRET));
}
