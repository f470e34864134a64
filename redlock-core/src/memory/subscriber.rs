//! The in-memory node's pub/sub: subscriber connections, and the releases the node
//! announces to them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::lock;
use super::node::Node;
use crate::conn::{ConnError, ConnErrorKind};
use crate::subscriber::{Notice, Subscriber};

/// The node's end of one subscriber connection.
#[derive(Debug)]
pub(super) struct Link {
    channels: Arc<Mutex<HashSet<String>>>,
    notices: mpsc::UnboundedSender<Notice>,
}

impl Link {
    fn is_open(&self) -> bool {
        !self.notices.is_closed()
    }

    pub(super) fn listens_to(&self, channel: &str) -> bool {
        self.is_open() && lock(&self.channels).contains(channel)
    }

    /// Delivers `payload` on `channel`; whether it was delivered.
    pub(super) fn deliver(&self, channel: &str, payload: &[u8]) -> bool {
        let message = || Notice::Message {
            channel: channel.into(),
            payload: payload.into(),
        };
        self.listens_to(channel) && self.notices.send(message()).is_ok()
    }
}

/// A client's subscriber connection to an in-memory node.
pub(super) struct MemorySubscriber {
    node: Arc<Mutex<Node>>,
    channels: Arc<Mutex<HashSet<String>>>,
    notices: mpsc::UnboundedReceiver<Notice>,
}

impl MemorySubscriber {
    /// Connects a new subscriber to `node`.
    pub(super) fn connect(node: &Arc<Mutex<Node>>) -> Result<Self, ConnError> {
        let mut state = lock(node);
        if state.down {
            return Err(ConnError::new(
                ConnErrorKind::Connection,
                "connection refused",
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let channels = Arc::new(Mutex::new(HashSet::new()));
        state.subscribers.retain(Link::is_open);
        state.subscribers.push(Link {
            channels: channels.clone(),
            notices: tx,
        });
        state.subscribers_opened += 1;
        Ok(Self {
            node: node.clone(),
            channels,
            notices: rx,
        })
    }

    fn check(&self) -> Result<(), ConnError> {
        if lock(&self.node).down {
            return Err(ConnError::new(
                ConnErrorKind::Connection,
                "connection reset",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Subscriber for MemorySubscriber {
    async fn subscribe(&mut self, channel: &str) -> Result<(), ConnError> {
        self.check()?;
        lock(&self.channels).insert(channel.to_owned());
        Ok(())
    }

    async fn unsubscribe(&mut self, channel: &str) -> Result<(), ConnError> {
        self.check()?;
        lock(&self.channels).remove(channel);
        Ok(())
    }

    async fn next(&mut self) -> Result<Notice, ConnError> {
        let closed = || ConnError::new(ConnErrorKind::Connection, "subscriber connection closed");
        self.notices.recv().await.ok_or_else(closed)
    }
}
