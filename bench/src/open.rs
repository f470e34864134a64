//! `open`: lock requests arrive at random (Poisson) times at half the lock's capacity, on
//! one name, from two processes: this one and a child (`redlock-bench open-child …`, the
//! same binary) with a lock manager of the same kind, so that every wake-up crosses from
//! one process to the other through Redis. The wait is from a request's arrival to its
//! grant.
//!
//! The parent measures the lock's capacity first (uncontended acquire, hold and release
//! cycles), starts the child with half the arrival rate, waits for it to say `ready`, runs
//! its own half, and reads the child's waits from its standard output, one per line
//! (`ok NANOS` or `fail NANOS`).

use std::io::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use redlock_deadpool::DeadpoolPool;
use redlock_fred::FredPool;
use redlock_redis_rs::{RedisPool, Redlock};
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::locks::Rslock;
use crate::measured::Locker;
use crate::stats::Sample;
use crate::workload::{HOLD, Slice};
use crate::{Context as _, Result, fail};

/// The share of the lock's capacity the requests ask for.
const UTILIZATION: f64 = 0.5;
/// Uncontended cycles that measure the lock's service time (acquire, hold, release).
const CALIBRATION_CYCLES: u32 = 20;
/// How long a request may still wait after the last arrival.
const DRAIN: Duration = Duration::from_secs(5);
/// How long the child may take to start, connect and say `ready`.
const READY_LIMIT: Duration = Duration::from_secs(20);

/// A request's wait, or how long it waited before giving up.
type Outcome = std::result::Result<Duration, Duration>;

/// What the child needs to build a contender like the parent's.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The contender's key (`redlock-redis-rs`, …, `rslock`).
    pub(crate) contender: String,
    /// The nodes.
    pub(crate) urls: Vec<String>,
}

/// The child's half of one slice: `redlock-bench open-child …`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChildPlan {
    pub(crate) contender: String,
    pub(crate) urls: Vec<String>,
    pub(crate) key: String,
    /// Arrivals per second.
    pub(crate) rate: f64,
    /// How long requests arrive.
    pub(crate) duration: Duration,
}

impl ChildPlan {
    /// The child's command line, after the binary.
    pub(crate) fn args(&self) -> Vec<String> {
        vec![
            "open-child".into(),
            "--contender".into(),
            self.contender.clone(),
            "--urls".into(),
            self.urls.join(","),
            "--key".into(),
            self.key.clone(),
            "--rate".into(),
            self.rate.to_string(),
            "--slice-ms".into(),
            self.duration.as_millis().to_string(),
        ]
    }
}

/// Runs one `open` slice: half the arrivals through `locker`, half through the child.
pub(crate) async fn run_open<L: Locker>(
    locker: Arc<L>,
    peer: &Peer,
    slice: &Slice,
) -> Result<Sample> {
    let key = format!("{}open", slice.prefix);
    let service = calibrate(&*locker, &format!("{}calibrate", slice.prefix)).await?;
    let plan = ChildPlan {
        contender: peer.contender.clone(),
        urls: peer.urls.clone(),
        key: key.clone(),
        rate: UTILIZATION / service.as_secs_f64() / 2.0,
        duration: slice.duration,
    };
    let (mut child, mut lines) = start_child(&plan).await?;
    let deadline = Instant::now() + slice.duration;
    let ours = tokio::spawn(arrivals(locker, key.into(), plan.rate, deadline));
    let limit = slice.duration + DRAIN + READY_LIMIT;
    let theirs = tokio::time::timeout(limit, read_outcomes(&mut lines)).await;
    let theirs = theirs.map_err(|_| fail("the open-child did not finish"))??;
    let ours = ours.await??;
    let status = child.wait().await.context("open-child")?;
    if !status.success() {
        return Err(fail(format!("the open-child failed: {status}")));
    }
    let mut total = Sample::new()?;
    record(&mut total, ours)?;
    record(&mut total, theirs)?;
    total.elapsed = slice.duration;
    Ok(total)
}

