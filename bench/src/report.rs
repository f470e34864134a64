//! The markdown tables and the summary line.

use std::fmt::Write as _;
use std::time::Duration;

use crate::Result;
use crate::contender::{Client, Role};
use crate::run::Row;
use crate::workload::{CONTENDED_TASKS, Workload};

/// The contender a row is compared with as its floor: its own client's.
fn floor_of(role: Role) -> Option<Role> {
    match role {
        Role::Driver(client) => Some(Role::Floor(client)),
        // rslock runs on redis-rs connections.
        Role::Rslock => Some(Role::Floor(Client::RedisRs)),
        Role::Floor(_) => None,
    }
}

fn find(rows: &[Row], workload: Workload, nodes: usize, role: Role) -> Option<&Row> {
    rows.iter()
        .find(|r| r.workload == workload && r.nodes == nodes && r.role == role)
}

/// `row`'s throughput over the throughput of `base` in the same workload and node count.
fn ratio(rows: &[Row], row: &Row, base: Option<Role>) -> Option<f64> {
    let base = find(rows, row.workload, row.nodes, base?)?;
    let b = base.sample.throughput();
    (b > 0.0).then(|| row.sample.throughput() / b)
}

fn vs_rslock(rows: &[Row], row: &Row) -> Option<f64> {
    matches!(row.role, Role::Driver(_))
        .then(|| ratio(rows, row, Some(Role::Rslock)))
        .flatten()
}

fn micros(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), |x| format!("{x:.2}"))
}

fn sorted(rows: &[Row], keep: impl Fn(&Row) -> bool) -> Vec<&Row> {
    let mut out: Vec<&Row> = rows.iter().filter(|r| keep(r)).collect();
    out.sort_by_key(|r| (r.workload, r.nodes, r.role));
    out
}

/// The `seq` and `par` table: throughput, latency of a lock+unlock cycle, CPU, ratios.
pub(crate) fn cycles_table(rows: &[Row]) -> Result<String> {
    let mut t = String::new();
    writeln!(
        t,
        "| workload | nodes | contender | cycles/s | p50 µs | p99 µs | max µs | CPU µs/cycle | vs floor | vs rslock | failed |"
    )?;
    writeln!(t, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for row in sorted(rows, |r| !r.workload.waits()) {
        let s = &row.sample;
        writeln!(
            t,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {:.1} | {} | {} | {} |",
            row.workload.label(),
            row.nodes,
            row.role.label(),
            s.throughput(),
            micros(s.quantile(0.5)),
            micros(s.quantile(0.99)),
            micros(s.max()),
            s.cpu_per_op().as_secs_f64() * 1e6,
            opt(ratio(rows, row, floor_of(row.role))),
            opt(vs_rslock(rows, row)),
            s.failures,
        )?;
    }
    Ok(t)
}

/// The p99 wait of a `contended` row over its FIFO bound: (tasks − 1) × the mean time
/// between acquisitions in the same slices, what every waiter would wait in a fair queue.
fn p99_vs_fifo(row: &Row) -> Option<f64> {
    let s = &row.sample;
    let ops = u32::try_from(s.ops).ok().filter(|&n| n > 0)?;
    let tasks = u32::try_from(CONTENDED_TASKS - 1).ok()?;
    let bound = (s.elapsed / ops * tasks).as_secs_f64();
    (bound > 0.0).then(|| s.quantile(0.99).as_secs_f64() / bound)
}

/// The `contended` table: acquisitions per second, the wait for each, and its fairness.
pub(crate) fn contended_table(rows: &[Row]) -> Result<String> {
    let mut t = String::new();
    writeln!(
        t,
        "| nodes | contender | acquisitions/s | p50 wait ms | p99 wait ms | max wait ms | p99 ÷ FIFO | CPU µs/acquisition | failed |"
    )?;
    writeln!(t, "|---:|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for row in sorted(rows, |r| r.workload == Workload::Contended) {
        let s = &row.sample;
        writeln!(
            t,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {:.1} | {} |",
            row.nodes,
            row.role.label(),
            s.throughput(),
            millis(s.quantile(0.5)),
            millis(s.quantile(0.99)),
            millis(s.max()),
            opt(p99_vs_fifo(row)),
            s.cpu_per_op().as_secs_f64() * 1e6,
            s.failures,
        )?;
    }
    Ok(t)
}

/// The `open`, `handoff` and `crashed` table: how long each wait took.
pub(crate) fn waits_table(rows: &[Row]) -> Result<String> {
    let mut t = String::new();
    writeln!(
        t,
        "| workload | nodes | contender | waits | p50 ms | p99 ms | max ms | failed |"
    )?;
    writeln!(t, "|---|---:|---|---:|---:|---:|---:|---:|")?;
    let keep = |r: &Row| r.workload.waits() && r.workload != Workload::Contended;
    for row in sorted(rows, keep) {
        let s = &row.sample;
        writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.workload.label(),
            row.nodes,
            row.role.label(),
            s.ops,
            millis(s.quantile(0.5)),
            millis(s.quantile(0.99)),
            millis(s.max()),
            s.failures,
        )?;
    }
    Ok(t)
}

