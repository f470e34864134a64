//! Listening for releases: one lock manager's waiters, the channels they wait on, and one
//! listener per node that hears the releases announced there.
//!
//! A waiter registers an [`Interest`] in a lock's release channel. The first interest in a
//! channel has every node's listener subscribe it; the last one to leave has them
//! unsubscribe it. A message on the channel from any node wakes every waiter of that
//! channel; a listener that failed or missed messages wakes every waiter of every channel
//! (one of them may have missed its release). Waking is a hint: a waiter still retries
//! after its fallback delay, and still gives up at its deadline.
//!
//! Ownership: the manager's nodes own the [`Hub`]; each listener task holds only weak
//! handles on the hub and the nodes, and ends when its command channel closes, which
//! happens when the manager and every interest are gone.

mod listener;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::conn::Pool;
use crate::nodes::Nodes;
use crate::runtime;
use crate::tally::NodeSet;

/// One lock manager's waiters and the listeners that wake them.
pub(crate) struct Hub {
    shared: Arc<Shared>,
}

/// What the hub, its interests and its listeners share.
struct Shared {
    channels: Mutex<HashMap<Arc<str>, Entry>>,
    /// Each node's listener, started with the first interest.
    listeners: Box<[OnceLock<mpsc::UnboundedSender<Command>>]>,
}

/// One channel that someone waits on.
struct Entry {
    waiters: usize,
    /// Bumped on every wake; each waiter watches it.
    woken: watch::Sender<u64>,
    /// How far the nodes' listeners got with this channel's subscription: a waiter waits
    /// until every node settled it, or its bound runs out.
    subscription: watch::Sender<Subscription>,
}

/// Which nodes settled a channel's subscription, and which of them made it.
#[derive(Debug, Clone, Copy, Default)]
struct Subscription {
    settled: NodeSet,
    live: NodeSet,
}

/// What a listener is asked to do.
#[derive(Debug)]
enum Command {
    Subscribe(Arc<str>),
    Unsubscribe(Arc<str>),
}

impl Hub {
    pub(crate) fn new(nodes: usize) -> Self {
        let listeners = (0..nodes).map(|_| OnceLock::new()).collect();
        let shared = Shared {
            channels: Mutex::new(HashMap::new()),
            listeners,
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Registers a waiter on `channel`, starting the listeners of `nodes` (which own this
    /// hub) on first use; `timeout` bounds each of their calls. `None` off a runtime.
    pub(crate) fn register<P: Pool>(
        &self,
        nodes: &Arc<Nodes<P>>,
        channel: &str,
        timeout: Duration,
    ) -> Option<Interest> {
        runtime::check().ok()?;
        let channel: Arc<str> = channel.into();
        let (woken, subscription, first) = {
            let mut channels = self.shared.channels();
            let entry = channels.entry(channel.clone()).or_insert_with(Entry::new);
            entry.waiters += 1;
            let receivers = (entry.woken.subscribe(), entry.subscription.subscribe());
            (receivers.0, receivers.1, entry.waiters == 1)
        };
        if first {
            for node in 0..self.shared.listeners.len() {
                let sender = self.listener(nodes, node, timeout);
                // A listener that ended (its runtime shut down) leaves polling.
                sender.send(Command::Subscribe(channel.clone())).ok();
            }
        }
        Some(Interest {
            shared: self.shared.clone(),
            channel,
            woken,
            subscription,
        })
    }

    /// Node `node`'s listener, started if it was not.
    fn listener<P: Pool>(
        &self,
        nodes: &Arc<Nodes<P>>,
        node: usize,
        timeout: Duration,
    ) -> &mpsc::UnboundedSender<Command> {
        let slot = &self.shared.listeners[node];
        slot.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let task = listener::Listener::new(node, nodes, &self.shared, rx, timeout);
            tokio::spawn(task.run());
            tx
        })
    }
}

impl Shared {
    fn channels(&self) -> MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the waiters of `channel`.
    fn wake(&self, channel: &str) {
        if let Some(entry) = self.channels().get(channel) {
            entry.woken.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes every waiter.
    fn wake_all(&self) {
        for entry in self.channels().values() {
            entry.woken.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Notes that `node` settled the subscription of each of `channels`: made it
    /// (`live`) or gave up on it.
    fn settle<'a>(
        &self,
        node: usize,
        live: bool,
        channels: impl IntoIterator<Item = &'a Arc<str>>,
    ) {
        let map = self.channels();
        for channel in channels {
            if let Some(entry) = map.get(channel) {
                entry.subscription.send_modify(|s| {
                    s.settled.insert(node);
                    if live {
                        s.live.insert(node);
                    }
                });
            }
        }
    }

    /// The channels someone waits on now.
    fn wanted(&self) -> Vec<Arc<str>> {
        self.channels().keys().cloned().collect()
    }

    fn is_wanted(&self, channel: &str) -> bool {
        self.channels().contains_key(channel)
    }

    /// A waiter of `channel` left; the last one has the listeners unsubscribe it.
    fn leave(&self, channel: &Arc<str>) {
        let mut channels = self.channels();
        let Some(entry) = channels.get_mut(channel) else {
            return;
        };
        entry.waiters -= 1;
        if entry.waiters > 0 {
            return;
        }
        channels.remove(channel);
        drop(channels);
        for listener in self.listeners.iter().filter_map(OnceLock::get) {
            // A listener that ended has nothing subscribed.
            listener.send(Command::Unsubscribe(channel.clone())).ok();
        }
    }
}

impl Entry {
    fn new() -> Self {
        Self {
            waiters: 0,
            woken: watch::Sender::new(0),
            subscription: watch::Sender::new(Subscription::default()),
        }
    }
}

/// One waiter's registration on a lock's release channel; dropping it leaves.
pub(crate) struct Interest {
    shared: Arc<Shared>,
    channel: Arc<str>,
    woken: watch::Receiver<u64>,
    subscription: watch::Receiver<Subscription>,
}

impl Interest {
    /// Forgets the wakes so far: call it right before an attempt, so that a release
    /// announced while the attempt runs still wakes the wait after it.
    pub(crate) fn mark_seen(&mut self) {
        self.woken.borrow_and_update();
    }

    /// Waits until every node's listener has subscribed the channel or given up on it;
    /// returns whether any node listens. The caller bounds it in time.
    pub(crate) async fn subscribed(&mut self) -> bool {
        let nodes = self.shared.listeners.len();
        let settled = self
            .subscription
            .wait_for(|s| s.settled.len() >= nodes)
            .await;
        // An error means the entry is gone, which cannot happen while this interest lives.
        settled.is_ok_and(|s| !s.live.is_empty())
    }

    /// Waits for a wake since the last [`Interest::mark_seen`]. Cancel safe.
    pub(crate) async fn woken(&mut self) {
        if self.woken.changed().await.is_err() {
            // The entry is gone, which cannot happen while this interest lives.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Interest {
    fn drop(&mut self) {
        self.shared.leave(&self.channel);
    }
}
