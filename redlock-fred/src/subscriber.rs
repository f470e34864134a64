//! Release notifications over a fred client of their own.

use async_trait::async_trait;
use fred::clients::Client;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::{Builder, ConnectHandle, Message};
use redlock_core::{ConnError, ConnErrorKind, Notice, Subscriber};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::map_error;

/// A pub/sub client for one node: the pool client's configuration (address, credentials,
/// TLS, Sentinel or Cluster, connection settings) with one connection attempt and no
/// reconnect policy, so that a failed or dropped connection ends it and the lock core
/// opens a new one and subscribes again. fred reads the messages in its own task into a
/// broadcast channel; one that overflows before they are read is reported as
/// [`Notice::Missed`], which wakes every waiter. Its connection settings include the TCP
/// keepalive of the pools this crate builds, so a silent link fails in the end.
pub(crate) struct FredSubscriber {
    client: Client,
    /// fred's connection task, aborted on drop; it ends when the connection does.
    task: ConnectHandle,
    ended: bool,
    messages: broadcast::Receiver<Message>,
}

impl Drop for FredSubscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FredSubscriber {
    /// Connects a new subscriber configured as `pool_client`. Unbounded in time (the core
    /// bounds it); dropped half-way, it leaves nothing behind.
    pub(crate) async fn open(pool_client: &Client) -> Result<Self, ConnError> {
        let mut builder = Builder::from_config(pool_client.client_config());
        // One connection attempt: without a reconnect policy, fred's connection task
        // would otherwise give up before it tried.
        builder.with_config(|c| c.fail_fast = true);
        builder.set_connection_config(pool_client.connection_config().clone());
        builder.set_performance_config(pool_client.perf_config());
        let client = builder.build().map_err(map_error)?;
        let messages = client.message_rx();
        let task = client.connect();
        let mut subscriber = Self {
            client,
            task,
            ended: false,
            messages,
        };
        let client = subscriber.client.clone();
        tokio::select! {
            connected = client.wait_for_connect() => connected.map_err(map_error)?,
            () = ended(&mut subscriber.task, &mut subscriber.ended) => return Err(closed()),
        }
        Ok(subscriber)
    }
}

/// Waits until the connection task ends (at once if it has, which `done` remembers).
async fn ended(task: &mut ConnectHandle, done: &mut bool) {
    if !*done {
        // How it ended does not matter: either way there is no connection.
        drop(task.await);
        *done = true;
    }
}

#[async_trait]
impl Subscriber for FredSubscriber {
    async fn subscribe(&mut self, channel: &str) -> Result<(), ConnError> {
        self.client.subscribe(channel).await.map_err(map_error)
    }

    async fn unsubscribe(&mut self, channel: &str) -> Result<(), ConnError> {
        self.client.unsubscribe(channel).await.map_err(map_error)
    }

    /// Cancel safe: it receives from fred's broadcast channel and polls the connection
    /// task by reference.
    async fn next(&mut self) -> Result<Notice, ConnError> {
        let Self {
            messages,
            task,
            ended: done,
            ..
        } = self;
        tokio::select! {
            message = messages.recv() => match message {
                Ok(message) => Ok(Notice::Message {
                    channel: message.channel.to_string(),
                    payload: message.value.as_bytes().map(<[u8]>::to_vec).unwrap_or_default(),
                }),
                Err(RecvError::Lagged(_)) => Ok(Notice::Missed),
                Err(RecvError::Closed) => Err(closed()),
            },
            () = ended(task, done) => Err(closed()),
        }
    }
}

fn closed() -> ConnError {
    ConnError::new(ConnErrorKind::Connection, "the pub/sub connection closed")
}