/// One line per contender that had failures, with the first error.
pub(crate) fn failures(rows: &[Row]) -> Vec<String> {
    sorted(rows, |r| r.sample.failures > 0)
        .into_iter()
        .map(|r| {
            let first = r.sample.first_error.as_deref().unwrap_or("?");
            let (w, n, who) = (r.workload.label(), r.nodes, r.role.label());
            format!(
                "{who}, {w} on {n} node(s): {} failed; first: {first}",
                r.sample.failures
            )
        })
        .collect()
}

fn fold(values: impl Iterator<Item = f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    values.reduce(f)
}

/// The geometric mean of `values`, `None` when there are none (or one is not positive).
fn geometric_mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0_i32);
    for v in values {
        if v <= 0.0 {
            return None;
        }
        sum += v.ln();
        n += 1;
    }
    (n > 0).then(|| (sum / f64::from(n)).exp())
}

const DRIVERS: [Client; 3] = [Client::RedisRs, Client::Fred, Client::Deadpool];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The summary's figures, from this run's rows.
struct Figures<'a>(&'a [Row]);

impl Figures<'_> {
    fn of(&self, workload: Workload, role: Role) -> impl Iterator<Item = &Row> {
        self.0
            .iter()
            .filter(move |r| r.workload == workload && r.role == role)
    }

    /// The worst (lowest) driver's ratio to its own floor, over every node count.
    fn floor_min(&self, workload: Workload) -> Option<f64> {
        let ratios = DRIVERS.iter().flat_map(|&c| {
            let rows = self.of(workload, Role::Driver(c));
            rows.filter_map(|r| ratio(self.0, r, floor_of(r.role)))
        });
        fold(ratios, f64::min)
    }

    /// The worst driver's geometric mean, over node counts, of its ratio to its floor.
    fn floor_gm(&self, workload: Workload) -> Option<f64> {
        let means = DRIVERS.iter().filter_map(|&c| {
            let rows = self.of(workload, Role::Driver(c));
            geometric_mean(rows.filter_map(|r| ratio(self.0, r, floor_of(r.role))))
        });
        fold(means, f64::min)
    }

    /// The redis-rs driver's geometric mean, over node counts, of its ratio to rslock.
    fn rslock_gm(&self, workload: Workload) -> Option<f64> {
        let rows = self.of(workload, Role::Driver(Client::RedisRs));
        geometric_mean(rows.filter_map(|r| vs_rslock(self.0, r)))
    }

    /// The worst (highest) `figure` of the three drivers at the largest node count
    /// measured for `workload` (5 by default).
    fn worst_at_most_nodes(
        &self,
        workload: Workload,
        figure: fn(&Row) -> Option<f64>,
    ) -> Option<f64> {
        let nodes = self.most_nodes(workload)?;
        let values = DRIVERS.iter().filter_map(|&c| {
            let row = find(self.0, workload, nodes, Role::Driver(c))?;
            figure(row)
        });
        fold(values, f64::max)
    }

    fn rslock_at_most_nodes(
        &self,
        workload: Workload,
        figure: fn(&Row) -> Option<f64>,
    ) -> Option<f64> {
        let nodes = self.most_nodes(workload)?;
        find(self.0, workload, nodes, Role::Rslock).and_then(figure)
    }

    fn most_nodes(&self, workload: Workload) -> Option<usize> {
        let rows = self.0.iter().filter(|r| r.workload == workload);
        rows.map(|r| r.nodes).max()
    }
}

