//! The contenders: a [`Cycle`] or a [`Locker`] (see `measured`) wrapped into an [`Entry`],
//! so that the workloads run with static dispatch inside a cycle and dynamic dispatch only
//! once per slice.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::Result;
use crate::measured::{AsCycle, Cycle, Locker};
use crate::stats::Sample;
use crate::workload::{self, Slice, Workload};

/// The client crate a contender talks through; each driver is compared with its own floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Client {
    /// `redis` 1.x.
    RedisRs,
    /// `fred` 10.x.
    Fred,
    /// `deadpool-redis` 0.23.
    Deadpool,
}

impl Client {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::RedisRs => "redis-rs",
            Self::Fred => "fred",
            Self::Deadpool => "deadpool-redis",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::RedisRs => "redis-rs",
            Self::Fred => "fred",
            Self::Deadpool => "deadpool",
        }
    }
}

/// What role a contender plays in the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Role {
    /// The acquire and release commands sent straight through the client.
    Floor(Client),
    /// redlock-rs through the driver for this client.
    Driver(Client),
    /// rslock 0.10.
    Rslock,
}

impl Role {
    pub(crate) fn label(self) -> String {
        match self {
            Self::Floor(c) => format!("floor ({})", c.label()),
            Self::Driver(c) => format!("redlock-rs ({})", c.label()),
            Self::Rslock => "rslock 0.10".to_string(),
        }
    }

    /// A short name for `--only` and `--profile`: `floor-fred`, `redlock-fred`, `rslock`.
    pub(crate) fn key(self) -> String {
        match self {
            Self::Floor(c) => format!("floor-{}", c.key()),
            Self::Driver(c) => format!("redlock-{}", c.key()),
            Self::Rslock => "rslock".to_string(),
        }
    }
}

/// One contender as the runner sees it.
pub(crate) trait Entry: Send + Sync {
    /// Its role in the comparison.
    fn role(&self) -> Role;

    /// Whether it can run `workload` (floors cannot wait for a held key).
    fn supports(&self, workload: Workload) -> bool;

    /// Runs one slice of `workload`.
    fn run<'a>(&'a self, workload: Workload, slice: &'a Slice) -> BoxFuture<'a, Result<Sample>>;
}

/// A contender that only cycles on fresh keys: a floor.
pub(crate) struct CycleEntry<C> {
    role: Role,
    inner: Arc<C>,
}

impl<C: Cycle> CycleEntry<C> {
    pub(crate) fn boxed(role: Role, inner: C) -> Box<dyn Entry> {
        let inner = Arc::new(inner);
        Box::new(Self { role, inner })
    }
}

impl<C: Cycle> Entry for CycleEntry<C> {
    fn role(&self) -> Role {
        self.role
    }

    fn supports(&self, workload: Workload) -> bool {
        workload != Workload::Contended
    }

    fn run<'a>(&'a self, workload: Workload, slice: &'a Slice) -> BoxFuture<'a, Result<Sample>> {
        Box::pin(workload::run_cycles(self.inner.clone(), workload, slice))
    }
}

/// A contender that is a lock library: every workload.
pub(crate) struct LockEntry<L> {
    role: Role,
    cycles: Arc<AsCycle<L>>,
    locker: Arc<L>,
}

impl<L: Locker> LockEntry<L> {
    pub(crate) fn boxed(role: Role, locker: L) -> Box<dyn Entry> {
        let locker = Arc::new(locker);
        let cycles = Arc::new(AsCycle(locker.clone()));
        Box::new(Self {
            role,
            cycles,
            locker,
        })
    }
}

impl<L: Locker> Entry for LockEntry<L> {
    fn role(&self) -> Role {
        self.role
    }

    fn supports(&self, _: Workload) -> bool {
        true
    }

    fn run<'a>(&'a self, workload: Workload, slice: &'a Slice) -> BoxFuture<'a, Result<Sample>> {
        match workload {
            Workload::Contended => Box::pin(workload::run_contended(self.locker.clone(), slice)),
            _ => Box::pin(workload::run_cycles(self.cycles.clone(), workload, slice)),
        }
    }
}
