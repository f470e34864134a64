//! The shared conformance suite, run against the redis-rs driver.

redlock_conformance::conformance_tests!(redlock_redis_rs::RedisPool::from_url);
