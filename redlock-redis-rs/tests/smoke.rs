//! Driver-specific checks; the shared behaviours (against real `redis-server`s) live in
//! the conformance suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use redlock_redis_rs::{Pool, RedisPool};

#[tokio::test]
async fn bad_urls_are_config_errors() {
    for url in ["not a url", "http://127.0.0.1:6379/", "redis://:99999999/"] {
        let err = RedisPool::from_url(url).expect_err(url);
        assert!(err.is_config(), "{url}: {err:?}");
    }
}

#[test]
fn outside_a_runtime_is_a_config_error() {
    let err = RedisPool::from_url("redis://127.0.0.1:1/").expect_err("no runtime");
    assert!(err.is_config(), "{err:?}");
}

#[tokio::test]
async fn nodes_are_named_by_address_without_credentials() {
    let pool = RedisPool::from_url("redis://user:s3cret@127.0.0.1:6390/2").unwrap();
    assert_eq!(pool.address().as_deref(), Some("127.0.0.1:6390"));
    let ipv6 = RedisPool::from_url("redis://[::1]:6390/").unwrap();
    assert_eq!(ipv6.address().as_deref(), Some("[::1]:6390"));
    assert!(!format!("{pool:?}").contains("s3cret"));
    assert!(!format!("{:?}", pool.get_now()).contains("s3cret"));
}

/// The crate re-exports the core whole, under the core's names: a user needs no other
/// redlock crate, and no name of this crate shadows one of the core's.
#[test]
fn reexports_the_core() {
    let _: fn(redlock_redis_rs::Mutex<RedisPool>) -> redlock_core::Mutex<RedisPool> = |m| m;
    let _: fn(redlock_redis_rs::Error) -> redlock_core::Error = |e| e;
    let _: fn(redlock_redis_rs::Options) -> redlock_core::Options = |o| o;
}

/// Without a TLS feature, a `rediss://` URL is refused with the feature to enable, and
/// without the password; with one (in a workspace build, `redlock-cli` turns `tls-rustls`
/// on), the pool is built. `.ci/run` runs this crate's tests alone too, without TLS.
#[tokio::test]
async fn rediss_without_a_tls_feature_names_the_feature() {
    let built = RedisPool::from_url("rediss://locker:pw-secret@127.0.0.1:1/");
    if redlock_redis_rs::TLS_BUILT {
        assert!(built.is_ok(), "a TLS build takes a rediss:// URL");
        return;
    }
    let err = built.unwrap_err();
    let message = err.to_string();
    assert!(
        err.is_config() && message.contains("`tls-rustls`"),
        "{message}"
    );
    assert!(!message.contains("pw-secret"), "{message}");
}

/// Without `tls-rustls`, certificates of one's own are refused with the feature to enable.
#[cfg(not(feature = "tls-rustls"))]
#[tokio::test]
async fn own_certificates_without_rustls_name_the_feature() {
    let tls = redlock_redis_rs::Tls::new().root_ca_pem("CA");
    let err = RedisPool::from_url_with_tls("rediss://127.0.0.1:1/", &tls).unwrap_err();
    assert!(err.to_string().contains("`tls-rustls`"), "{err}");
}
