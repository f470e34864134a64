//! Sentinel-managed masters as nodes: a forced failover while locks are taken, after
//! which locking resumes on the new master.

use std::time::Duration;

use redlock_core::{Instant, Options, Pool, Redlock};

use crate::fleet::{Fleet, Sentinels, unique_prefix};

/// Builds one node's pool for a Sentinel-managed master group: a driver's
/// `from_sentinel(sentinel_urls, service)`.
pub trait SentinelFactory<P>: Fn(&[String], &str) -> redlock_core::Result<P> {}

impl<P, F: Fn(&[String], &str) -> redlock_core::Result<P>> SentinelFactory<P> for F {}

/// The master group's name.
const SERVICE: &str = "redlock-test";

/// How long locking may take to resume after a failover before the test fails; a hang
/// must fail, never pass.
const RESUME_WITHIN: Duration = Duration::from_secs(30);

/// No restart quarantine: the servers are new, and so is a promoted replica's master.
/// A second each and three tries: a pool's first call asks the Sentinels, connects and
/// loads the script, which a loaded machine can make slow. A refusal (`NOPERM`, a wrong
/// password) is not retried.
fn options() -> Options {
    Options::new()
        .expiry(Duration::from_secs(5))
        .timeout_factor(0.2)
        .tries(3)
        .quarantine(Duration::ZERO)
}

/// One master, two replicas and three Sentinels.
fn start() -> (Fleet, Sentinels) {
    let fleet = Fleet::start(3).unwrap_or_else(|e| panic!("cannot start 3 redis-servers: {e}"));
    let sentinels = fleet
        .start_sentinels(SERVICE, 3)
        .unwrap_or_else(|e| panic!("cannot start the sentinels: {e}"));
    (fleet, sentinels)
}

fn index_of(fleet: &Fleet, port: u16) -> usize {
    (0..fleet.len())
        .find(|&i| fleet.port(i) == port)
        .unwrap_or_else(|| panic!("no node on port {port}"))
}

