//! What one slice (or the sum of a contender's slices) measured.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::Result;

/// Operations, failures, latencies, wall time and CPU time of some slices.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// Latency (or wait) of every operation, in nanoseconds.
    hist: Histogram<u64>,
    /// Successful operations.
    pub(crate) ops: u64,
    /// Failed operations.
    pub(crate) failures: u64,
    /// The first failure's message, to show what went wrong.
    pub(crate) first_error: Option<String>,
    /// Wall time, summed over slices.
    pub(crate) elapsed: Duration,
    /// CPU time of the whole client process, summed over slices.
    pub(crate) cpu: Duration,
}

impl Sample {
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            hist: Histogram::new(3)?,
            ops: 0,
            failures: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            cpu: Duration::ZERO,
        })
    }

    /// Records one successful operation that took `took`.
    pub(crate) fn record(&mut self, took: Duration) -> Result<()> {
        self.ops += 1;
        self.record_time(took)
    }

    /// Records time spent without an operation counted (a failed wait).
    pub(crate) fn record_time(&mut self, took: Duration) -> Result<()> {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        Ok(self.hist.record(nanos)?)
    }

    /// Counts one failed operation.
    pub(crate) fn fail(&mut self, error: impl std::fmt::Display) {
        self.failures += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }

    /// Adds the operations and latencies of `other`, but not its times (tasks of one
    /// slice overlap in time).
    pub(crate) fn merge_ops(&mut self, other: &Self) -> Result<()> {
        self.hist.add(&other.hist)?;
        self.ops += other.ops;
        self.failures += other.failures;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        Ok(())
    }

    /// Adds all of `other`, times included (slices follow each other).
    pub(crate) fn merge(&mut self, other: &Self) -> Result<()> {
        self.merge_ops(other)?;
        self.elapsed += other.elapsed;
        self.cpu += other.cpu;
        Ok(())
    }

    /// Successful operations per second of wall time.
    pub(crate) fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        }
    }

    /// CPU time of the process per successful operation.
    pub(crate) fn cpu_per_op(&self) -> Duration {
        match u32::try_from(self.ops) {
            Ok(ops) if ops > 0 => self.cpu / ops,
            _ => Duration::ZERO,
        }
    }

    /// The latency at `quantile` (0.0 to 1.0).
    pub(crate) fn quantile(&self, quantile: f64) -> Duration {
        Duration::from_nanos(self.hist.value_at_quantile(quantile))
    }

    /// The largest latency.
    pub(crate) fn max(&self) -> Duration {
        Duration::from_nanos(self.hist.max())
    }
}
