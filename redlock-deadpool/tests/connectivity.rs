//! TLS and ACL users against real servers:
//! `cargo test -p redlock-deadpool --all-features --test connectivity`.

redlock_conformance::connectivity_tests!(
    redlock_deadpool::DeadpoolPool::from_url,
    redlock_deadpool::DeadpoolPool::from_url_with_tls,
);