/// A lock over one node that is a Sentinel-managed master group: locks land on the
/// master; after a forced failover (`SENTINEL FAILOVER`) locking resumes on the new
/// master, and the demoted one is not used.
pub async fn sentinel_failover_moves_locking_to_the_new_master<P: Pool>(
    factory: &impl SentinelFactory<P>,
) {
    let (fleet, sentinels) = start();
    let urls = sentinels.urls();
    let pool = factory(&urls, sentinels.service()).expect("a pool over the sentinels");
    let redlock = Redlock::with_options(vec![pool], options()).expect("options");
    let name = unique_prefix("sentinel");
    let held = redlock
        .lock(&format!("{name}:held"))
        .await
        .expect("lock on the first master");
    let old = index_of(&fleet, sentinels.master_port().expect("master"));
    assert_eq!(old, 0);
    let on_old = fleet.get(old, &format!("{name}:held")).expect("get");
    assert_eq!(on_old.as_deref(), Some(held.value()));

    // The failover happens while that lock is held.
    let new = index_of(&fleet, sentinels.failover().expect("failover"));
    assert_ne!(new, old, "the failover picked a new master");
    let until = Instant::now() + RESUME_WITHIN;
    let guard = loop {
        match redlock.try_lock(&name).await {
            Ok(guard) => break guard,
            Err(e) if Instant::now() < until => {
                let _retried = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("locking did not resume on the new master: {e}"),
        }
    };
    assert_eq!(
        fleet.get(new, &name).expect("get").as_deref(),
        Some(guard.value()),
        "the lock is on the new master"
    );
    guard.unlock().await.expect("unlock on the new master");
    assert_eq!(fleet.get(new, &name).expect("get"), None);
    // The lock held across the failover: released on the new master if its key was
    // replicated there, reported as expired if it was lost; never a hang.
    let released = tokio::time::timeout(RESUME_WITHIN, held.unlock()).await;
    match released.expect("no hang") {
        Ok(()) => {}
        Err(e) => assert!(e.is_expired(), "{e}"),
    }
    assert_eq!(fleet.get(new, &format!("{name}:held")).expect("get"), None);
}

/// Sentinel URLs with credentials or TLS, and a service asking for TLS to the master, are
/// refused with a clear error (never shown with the password), rather than dropped.
pub async fn sentinel_urls_with_credentials_or_tls_are_refused<P: Pool>(
    factory: &impl SentinelFactory<P>,
) {
    for url in [
        "redis://user:sentinel-pw@127.0.0.1:1/",
        "redis://:sentinel-pw@127.0.0.1:1/",
        "rediss://127.0.0.1:1/",
    ] {
        let Err(err) = factory(&[url.to_owned()], SERVICE) else {
            panic!("{url} must be refused");
        };
        assert!(err.is_config(), "{url}: {err}");
        assert!(!crate::printed(&err).contains("sentinel-pw"), "{err}");
    }
    // TLS to the master is not supported yet: refused, not silently plain.
    let plain = ["redis://127.0.0.1:1/".to_owned()];
    let Err(err) = factory(&plain, "rediss://locker:master-pw@group/") else {
        panic!("TLS to the master must be refused");
    };
    assert!(
        err.is_config() && !crate::printed(&err).contains("master-pw"),
        "{err}"
    );
}

/// The master's credentials go in the service (`redis://user:password@NAME/`): with them
/// the lock runs its scripts as that user, where the default user may not; without them,
/// or with a wrong password, it is refused, and the password shows nowhere.
pub async fn sentinel_master_credentials_are_used<P: Pool>(factory: &impl SentinelFactory<P>) {
    const PASSWORD: &str = "master-s3cret";
    let (fleet, sentinels) = start();
    // ACL changes are not replicated: every data node gets them. The default user (which
    // the replicas and Sentinels use) keeps all but the scripts.
    for i in 0..fleet.len() {
        let mut locker = redis::cmd("ACL");
        locker
            .arg("SETUSER")
            .arg("locker")
            .arg("on")
            .arg(format!(">{PASSWORD}"));
        locker.arg("~*").arg("&*").arg("+@all");
        fleet.query::<()>(i, &locker).expect("acl setuser locker");
        let mut default = redis::cmd("ACL");
        default
            .arg("SETUSER")
            .arg("default")
            .arg("-eval")
            .arg("-evalsha");
        fleet.query::<()>(i, &default).expect("acl setuser default");
    }
    let urls = sentinels.urls();
    let lock_with = |service: &str| {
        let pool = factory(&urls, service).expect("a pool over the sentinels");
        Redlock::with_options(vec![pool], options()).expect("options")
    };
    let name = unique_prefix("sentinel_auth");

    let master = format!("redis://locker:{PASSWORD}@{SERVICE}/");
    let guard = lock_with(&master)
        .lock(&name)
        .await
        .expect("lock as the master's user");
    let on_master = fleet.get(0, &name).expect("get");
    assert_eq!(on_master.as_deref(), Some(guard.value()));
    guard.unlock().await.expect("unlock");

    let refused = lock_with(SERVICE)
        .lock(&name)
        .await
        .expect_err("default user");
    assert!(!refused.is_retryable(), "{refused}");
    let wrong = format!("redis://locker:not-the-{PASSWORD}@{SERVICE}/");
    let refused = lock_with(&wrong)
        .lock(&name)
        .await
        .expect_err("wrong password");
    let text = crate::printed(&refused);
    assert!(!text.contains(PASSWORD), "{text}");
}

/// A waiter on a Sentinel-managed node is woken by the holder's release, heard through a
/// subscriber on the master the Sentinels report.
pub async fn sentinel_node_wakes_its_waiters<P: Pool>(factory: &impl SentinelFactory<P>) {
    let (_fleet, sentinels) = start();
    let urls = sentinels.urls();
    let name = format!("{}wake", unique_prefix("sentinel"));
    let pool = || factory(&urls, SERVICE).expect("a pool over the sentinels");
    super::waiter_is_woken_through(pool, &name).await;
}
