//! Waiting for a release: waiters woken by the release's announcement, the fallback delay
//! when none comes, the subscribe-then-attempt order, reconnects, deadlines, cancellation,
//! unsubscribing, drivers without a subscriber, and the hand-off to waiters.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use async_trait::async_trait;
use common::*;
use redlock_core::memory::MemoryPool;
use redlock_core::scripts::release_channel;
use redlock_core::{ConnError, Guard, Instant, Mutex, Options, Pool, Redlock};

/// A waiter that would poll every 30 s: anything quicker came from a notification.
fn slow_poll() -> Options {
    fast().tries(100).retry_delay(ms(30_000), ms(30_000))
}

/// The same nodes, as another process's clients see them.
fn elsewhere(pools: &[MemoryPool]) -> Vec<MemoryPool> {
    pools.iter().map(MemoryPool::second_client).collect()
}

/// Another process holds the lock; it releases it after `after`.
async fn held_elsewhere(pools: &[MemoryPool], after: Duration) -> Mutex<MemoryPool> {
    let holder = mutex(&elsewhere(pools), fast());
    let guard = holder.lock().await.unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        guard.unlock().await.unwrap();
    });
    holder
}

fn subscriptions(pools: &[MemoryPool]) -> Vec<usize> {
    let channel = release_channel(KEY);
    pools.iter().map(|p| p.subscriptions(&channel)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_release_wakes_the_waiter_long_before_its_retry_delay() {
    let pools = warm_pools(3).await;
    held_elsewhere(&pools, ms(100)).await;
    let start = Instant::now();
    let guard = mutex(&pools, slow_poll()).lock().await.unwrap();
    assert_eq!(start.elapsed(), ms(100));
    assert_all_hold(&pools, guard.value());
}

#[tokio::test(start_paused = true)]
async fn a_lost_notification_falls_back_to_the_retry_delay() {
    let pools = warm_pools(3).await;
    pools.iter().for_each(|p| p.set_losing_messages(true));
    held_elsewhere(&pools, ms(100)).await;
    let start = Instant::now();
    let options = fast().tries(100).retry_delay(ms(1_000), ms(1_000));
    let guard = mutex(&pools, options).lock().await.unwrap();
    assert_eq!(start.elapsed(), ms(1_000));
    assert_all_hold(&pools, guard.value());
}

/// The release lands after the refused attempt was read on the nodes and before the
/// waiter subscribed: only the attempt made right after subscribing can see it.
#[tokio::test(start_paused = true)]
async fn a_release_between_the_refusal_and_the_subscription_is_not_missed() {
    let pools = warm_pools(3).await;
    pools.iter().for_each(|p| p.set_latency(ms(10)));
    held_elsewhere(&pools, ms(5)).await; // its unlock lands at 5 ms
    let start = Instant::now();
    let guard = mutex(&pools, slow_poll()).lock().await.unwrap();
    // Refused at 0 ms (the reply comes at 10 ms), subscribed at 10 ms, attempted again at
    // 10 ms and granted at 20 ms.
    assert_eq!(start.elapsed(), ms(20));
    assert_all_hold(&pools, guard.value());
}

/// A subscriber that fails may have missed a release: its waiters all try again.
#[tokio::test(start_paused = true)]
async fn a_lost_subscriber_wakes_every_waiter() {
    let pools = warm_pools(3).await;
    pools.iter().for_each(|p| p.set_losing_messages(true));
    held_elsewhere(&pools, ms(100)).await;
    let cut = pools.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(200)).await;
        cut.iter().for_each(MemoryPool::close_subscribers);
    });
    let start = Instant::now();
    let guard = mutex(&pools, slow_poll()).lock().await.unwrap();
    assert_eq!(start.elapsed(), ms(200));
    assert_all_hold(&pools, guard.value());
    // Nobody waits any more: no new subscriber is opened.
    tokio::time::sleep(ms(1_000)).await;
    let opened: Vec<u64> = pools.iter().map(MemoryPool::subscribers_opened).collect();
    assert_eq!(opened, [1, 1, 1]);
}

