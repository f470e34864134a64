//! The shared fault harness, run against the redis-rs driver:
//! `cargo test --release -p redlock-redis-rs --test faults -- --nocapture`.

redlock_conformance::fault_tests!("redis-rs", redlock_redis_rs::RedisPool::from_url);