fn p99_ms(row: &Row) -> Option<f64> {
    (row.sample.ops > 0).then(|| ms(row.sample.quantile(0.99)))
}

fn max_ms(row: &Row) -> Option<f64> {
    (row.sample.ops > 0).then(|| ms(row.sample.max()))
}

/// The last line: ratios (worst and geometric means over node counts) and the waits.
pub(crate) fn summary(rows: &[Row]) -> String {
    use Workload::{Contended, Crashed, HandOff, Open, Par, Seq};
    let f = Figures(rows);
    let seq_rslock = DRIVERS.iter().flat_map(|&c| {
        f.of(Seq, Role::Driver(c))
            .filter_map(|r| vs_rslock(rows, r))
    });
    let num = |x: Option<f64>, digits: usize| x.map_or("n/a".into(), |x| format!("{x:.digits$}"));
    let fields = [
        ("seq_vs_floor", num(f.floor_min(Seq), 2)),
        ("par_vs_floor", num(f.floor_min(Par), 2)),
        ("seq_vs_rslock", num(fold(seq_rslock, f64::min), 2)),
        ("seq_vs_floor_gm", num(f.floor_gm(Seq), 2)),
        ("par_vs_floor_gm", num(f.floor_gm(Par), 2)),
        ("seq_vs_rslock_gm", num(f.rslock_gm(Seq), 2)),
        ("par_vs_rslock_gm", num(f.rslock_gm(Par), 2)),
        (
            "open_p99_wait_ms",
            num(f.worst_at_most_nodes(Open, p99_ms), 1),
        ),
        (
            "open_max_wait_ms",
            num(f.worst_at_most_nodes(Open, max_ms), 1),
        ),
        (
            "rslock_open_p99_wait_ms",
            num(f.rslock_at_most_nodes(Open, p99_ms), 1),
        ),
        (
            "closed_p99_vs_fifo",
            num(f.worst_at_most_nodes(Contended, p99_vs_fifo), 2),
        ),
        (
            "handoff_p99_ms",
            num(f.worst_at_most_nodes(HandOff, p99_ms), 1),
        ),
        (
            "crashed_holder_p99_ms",
            num(f.worst_at_most_nodes(Crashed, p99_ms), 1),
        ),
    ];
    let mut line = String::from("summary:");
    for (name, value) in fields {
        line.push_str(&format!(" {name}={value}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Sample;

    fn row(workload: Workload, nodes: usize, role: Role, ops: u64, wait_ms: u64) -> Row {
        let mut sample = Sample::new().unwrap();
        sample.elapsed = Duration::from_secs(1);
        for _ in 0..ops {
            sample.record(Duration::from_millis(wait_ms)).unwrap();
        }
        Row {
            workload,
            nodes,
            role,
            sample,
        }
    }

    #[test]
    fn summary_takes_worst_drivers_geometric_means_and_waits_at_most_nodes() {
        use Client::{Deadpool, Fred, RedisRs};
        use Workload::{Contended, Crashed, HandOff, Open, Par, Seq};
        let rows = vec![
            row(Seq, 1, Role::Floor(RedisRs), 100, 1),
            row(Seq, 1, Role::Floor(Fred), 50, 1),
            row(Seq, 1, Role::Driver(RedisRs), 90, 1),
            row(Seq, 1, Role::Driver(Fred), 40, 1),
            row(Seq, 1, Role::Rslock, 80, 1),
            row(Seq, 5, Role::Floor(RedisRs), 100, 1),
            row(Seq, 5, Role::Driver(RedisRs), 40, 1),
            row(Seq, 5, Role::Rslock, 100, 1),
            row(Par, 1, Role::Floor(RedisRs), 10, 1),
            row(Par, 1, Role::Driver(RedisRs), 10, 1),
            row(Par, 1, Role::Rslock, 20, 1),
            // At 3 nodes only: the waits are read at 5.
            row(Contended, 3, Role::Driver(RedisRs), 3, 5_000),
            row(Contended, 5, Role::Driver(RedisRs), 3, 7),
            row(Contended, 5, Role::Driver(Fred), 3, 900),
            row(Contended, 5, Role::Rslock, 3, 2_000),
            row(Open, 5, Role::Driver(RedisRs), 10, 4),
            row(Open, 5, Role::Driver(Deadpool), 10, 6),
            row(Open, 5, Role::Rslock, 10, 2),
            row(HandOff, 5, Role::Driver(Fred), 10, 1),
            row(Crashed, 5, Role::Driver(RedisRs), 10, 3),
        ];
        assert_eq!(
            summary(&rows),
            "summary: seq_vs_floor=0.40 par_vs_floor=1.00 seq_vs_rslock=0.40 \
             seq_vs_floor_gm=0.60 par_vs_floor_gm=1.00 seq_vs_rslock_gm=0.67 \
             par_vs_rslock_gm=0.50 open_p99_wait_ms=6.0 open_max_wait_ms=6.0 \
             rslock_open_p99_wait_ms=2.0 closed_p99_vs_fifo=0.39 handoff_p99_ms=1.0 \
             crashed_holder_p99_ms=3.0"
        );
    }

    #[test]
    fn summary_says_na_for_what_was_not_measured() {
        let rows = vec![row(Workload::Seq, 3, Role::Floor(Client::RedisRs), 1, 1)];
        assert_eq!(
            summary(&rows),
            "summary: seq_vs_floor=n/a par_vs_floor=n/a seq_vs_rslock=n/a \
             seq_vs_floor_gm=n/a par_vs_floor_gm=n/a seq_vs_rslock_gm=n/a \
             par_vs_rslock_gm=n/a open_p99_wait_ms=n/a open_max_wait_ms=n/a \
             rslock_open_p99_wait_ms=n/a closed_p99_vs_fifo=n/a handoff_p99_ms=n/a \
             crashed_holder_p99_ms=n/a"
        );
    }

    #[test]
    fn fifo_bound_is_tasks_minus_one_mean_gaps() {
        // 7 acquisitions in 1 s: a gap of 1/7 s; 8 tasks, so a FIFO bound of 7 gaps, 1 s.
        assert_eq!(CONTENDED_TASKS, 8);
        let r = row(
            Workload::Contended,
            1,
            Role::Driver(Client::RedisRs),
            7,
            600,
        );
        let ratio = p99_vs_fifo(&r).unwrap();
        assert!((ratio - 0.6).abs() < 0.01, "{ratio}");
    }

    #[test]
    fn tables_have_one_line_per_row_plus_header() {
        let rows = vec![
            row(Workload::Seq, 1, Role::Floor(Client::RedisRs), 5, 1),
            row(Workload::Contended, 1, Role::Rslock, 5, 1),
        ];
        assert_eq!(cycles_table(&rows).unwrap().lines().count(), 3);
        assert_eq!(contended_table(&rows).unwrap().lines().count(), 3);
        assert_eq!(waits_table(&rows).unwrap().lines().count(), 2);
    }
}
