//! A Redis Cluster as one Redlock node, through redis-rs's async cluster connection.

use std::time::Duration;

use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redlock_core::{Error, Result, redact_url};

use crate::{Rebuild, RedisPool, SubscribeVia, connection_info, node_address, tcp_settings};

impl RedisPool<ClusterConnection> {
    /// One Redlock node that is a whole Redis Cluster, found through the seed URLs `urls`
    /// (`redis://[user:pass@]host:port`, or `rediss://…` with a TLS feature; list every
    /// master, so that any one of them can tell the client the others). Needs the
    /// `cluster` feature.
    ///
    /// The lock's scripts touch one key, the lock's name, so each call goes to the master
    /// that serves that key's hash slot. Nothing is sent here: the client connects in the
    /// background, so a cluster that is down now does not make this fail; it counts as a
    /// failed vote until it is reachable. Its connections have no response timeout (the
    /// lock bounds every call itself), 1 s to connect, and the TCP settings of
    /// [`RedisPool::new`]. A call is never sent twice: one that meets a dropped connection
    /// or a redirection (`MOVED`, `ASK`: the cluster is moving slots or failing over)
    /// fails as a failed vote, while the client refreshes its slot map and reconnects for
    /// the next one. Errors name the node by its first seed, as `host:port (cluster)`.
    ///
    /// A cluster's vote is only as durable as its masters: a failover to a replica that had
    /// not yet received the key loses it, as for any master with replicas. To put this
    /// node in one lock with plain nodes ([`RedisPool::from_url`]), box every pool
    /// ([`PoolExt::boxed`](redlock_core::PoolExt::boxed)).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `urls` is empty, a URL is malformed (the message names it
    /// without its credentials) or asks for TLS in a build without a TLS feature, the
    /// seeds disagree on credentials or TLS, or when called outside a tokio runtime.
    pub fn from_cluster<S: AsRef<str>>(urls: &[S]) -> Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(
                "RedisPool must be built within a tokio runtime".into(),
            ));
        }
        let infos = urls
            .iter()
            .map(|url| connection_info(url.as_ref(), None))
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = infos.first() else {
            return Err(Error::Config(
                "a cluster needs at least one seed URL".into(),
            ));
        };
        let address = format!("{} (cluster)", node_address(first.addr()));
        let tcp = tcp_settings(first.tcp_settings());
        let seeds = infos
            .iter()
            .map(|info| redis::Client::open(info.clone().set_tcp_settings(tcp.clone())));
        let seeds = seeds
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::Config(format!("cannot set up a client for a cluster seed: {e}"))
            })?;
        let client = ClusterClientBuilder::new(infos)
            .connection_timeout(Duration::from_secs(1))
            // No replays: a call cut off by a dropped connection may have run already.
            .retries(0)
            .tcp_settings(tcp)
            .build()
            .map_err(|e| {
                let shown = urls.first().map(|u| redact_url(u.as_ref()));
                let shown = shown.unwrap_or_default();
                Error::Config(format!("cannot set up a cluster client for {shown:?}: {e}"))
            })?;
        let connect = move || {
            // Connecting spawns the connection's task, which needs a runtime.
            tokio::runtime::Handle::try_current().ok()?;
            Some(client.get_pending_async_connection_with_config(ClusterConfig::new()))
        };
        let conn = connect().ok_or_else(|| Error::Config("no tokio runtime".into()))?;
        let rebuild: Rebuild<ClusterConnection> = Box::new(connect);
        let pool = Self::build(conn, Some(rebuild)).subscribing_via(SubscribeVia::Clients(seeds));
        // `INFO` would go to some master, not the one a lock key's slot is on.
        let pool = pool.without_commands();
        Ok(pool.with_address(address))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use redlock_core::Pool;

    use super::*;

    #[tokio::test]
    async fn a_cluster_is_named_by_its_first_seed_without_credentials() {
        let pool = RedisPool::from_cluster(&[
            "redis://user:s3cret@127.0.0.1:7000/",
            "redis://user:s3cret@127.0.0.1:7001/",
        ])
        .unwrap();
        assert_eq!(pool.address().as_deref(), Some("127.0.0.1:7000 (cluster)"));
        assert!(!format!("{pool:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn bad_seeds_are_config_errors_without_credentials() {
        let none: [&str; 0] = [];
        let cases: [&[&str]; 3] = [
            &none,
            &["redis://127.0.0.1:7000/", "not a url s3cret@x"],
            &[
                "redis://a:s3cret@127.0.0.1:7000/",
                "redis://127.0.0.1:7001/",
            ],
        ];
        for urls in cases {
            let err = RedisPool::from_cluster(urls).expect_err("bad seeds");
            assert!(err.is_config(), "{urls:?}: {err:?}");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn outside_a_runtime_is_a_config_error() {
        let err = RedisPool::from_cluster(&["redis://127.0.0.1:7000/"]).unwrap_err();
        assert!(err.is_config(), "{err:?}");
    }
}