/// A release while no subscriber was open went unheard: opening a new one (250 ms after
/// the old one failed) wakes every waiter.
#[tokio::test(start_paused = true)]
async fn a_reopened_subscriber_wakes_every_waiter() {
    let pools = warm_pools(3).await;
    held_elsewhere(&pools, ms(300)).await;
    let cut = pools.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(200)).await;
        cut.iter().for_each(MemoryPool::close_subscribers);
    });
    let start = Instant::now();
    let guard = mutex(&pools, slow_poll()).lock().await.unwrap();
    assert_eq!(start.elapsed(), ms(450));
    assert_all_hold(&pools, guard.value());
    let opened: Vec<u64> = pools.iter().map(MemoryPool::subscribers_opened).collect();
    assert_eq!(opened, [2, 2, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_still_gives_up_at_its_deadline() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(60_000));
    let start = Instant::now();
    let err = mutex(&pools, slow_poll())
        .lock_until(start + ms(300))
        .await
        .unwrap_err();
    assert!(err.is_deadline(), "{err}");
    assert_eq!(start.elapsed(), ms(300));
    tokio::time::sleep(ms(1)).await;
    assert_eq!(subscriptions(&pools), [0, 0, 0]);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_stops_at_once_and_leaves_no_subscription() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(60_000));
    let start = Instant::now();
    let err = mutex(&pools, slow_poll())
        .lock_or_cancel(tokio::time::sleep(ms(150)))
        .await
        .unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert_eq!(start.elapsed(), ms(150));
    tokio::time::sleep(ms(1)).await;
    assert_eq!(subscriptions(&pools), [0, 0, 0]);
}

/// Waiters of one manager share one subscriber per node and one subscription per
/// channel, which goes when the last of them leaves.
#[tokio::test(start_paused = true)]
async fn waiters_share_one_subscription_which_ends_with_the_last() {
    let pools = warm_pools(3).await;
    let holder = held_elsewhere(&pools, ms(1_000)).await;
    let m = mutex(&pools, slow_poll());
    let (a, b) = (m.clone(), m.clone());
    let first = tokio::spawn(async move { a.lock().await.unwrap() });
    let second = tokio::spawn(async move { b.lock().await.unwrap() });
    tokio::time::sleep(ms(500)).await;
    assert_eq!(subscriptions(&pools), [1, 1, 1]);
    let opened: Vec<u64> = pools.iter().map(MemoryPool::subscribers_opened).collect();
    assert_eq!(opened, [1, 1, 1]);
    // At 1 s the holder releases: one waiter gets the lock, the other still waits.
    tokio::time::sleep(ms(600)).await;
    let (done, waiting) = if first.is_finished() {
        (first, second)
    } else {
        (second, first)
    };
    let guard: Guard<MemoryPool> = done.await.unwrap();
    assert!(!waiting.is_finished());
    assert_eq!(subscriptions(&pools), [1, 1, 1]);
    guard.unlock().await.unwrap();
    let guard = waiting.await.unwrap();
    tokio::time::sleep(ms(1)).await;
    assert_eq!(subscriptions(&pools), [0, 0, 0]);
    guard.unlock().await.unwrap();
    drop(holder);
}

/// A pool that forwards everything but the subscriber, as a driver without one would.
#[derive(Clone)]
struct NoSubscriber(MemoryPool);

#[async_trait]
impl Pool for NoSubscriber {
    type Conn = MemoryPool;

