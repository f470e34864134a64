//! TLS, ACL users, a Sentinel-managed master and a Redis Cluster as one node, against
//! real servers:
//! `cargo test -p redlock-redis-rs --all-features --test connectivity`.

redlock_conformance::connectivity_tests!(
    redlock_redis_rs::RedisPool::from_url,
    redlock_redis_rs::RedisPool::from_url_with_tls,
);

redlock_conformance::sentinel_tests!(redlock_redis_rs::RedisPool::from_sentinel::<String>);

redlock_conformance::cluster_tests!(
    redlock_redis_rs::RedisPool::from_url,
    redlock_redis_rs::RedisPool::from_cluster,
);
