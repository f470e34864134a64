//! Listening for releases: one lock manager's waiters, the channels they wait on, and one
//! listener per node that hears the releases announced there.
//!
//! A waiter registers an [`Interest`] in a lock's release channel. The first interest in a
//! channel has every node's listener subscribe it; the last one to leave has them
//! unsubscribe it. A release announced on the channel wakes the channel's longest waiter
//! in this manager, once however many nodes announce it, and only that waiter: waking
//! them all would have them split the nodes' votes between them, so that none wins. A
//! waiter that leaves with a wake it did not act on passes it to the next. A listener that failed or missed messages wakes every waiter
//! of every channel (one of them may have missed its release). Waking is a hint: a waiter
//! still retries after its fallback delay, and still gives up at its deadline.
//!
//! Ownership: the manager ([`Redlock`](crate::Redlock), and each of its mutexes) holds the
//! [`Hub`]; each listener task holds only weak handles on the hub and the nodes, and ends
//! when its command channel closes, which happens when the manager and every interest
//! are gone. A listener opens its node's subscriber when someone first waits and keeps it
//! until it fails or the manager goes; channels are subscribed only while someone waits.
//! Its calls are bounded by the per-node timeout of the lock that started it.

mod listener;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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
    /// How many channels someone waits on: read without the lock, so that an acquire
    /// with nobody waiting pays nothing to learn it.
    waited: AtomicUsize,
    /// Each node's listener, started with the first interest.
    listeners: Box<[Mutex<Option<mpsc::UnboundedSender<Command>>>]>,
}

