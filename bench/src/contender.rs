//! The contenders: a [`Cycle`] or a [`Locker`] (see `measured`) wrapped into an [`Entry`],
//! so that the workloads run with static dispatch inside a cycle and dynamic dispatch only
//! once per slice.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::Result;
use crate::measured::{AsCycle, Cycle, Locker};
use crate::open::{self, Peer};
use crate::stats::Sample;
use crate::waits::{self, Planter};
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
        !workload.waits()
    }

    fn run<'a>(&'a self, workload: Workload, slice: &'a Slice) -> BoxFuture<'a, Result<Sample>> {
        Box::pin(workload::run_cycles(self.inner.clone(), workload, slice))
    }
}

/// A contender that is a lock library: every workload. It comes as two lock managers
/// with connections of their own (the waiting workloads run across them, as across two
/// processes) and a way to plant a crashed holder's keys.
pub(crate) struct LockEntry<L> {
    role: Role,
    cycles: Arc<AsCycle<L>>,
    lockers: [Arc<L>; 2],
    planter: Arc<Planter>,
    /// How the `open` workload's second process builds the same contender.
    peer: Peer,
}

impl<L: Locker> LockEntry<L> {
    /// The contender `role` as `lockers`, over the nodes at `urls`.
    pub(crate) fn boxed(
        role: Role,
        lockers: [L; 2],
        planter: Arc<Planter>,
        urls: &[String],
    ) -> Box<dyn Entry> {
        let lockers = lockers.map(Arc::new);
        let cycles = Arc::new(AsCycle(lockers[0].clone()));
        let peer = Peer {
            contender: role.key(),
            urls: urls.to_vec(),
        };
        Box::new(Self {
            role,
            cycles,
            lockers,
            planter,
            peer,
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
        let [first, _] = &self.lockers;
        match workload {
            Workload::Contended => Box::pin(workload::run_contended(first.clone(), slice)),
            Workload::Open => Box::pin(open::run_open(first.clone(), &self.peer, slice)),
            Workload::HandOff => Box::pin(waits::run_handoff(self.lockers.clone(), slice)),
            Workload::Crashed => Box::pin(waits::run_crashed(
                first.clone(),
                self.planter.clone(),
                slice,
            )),
            Workload::Seq | Workload::Par => {
                Box::pin(workload::run_cycles(self.cycles.clone(), workload, slice))
            }
        }
    }
}
