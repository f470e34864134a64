//! The command line.

use std::time::Duration;

use crate::leases::LeasePlan;
use crate::open::ChildPlan;
use crate::run::Plan;
use crate::workload::Workload;
use crate::{Result, fail};

const USAGE: &str = "\
usage: redlock-bench [--quick] [--rounds N] [--slice-ms MS] [--contended-rounds N]
                     [--contended-ms MS] [--nodes 1,3,5]
                     [--workloads seq,par,contended,open,handoff,crashed]
                     [--only KEY,...] [--current-thread] [--profile KEY --cycles N]
                     [--observe tracing,metrics]
       redlock-bench leases [--count N] [--expiry-ms MS] [--hold-s S] [--concurrency N]

  --quick               many short slices: about a minute and a half on two cores
  --rounds N            rounds of seq and par (each contender runs one slice per round)
  --slice-ms MS         length of one seq or par slice
  --contended-rounds N  rounds of contended, open, handoff and crashed
  --contended-ms MS     length of one slice of those
  --nodes LIST          node counts to measure, comma-separated
  --workloads LIST      workloads to measure, comma-separated
  --only KEYS           contenders to run, comma-separated: floor-redis-rs, floor-fred,
                        floor-deadpool, redlock-redis-rs, redlock-fred, redlock-deadpool,
                        rslock
  --current-thread      run on tokio's current-thread runtime, not the multi-thread one
  --profile KEY         run only N seq cycles of one contender on the first --nodes
                        count, for a profiler (valgrind, perf): no rounds, no table
  --cycles N            cycles for --profile (default 10000)
  --observe LIST        record what the lock does: `tracing` (a subscriber at INFO),
                        `tracing-debug` (at DEBUG), `metrics` (a recorder); needs
                        `--features observe`

  leases                hold N leases at once on 3 nodes (default: 10000, expiry 5000 ms,
                        held 20 s, acquired 64 at a time); fails if any is lost";

/// What to do.
#[derive(Debug)]
pub(crate) struct Args {
    pub(crate) plan: Plan,
    /// `--profile KEY` and its cycle count.
    pub(crate) profile: Option<(String, u64)>,
    /// `leases ...`: the lease run instead of the benchmark.
    pub(crate) leases: Option<LeasePlan>,
    /// `open-child ...`: the second process of an `open` slice (started by the benchmark).
    pub(crate) open_child: Option<ChildPlan>,
    /// `--observe`: install a subscriber (`tracing`) and a recorder (`metrics`).
    pub(crate) observe: Vec<String>,
}

/// Options as given, before defaults are filled in.
#[derive(Default)]
struct Given {
    quick: bool,
    rounds: Option<usize>,
    contended_rounds: Option<usize>,
    slice: Option<Duration>,
    contended: Option<Duration>,
    nodes: Option<Vec<usize>>,
    workloads: Option<Vec<Workload>>,
    current_thread: bool,
    only: Option<Vec<String>>,
    profile: Option<String>,
    cycles: Option<u64>,
    observe: Vec<String>,
    leases: Option<LeasePlan>,
    open_child: Option<ChildPlan>,
}

/// Parses the process's arguments.
pub(crate) fn parse() -> Result<Args> {
    let given = read(lexopt::Parser::from_env())?;
    let base = if given.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    let plan = Plan {
        rounds: given.rounds.unwrap_or(base.rounds),
        contended_rounds: given.contended_rounds.unwrap_or(base.contended_rounds),
        slice: given.slice.unwrap_or(base.slice),
        contended_slice: given.contended.unwrap_or(base.contended_slice),
        nodes: given.nodes.unwrap_or_else(|| base.nodes.clone()),
        workloads: given.workloads.unwrap_or_else(|| base.workloads.clone()),
        only: given.only,
        current_thread: given.current_thread,
        ..base
    };
    if plan.rounds == 0 || plan.contended_rounds == 0 {
        return Err(fail("--rounds and --contended-rounds must be at least 1"));
    }
    let cycles = given.cycles.unwrap_or(10_000);
    let profile = given.profile.map(|key| (key, cycles));
    Ok(Args {
        plan,
        profile,
        leases: given.leases,
        open_child: given.open_child,
        observe: given.observe,
    })
}

fn read(mut parser: lexopt::Parser) -> Result<Given> {
    use lexopt::prelude::*;
    let mut g = Given::default();
    let mut first = true;
    while let Some(arg) = parser.next()? {
        match arg {
            Value(mode) if first && mode == "leases" => g.leases = Some(leases(&mut parser)?),
            Value(mode) if first && mode == "open-child" => {
                g.open_child = Some(open_child(&mut parser)?);
            }
            Long("quick") => g.quick = true,
            Long("rounds") => g.rounds = Some(parser.value()?.parse()?),
            Long("contended-rounds") => g.contended_rounds = Some(parser.value()?.parse()?),
            Long("slice-ms") => g.slice = Some(millis(&mut parser)?),
            Long("contended-ms") => g.contended = Some(millis(&mut parser)?),
            Long("nodes") => g.nodes = Some(nodes(&parser.value()?.string()?)?),
            Long("current-thread") => g.current_thread = true,
            Long("workloads") => g.workloads = Some(workloads(&parser.value()?.string()?)?),
            Long("only") => g.only = Some(list(&parser.value()?.string()?)),
            Long("profile") => g.profile = Some(parser.value()?.string()?),
            Long("cycles") => g.cycles = Some(parser.value()?.parse()?),
            Long("observe") => g.observe = list(&parser.value()?.string()?),
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(fail(format!("{}\n{USAGE}", arg.unexpected()))),
        }
        first = false;
    }
    Ok(g)
}

