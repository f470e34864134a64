//! Driver-specific checks; the shared behaviours (against real `redis-server`s) live in
//! the conformance suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use redlock_fred::FredPool;

#[tokio::test]
async fn bad_urls_are_config_errors() {
    let urls = [
        "not a url",
        "http://127.0.0.1:6379/",
        "redis://:99999999/",
        "redis-shard://127.0.0.1:7000",
    ];
    for url in urls {
        let err = FredPool::from_url(url).expect_err(url);
        assert!(err.is_config(), "{url}: {err:?}");
    }
}

#[test]
fn outside_a_runtime_is_a_config_error() {
    let err = FredPool::from_url("redis://127.0.0.1:1/").expect_err("no runtime");
    assert!(err.is_config(), "{err:?}");
}

#[tokio::test]
async fn nodes_are_named_by_address_without_credentials() {
    use redlock_fred::Pool as _;
    let pool = FredPool::from_url("redis://user:s3cret@127.0.0.1:6390/2").unwrap();
    assert_eq!(pool.address().as_deref(), Some("127.0.0.1:6390"));
    assert!(!format!("{pool:?}").contains("s3cret"));
    assert!(!format!("{:?}", pool.get_now()).contains("s3cret"));
}

#[tokio::test]
async fn a_cluster_is_named_by_its_first_seed_without_credentials() {
    use redlock_fred::Pool as _;
    let pool = FredPool::from_cluster(&[
        "redis://user:s3cret@127.0.0.1:7000/",
        "redis://user:s3cret@127.0.0.1:7001/",
    ])
    .unwrap();
    assert_eq!(pool.address().as_deref(), Some("127.0.0.1:7000 (cluster)"));
    assert!(!format!("{pool:?}").contains("s3cret"));
    let url = "redis-cluster://user:s3cret@127.0.0.1:7000?node=127.0.0.1:7001";
    let pool = FredPool::from_url(url).unwrap();
    assert_eq!(pool.address().as_deref(), Some("127.0.0.1:7000 (cluster)"));
}

#[tokio::test]
async fn bad_cluster_seeds_are_config_errors() {
    let none: [&str; 0] = [];
    let cases: [&[&str]; 4] = [
        &none,
        &["redis://127.0.0.1:7000/", "not a url"],
        &["redis-cluster://127.0.0.1:7000"],
        &[
            "redis://a:s3cret@127.0.0.1:7000/",
            "redis://127.0.0.1:7001/",
        ],
    ];
    for urls in cases {
        let err = FredPool::from_cluster(urls).expect_err("bad seeds");
        assert!(err.is_config(), "{urls:?}: {err:?}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}

/// The crate re-exports the core whole, under the core's names: a user needs no other
/// redlock crate, and no name of this crate shadows one of the core's.
#[test]
fn reexports_the_core() {
    let _: fn(redlock_fred::Mutex<FredPool>) -> redlock_core::Mutex<FredPool> = |m| m;
    let _: fn(redlock_fred::Error) -> redlock_core::Error = |e| e;
    let _: fn(redlock_fred::Options) -> redlock_core::Options = |o| o;
}

/// Without a TLS feature, a `rediss://` URL is refused with the feature to enable, and
/// without the password.
#[cfg(not(any(feature = "tls-rustls", feature = "tls-native-tls")))]
#[tokio::test]
async fn rediss_without_a_tls_feature_names_the_feature() {
    let err = FredPool::from_url("rediss://locker:pw-secret@127.0.0.1:1/").unwrap_err();
    let message = err.to_string();
    assert!(
        err.is_config() && message.contains("`tls-rustls`"),
        "{message}"
    );
    assert!(!message.contains("pw-secret"), "{message}");
}
