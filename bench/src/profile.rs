//! `--profile`: a fixed number of `seq` cycles of one contender, nothing else, so that a
//! profiler sees only its hot path. Run it twice with different `--cycles` and subtract
//! to remove the setup: `valgrind --tool=dhat` gives allocations per cycle, `valgrind
//! --tool=callgrind` instructions per cycle.

use std::time::Duration;

use crate::contender::Entry;
use crate::workload::{Slice, Workload};
use crate::{Result, fail};

/// Cycles run before the measured ones: connects and caches scripts.
const WARMUP: u64 = 200;

/// Runs `cycles` seq cycles of the contender named `key` among `entries`.
pub(crate) async fn run(entries: Vec<Box<dyn Entry>>, key: &str, cycles: u64) -> Result<()> {
    let known: Vec<String> = entries.iter().map(|e| e.role().key()).collect();
    let entry = entries
        .into_iter()
        .find(|e| e.role().key() == key)
        .ok_or_else(|| fail(format!("no contender {key:?}; known: {}", known.join(", "))))?;
    let slice = |tag: &str, max_ops| Slice {
        duration: Duration::from_secs(24 * 3600),
        prefix: format!("rlprofile:{:08x}:{tag}:", std::process::id()),
        max_ops,
    };
    entry.run(Workload::Seq, &slice("warm", WARMUP)).await?;
    let s = entry.run(Workload::Seq, &slice("run", cycles)).await?;
    eprintln!(
        "profile: {key}: {} cycles ({} failed) in {:.0?}, CPU {:.1} µs/cycle, p50 {:.0?}",
        s.ops,
        s.failures,
        s.elapsed,
        s.cpu_per_op().as_secs_f64() * 1e6,
        s.quantile(0.5),
    );
    Ok(())
}
