//! The shared conformance suite, run against the fred driver.

redlock_conformance::conformance_tests!(redlock_fred::FredPool::from_url);