    async fn get(&self) -> Result<MemoryPool, ConnError> {
        Pool::get(&self.0).await
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_subscriber_waiters_poll_as_before() {
    let pools = warm_pools(3).await;
    held_elsewhere(&pools, ms(100)).await;
    let before = calls(&pools);
    let plain: Vec<NoSubscriber> = pools.iter().cloned().map(NoSubscriber).collect();
    let options = fast().tries(100).retry_delay(ms(1_000), ms(1_000));
    let m = Redlock::with_options(plain, options)
        .unwrap()
        .mutex(KEY)
        .unwrap();
    let start = Instant::now();
    let guard = m.lock().await.unwrap();
    assert_eq!(start.elapsed(), ms(1_000));
    // Two attempts, the second after the delay: no attempt for a subscription. (The
    // holder's unlock is the third call on each node.)
    let after: Vec<u64> = before.iter().map(|c| c + 3).collect();
    assert_eq!(calls(&pools), after);
    guard.unlock().await.unwrap();
}

/// A release that woke waiters holds its own manager back for about two round trips, so
/// that a waiter's attempt gets there first; one that woke nobody does not. (`try_lock`
/// never waits; the lock below tries twice and polls, so that its refusal shows when its
/// attempt went out.)
#[tokio::test(start_paused = true)]
async fn a_release_that_woke_waiters_gives_them_the_first_try() {
    let pools = warm_pools(3).await;
    pools.iter().for_each(|p| p.set_latency(ms(5)));
    let ours = manager(&pools, fast());
    let m = ours.mutex(KEY).unwrap();
    let polling = fast().tries(2).notify_release(false);
    let again = ours
        .mutex_with(KEY, polling.retry_delay(ms(30_000), ms(30_000)))
        .unwrap();
    // Nobody waits: a new attempt goes out at once.
    m.lock().await.unwrap().unlock().await.unwrap();
    let start = Instant::now();
    let guard = m.lock().await.unwrap();
    assert_eq!(start.elapsed(), ms(5));
    // A waiter elsewhere: the release reaches it, and this manager waits 2 × 5 ms.
    let waiter = mutex(&elsewhere(&pools), slow_poll());
    let waiting = tokio::spawn(async move { waiter.lock().await.unwrap() });
    tokio::time::sleep(ms(100)).await;
    guard.unlock().await.unwrap();
    let start = Instant::now();
    let err = again.lock_until(start + ms(100)).await.unwrap_err();
    assert!(err.is_deadline(), "{err}");
    assert_eq!(
        start.elapsed(),
        ms(10 + 5),
        "sent after the hand-off window"
    );
    let theirs = waiting.await.unwrap();
    assert_all_hold(&pools, theirs.value());
}

/// With notifications switched off, a release announces nothing and waiters poll.
#[tokio::test(start_paused = true)]
async fn notifications_off_publish_nothing_and_subscribe_nothing() {
    let pools = warm_pools(3).await;
    let before: Vec<usize> = pools.iter().map(|p| p.published().len()).collect();
    let quiet = fast().notify_release(false);
    let holder = mutex(&elsewhere(&pools), quiet.clone())
        .lock()
        .await
        .unwrap();
    let m = mutex(&pools, quiet.tries(100).retry_delay(ms(1_000), ms(1_000)));
    tokio::spawn(async move {
        tokio::time::sleep(ms(100)).await;
        holder.unlock().await.unwrap();
    });
    let start = Instant::now();
    let guard = m.lock().await.unwrap();
    assert_eq!(start.elapsed(), ms(1_000));
    let opened: Vec<u64> = pools.iter().map(MemoryPool::subscribers_opened).collect();
    assert_eq!(opened, [0, 0, 0]);
    let after: Vec<usize> = pools.iter().map(|p| p.published().len()).collect();
    assert_eq!(after, before);
    guard.unlock().await.unwrap();
}

/// On a busy lock a waiter is woken by release after release; the attempts it makes
/// then do not count against `tries`, so it gives up after as many retry delays as a
/// polling one, not after `tries` releases.
#[tokio::test(start_paused = true)]
async fn woken_attempts_do_not_count_against_tries() {
    let pools = warm_pools(3).await;
    occupy(&pools, ms(60_000));
    let busy = pools.clone();
    tokio::spawn(async move {
        // Ten releases announced, each followed at once by another owner's grant.
        for release in 0..10 {
            tokio::time::sleep(ms(100)).await;
            for p in &busy {
                p.publish(&release_channel(KEY), &format!("{release}"));
            }
        }
        tokio::time::sleep(ms(100)).await;
        busy.iter().for_each(|p| p.expire_now(KEY));
        for p in &busy {
            p.publish(&release_channel(KEY), "last");
        }
    });
    let before = calls(&pools);
    let start = Instant::now();
    let options = fast().tries(3).retry_delay(ms(30_000), ms(30_000));
    let guard = mutex(&pools, options).lock().await.unwrap();
    assert_eq!(start.elapsed(), ms(1_100));
    // The first attempt, the one after subscribing, ten woken ones and the last.
    let after: Vec<u64> = before.iter().map(|c| c + 13).collect();
    assert_eq!(calls(&pools), after);
    assert_all_hold(&pools, guard.value());
}

/// A refusal that set some keys but no quorum may be a split vote between waiters, after
/// which nobody holds the lock and nothing is announced: the waiter retries once, early;
/// a second split in a row (here: a holder with a quorum while one node is free) waits.
#[tokio::test(start_paused = true)]
async fn a_split_vote_is_retried_once_early() {
    let pools = warm_pools(3).await;
    pools.iter().for_each(|p| p.set_latency(ms(10)));
    occupy(&pools[1..], ms(60_000));
    let before = calls(&pools);
    let m = mutex(&pools, slow_poll());
    let waiting = tokio::spawn(async move { m.lock().await });
    tokio::time::sleep(ms(1_000)).await;
    assert!(!waiting.is_finished());
    // Attempt 1, the one after subscribing (a split), the early one (a split again); then
    // nothing until the 30 s fallback. Node 0 also had each split's key released.
    let sent: Vec<u64> = calls(&pools)
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(sent, [6, 3, 3]);
    waiting.abort();
}

/// A release wakes only the longest waiter of a manager (all of them would split the
/// votes between them): waiters of one manager get the lock in the order they came.
#[tokio::test(start_paused = true)]
async fn waiters_of_one_manager_get_the_lock_in_arrival_order() {
    let pools = warm_pools(3).await;
    held_elsewhere(&pools, ms(100)).await;
    let m = mutex(&pools, slow_poll());
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..4_u64)
        .map(|i| {
            let (m, order) = (m.clone(), order.clone());
            tokio::spawn(async move {
                tokio::time::sleep(ms(10 * i)).await;
                let guard = m.lock().await.unwrap();
                order.lock().unwrap().push(i);
                tokio::time::sleep(ms(50)).await;
                guard.unlock().await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
}

/// A newcomer that finds waiters of its manager queued for the lock joins them at the
/// back without an attempt of its own (it would race them and split the votes).
#[tokio::test(start_paused = true)]
async fn a_newcomer_queues_behind_its_managers_waiters_without_racing_them() {
    let pools = warm_pools(3).await;
    held_elsewhere(&pools, ms(100)).await;
    let m = mutex(&pools, slow_poll());
    let first = m.clone();
    let first = tokio::spawn(async move {
        let guard = first.lock().await.unwrap();
        tokio::time::sleep(ms(50)).await;
        guard.unlock().await.unwrap();
        Instant::now()
    });
    tokio::time::sleep(ms(10)).await;
    let before = calls(&pools);
    let newcomer = tokio::spawn(async move {
        let guard = m.lock().await.unwrap();
        (Instant::now(), guard)
    });
    tokio::time::sleep(ms(50)).await;
    assert_eq!(
        calls(&pools),
        before,
        "the newcomer sent an attempt while queued"
    );
    let released = first.await.unwrap();
    let (granted, guard) = newcomer.await.unwrap();
    assert_eq!(granted, released);
    assert_all_hold(&pools, guard.value());
}
