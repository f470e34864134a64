//! What the bench's own servers say about themselves, from `INFO`: calls per command and
//! CPU time.

use std::collections::BTreeMap;
use std::time::Duration;

use redlock_conformance::Fleet;
use redlock_redis_rs::redis;

use crate::{Context as _, Result, fail};

/// Zeroes the command counts of every node (`CONFIG RESETSTAT`).
pub(crate) fn reset(fleet: &Fleet) -> Result<()> {
    for i in 0..fleet.len() {
        fleet.reset_stats(i).context("CONFIG RESETSTAT")?;
    }
    Ok(())
}

/// Calls per command since the last [`reset`], all nodes together. `INFO` and `CONFIG`
/// are left out: only the measurement sends them.
pub(crate) fn calls(fleet: &Fleet) -> Result<BTreeMap<String, u64>> {
    let mut total = BTreeMap::new();
    for i in 0..fleet.len() {
        for line in info(fleet, i, "commandstats")?.lines() {
            // cmdstat_evalsha:calls=3,usec=41,usec_per_call=13.67,...
            let Some((name, stats)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            if name == "info" || name.starts_with("config") {
                continue;
            }
            let calls = stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))
                .ok_or_else(|| fail(format!("no call count in {line:?}")))?;
            *total.entry(name.to_owned()).or_default() += calls.parse::<u64>().context(line)?;
        }
    }
    Ok(total)
}

/// The script calls among `calls`: what the lock sends.
pub(crate) fn script_calls(calls: &BTreeMap<String, u64>) -> u64 {
    ["evalsha", "eval"]
        .iter()
        .filter_map(|c| calls.get(*c))
        .sum()
}

/// `calls` as `N script calls; every command: name n, ...`. The count of every command
/// includes those the scripts ran (`redis.call`), which `INFO` does not tell apart.
pub(crate) fn describe(calls: &BTreeMap<String, u64>) -> String {
    let each: Vec<String> = calls.iter().map(|(c, n)| format!("{c} {n}")).collect();
    let scripts = script_calls(calls);
    format!("{scripts} script calls; every command: {}", each.join(", "))
}

/// CPU time the servers have used since they started, user and system, all nodes
/// together.
pub(crate) fn cpu(fleet: &Fleet) -> Result<Duration> {
    let mut seconds = 0.0;
    for i in 0..fleet.len() {
        for line in info(fleet, i, "cpu")?.lines() {
            if let Some(used) = line
                .strip_prefix("used_cpu_user:")
                .or_else(|| line.strip_prefix("used_cpu_sys:"))
            {
                seconds += used.trim().parse::<f64>().context(line)?;
            }
        }
    }
    Duration::try_from_secs_f64(seconds).context("server CPU time")
}

fn info(fleet: &Fleet, i: usize, section: &str) -> Result<String> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg(section);
    fleet.query(i, &cmd).context(&format!("INFO {section}"))
}
