//! TLS, ACL users, a Sentinel-managed master and a Redis Cluster as one node, against
//! real servers:
//! `cargo test -p redlock-fred --all-features --test connectivity`.

redlock_conformance::connectivity_tests!(
    redlock_fred::FredPool::from_url,
    redlock_fred::FredPool::from_url_with_tls,
);

redlock_conformance::sentinel_tests!(redlock_fred::FredPool::from_sentinel::<String>);

redlock_conformance::cluster_tests!(
    redlock_fred::FredPool::from_url,
    redlock_fred::FredPool::from_cluster,
);
