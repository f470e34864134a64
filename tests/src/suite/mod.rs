//! The shared conformance suite: one `pub async fn` per behaviour, each run against real
//! `redis-server` processes that the test starts itself.
//!
//! It is written for drivers outside this repository as much as for ours: besides the
//! lock's behaviours it checks every rule of the `Pool` contract that a real server can
//! show (calls keep their order, no late reply reaches a later call, nothing is buffered
//! or replayed, building never fails for a node that is down, no client timeout cuts a
//! call short, `get_now` never blocks, silent connections are replaced), so a driver
//! learns from the suite, not from reading the drivers here.
//!
//! A driver runs the whole suite with one macro call in its `tests/conformance.rs` (each
//! driver's copy is the compiled example):
//!
//! ```text
//! redlock_conformance::conformance_tests!(redlock_redis_rs::RedisPool::from_url);
//! ```
//!
//! The argument is a factory: any `Fn(&str) -> redlock_core::Result<P>` that builds one
//! node's pool from a `redis://127.0.0.1:PORT/` URL. It must not fail when the node is
//! down (behaviours kill nodes before building). Each behaviour panics on failure, with
//! a message that names what broke.

// Panics are this module's assertions: it is test code shipped as a library so that
// drivers outside this repository can run it.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod basic;
mod contention;
mod contract;
mod credentials;
mod fencing;
mod lease;
mod outages;
mod release;
mod restarts;
mod waiters;

pub use basic::*;
pub use contention::*;
pub use contract::*;
pub use credentials::*;
pub use fencing::*;
pub use lease::*;
pub use outages::*;
pub use release::*;
pub use restarts::*;
pub use waiters::*;

use std::time::Duration;

use redlock_core::{Options, Pool, Redlock};

use crate::faults::proxy::{Mode, Proxy};
use crate::fleet::{Fleet, unique_prefix};

pub use crate::factory::Factory;

/// A fleet of servers, a lock manager over it, and a key prefix of this test's own.
pub struct Testbed<P: Pool> {
    /// The servers.
    pub fleet: Fleet,
    /// The lock manager over every server of the fleet, in order.
    pub redlock: Redlock<P>,
    /// One fault proxy per server, in order, when the lock manager reaches the servers
    /// through them ([`Testbed::start_proxied`]); empty otherwise.
    pub proxies: Vec<Proxy>,
    prefix: String,
}

impl<P: Pool> Testbed<P> {
    /// Starts `n` servers and builds a lock manager over them with `options`.
    pub fn start(n: usize, options: Options, factory: &impl Factory<P>, test: &str) -> Self {
        let fleet =
            Fleet::start(n).unwrap_or_else(|e| panic!("cannot start {n} redis-server(s): {e}"));
        let redlock = manager(&fleet, options, factory);
        Self::from_parts(fleet, redlock, test)
    }

    /// Starts `n` servers, each behind a fault proxy, and builds a lock manager over the
    /// proxies with `options`.
    pub async fn start_proxied(
        n: usize,
        options: Options,
        factory: &impl Factory<P>,
        test: &str,
    ) -> Self {
        let fleet =
            Fleet::start(n).unwrap_or_else(|e| panic!("cannot start {n} redis-server(s): {e}"));
        let mut proxies = Vec::with_capacity(n);
        for i in 0..n {
            let proxy = Proxy::start(fleet.port(i)).await;
            proxies.push(proxy.unwrap_or_else(|e| panic!("cannot start a proxy: {e}")));
        }
        let urls: Vec<String> = proxies.iter().map(Proxy::url).collect();
        let redlock = manager_over(&urls, options, factory);
        Self {
            proxies,
            ..Self::from_parts(fleet, redlock, test)
        }
    }

    /// A testbed from a fleet and a lock manager built over it.
    pub fn from_parts(fleet: Fleet, redlock: Redlock<P>, test: &str) -> Self {
        Self {
            fleet,
            redlock,
            proxies: Vec::new(),
            prefix: unique_prefix(test),
        }
    }

    /// Switches the proxy in front of node `i` to `mode`.
    pub fn set_mode(&self, i: usize, mode: Mode) {
        self.proxies[i].control().set(mode);
    }

    /// A lock name (and key) unique to this test.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// One lock and unlock of `name`, which opens the connections and loads the scripts.
    pub async fn cycle(&self, name: &str) {
        let guard = self.redlock.lock(name).await.expect("lock");
        guard.unlock().await.expect("unlock");
    }

