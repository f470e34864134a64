//! One node's listener: the task that owns the node's subscriber, keeps it subscribed to
//! the channels someone waits on, and turns what it hears into wakes.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Command, Shared};
use crate::conn::{ConnError, ConnErrorKind, Pool};
use crate::nodes::Nodes;
use crate::observe;
use crate::subscriber::{BoxSubscriber, Notice};

/// How long a listener waits before it opens a subscriber again after one failed or could
/// not be opened: waiters poll meanwhile, and a node that is down is not hammered.
const REOPEN_DELAY: Duration = Duration::from_millis(250);

/// One node's listener task.
pub(super) struct Listener<P> {
    node: usize,
    nodes: Weak<Nodes<P>>,
    shared: Weak<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    timeout: Duration,
    subscriber: Option<BoxSubscriber>,
    /// The channels the current subscriber has confirmed.
    subscribed: HashSet<Arc<str>>,
    /// No subscriber is opened before this, after a failure.
    reopen_at: Option<Instant>,
    /// Whether a subscriber was ever open: opening another means messages may have been
    /// missed in between.
    was_open: bool,
    /// The driver has no subscriber: waiters poll.
    unsupported: bool,
}

/// What woke the listener.
enum Event {
    Command(Option<Command>),
    Heard(Result<Notice, ConnError>),
    Reopen,
}

impl<P: Pool> Listener<P> {
    pub(super) fn new(
        node: usize,
        nodes: &Arc<Nodes<P>>,
        shared: &Arc<Shared>,
        commands: mpsc::UnboundedReceiver<Command>,
        timeout: Duration,
    ) -> Self {
        Self {
            node,
            nodes: Arc::downgrade(nodes),
            shared: Arc::downgrade(shared),
            commands,
            timeout,
            subscriber: None,
            subscribed: HashSet::new(),
            reopen_at: None,
            was_open: false,
            unsupported: false,
        }
    }

    /// Runs until the hub is gone (its command channel closes).
    pub(super) async fn run(mut self) {
        loop {
            if self.subscriber.is_none() && self.may_open() {
                self.open().await;
            }
            match self.next_event().await {
                Event::Command(None) => return,
                Event::Command(Some(Command::Subscribe(channel))) => {
                    self.subscribe(channel).await;
                }
                Event::Command(Some(Command::Unsubscribe(channel))) => {
                    self.unsubscribe(channel).await;
                }
                Event::Heard(Ok(Notice::Message { channel, payload })) => {
                    observe::notification();
                    self.with_shared(|s| s.wake(&channel, &payload));
                }
                Event::Heard(Ok(Notice::Missed)) => {
                    self.with_shared(Shared::wake_all);
                }
                Event::Heard(Err(_)) => self.fail(),
                Event::Reopen => self.reopen_at = None,
            }
        }
    }

    async fn next_event(&mut self) -> Event {
        let reopen_at = self.reopen_at;
        match self.subscriber.as_mut() {
            Some(subscriber) => tokio::select! {
                command = self.commands.recv() => Event::Command(command),
                heard = subscriber.next() => Event::Heard(heard),
            },
            None => match reopen_at {
                Some(at) => tokio::select! {
                    command = self.commands.recv() => Event::Command(command),
                    () = tokio::time::sleep_until(at) => Event::Reopen,
                },
                None => Event::Command(self.commands.recv().await),
            },
        }
    }

    /// Whether a subscriber should be opened now: someone waits and no failure is fresh.
    fn may_open(&self) -> bool {
        let fresh = self.reopen_at.is_some_and(|at| Instant::now() < at);
        !fresh && !self.unsupported && self.with_shared(Shared::is_waited).unwrap_or(false)
    }