/// One channel that someone waits on.
struct Entry {
    /// The waiters, longest first, each with the counter its wakes bump.
    waiters: VecDeque<(u64, watch::Sender<u64>)>,
    /// The last release that woke a waiter: the same release announced by another node
    /// wakes nobody again.
    last_release: Option<Vec<u8>>,
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
        let listeners = (0..nodes).map(|_| Mutex::new(None)).collect();
        let shared = Shared {
            channels: Mutex::new(HashMap::new()),
            waited: AtomicUsize::new(0),
            listeners,
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Whether any waiter of this manager waits on any channel now; lock-free.
    pub(crate) fn is_idle(&self) -> bool {
        !self.shared.is_waited()
    }

    /// Whether some waiter of this manager waits on `channel` now.
    pub(crate) fn has_waiters(&self, channel: &str) -> bool {
        self.shared.is_wanted(channel)
    }

    /// Registers a waiter on `channel`, starting the listeners of `nodes` (the manager's,
    /// whose hub this is) on first use; `timeout` bounds each of their calls. `None` off a
    /// runtime.
    pub(crate) fn register<P: Pool>(
        &self,
        nodes: &Arc<Nodes<P>>,
        channel: &str,
        timeout: Duration,
    ) -> Option<Interest> {
        runtime::check().ok()?;
        let channel: Arc<str> = channel.into();
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (woken, subscription, first) = {
            let mut channels = self.shared.channels();
            let entry = channels.entry(channel.clone()).or_insert_with(|| {
                self.shared.waited.fetch_add(1, Ordering::Relaxed);
                Entry::new()
            });
            let (wake, woken) = watch::channel(0);
            entry.waiters.push_back((id, wake));
            (
                woken,
                entry.subscription.subscribe(),
                entry.waiters.len() == 1,
            )
        };
        for node in 0..self.shared.listeners.len() {
            // A listener started now subscribes every wanted channel by itself.
            let (sender, started) = self.listener(nodes, node, timeout);
            if first && !started {
                // It ended in between (its runtime shut down): the next waiter restarts it.
                sender.send(Command::Subscribe(channel.clone())).ok();
            }
        }
        Some(Interest {
            shared: self.shared.clone(),
            channel,
            id,
            woken,
            subscription,
        })
    }

    /// Node `node`'s listener, and whether it was started now: on first use, or again
    /// when the last one ended (the runtime it ran on shut down while the manager lived
    /// on, as a manager shared by several tests does).
    fn listener<P: Pool>(
        &self,
        nodes: &Arc<Nodes<P>>,
        node: usize,
        timeout: Duration,
    ) -> (mpsc::UnboundedSender<Command>, bool) {
        let mut slot = lock(&self.shared.listeners[node]);
        if let Some(sender) = slot.as_ref().filter(|s| !s.is_closed()) {
            return (sender.clone(), false);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let task = listener::Listener::new(node, nodes, &self.shared, rx, timeout);
        tokio::spawn(task.run());
        *slot = Some(tx.clone());
        (tx, true)
    }
}

impl Shared {
    fn channels(&self) -> MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        lock(&self.channels)
    }

    /// Wakes the longest waiter of `channel`, unless `release` already woke one (each
    /// node announces the same release).
    fn wake(&self, channel: &str, release: &[u8]) {
        let mut channels = self.channels();
        let Some(entry) = channels.get_mut(channel) else {
            return;
        };
        if entry.last_release.as_deref() == Some(release) {
            return;
        }
        entry.last_release = Some(release.to_vec());
        if let Some((_, wake)) = entry.waiters.front() {
            bump(wake);
        }
    }

    /// Wakes every waiter of every channel.
    fn wake_all(&self) {
        for entry in self.channels().values() {
            entry.waiters.iter().for_each(|(_, wake)| bump(wake));
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

    /// Whether someone waits on some channel now; lock-free.
    fn is_waited(&self) -> bool {
        self.waited.load(Ordering::Relaxed) > 0
    }

    /// The channels someone waits on now.
    fn wanted(&self) -> Vec<Arc<str>> {
        self.channels().keys().cloned().collect()
    }

    fn is_wanted(&self, channel: &str) -> bool {
        self.channels().contains_key(channel)
    }

    /// Waiter `id` of `channel` left, passing on a wake it did not act on (`pending`);
    /// the last one has the listeners unsubscribe the channel.
    fn leave(&self, channel: &Arc<str>, id: u64, pending: bool) {
        let mut channels = self.channels();
        let Some(entry) = channels.get_mut(channel) else {
            return;
        };
        entry.waiters.retain(|(waiter, _)| *waiter != id);
        if let Some((_, next)) = entry.waiters.front() {
            if pending {
                bump(next);
            }
            return;
        }
        channels.remove(channel);
        self.waited.fetch_sub(1, Ordering::Relaxed);
        drop(channels);
        for slot in &self.listeners {
            if let Some(listener) = lock(slot).as_ref() {
                // A listener that ended has nothing subscribed.
                listener.send(Command::Unsubscribe(channel.clone())).ok();
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wakes the waiter that watches `wake`.
fn bump(wake: &watch::Sender<u64>) {
    wake.send_modify(|n| *n = n.wrapping_add(1));
}

impl Entry {
    fn new() -> Self {
        Self {
            waiters: VecDeque::new(),
            last_release: None,
            subscription: watch::Sender::new(Subscription::default()),
        }
    }
}

/// One waiter's registration on a lock's release channel; dropping it leaves.
pub(crate) struct Interest {
    shared: Arc<Shared>,
    channel: Arc<str>,
    id: u64,
    woken: watch::Receiver<u64>,
    subscription: watch::Receiver<Subscription>,
}

impl Interest {
    /// Forgets the wakes so far: call it right before an attempt, so that a release
    /// announced while the attempt runs still wakes the wait after it.
    pub(crate) fn mark_seen(&mut self) {
        self.woken.borrow_and_update();
    }

    /// Waits until `enough` nodes listen on the channel, or every node's listener has
    /// subscribed it or given up on it; returns whether any node listens. The caller
    /// bounds it in time.
    pub(crate) async fn subscribed(&mut self, enough: usize) -> bool {
        let nodes = self.shared.listeners.len();
        let done = |s: &Subscription| s.live.len() >= enough || s.settled.len() >= nodes;
        let settled = self.subscription.wait_for(done).await;
        // An error means the entry is gone, which cannot happen while this interest lives.
        settled.is_ok_and(|s| !s.live.is_empty())
    }

    /// Waits for a wake since the last [`Interest::mark_seen`]. Cancel safe.
    pub(crate) async fn woken(&mut self) {
        if self.woken.changed().await.is_err() {
            // The sender is gone, which cannot happen while this interest lives.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Interest {
    fn drop(&mut self) {
        let pending = self.woken.has_changed().unwrap_or(false);
        self.shared.leave(&self.channel, self.id, pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryPool;

    fn is_woken(interest: &Interest) -> bool {
        interest.woken.has_changed().unwrap_or(false)
    }

    /// Without nodes, so that only the hub's bookkeeping runs.
    fn hub_and_nodes() -> (Hub, Arc<Nodes<MemoryPool>>) {
        (Hub::new(0), Arc::new(Nodes::new(Vec::new())))
    }

    #[tokio::test]
    async fn a_release_wakes_the_longest_waiter_and_a_dropped_wake_passes_on() {
        let (hub, nodes) = hub_and_nodes();
        let timeout = Duration::from_secs(1);
        let first = hub.register(&nodes, "c", timeout).unwrap();
        let mut second = hub.register(&nodes, "c", timeout).unwrap();
        let third = hub.register(&nodes, "c", timeout).unwrap();
        hub.shared.wake("c", b"1:a");
        assert!(is_woken(&first) && !is_woken(&second) && !is_woken(&third));
        // The same release announced by another node wakes nobody else.
        second.mark_seen();
        hub.shared.wake("c", b"1:a");
        assert!(!is_woken(&second) && !is_woken(&third));
        // The first leaves without acting on its wake: the second gets it.
        drop(first);
        assert!(is_woken(&second) && !is_woken(&third));
        // The second acts on it (attempts) and leaves: nothing is passed on.
        second.mark_seen();
        drop(second);
        assert!(!is_woken(&third));
        hub.shared.wake_all();
        assert!(is_woken(&third));
        drop(third);
        assert!(hub.shared.channels().is_empty());
    }
}