    /// The value of `key` on every node (`None` where absent or the node is down).
    pub fn values(&self, key: &str) -> Vec<Option<String>> {
        (0..self.fleet.len())
            .map(|i| self.fleet.get(i, key).ok().flatten())
            .collect()
    }

    /// How many nodes hold `value` under `key`.
    pub fn holders(&self, key: &str, value: &str) -> usize {
        self.values(key)
            .iter()
            .filter(|v| v.as_deref() == Some(value))
            .count()
    }

    /// Waits until no node holds `key`, for up to `limit`; returns what is left.
    pub async fn wait_gone(&self, key: &str, limit: Duration) -> Vec<Option<String>> {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let left = self.values(key);
            if left.iter().all(Option::is_none) || tokio::time::Instant::now() >= until {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A lock manager over every node of `fleet`.
pub fn manager<P: Pool>(fleet: &Fleet, options: Options, factory: &impl Factory<P>) -> Redlock<P> {
    manager_over(&fleet.urls(), options, factory)
}

/// A lock manager over the nodes at `urls`.
pub fn manager_over<P: Pool>(
    urls: &[String],
    options: Options,
    factory: &impl Factory<P>,
) -> Redlock<P> {
    let pools = urls
        .iter()
        .map(|u| factory(u).unwrap_or_else(|e| panic!("factory failed for {u}: {e}")))
        .collect();
    Redlock::with_options(pools, options).expect("valid options")
}

/// Options for tests: short expiry, quick retries, half the expiry as the per-node
/// timeout so that a loaded test machine does not turn a slow first connect into a
/// failed vote, and no restart quarantine: every test starts its servers anew, and with
/// it they would get no vote for the expiry. The quarantine behaviours set their own.
pub fn quick(expiry_ms: u64) -> Options {
    Options::new()
        .expiry(Duration::from_millis(expiry_ms))
        .timeout_factor(0.5)
        .tries(3)
        .retry_delay(Duration::from_millis(5), Duration::from_millis(15))
        .quarantine(Duration::ZERO)
}

/// Emits one `#[tokio::test]` per behaviour of the suite, for the driver whose pool
/// `factory` builds (`Fn(&str) -> redlock_core::Result<P>`).
///
/// The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a
/// dev-dependency.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::__conformance_tests!($factory;
            acquire_and_release,
            second_acquire_fails_while_held,
            unlock_by_non_owner_changes_nothing,
            extend_by_owner_only,
            extend_fails_after_expiry,
            node_ttl_never_exceeds_expiry,
            quorum_for_one_three_and_five_nodes,
            minority_killed_still_locks,
            majority_killed_fails_and_leaves_no_key,
            paused_node_is_bounded_by_node_timeout,
            flushed_scripts_still_work,
            restarted_node_is_used_again,
            node_down_at_build_is_used_once_up,
            cancelled_acquire_leaves_no_key,
            dropped_guard_releases,
            slow_reply_within_node_timeout_counts,
            fail_fast_locks_and_releases_every_node,
            contending_tasks_never_overlap,
            waiter_behind_a_crashed_holder_acquires_when_its_keys_expire,
            bad_inputs_are_rejected_before_sending,
            repeating_value_generator_never_gives_two_holders,
            calls_to_one_node_keep_their_order,
            late_reply_never_reaches_a_later_call,
            nothing_is_buffered_or_replayed,
            get_now_never_blocks,
            silent_node_votes_again_after_the_network_heals,
            wrong_password_fails_at_once_and_says_so,
            passwords_never_appear_in_output,
            lease_outlives_three_expiries_and_stays_exclusive,
            majority_killed_under_a_lease_fires_before_the_deadline,
            takeover_is_reported_as_taken,
            unlocked_lease_renews_nothing,
            run_under_lock_releases_and_stops_on_loss,
            release_is_published_on_the_lock_channel,
            release_succeeds_where_publishing_is_denied,
            waiter_is_woken_when_the_holder_unlocks,
            waiters_share_one_subscription_and_leave_none,
            waiters_poll_where_pubsub_is_denied,
            fenced_tokens_grow_across_managers,
            fenced_tokens_survive_a_node_restarting_empty,
            stale_holder_write_is_refused,
            restarted_nodes_get_no_vote_until_their_quarantine_ends,
            durable_votes_count_only_what_reached_the_append_only_file,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($factory:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::suite::$name(&$factory).await;
            }
        )+
    };
}
