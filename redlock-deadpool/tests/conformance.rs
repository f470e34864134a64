//! The shared conformance suite, run against the deadpool driver.

redlock_conformance::conformance_tests!(redlock_deadpool::DeadpoolPool::from_url);
