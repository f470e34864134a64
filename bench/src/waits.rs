//! Two of the waiting workloads (`open`, with its second process, is in `open`), each over
//! two lock managers with connections (and, for redlock-rs, subscribers) of their own:
//!
//! - `handoff`: one manager holds, the other waits; the time from the release call to the
//!   waiter's grant, the lock's idle time while a waiter exists.
//! - `crashed`: a holder that never unlocks (keys set with a 30 ms TTL on every node);
//!   the time from the keys' expiry to the waiter's grant.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use redlock_redis_rs::redis;
use redlock_redis_rs::redis::aio::MultiplexedConnection;

use crate::measured::Locker;
use crate::stats::Sample;
use crate::workload::Slice;
use crate::{Context as _, Result, fail};

/// How long `handoff`'s waiter is given to be refused and start waiting.
const SETTLE: Duration = Duration::from_millis(10);
/// The TTL of the crashed holder's keys.
const CRASHED_TTL: Duration = Duration::from_millis(30);
/// A wait in `handoff` or `crashed` longer than this counts as failed.
const WAIT_LIMIT: Duration = Duration::from_secs(5);

/// Direct connections to every node, to plant a crashed holder's keys.
pub(crate) struct Planter(Vec<MultiplexedConnection>);

impl Planter {
    pub(crate) async fn connect(urls: &[String]) -> Result<Self> {
        let mut conns = Vec::with_capacity(urls.len());
        for url in urls {
            let client = redis::Client::open(url.as_str()).context(url)?;
            let conn = client.get_multiplexed_async_connection().await;
            conns.push(conn.context(url)?);
        }
        Ok(Self(conns))
    }

    /// Sets `key` on every node for `ttl`, as a holder that will never unlock.
    async fn plant(&self, key: &str, ttl: Duration) -> Result<()> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let sets = self.0.iter().map(|conn| {
            let mut conn = conn.clone();
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg("crashed-holder").arg("PX").arg(ms);
            async move { cmd.query_async::<()>(&mut conn).await }
        });
        for set in join_all(sets).await {
            set.context("plant a crashed holder")?;
        }
        Ok(())
    }
}

/// `handoff`: from the holder's release call to the other manager's grant.
pub(crate) async fn run_handoff<L: Locker>(lockers: [Arc<L>; 2], slice: &Slice) -> Result<Sample> {
    let key: Arc<str> = format!("{}handoff", slice.prefix).into();
    let [holder, waiter] = lockers;
    run_until(slice, || {
        let (holder, waiter, key) = (holder.clone(), waiter.clone(), key.clone());
        async move {
            let held = holder.acquire(&key).await?;
            let waiting = {
                let (waiter, key) = (waiter.clone(), key.clone());
                tokio::spawn(async move {
                    let held = waiter.acquire(&key).await;
                    (Instant::now(), held)
                })
            };
            tokio::time::sleep(SETTLE).await;
            let released = Instant::now();
            holder.release(held).await?;
            let mut waiting = waiting;
            let Ok(granted) = tokio::time::timeout(WAIT_LIMIT, &mut waiting).await else {
                // It must not take the lock in a later round.
                waiting.abort();
                return Err(fail("the waiter was not granted"));
            };
            let (at, held) = granted?;
            waiter.release(held?).await?;
            Ok(at.saturating_duration_since(released))
        }
    })
    .await
}

/// `crashed`: from the expiry of a crashed holder's keys to the waiter's grant.
pub(crate) async fn run_crashed<L: Locker>(
    locker: Arc<L>,
    planter: Arc<Planter>,
    slice: &Slice,
) -> Result<Sample> {
    let key: Arc<str> = format!("{}crashed", slice.prefix).into();
    run_until(slice, || {
        let (locker, planter, key) = (locker.clone(), planter.clone(), key.clone());
        async move {
            // Taken before the keys are set: they expire no earlier than this, so the wait
            // measured from here is never shorter than the real one.
            let expires = Instant::now() + CRASHED_TTL;
            planter.plant(&key, CRASHED_TTL).await?;
            let held = tokio::time::timeout(WAIT_LIMIT, locker.acquire(&key)).await;
            let granted = Instant::now();
            let held = held.map_err(|_| fail("the waiter was not granted"))??;
            locker.release(held).await?;
            Ok(granted.saturating_duration_since(expires))
        }
    })
    .await
}

/// Runs `once` again and again until the slice ends, recording what each run measured;
/// a failed run counts as a failure.
async fn run_until<F, Fut>(slice: &Slice, mut once: F) -> Result<Sample>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Duration>>,
{
    let mut sample = Sample::new()?;
    let start = Instant::now();
    while start.elapsed() < slice.duration {
        match once().await {
            Ok(took) => sample.record(took)?,
            Err(e) => sample.fail(e),
        }
    }
    sample.elapsed = start.elapsed();
    Ok(sample)
}
