//! A Redis Cluster as one Redlock node: fred's clustered client, from seed URLs.

use redlock_core::Result;

use crate::{FredPool, config, in_runtime};

impl FredPool {
    /// One Redlock node that is a whole Redis Cluster, found through the seed URLs `urls`
    /// (`redis://[user:pass@]host:port`, or `rediss://…` with a TLS feature; list every
    /// master, so that any one of them can tell the client the others), connected in the
    /// background as [`FredPool::from_url`] connects, with the first URL's credentials.
    ///
    /// The lock's scripts touch one key, the lock's name, so each call goes to the master
    /// that serves that key's hash slot. A call is written once, as on any node: one that
    /// meets a redirection (`MOVED`, `ASK`: the cluster is moving slots or failing over)
    /// fails as a failed vote, while fred refreshes its slot map for the next one. A
    /// cluster that is down now does not make this fail; it counts as a failed vote until
    /// it is reachable. Errors name the node by its first seed, as `host:port (cluster)`.
    /// A cluster's vote is only as durable as its masters: a failover to a replica that
    /// had not yet received the key loses it, as for any master with replicas.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) when `urls` is empty, a URL is malformed (the message names it
    /// without its credentials), is not one node's `redis://` or `rediss://` URL, or asks
    /// for TLS in a build without a TLS feature, when the seeds disagree on credentials or
    /// TLS, or when called outside a tokio runtime.
    pub fn from_cluster<S: AsRef<str>>(urls: &[S]) -> Result<Self> {
        in_runtime()?;
        let urls: Vec<&str> = urls.iter().map(AsRef::as_ref).collect();
        Self::from_config(config::cluster(&urls)?)
    }
}
