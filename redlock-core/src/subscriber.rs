//! The seam's optional subscriber capability: a connection that listens for release
//! announcements, so that waiters retry the moment a lock frees instead of polling.
//!
//! A driver implements [`Subscriber`] over its client's pub/sub connection and hands one
//! out from [`Pool::subscriber`](crate::Pool::subscriber). The core does everything else:
//! it opens one subscriber per node and lock manager, shares it between every waiter of
//! that manager, subscribes a lock's channel while someone waits for it and unsubscribes it
//! when the last one leaves, and replaces the subscriber (re-subscribing every channel)
//! when it fails. A driver without the capability keeps the core's polling.

use async_trait::async_trait;

use crate::conn_error::ConnError;

/// A pub/sub connection to one node, driven by one core task at a time.
///
/// # Contract
///
/// 1. [`Subscriber::subscribe`] returns once the server has confirmed the subscription;
///    a message published after that is delivered by [`Subscriber::next`].
/// 2. **Messages are kept, not dropped, while a `subscribe` or `unsubscribe` call runs:**
///    the core reads them afterwards. A driver that cannot keep one (a bounded buffer that
///    overflowed, a receiver that lagged) returns [`Notice::Missed`] instead, never
///    nothing.
/// 3. **[`Subscriber::next`] is cancel safe:** the core drops its future whenever a
///    subscription request comes in, and no message may be lost by that.
/// 4. **A failure ends the subscriber:** once any method returns an error (the connection
///    dropped, a call timed out), the core drops the subscriber and asks the pool for a
///    new one. A client that reconnects and re-subscribes on its own returns
///    [`Notice::Missed`] after each reconnect instead (messages published while it was
///    away are gone).
/// 5. **A connection that goes silent fails in the end** (TCP keepalive, or the client's
///    own health checks): the core cannot tell a quiet channel from a dead link, and
///    until the subscriber fails its waiters are woken only by their fallback delays.
/// 6. It never blocks the thread, and nothing it prints contains a password.
///
/// The core bounds every call with the lock's per-node timeout, and treats a notification
/// as a hint only: a waiter never relies on one arriving.
#[async_trait]
pub trait Subscriber: Send + 'static {
    /// Subscribes to `channel`; returns once the server confirmed it.
    ///
    /// # Errors
    ///
    /// [`ConnError`] when the subscription cannot be made or confirmed; the core then
    /// replaces the subscriber.
    async fn subscribe(&mut self, channel: &str) -> Result<(), ConnError>;

    /// Unsubscribes from `channel`.
    ///
    /// # Errors
    ///
    /// [`ConnError`] as for [`Subscriber::subscribe`].
    async fn unsubscribe(&mut self, channel: &str) -> Result<(), ConnError>;

    /// Waits for the next message, or word that messages were missed.
    ///
    /// # Errors
    ///
    /// [`ConnError`] when the connection is gone; the core then replaces the subscriber.
    ///
    /// # Cancel safety
    ///
    /// Must be cancel safe (contract rule 3).
    async fn next(&mut self) -> Result<Notice, ConnError>;
}

/// What a [`Subscriber`] heard.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// A message was published on `channel`. The core reads the payload the lock's
    /// release script publishes (one release's messages on several nodes carry the same
    /// payload, and wake a waiter once); any other payload wakes a waiter too.
    Message {
        /// The channel.
        channel: String,
        /// The message, as published.
        payload: Vec<u8>,
    },
    /// Messages may have been missed (a buffer overflowed, the client reconnected by
    /// itself): the core wakes every waiter of the node, which then tries again.
    Missed,
}

/// A subscriber of any driver, boxed: what [`Pool::subscriber`](crate::Pool::subscriber)
/// returns.
pub type BoxSubscriber = Box<dyn Subscriber>;
