//! The shared fault harness, run against the fred driver:
//! `cargo test --release -p redlock-fred --test faults -- --nocapture`.

redlock_conformance::fault_tests!("fred", redlock_fred::FredPool::from_url);
