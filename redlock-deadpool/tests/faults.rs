//! The shared fault harness, run against the deadpool driver:
//! `cargo test --release -p redlock-deadpool --test faults -- --nocapture`.

redlock_conformance::fault_tests!("deadpool", redlock_deadpool::DeadpoolPool::from_url);