    /// Opens a subscriber and subscribes every wanted channel on it.
    async fn open(&mut self) {
        let wanted = self.with_shared(Shared::wanted).unwrap_or_default();
        let opened = bounded(self.timeout, open_subscriber(self.nodes.clone(), self.node)).await;
        let mut subscriber = match opened {
            Ok(subscriber) => subscriber,
            Err(e) => {
                self.unsupported = e.kind() == ConnErrorKind::Unsupported;
                return self.gave_up(&wanted);
            }
        };
        let mut subscribed = HashSet::new();
        for channel in &wanted {
            match bounded(self.timeout, subscriber.subscribe(channel)).await {
                Ok(()) => {
                    subscribed.insert(channel.clone());
                }
                Err(e) if refused(&e) => {}
                Err(_) => return self.gave_up(&wanted),
            }
        }
        self.subscriber = Some(subscriber);
        self.with_shared(|s| {
            s.settle(self.node, true, &subscribed);
            s.settle(self.node, false, &wanted);
            if self.was_open {
                // Releases announced while no subscriber was open went unheard.
                s.wake_all();
            }
        });
        self.subscribed = subscribed;
        self.was_open = true;
    }

    /// Subscribes `channel` if someone still waits on it, and settles it either way.
    async fn subscribe(&mut self, channel: Arc<str>) {
        let wanted = self.with_shared(|s| s.is_wanted(&channel)) == Some(true);
        if wanted
            && !self.subscribed.contains(&channel)
            && let Some(subscriber) = self.subscriber.as_mut()
        {
            match bounded(self.timeout, subscriber.subscribe(&channel)).await {
                Ok(()) => {
                    self.subscribed.insert(channel.clone());
                }
                // The connection is fine; its waiters poll.
                Err(e) if refused(&e) => {}
                Err(_) => self.fail(),
            }
        }
        let live = self.subscribed.contains(&channel);
        self.with_shared(|s| s.settle(self.node, live, [&channel]));
    }

    /// Unsubscribes `channel` unless someone waits on it again.
    async fn unsubscribe(&mut self, channel: Arc<str>) {
        if self.with_shared(|s| s.is_wanted(&channel)) != Some(false)
            || !self.subscribed.remove(&channel)
        {
            return;
        }
        if let Some(subscriber) = self.subscriber.as_mut()
            && bounded(self.timeout, subscriber.unsubscribe(&channel))
                .await
                .is_err()
        {
            self.fail();
        }
    }

    /// Drops a subscriber that failed, and wakes every waiter: a release may have gone
    /// unheard.
    fn fail(&mut self) {
        self.subscriber = None;
        self.subscribed.clear();
        self.reopen_at = Some(Instant::now() + REOPEN_DELAY);
        self.with_shared(Shared::wake_all);
    }

    /// No subscriber could be opened: the waiters of `wanted` stop waiting for one.
    fn gave_up(&mut self, wanted: &[Arc<str>]) {
        self.subscribed.clear();
        self.reopen_at = Some(Instant::now() + REOPEN_DELAY);
        self.with_shared(|s| s.settle(self.node, false, wanted));
    }

    fn with_shared<T>(&self, f: impl FnOnce(&Shared) -> T) -> Option<T> {
        self.shared.upgrade().map(|shared| f(&shared))
    }
}

/// Whether the server refused a subscription (an ACL without the channel, a server
/// without pub/sub) on a connection that still works.
fn refused(error: &ConnError) -> bool {
    matches!(
        error.kind(),
        ConnErrorKind::Permission | ConnErrorKind::Command
    )
}

/// A new subscriber from node `node`'s pool, unless the manager is gone.
async fn open_subscriber<P: Pool>(
    nodes: Weak<Nodes<P>>,
    node: usize,
) -> Result<BoxSubscriber, ConnError> {
    let nodes = nodes.upgrade().ok_or_else(gone)?;
    let pool = nodes.pool(node).ok_or_else(gone)?;
    pool.subscriber().await
}

/// `call`, failed with a timeout error once `timeout` passes.
async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, ConnError>>,
) -> Result<T, ConnError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| Err(ConnError::timed_out(timeout)))
}

fn gone() -> ConnError {
    ConnError::new(ConnErrorKind::Other, "the lock manager is gone")
}
