//! The runner: every contender runs every workload in interleaved rounds, so that noise
//! from the machine (other builds, the servers' own scheduling) hits all of them alike.

use std::time::Duration;

use crate::Result;
use crate::contender::{Entry, Role};
use crate::stats::Sample;
use crate::workload::{Slice, Workload};

/// How long and how often to measure.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Rounds of `seq` and `par`; each contender runs one slice per round.
    pub(crate) rounds: usize,
    /// Rounds of `contended`, `open`, `handoff` and `crashed`.
    pub(crate) contended_rounds: usize,
    /// A `seq` or `par` slice.
    pub(crate) slice: Duration,
    /// A slice of `contended` or the other waiting workloads (longer: waits there can be
    /// retry delays, not round trips).
    pub(crate) contended_slice: Duration,
    /// An unmeasured slice per contender before the rounds: connects, loads scripts.
    pub(crate) warmup: Duration,
    /// Node counts to measure.
    pub(crate) nodes: Vec<usize>,
    /// Workloads to measure.
    pub(crate) workloads: Vec<Workload>,
    /// Keys of the contenders to run (`--only`); all when `None`.
    pub(crate) only: Option<Vec<String>>,
    /// Run on tokio's current-thread runtime (`--current-thread`).
    pub(crate) current_thread: bool,
}

impl Plan {
    /// About a minute and a half on two cores: many short slices, since noise from other
    /// processes comes in bursts and more rounds spread it more evenly.
    pub(crate) fn quick() -> Self {
        Self {
            rounds: 6,
            contended_rounds: 3,
            slice: Duration::from_millis(125),
            contended_slice: Duration::from_millis(800),
            warmup: Duration::from_millis(50),
            nodes: vec![1, 3, 5],
            workloads: Workload::ALL.to_vec(),
            only: None,
            current_thread: false,
        }
    }

    /// About ten minutes on two cores.
    pub(crate) fn full() -> Self {
        Self {
            rounds: 10,
            contended_rounds: 4,
            slice: Duration::from_millis(1000),
            contended_slice: Duration::from_millis(3000),
            warmup: Duration::from_millis(200),
            ..Self::quick()
        }
    }

    /// Builds the tokio runtime this plan asks for.
    pub(crate) fn runtime(&self) -> Result<tokio::runtime::Runtime> {
        let mut builder = if self.current_thread {
            tokio::runtime::Builder::new_current_thread()
        } else {
            tokio::runtime::Builder::new_multi_thread()
        };
        Ok(builder.enable_all().build()?)
    }

    /// The runtime's name, for the report.
    pub(crate) fn runtime_name(&self) -> &'static str {
        if self.current_thread {
            "current-thread"
        } else {
            "multi-thread"
        }
    }

    fn slice_for(&self, workload: Workload) -> Duration {
        if workload.waits() {
            self.contended_slice
        } else {
            self.slice
        }
    }

    fn rounds_for(&self, workload: Workload) -> usize {
        if workload.waits() {
            self.contended_rounds
        } else {
            self.rounds
        }
    }
}

/// The totals of one contender in one workload on one node count.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) workload: Workload,
    pub(crate) nodes: usize,
    pub(crate) role: Role,
    pub(crate) sample: Sample,
}

/// Runs every workload of `plan` on `entries` (all over the same `nodes` nodes).
pub(crate) async fn run_nodes(
    entries: &[Box<dyn Entry>],
    nodes: usize,
    plan: &Plan,
    prefix: &str,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &workload in &plan.workloads {
        let active: Vec<&dyn Entry> = entries
            .iter()
            .filter(|e| e.supports(workload))
            .map(|e| &**e)
            .collect();
        let prefix = format!("{prefix}{}:n{nodes}:", workload.label());
        let totals = run_workload(&active, workload, plan, &prefix, nodes).await?;
        rows.extend(active.iter().zip(totals).map(|(e, sample)| Row {
            workload,
            nodes,
            role: e.role(),
            sample,
        }));
    }
    Ok(rows)
}

/// Warms every contender up, then runs `plan.rounds` rounds, rotating who goes first.
async fn run_workload(
    active: &[&dyn Entry],
    workload: Workload,
    plan: &Plan,
    prefix: &str,
    nodes: usize,
) -> Result<Vec<Sample>> {
    for (i, entry) in active.iter().enumerate() {
        let slice = Slice {
            duration: plan.warmup,
            prefix: format!("{prefix}warm{i}:"),
            max_ops: u64::MAX,
        };
        entry.run(workload, &slice).await?;
    }
    let mut totals = vec![Sample::new()?; active.len()];
    let rounds = plan.rounds_for(workload);
    for round in 0..rounds {
        let name = workload.label();
        eprintln!("  {name} on {nodes} node(s): round {}/{rounds}", round + 1);
        for k in 0..active.len() {
            let i = (k + round) % active.len();
            let slice = Slice {
                duration: plan.slice_for(workload),
                prefix: format!("{prefix}r{round}c{i}:"),
                max_ops: u64::MAX,
            };
            totals[i].merge(&active[i].run(workload, &slice).await?)?;
        }
    }
    Ok(totals)
}
