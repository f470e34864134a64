//! The workloads, each run as one time-bounded slice: `seq`, `par` and `contended` here,
//! and the waiting ones (`open`, `handoff`, `crashed`) in `waits`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpu_time::ProcessTime;
use tokio::task::JoinHandle;

use crate::Result;
use crate::measured::{Cycle, Locker};
use crate::stats::Sample;

/// Tasks of the `par` workload.
pub(crate) const PAR_TASKS: usize = 32;
/// Tasks of the `contended` workload.
pub(crate) const CONTENDED_TASKS: usize = 8;
/// How long a `contended` task holds the lock.
pub(crate) const HOLD: Duration = Duration::from_millis(1);
/// How long a `contended` task waits before it counts the acquisition as failed; longer
/// than redlock-rs's own give-up time with default options (32 tries).
pub(crate) const ACQUIRE_LIMIT: Duration = Duration::from_secs(20);

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Workload {
    /// One task, lock and unlock on fresh names.
    Seq,
    /// [`PAR_TASKS`] tasks, lock and unlock on fresh names.
    Par,
    /// [`CONTENDED_TASKS`] tasks on one name, each holding it for [`HOLD`].
    Contended,
    /// Poisson arrivals at half the lock's capacity on one name, from two managers.
    Open,
    /// From a release to the grant of a waiter in another manager.
    HandOff,
    /// From the expiry of a crashed holder's keys to a waiter's grant.
    Crashed,
}

impl Workload {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Seq => "seq",
            Self::Par => "par",
            Self::Contended => "contended",
            Self::Open => "open",
            Self::HandOff => "handoff",
            Self::Crashed => "crashed",
        }
    }

    /// Every workload, in report order.
    pub(crate) const ALL: [Self; 6] = [
        Self::Seq,
        Self::Par,
        Self::Contended,
        Self::Open,
        Self::HandOff,
        Self::Crashed,
    ];

    /// Whether only lock libraries run it (a floor cannot wait for a held key).
    pub(crate) fn waits(self) -> bool {
        !matches!(self, Self::Seq | Self::Par)
    }
}

/// One time-bounded run of a workload by one contender.
#[derive(Debug, Clone)]
pub(crate) struct Slice {
    /// How long tasks start new operations.
    pub(crate) duration: Duration,
    /// A key prefix no other slice uses.
    pub(crate) prefix: String,
    /// Stop each task after this many operations even if time is left (for profiling).
    pub(crate) max_ops: u64,
}

/// Runs `seq` or `par`: tasks cycle on fresh keys until the slice ends.
pub(crate) async fn run_cycles<C: Cycle>(
    cycle: Arc<C>,
    workload: Workload,
    slice: &Slice,
) -> Result<Sample> {
    let tasks = if workload == Workload::Par {
        PAR_TASKS
    } else {
        1
    };
    measure(slice, tasks, |task, deadline| {
        let prefix = format!("{}{task}:", slice.prefix);
        tokio::spawn(cycle_loop(cycle.clone(), prefix, deadline, slice.max_ops))
    })
    .await
}

/// Runs `contended`: tasks take turns on one key until the slice ends.
pub(crate) async fn run_contended<L: Locker>(locker: Arc<L>, slice: &Slice) -> Result<Sample> {
    let key: Arc<str> = format!("{}contended", slice.prefix).into();
    measure(slice, CONTENDED_TASKS, |_, deadline| {
        tokio::spawn(contend_loop(locker.clone(), key.clone(), deadline))
    })
    .await
}

/// Starts `tasks` tasks with `spawn`, waits for all, and measures wall and CPU time.
async fn measure(
    slice: &Slice,
    tasks: usize,
    mut spawn: impl FnMut(usize, Instant) -> JoinHandle<Result<Sample>>,
) -> Result<Sample> {
    let cpu = ProcessTime::try_now()?;
    let start = Instant::now();
    let deadline = start + slice.duration;
    let handles: Vec<_> = (0..tasks).map(|task| spawn(task, deadline)).collect();
    let mut total = Sample::new()?;
    for handle in handles {
        total.merge_ops(&handle.await??)?;
    }
    total.elapsed = start.elapsed();
    total.cpu = cpu.try_elapsed()?;
    Ok(total)
}

async fn cycle_loop<C: Cycle>(
    cycle: Arc<C>,
    prefix: String,
    deadline: Instant,
    max_ops: u64,
) -> Result<Sample> {
    let mut sample = Sample::new()?;
    let mut key = String::with_capacity(prefix.len() + 20);
    for i in 0..max_ops {
        let start = Instant::now();
        if start >= deadline {
            break;
        }
        key.clear();
        write!(key, "{prefix}{i}")?;
        match cycle.cycle(&key).await {
            Ok(()) => sample.record(start.elapsed())?,
            Err(e) => sample.fail(e),
        }
    }
    Ok(sample)
}

async fn contend_loop<L: Locker>(
    locker: Arc<L>,
    key: Arc<str>,
    deadline: Instant,
) -> Result<Sample> {
    let mut sample = Sample::new()?;
    loop {
        let start = Instant::now();
        if start >= deadline {
            break;
        }
        match tokio::time::timeout(ACQUIRE_LIMIT, locker.acquire(&key)).await {
            Ok(Ok(held)) => {
                sample.record(start.elapsed())?;
                tokio::time::sleep(HOLD).await;
                if let Err(e) = locker.release(held).await {
                    sample.fail(format!("release: {e}"));
                }
            }
            Ok(Err(e)) => {
                sample.record_time(start.elapsed())?;
                sample.fail(e);
            }
            Err(_) => {
                sample.record_time(start.elapsed())?;
                sample.fail(format!("no acquisition within {ACQUIRE_LIMIT:?}"));
            }
        }
    }
    Ok(sample)
}