/// The options of `leases`, up to the end of the line.
fn leases(parser: &mut lexopt::Parser) -> Result<LeasePlan> {
    use lexopt::prelude::*;
    let mut plan = LeasePlan::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("count") => plan.count = parser.value()?.parse()?,
            Long("expiry-ms") => plan.expiry = millis(parser)?,
            Long("hold-s") => plan.hold = Duration::from_secs(parser.value()?.parse()?),
            Long("concurrency") => plan.concurrency = parser.value()?.parse()?,
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(fail(format!("{}\n{USAGE}", arg.unexpected()))),
        }
    }
    if plan.count == 0 || plan.concurrency == 0 || plan.hold.is_zero() {
        return Err(fail(
            "leases: --count, --concurrency and --hold-s must be at least 1",
        ));
    }
    Ok(plan)
}

/// The options of `open-child`, which the benchmark writes itself (`ChildPlan::args`).
fn open_child(parser: &mut lexopt::Parser) -> Result<ChildPlan> {
    use lexopt::prelude::*;
    let (mut contender, mut urls, mut key, mut rate, mut duration) = (None, None, None, None, None);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("contender") => contender = Some(parser.value()?.string()?),
            Long("urls") => urls = Some(list(&parser.value()?.string()?)),
            Long("key") => key = Some(parser.value()?.string()?),
            Long("rate") => rate = Some(parser.value()?.parse::<f64>()?),
            Long("slice-ms") => duration = Some(millis(parser)?),
            _ => return Err(fail(format!("open-child: {}", arg.unexpected()))),
        }
    }
    let missing = || fail("open-child needs --contender, --urls, --key, --rate and --slice-ms");
    let rate = rate
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(missing)?;
    Ok(ChildPlan {
        contender: contender.ok_or_else(missing)?,
        urls: urls.ok_or_else(missing)?,
        key: key.ok_or_else(missing)?,
        rate,
        duration: duration.ok_or_else(missing)?,
    })
}

fn millis(parser: &mut lexopt::Parser) -> Result<Duration> {
    use lexopt::ValueExt as _;
    Ok(Duration::from_millis(parser.value()?.parse()?))
}

fn list(text: &str) -> Vec<String> {
    text.split(',').map(|s| s.trim().to_string()).collect()
}

fn nodes(text: &str) -> Result<Vec<usize>> {
    let nodes = text
        .split(',')
        .map(|n| n.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()?;
    if nodes.is_empty() || nodes.contains(&0) {
        return Err(fail("--nodes wants positive counts, e.g. 1,3,5"));
    }
    Ok(nodes)
}

fn workloads(text: &str) -> Result<Vec<Workload>> {
    list(text)
        .iter()
        .map(|w| match w.as_str() {
            "seq" => Ok(Workload::Seq),
            "par" => Ok(Workload::Par),
            "contended" => Ok(Workload::Contended),
            "open" => Ok(Workload::Open),
            "handoff" => Ok(Workload::HandOff),
            "crashed" => Ok(Workload::Crashed),
            other => Err(fail(format!(
                "unknown workload {other:?}: seq, par, contended, open, handoff, crashed"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists_parse_and_reject_zero() {
        assert_eq!(nodes("1, 3,5").unwrap(), vec![1, 3, 5]);
        assert!(nodes("0").is_err());
        assert!(nodes("one").is_err());
    }

    #[test]
    fn leases_mode_takes_its_own_options_only_first() {
        let parse = |args: &[&str]| read(lexopt::Parser::from_args(args.iter().copied()));
        let given = parse(&["leases", "--count", "5", "--hold-s", "3"]).unwrap();
        let plan = given.leases.unwrap();
        assert_eq!((plan.count, plan.hold), (5, Duration::from_secs(3)));
        assert_eq!(plan.expiry, LeasePlan::default().expiry);
        assert!(parse(&["leases", "--quick"]).is_err());
        assert!(parse(&["--quick", "leases"]).is_err());
        assert!(parse(&["leases", "--count", "0"]).is_err());
    }

    #[test]
    fn open_child_reads_back_the_arguments_the_parent_writes() {
        let plan = ChildPlan {
            contender: "redlock-fred".into(),
            urls: vec!["redis://127.0.0.1:1/".into(), "redis://127.0.0.1:2/".into()],
            key: "rlbench:open".into(),
            rate: 123.5,
            duration: Duration::from_millis(800),
        };
        let args = plan.args();
        let given = read(lexopt::Parser::from_args(args.iter().map(String::as_str))).unwrap();
        assert_eq!(given.open_child, Some(plan));
        let bad = ["open-child", "--contender", "rslock", "--rate", "0"];
        assert!(read(lexopt::Parser::from_args(bad)).is_err());
    }

    #[test]
    fn workload_lists_parse_and_reject_unknown_names() {
        let parsed = workloads("seq,contended").unwrap();
        assert_eq!(parsed, vec![Workload::Seq, Workload::Contended]);
        assert!(workloads("seq,burst").is_err());
    }
}
