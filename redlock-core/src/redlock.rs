//! The lock manager, [`Redlock`]: a set of nodes and the default options of the locks taken
//! on them.

use std::sync::Arc;

use crate::conn::Pool;
use crate::error::{Error, Result};
use crate::fence;
use crate::guard::Guard;
use crate::listen::Hub;
use crate::mutex::Mutex;
use crate::nodes::Nodes;
use crate::options::Options;
use crate::round::Target;
use crate::settings::Settings;

/// A lock manager over N independent Redis masters, one [`Pool`] per node.
///
/// Cheap to clone; clones share the nodes. Make one per set of nodes and take locks from
/// it by name.
///
/// # Examples
///
/// ```
/// use redlock_core::{Redlock, memory::MemoryPool};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> redlock_core::Result<()> {
/// let nodes = vec![MemoryPool::new(), MemoryPool::new(), MemoryPool::new()];
/// let redlock = Redlock::new(nodes)?;
///
/// let guard = redlock.lock("invoice:42").await?;
/// // ... the protected work, while guard.remaining() is above zero ...
/// guard.unlock().await?;
///
/// let guard = redlock.try_lock("invoice:42").await?; // one attempt only
/// guard.unlock().await?;
/// # Ok(()) }
/// ```
pub struct Redlock<P: Pool> {
    nodes: Arc<Nodes<P>>,
    /// The default options, checked once for this node count.
    settings: Arc<Settings>,
    /// The waiters of every lock of this manager, and the nodes' listeners.
    hub: Arc<Hub>,
}

impl<P: Pool> Clone for Redlock<P> {
    fn clone(&self) -> Self {
        Self {
            nodes: self.nodes.clone(),
            settings: self.settings.clone(),
            hub: self.hub.clone(),
        }
    }
}

impl<P: Pool> std::fmt::Debug for Redlock<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redlock")
            .field("nodes", &self.nodes.addresses())
            .field("options", &self.settings.options)
            .finish()
    }
}

impl<P: Pool> Redlock<P> {
    /// A lock manager over `pools` with the default [`Options`].
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `pools` is empty or has more than
    /// [`MAX_NODES`](crate::MAX_NODES) pools.
    pub fn new(pools: Vec<P>) -> Result<Self> {
        Self::with_options(pools, Options::new())
    }

    /// A lock manager over `pools` whose locks use `options` unless told otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `pools` is empty or has more than
    /// [`MAX_NODES`](crate::MAX_NODES) pools, or an option is out of range.
    pub fn with_options(pools: Vec<P>, options: Options) -> Result<Self> {
        let settings = Arc::new(Settings::new(&options, pools.len())?);
        let hub = Arc::new(Hub::new(pools.len()));
        Ok(Self {
            nodes: Arc::new(Nodes::new(pools)),
            settings,
            hub,
        })
    }

    /// How many nodes this manager spans.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The options locks get by default.
    pub fn options(&self) -> &Options {
        &self.settings.options
    }

    /// The lock named `name`, with this manager's options.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `name` is empty, or, for a fenced lock, when no fence key
    /// can share its hash slot ([`fence::key`]).
    pub fn mutex(&self, name: &str) -> Result<Mutex<P>> {
        self.named(name, self.settings.clone())
    }

    /// The lock named `name`, with its own `options`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `name` is empty or an option is out of range, and as
    /// [`Redlock::mutex`] for a fenced lock.
    pub fn mutex_with(&self, name: &str, options: Options) -> Result<Mutex<P>> {
        let settings = Arc::new(Settings::new(&options, self.nodes.len())?);
        self.named(name, settings)
    }

    fn named(&self, name: &str, settings: Arc<Settings>) -> Result<Mutex<P>> {
        if name.is_empty() {
            return Err(Error::config("lock name must not be empty"));
        }
        let fence_key = match settings.options.get_fenced() {
            true => Some(fence::key(name)?.into()),
            false => None,
        };
        let target = Target::new(self.nodes.clone(), name.into(), fence_key, settings);
        Ok(Mutex::new(target, self.hub.clone()))
    }

    /// Acquires the lock named `name`, retrying; shorthand for
    /// `self.mutex(name)?.lock().await`.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`], and [`Error::Config`] when `name` is empty.
    ///
    /// # Cancel safety
    ///
    /// As [`Mutex::lock`].
    pub async fn lock(&self, name: &str) -> Result<Guard<P>> {
        self.mutex(name)?.lock().await
    }

    /// Makes one attempt to acquire the lock named `name`; shorthand for
    /// `self.mutex(name)?.try_lock().await`.
    ///
    /// # Errors
    ///
    /// As [`Mutex::try_lock`], and [`Error::Config`] when `name` is empty.
    ///
    /// # Cancel safety
    ///
    /// As [`Mutex::lock`].
    pub async fn try_lock(&self, name: &str) -> Result<Guard<P>> {
        self.mutex(name)?.try_lock().await
    }
}
