//! Reaching production deployments, on real servers: TLS (with a CA of the test's own,
//! mutual TLS, the wrong CA), least-privilege ACL users, and a Sentinel-managed master or a
//! Redis Cluster as one node.
//!
//! A driver runs these with one macro call in its `tests/connectivity.rs`, built with its
//! TLS feature (`cargo test -p <driver> --all-features --test connectivity`):
//!
//! ```text
//! redlock_conformance::connectivity_tests!(
//!     my_driver::MyPool::from_url,
//!     my_driver::MyPool::from_url_with_tls,
//! );
//! ```
//!
//! and, for a driver that reaches a Redis Cluster, one more (the cluster tests need
//! `redis-cli`, from the Debian package `redis-tools`):
//!
//! ```text
//! redlock_conformance::cluster_tests!(
//!     my_driver::MyPool::from_url,
//!     my_driver::MyPool::from_cluster,
//! );
//! ```

// Panics are this module's assertions.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod acl;
mod cluster;
mod sentinel;
mod tls;

pub use acl::*;
pub use cluster::*;
pub use sentinel::*;
pub use tls::*;

/// Options for the connectivity behaviours: a 5 s expiry with a 1 s per-node timeout
/// (a TLS handshake or a cluster's first connection on a loaded machine fits in it), quick
/// retries, `tries` attempts, and no restart quarantine (the servers are new, every run).
pub(crate) fn options(tries: u32) -> redlock_core::Options {
    redlock_core::Options::new()
        .expiry(std::time::Duration::from_secs(5))
        .timeout_factor(0.2)
        .tries(tries)
        .retry_delay(
            std::time::Duration::from_millis(5),
            std::time::Duration::from_millis(15),
        )
        .quarantine(std::time::Duration::ZERO)
}

/// Holds the lock `name` through one manager over the node `pool()` builds, starts a
/// waiter with a 30 s retry delay in a second manager over another such node, releases
/// once the waiter has had time to subscribe, and fails unless the waiter gets the lock
/// within 10 s: only a release announcement heard through the node's subscriber can wake
/// it that soon.
pub(crate) async fn waiter_is_woken_through<P: redlock_core::Pool>(
    pool: impl Fn() -> P,
    name: &str,
) {
    use std::time::Duration;
    let manager = |options| redlock_core::Redlock::with_options(vec![pool()], options);
    // A minute of expiry: a waiter that polled would retry when the holder's key expires
    // (the refusal says when), which must come after the failure timeout.
    let holder = manager(options(3).expiry(Duration::from_secs(60))).expect("holder's options");
    let slow = options(100).retry_delay(Duration::from_secs(30), Duration::from_secs(30));
    let waiter = manager(slow).expect("waiter's options");
    let held = holder.lock(name).await.expect("the holder locks");
    let mutex = waiter.mutex(name).expect("name");
    let waiting = tokio::spawn(async move { mutex.lock().await });
    // Refused, subscribed and waiting by then (a release before would be caught by the
    // attempt right after subscribing, and prove nothing).
    tokio::time::sleep(Duration::from_millis(500)).await;
    held.unlock().await.expect("the holder unlocks");
    let guard = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiter was not woken by the release (it polls every 30 s)")
        .expect("waiter task")
        .expect("the waiter locks");
    guard.unlock().await.expect("the waiter unlocks");
}

/// Builds one node's pool from a `rediss://` URL and TLS material: a driver's
/// `from_url_with_tls`.
pub trait TlsFactory<P>: Fn(&str, &redlock_core::Tls) -> redlock_core::Result<P> {}

impl<P, F: Fn(&str, &redlock_core::Tls) -> redlock_core::Result<P>> TlsFactory<P> for F {}

/// Builds one node's pool that is a whole Redis Cluster, from its seed URLs: a driver's
/// `from_cluster`.
pub trait ClusterFactory<P>: Fn(&[String]) -> redlock_core::Result<P> {}

impl<P, F: Fn(&[String]) -> redlock_core::Result<P>> ClusterFactory<P> for F {}

/// Emits one `#[tokio::test]` per connectivity behaviour, for the driver whose pools
/// `factory` (`from_url`) and `tls_factory` (`from_url_with_tls`) build.
#[macro_export]
macro_rules! connectivity_tests {
    ($factory:expr, $tls_factory:expr $(,)?) => {
        $crate::__connectivity_tests!(tls: $tls_factory;
            tls_locks_extends_and_unlocks,
            tls_falls_back_to_eval_after_a_script_flush,
            mutual_tls_presents_the_client_certificate,
            wrong_ca_fails_at_once_and_says_so,
            tls_material_for_a_plain_url_is_refused,
        );
        $crate::__connectivity_tests!(url: $factory;
            rediss_url_trusts_the_system_roots,
            least_privilege_acl_user_locks,
            user_without_info_is_told_what_quarantine_needs,
            password_only_url_locks,
            missing_permission_fails_at_once_and_says_so,
        );
    };
}

/// Emits the Sentinel behaviours, for the driver whose pools `factory`
/// (`from_sentinel(sentinel_urls, service)`) builds.
#[macro_export]
macro_rules! sentinel_tests {
    ($factory:expr $(,)?) => {
        $crate::__connectivity_tests!(sentinel: $factory;
            sentinel_failover_moves_locking_to_the_new_master,
            sentinel_urls_with_credentials_or_tls_are_refused,
            sentinel_master_credentials_are_used,
            sentinel_node_wakes_its_waiters,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __connectivity_tests {
    ($kind:ident: $factory:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::connectivity::$name(&$factory).await;
            }
        )+
    };
}

/// Emits one `#[tokio::test]` per cluster behaviour, for the driver whose pools `factory`
/// (`from_url`, for plain nodes) and `cluster_factory` (`from_cluster`) build.
#[macro_export]
macro_rules! cluster_tests {
    ($factory:expr, $cluster_factory:expr $(,)?) => {
        $crate::__cluster_tests!($factory, $cluster_factory;
            cluster_node_locks_extends_and_unlocks,
            cluster_node_locks_names_on_every_master,
            cluster_node_falls_back_to_eval_after_a_script_flush,
            cluster_node_follows_a_moved_slot,
            cluster_node_votes_while_a_plain_node_is_down,
            cluster_down_at_build_time_is_a_failed_vote_until_it_is_back,
            cluster_node_wakes_its_waiters,
            cluster_node_keeps_fences_in_the_locks_slot,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __cluster_tests {
    ($factory:expr, $cluster_factory:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::connectivity::$name(&$factory, &$cluster_factory).await;
            }
        )+
    };
}
