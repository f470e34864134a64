//! Benchmarks every redlock-rs driver against the round-trip floor (the same commands
//! sent straight through the same client) and against rslock 0.10, in one run.
//!
//! ```text
//! cargo run --release -p redlock-bench -- --quick   # about 75 s
//! cargo run --release -p redlock-bench              # about ten minutes
//! ```
//!
//! The binary starts its own `redis-server`s on loopback ports, runs the workloads `seq`,
//! `par` and `contended` on 1, 3 and 5 nodes with the contenders interleaved in rounds,
//! prints markdown tables, and ends with one `summary:` line of ratios from this run.
//!
//! `leases` instead holds many leases at once on three nodes and reports what their
//! renewals cost (see `leases.rs`):
//!
//! ```text
//! cargo run --release -p redlock-bench -- leases    # 10,000 leases held 20 s; about 25 s
//! ```

mod args;
mod contender;
mod floor;
mod leases;
mod locks;
mod measured;
mod observe;
mod open;
mod profile;
mod report;
mod run;
mod server;
mod setup;
mod stats;
mod waits;
mod workload;

use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use args::Args;
use run::{Plan, Row};

/// The error of anything in this binary; messages say what was being done.
pub(crate) type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

/// An error with `message` and no source.
pub(crate) fn fail(message: impl Into<String>) -> Box<dyn Error + Send + Sync> {
    message.into().into()
}

/// Says what was being done when an error happened.
pub(crate) trait Context<T> {
    /// Prefixes the error's message with `what`.
    fn context(self, what: &str) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|e| fail(format!("{what}: {e}")))
    }
}

fn main() -> ExitCode {
    match args::parse().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    if let Some(plan) = &args.leases {
        return leases::run(plan);
    }
    if let Some(plan) = &args.open_child {
        return open::run_child(plan);
    }
    if !args.observe.is_empty() {
        observe::install(&args.observe)?;
    }
    let started = Instant::now();
    let plan = &args.plan;
    let most = plan.nodes.iter().copied().max().unwrap_or(1);
    let fleet = setup::start_fleet(most)?;
    let urls = fleet.urls();
    let runtime = plan.runtime()?;
    if let Some((key, cycles)) = &args.profile {
        let n = plan.nodes.first().copied().unwrap_or(1);
        return runtime.block_on(async {
            setup::load_scripts(&urls).await?;
            let entries = setup::entries(urls.get(..n).unwrap_or(&urls)).await?;
            profile::run(entries, key, *cycles).await
        });
    }
    let rows = runtime.block_on(measure(plan, &urls))?;
    drop(runtime);
    drop(fleet);
    print_report(plan, &rows, started.elapsed())
}

async fn measure(plan: &Plan, urls: &[String]) -> Result<Vec<Row>> {
    setup::load_scripts(urls).await?;
    let prefix = format!("rlbench:{:08x}:", std::process::id());
    let mut rows = Vec::new();
    for &n in &plan.nodes {
        let nodes = urls
            .get(..n)
            .ok_or_else(|| fail(format!("only {} servers started", urls.len())))?;
        let mut entries = setup::entries(nodes).await?;
        if let Some(only) = &plan.only {
            entries.retain(|e| only.contains(&e.role().key()));
        }
        rows.extend(run::run_nodes(&entries, n, plan, &prefix).await?);
    }
    Ok(rows)
}

fn print_report(plan: &Plan, rows: &[Row], took: Duration) -> Result<()> {
    println!("machine: {}", setup::machine());
    println!(
        "plan: {} rounds of {:?} slices (contended: {} of {:?}), tokio {} runtime; took {:.0?}",
        plan.rounds,
        plan.slice,
        plan.contended_rounds,
        plan.contended_slice,
        plan.runtime_name(),
        took
    );
    println!();
    println!("{}", report::cycles_table(rows)?);
    println!("{}", report::contended_table(rows)?);
    println!("{}", report::waits_table(rows)?);
    for line in report::failures(rows) {
        println!("failures: {line}");
    }
    println!("{}", report::summary(rows));
    Ok(())
}
