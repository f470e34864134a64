//! A node that is a Sentinel-managed master group, [`SentinelConnection`]: calls go to the
//! master the Sentinels report, asked again whenever the lock replaces the connection
//! (after a `READONLY` answer, or a silent or broken connection).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::io::tcp::TcpSettings;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisFuture,
    RedisResult, Value,
};
use redlock_core::{Error, Result, is_tls_url, redact_url};
use tokio::sync::Mutex as AsyncMutex;

use crate::{RedisPool, SubscribeVia, tcp_settings};

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
    /// Calls to the master that the Sentinels at `sentinels` (`redis://host:port/` URLs)
    /// report for `service`: the group's name, or `redis://[user:password@]NAME[/db]` to
    /// log in to the master (and select a database). Nothing is sent yet.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a URL is malformed or none is given, when a Sentinel URL
    /// carries credentials or asks for TLS (they would reach the Sentinels only), or when
    /// `service` asks for TLS to the master, which is not supported yet.
    pub fn new<S: AsRef<str>>(sentinels: &[S], service: &str) -> Result<Self> {
        let urls: Vec<&str> = sentinels.iter().map(AsRef::as_ref).collect();
        let shown: Vec<String> = urls.iter().map(|u| redact_url(u)).collect();
        for url in &urls {
            plain_sentinel(url)?;
        }
        let (service, master) = master_of(service)?;
        let client = SentinelClient::build(urls, service, Some(master), SentinelServerType::Master)
            .map_err(|e| Error::Config(format!("invalid sentinels {shown:?}: {e}")))?;
        let shared = Shared {
            sentinel: AsyncMutex::new(client),
            master: RwLock::new(None),
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// A client for the master the Sentinels report now, for a pub/sub connection.
    pub(crate) async fn master_client(&self) -> RedisResult<redis::Client> {
        self.shared.sentinel.lock().await.async_get_client().await
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
        if let Some(conn) = self.shared.cached() {
            return Ok(conn);
        }
        // In a task of its own: the lock cuts this call short at its per-node timeout,
        // and a lookup cut short every time would never finish; the task goes on and
        // leaves the connection for the next call.
        let shared = self.shared.clone();
        match tokio::spawn(async move { shared.look_up().await }).await {
            Ok(found) => found,
            Err(e) => Err(redis::RedisError::from(std::io::Error::other(e))),
        }
    }
}

impl Shared {
    fn cached(&self) -> Option<MultiplexedConnection> {
        let master = self.master.read();
        master.unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Asks the Sentinels for the master and connects to it, unless another lookup just
    /// did.
    async fn look_up(&self) -> RedisResult<MultiplexedConnection> {
        let mut sentinel = self.sentinel.lock().await;
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        // No response timeout: the lock bounds every call with its own per-node timeout.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(None);
        let conn = sentinel.get_async_connection_with_config(&config).await?;
        *self.master.write().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        Ok(conn)
    }
}

/// The group's name and how to reach its master, from `service`: a plain name, or
/// `redis://[user:password@]NAME[/db]`. The master's connections get the driver's TCP
/// settings.
fn master_of(service: &str) -> Result<(String, SentinelNodeConnectionInfo)> {
    let node = SentinelNodeConnectionInfo::default()
        .set_tcp_settings(tcp_settings(&TcpSettings::default()));
    if !service.contains("://") {
        return Ok((service.to_owned(), node));
    }
    let shown = redact_url(service);
    if is_tls_url(service) {
        return Err(Error::Config(format!(
            "{shown:?}: TLS to a Sentinel-managed master is not supported yet"
        )));
    }
    let info = service
        .into_connection_info()
        .map_err(|e| Error::Config(format!("invalid master url {shown:?}: {e}")))?;
    let ConnectionAddr::Tcp(name, _) = info.addr() else {
        return Err(Error::Config(format!(
            "{shown:?} must name the Sentinel group as its host"
        )));
    };
    let node = node.set_redis_connection_info(info.redis_settings().clone());
    Ok((name.clone(), node))
}

/// Refuses a Sentinel URL with credentials or TLS, which this constructor cannot pass on
/// to the master.
fn plain_sentinel(url: &str) -> Result<()> {
    use redis::IntoConnectionInfo;
    let shown = redact_url(url);
    let info = url
        .into_connection_info()
        .map_err(|e| Error::Config(format!("invalid sentinel url {shown:?}: {e}")))?;
    let settings = info.redis_settings();
    let secured = settings.username().is_some() || settings.password().is_some();
    if secured || matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        return Err(Error::Config(format!(
            "sentinel url {shown:?} carries credentials or TLS, which from_sentinel cannot \
             pass on to the master: put the master's credentials in the service \
             (redis://user:password@NAME/)"
        )));
    }
    Ok(())
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
    /// A node that is the master of the Sentinel-managed group `service` (its name, or
    /// `redis://[user:password@]NAME[/db]` to log in to the master), found through the
    /// Sentinels at `sentinels` (`redis://host:port/` URLs). Needs the `sentinel` feature.
    ///
    /// The master is looked up on the first call, and again whenever the lock replaces
    /// the connection: at once when the node answers `READONLY` (a failover demoted it),
    /// or after calls time out or fail in a row. A failover can lose a key the old master
    /// granted but had not replicated yet; see the README on Sentinel.
    ///
    /// # Errors
    ///
    /// As [`SentinelConnection::new`].
    pub fn from_sentinel<S: AsRef<str>>(sentinels: &[S], service: &str) -> Result<Self> {
        let conn = SentinelConnection::new(sentinels, service)?;
        let forgetting = conn.clone();
        let rebuild = Box::new(move || {
            forgetting.forget();
            Some(forgetting.clone())
        });
        let (name, _) = master_of(service)?;
        let via = SubscribeVia::Sentinel(conn.clone());
        let pool = Self::build(conn, Some(rebuild)).subscribing_via(via);
        let pool = pool.counting(Arc::default());
        Ok(pool.with_address(format!("sentinel service {name}")))
    }
}
