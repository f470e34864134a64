//! A node that is a Sentinel-managed master group, [`SentinelConnection`]: calls go to the
//! master the Sentinels report, asked again whenever the lock replaces the connection
//! (after a `READONLY` answer, or a silent or broken connection).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, RedisResult, Value};
use redlock_core::{Error, Result, redact_url};
use tokio::sync::Mutex as AsyncMutex;

use crate::RedisPool;

/// The connection to a Sentinel-managed master: cheap to clone, clones share it. The
/// master is looked up on the first call and after [`SentinelConnection::forget`].
#[derive(Clone)]
pub struct SentinelConnection {
    shared: Arc<Shared>,
}

struct Shared {
    sentinel: AsyncMutex<SentinelClient>,
    master: RwLock<Option<MultiplexedConnection>>,
}

impl SentinelConnection {
    /// Calls to the master of `service` that the Sentinels at `sentinels` (`redis://host:port/`
    /// URLs) report. Nothing is sent yet.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a URL is malformed or none is given.
    pub fn new<S: AsRef<str>>(sentinels: &[S], service: &str) -> Result<Self> {
        let urls: Vec<&str> = sentinels.iter().map(AsRef::as_ref).collect();
        let shown: Vec<String> = urls.iter().map(|u| redact_url(u)).collect();
        // A `String`: the parameter's type differs between redis 1.x releases.
        let client = SentinelClient::build(
            urls,
            String::from(service),
            None,
            SentinelServerType::Master,
        )
        .map_err(|e| Error::Config(format!("invalid sentinels {shown:?}: {e}")))?;
        let shared = Shared {
            sentinel: AsyncMutex::new(client),
            master: RwLock::new(None),
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Forgets the master's connection: the next call asks the Sentinels again.
    pub fn forget(&self) {
        *self
            .shared
            .master
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    async fn master(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        let mut sentinel = self.shared.sentinel.lock().await;
        // Another call may have looked it up while this one waited.
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        // No response timeout: the lock bounds every call with its own per-node timeout.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(None);
        let conn = sentinel.get_async_connection_with_config(&config).await?;
        *self
            .shared
            .master
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        Ok(conn)
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        let master = self.shared.master.read();
        master.unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move { self.master().await?.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut master = self.master().await?;
            master.req_packed_commands(cmd, offset, count).await
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl RedisPool<SentinelConnection> {
    /// A node that is the master of the Sentinel-managed group `service`, found through
    /// the Sentinels at `sentinels` (`redis://host:port/` URLs). Needs the `sentinel`
    /// feature.
    ///
    /// The master is looked up on the first call, and again whenever the lock replaces
    /// the connection: at once when the node answers `READONLY` (a failover demoted it),
    /// or after calls time out or fail in a row. A failover can lose a key the old master
    /// granted but had not replicated yet; see the README on Sentinel.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a URL is malformed or none is given.
    pub fn from_sentinel<S: AsRef<str>>(sentinels: &[S], service: &str) -> Result<Self> {
        let conn = SentinelConnection::new(sentinels, service)?;
        let forgetting = conn.clone();
        let rebuild = Box::new(move || {
            forgetting.forget();
            Some(forgetting.clone())
        });
        Ok(Self::build(conn, Some(rebuild)).with_address(format!("sentinel service {service}")))
    }
}
