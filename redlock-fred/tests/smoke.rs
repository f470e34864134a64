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
        "redis-cluster://127.0.0.1:7000",
        "rediss://127.0.0.1:6379/",
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