/// Starts the child and waits until it says `ready`.
async fn start_child(plan: &ChildPlan) -> Result<(Child, Lines<BufReader<ChildStdout>>)> {
    let exe = std::env::current_exe().context("the benchmark's own path")?;
    let mut child = Command::new(exe)
        .args(plan.args())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("start the open-child")?;
    let stdout = child.stdout.take().ok_or_else(|| fail("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(READY_LIMIT, lines.next_line()).await;
    match ready.map_err(|_| fail("the open-child did not get ready"))? {
        Ok(Some(line)) if line == "ready" => Ok((child, lines)),
        other => Err(fail(format!("the open-child said {other:?}, not ready"))),
    }
}

/// The child's waits, up to the end of its output.
async fn read_outcomes(lines: &mut Lines<BufReader<ChildStdout>>) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    while let Some(line) = lines.next_line().await? {
        outcomes.push(parse_outcome(&line)?);
    }
    Ok(outcomes)
}

fn parse_outcome(line: &str) -> Result<Outcome> {
    let (kind, nanos) = line
        .split_once(' ')
        .ok_or_else(|| fail(format!("open-child line {line:?}")))?;
    let took = Duration::from_nanos(nanos.parse()?);
    match kind {
        "ok" => Ok(Ok(took)),
        "fail" => Ok(Err(took)),
        _ => Err(fail(format!("open-child line {line:?}"))),
    }
}

fn record(sample: &mut Sample, outcomes: Vec<Outcome>) -> Result<()> {
    for outcome in outcomes {
        match outcome {
            Ok(wait) => sample.record(wait)?,
            Err(waited) => {
                sample.record_time(waited)?;
                sample.fail(format!("no grant within {DRAIN:?} after the slice"));
            }
        }
    }
    Ok(())
}

/// The child: builds the contender, says `ready`, runs its half, prints its waits.
pub(crate) fn run_child(plan: &ChildPlan) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let urls = &plan.urls;
    runtime.block_on(async {
        match plan.contender.as_str() {
            "redlock-redis-rs" => serve(Redlock::new(RedisPool::from_urls(urls)?)?, plan).await,
            "redlock-fred" => serve(Redlock::new(FredPool::from_urls(urls)?)?, plan).await,
            "redlock-deadpool" => serve(Redlock::new(DeadpoolPool::from_urls(urls)?)?, plan).await,
            "rslock" => serve(Rslock::new(urls)?, plan).await,
            other => Err(fail(format!("open-child: unknown contender {other:?}"))),
        }
    })
}

async fn serve<L: Locker>(locker: L, plan: &ChildPlan) -> Result<()> {
    let locker = Arc::new(locker);
    // Connected, with the scripts loaded, before the parent starts the clock.
    let held = locker.acquire(&plan.key).await?;
    locker.release(held).await?;
    say("ready")?;
    let deadline = Instant::now() + plan.duration;
    let outcomes = arrivals(locker, plan.key.as_str().into(), plan.rate, deadline).await?;
    for outcome in outcomes {
        match outcome {
            Ok(wait) => say(&format!("ok {}", wait.as_nanos()))?,
            Err(waited) => say(&format!("fail {}", waited.as_nanos()))?,
        }
    }
    Ok(())
}

fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    Ok(out.flush()?)
}

/// The mean time of an uncontended acquire, hold and release.
async fn calibrate<L: Locker>(locker: &L, key: &str) -> Result<Duration> {
    let start = Instant::now();
    for _ in 0..CALIBRATION_CYCLES {
        let held = locker.acquire(key).await?;
        tokio::time::sleep(HOLD).await;
        locker.release(held).await?;
    }
    Ok(start.elapsed() / CALIBRATION_CYCLES)
}

/// Requests through `locker` at Poisson times of `rate` per second until `deadline`;
/// each one's wait from its arrival time.
async fn arrivals<L: Locker>(
    locker: Arc<L>,
    key: Arc<str>,
    rate: f64,
    deadline: Instant,
) -> Result<Vec<Outcome>> {
    let mut next = Instant::now();
    let mut requests = Vec::new();
    loop {
        // Exponential gaps: -ln(U) / rate, with U in (0, 1].
        let u = 1.0 - rand::random::<f64>();
        next += Duration::from_secs_f64(-u.ln() / rate);
        if next >= deadline {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        let (locker, key) = (locker.clone(), key.clone());
        let limit = deadline + DRAIN;
        requests.push(tokio::spawn(request(locker, key, next, limit)));
    }
    let mut outcomes = Vec::with_capacity(requests.len());
    for outcome in join_all(requests).await {
        outcomes.push(outcome?);
    }
    Ok(outcomes)
}

/// One request that arrived at `arrival`: its wait, or how long it waited before `limit`.
async fn request<L: Locker>(
    locker: Arc<L>,
    key: Arc<str>,
    arrival: Instant,
    limit: Instant,
) -> Outcome {
    let acquired = tokio::time::timeout_at(limit.into(), locker.acquire(&key)).await;
    let wait = arrival.elapsed();
    let Ok(Ok(held)) = acquired else {
        return Err(wait);
    };
    tokio::time::sleep(HOLD).await;
    // A failed release shows as longer waits for the requests after it.
    drop(locker.release(held).await);
    Ok(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_lines_parse_and_junk_is_an_error() {
        assert_eq!(
            parse_outcome("ok 1500").unwrap(),
            Ok(Duration::from_nanos(1500))
        );
        assert_eq!(
            parse_outcome("fail 7").unwrap(),
            Err(Duration::from_nanos(7))
        );
        assert!(parse_outcome("ready").is_err());
        assert!(parse_outcome("ok x").is_err());
        assert!(parse_outcome("maybe 3").is_err());
    }
}
