//! The markdown tables and the summary line.

use std::fmt::Write as _;
use std::time::Duration;

use crate::Result;
use crate::contender::{Client, Role};
use crate::run::Row;
use crate::workload::Workload;

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
    for row in sorted(rows, |r| r.workload != Workload::Contended) {
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

/// The `contended` table: acquisitions per second and the wait for each.
pub(crate) fn contended_table(rows: &[Row]) -> Result<String> {
    let mut t = String::new();
    writeln!(
        t,
        "| nodes | contender | acquisitions/s | p50 wait ms | p99 wait ms | max wait ms | CPU µs/acquisition | failed |"
    )?;
    writeln!(t, "|---:|---|---:|---:|---:|---:|---:|---:|")?;
    for row in sorted(rows, |r| r.workload == Workload::Contended) {
        let s = &row.sample;
        writeln!(
            t,
            "| {} | {} | {:.0} | {} | {} | {} | {:.1} | {} |",
            row.nodes,
            row.role.label(),
            s.throughput(),
            millis(s.quantile(0.5)),
            millis(s.quantile(0.99)),
            millis(s.max()),
            s.cpu_per_op().as_secs_f64() * 1e6,
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

/// The last line: worst ratios over every driver and node count, worst contended wait.
pub(crate) fn summary(rows: &[Row]) -> String {
    let drivers = || rows.iter().filter(|r| matches!(r.role, Role::Driver(_)));
    let of = |w: Workload| drivers().filter(move |r| r.workload == w);
    let seq_floor = of(Workload::Seq).filter_map(|r| ratio(rows, r, floor_of(r.role)));
    let par_floor = of(Workload::Par).filter_map(|r| ratio(rows, r, floor_of(r.role)));
    let seq_rslock = of(Workload::Seq).filter_map(|r| vs_rslock(rows, r));
    let wait = of(Workload::Contended).map(|r| r.sample.max().as_secs_f64() * 1e3);
    let num = |x: Option<f64>, digits: usize| x.map_or("n/a".into(), |x| format!("{x:.digits$}"));
    format!(
        "summary: seq_vs_floor={} par_vs_floor={} seq_vs_rslock={} contended_max_wait_ms={}",
        num(fold(seq_floor, f64::min), 2),
        num(fold(par_floor, f64::min), 2),
        num(fold(seq_rslock, f64::min), 2),
        num(fold(wait, f64::max), 1),
    )
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
    fn summary_takes_the_worst_driver_against_its_own_floor() {
        use Client::{Fred, RedisRs};
        let rows = vec![
            row(Workload::Seq, 1, Role::Floor(RedisRs), 100, 1),
            row(Workload::Seq, 1, Role::Floor(Fred), 50, 1),
            row(Workload::Seq, 1, Role::Driver(RedisRs), 90, 1),
            row(Workload::Seq, 1, Role::Driver(Fred), 40, 1),
            row(Workload::Seq, 1, Role::Rslock, 80, 1),
            row(Workload::Par, 1, Role::Floor(RedisRs), 10, 1),
            row(Workload::Par, 1, Role::Driver(RedisRs), 10, 1),
            row(Workload::Contended, 1, Role::Driver(RedisRs), 3, 7),
            row(Workload::Contended, 1, Role::Rslock, 3, 900),
        ];
        assert_eq!(
            summary(&rows),
            "summary: seq_vs_floor=0.80 par_vs_floor=1.00 seq_vs_rslock=0.50 \
             contended_max_wait_ms=7.0"
        );
    }

    #[test]
    fn summary_says_na_for_what_was_not_measured() {
        let rows = vec![row(Workload::Seq, 3, Role::Floor(Client::RedisRs), 1, 1)];
        assert_eq!(
            summary(&rows),
            "summary: seq_vs_floor=n/a par_vs_floor=n/a seq_vs_rslock=n/a \
             contended_max_wait_ms=n/a"
        );
    }

    #[test]
    fn tables_have_one_line_per_row_plus_header() {
        let rows = vec![
            row(Workload::Seq, 1, Role::Floor(Client::RedisRs), 5, 1),
            row(Workload::Contended, 1, Role::Rslock, 5, 1),
        ];
        assert_eq!(cycles_table(&rows).unwrap().lines().count(), 3);
        assert_eq!(contended_table(&rows).unwrap().lines().count(), 3);
    }
}
