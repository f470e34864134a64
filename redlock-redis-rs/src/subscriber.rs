//! Release notifications over a redis-rs pub/sub connection of its own.

use async_trait::async_trait;
use futures::StreamExt as _;
use redis::aio::{PubSubSink, PubSubStream};
use redlock_core::{ConnError, ConnErrorKind, Notice, Subscriber};

use crate::map_error;

/// A pub/sub connection to one node, split so that subscribing never stops the messages:
/// redis-rs reads the socket in a task of its own and keeps the messages in an unbounded
/// channel until [`Subscriber::next`] takes them.
///
/// [`RedisPool`](crate::RedisPool) opens one for the lock core when it was built from a
/// client or URL (or given one with
/// [`RedisPool::with_subscriber`](crate::RedisPool::with_subscriber)); other drivers built
/// on redis-rs connections can use it too.
pub struct RedisSubscriber {
    sink: PubSubSink,
    stream: PubSubStream,
}

impl std::fmt::Debug for RedisSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSubscriber").finish_non_exhaustive()
    }
}

impl RedisSubscriber {
    /// Opens a new pub/sub connection through `client` (its address, credentials, TLS and
    /// TCP settings). Unbounded in time: the core bounds it.
    ///
    /// # Errors
    ///
    /// [`ConnError`] when the connection or its handshake fails.
    pub async fn open(client: &redis::Client) -> Result<Self, ConnError> {
        let pubsub = client.get_async_pubsub().await.map_err(map_error)?;
        let (sink, stream) = pubsub.split();
        Ok(Self { sink, stream })
    }

    /// Opens a pub/sub connection through the first of `clients` that connects (a
    /// cluster's seeds, say; or the one client of a plain node).
    ///
    /// # Errors
    ///
    /// The last client's [`ConnError`]; [`ConnErrorKind::Unsupported`] when there is no
    /// client.
    pub async fn open_first(clients: &[redis::Client]) -> Result<Self, ConnError> {
        let message = "this pool has no client to open a pub/sub connection with";
        let mut last = ConnError::new(ConnErrorKind::Unsupported, message);
        for client in clients {
            match Self::open(client).await {
                Ok(subscriber) => return Ok(subscriber),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

#[async_trait]
impl Subscriber for RedisSubscriber {
    async fn subscribe(&mut self, channel: &str) -> Result<(), ConnError> {
        self.sink.subscribe(channel).await.map_err(map_error)
    }

    async fn unsubscribe(&mut self, channel: &str) -> Result<(), ConnError> {
        self.sink.unsubscribe(channel).await.map_err(map_error)
    }

    /// Cancel safe: it only receives from redis-rs's channel.
    async fn next(&mut self) -> Result<Notice, ConnError> {
        match self.stream.next().await {
            Some(message) => Ok(Notice::Message {
                channel: message.get_channel_name().to_owned(),
                payload: message.get_payload_bytes().to_vec(),
            }),
            // The connection's reader ended: the socket closed or failed.
            None => Err(ConnError::new(
                ConnErrorKind::Connection,
                "the pub/sub connection closed",
            )),
        }
    }
}
