//! The round-trip floor: the core's lock and unlock scripts sent straight through each
//! client, fanned out to every node at once, with no lock library in between.
//!
//! The calls have the shape the core sends (EVALSHA, keys `[name]`, the arguments laid
//! out by the core's `LockArgs` and `UnlockArgs`), over a connection configured as the
//! driver's `from_url` configures it, so the gap to a driver is the lock library's own
//! cost.

use std::time::Duration;

use futures::future::join_all;
use redlock_deadpool::{DeadpoolPool, deadpool_redis};
use redlock_fred::fred;
use redlock_fred::fred::interfaces::{ClientLike, LuaInterface};
use redlock_redis_rs::redis;
use redlock_redis_rs::redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redlock_redis_rs::scripts::{
    LOCK, LockArgs, LockMode, RELEASE_CHANNEL_PREFIX, UNLOCK, UnlockArgs,
};
use redlock_redis_rs::{Pool as _, RedisPool};

use crate::measured::Cycle;
use crate::{Result, fail};

/// The value every floor call uses; keys are fresh, so one value serves all.
const VALUE: &str = "bench-floor-value-0123456789abcd";
/// The TTL the core sends for its default 8 s expiry.
const TTL_MS: &str = "8000";
/// The tag the scripts echo on success, as an integer reply; the core makes a new one per
/// call.
const TAG: &str = "100";
const ECHO: i64 = 100;

/// The lock call's arguments, as the core lays them out for an acquire.
fn lock_args() -> [&'static str; 4] {
    let mode = LockMode::CreateOnly;
    LockArgs {
        value: VALUE,
        ttl_ms: TTL_MS,
        mode,
        tag: TAG,
    }
    .argv()
}

/// The unlock call's arguments: announced on the key's release channel, as the lock does
/// by default.
fn unlock_args() -> [&'static str; 3] {
    UnlockArgs {
        value: VALUE,
        tag: TAG,
        channel_prefix: RELEASE_CHANNEL_PREFIX,
    }
    .argv()
}

/// Checks that every node echoed the tag (set, or deleted).
fn check(what: &str, replies: impl IntoIterator<Item = Result<i64>>) -> Result<()> {
    for reply in replies {
        let reply = reply?;
        if reply != ECHO {
            return Err(fail(format!(
                "floor {what} replied {reply}, expected {TAG}"
            )));
        }
    }
    Ok(())
}

/// The floor through redis-rs: one connection per node, cloned for each call as the
/// driver's pool does.
pub(crate) struct RedisFloor<C = ConnectionManager> {
    conns: Vec<C>,
}

impl RedisFloor {
    /// Connections to `urls`, made by `RedisPool::from_url` itself, so that the floor's
    /// configuration is the driver's.
    pub(crate) fn new(urls: &[String]) -> Result<Self> {
        let conns = RedisPool::from_urls(urls)?
            .iter()
            .map(|pool| pool.get_now().map(|conn| conn.into_inner()))
            .collect::<Option<_>>()
            .ok_or_else(|| fail("RedisPool handed out no connection"))?;
        Ok(Self { conns })
    }
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> RedisFloor<C> {
    async fn evalsha(mut conn: C, sha1: &str, key: &str, args: &[&str]) -> Result<i64> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(sha1).arg(1).arg(key).arg(args);
        Ok(cmd.query_async(&mut conn).await?)
    }

    async fn fan_out(&self, sha1: &str, key: &str, args: &[&str]) -> Vec<Result<i64>> {
        let calls = self
            .conns
            .iter()
            .map(|c| Self::evalsha(c.clone(), sha1, key, args));
        join_all(calls).await
    }
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> Cycle for RedisFloor<C> {
    async fn cycle(&self, key: &str) -> Result<()> {
        check("lock", self.fan_out(LOCK.sha1(), key, &lock_args()).await)?;
        check(
            "unlock",
            self.fan_out(UNLOCK.sha1(), key, &unlock_args()).await,
        )
    }
}

/// The floor through deadpool-redis: one connection per node checked out of the pool
/// `DeadpoolPool::from_url` builds, and kept checked out, as
/// the driver does. (Checking one out per call would add deadpool's recycling `PING`.)
pub(crate) struct DeadpoolFloor {
    floor: RedisFloor<MultiplexedConnection>,
    _pinned: Vec<deadpool_redis::Connection>,
}

impl DeadpoolFloor {
    pub(crate) async fn connect(urls: &[String]) -> Result<Self> {
        let mut pinned = Vec::with_capacity(urls.len());
        // Pools made by the driver's own constructor, so their configuration is its.
        for pool in DeadpoolPool::from_urls(urls)? {
            pinned.push(pool.pool().get().await?);
        }
        let conns = pinned
            .iter()
            .map(|c| MultiplexedConnection::clone(c))
            .collect();
        let floor = RedisFloor { conns };
        Ok(Self {
            floor,
            _pinned: pinned,
        })
    }
}

impl Cycle for DeadpoolFloor {
    async fn cycle(&self, key: &str) -> Result<()> {
        self.floor.cycle(key).await
    }
}

/// The floor through fred: one connected `Client` per node.
pub(crate) struct FredFloor {
    clients: Vec<fred::clients::Client>,
    tasks: Vec<fred::types::ConnectHandle>,
}

impl Drop for FredFloor {
    fn drop(&mut self) {
        // The connection tasks would otherwise outlive the floor.
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FredFloor {
    /// Clients connected to `urls`, configured as `FredPool::from_url` configures its own.
    pub(crate) async fn connect(urls: &[String]) -> Result<Self> {
        let mut floor = Self {
            clients: Vec::with_capacity(urls.len()),
            tasks: Vec::with_capacity(urls.len()),
        };
        for url in urls {
            let config = fred::types::config::Config::from_url(url)?;
            let client = fred::types::Builder::from_config(config)
                .with_connection_config(|c| {
                    c.connection_timeout = Duration::from_secs(1);
                    c.internal_command_timeout = Duration::from_secs(1);
                    c.tcp.nodelay = Some(true);
                })
                .build()?;
            floor.tasks.push(client.init().await?);
            floor.clients.push(client);
        }
        Ok(floor)
    }

    async fn fan_out(&self, sha1: &str, key: &str, args: &[&str]) -> Vec<Result<i64>> {
        let calls = self.clients.iter().map(|c| async move {
            let reply: i64 = c.evalsha(sha1, key, args.to_vec()).await?;
            Ok(reply)
        });
        join_all(calls).await
    }
}

impl Cycle for FredFloor {
    async fn cycle(&self, key: &str) -> Result<()> {
        check("lock", self.fan_out(LOCK.sha1(), key, &lock_args()).await)?;
        check(
            "unlock",
            self.fan_out(UNLOCK.sha1(), key, &unlock_args()).await,
        )
    }
}
