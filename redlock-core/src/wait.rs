//! Acquiring with retries, and waiting well between them: for a release announced on any
//! node, the fallback delay, or the caller's deadline, whichever comes first.
//!
//! The wait loop: attempt; when another owner stood in the way, register an interest in
//! the lock's release channel, wait (bounded) until every node's listener subscribed it,
//! and attempt once more at once, since a release between the refusal and the
//! subscription went unheard; then wait for the first of a wake, the fallback delay (the
//! retry delay, capped by when the holder's keys expire, when the nodes said) and the
//! deadline. A wake is a hint only: the loop never depends on one arriving.

use std::time::Duration;

use tokio::time::Instant;

use crate::conn::Pool;
use crate::error::{Error, Result};
use crate::listen::{Hub, Interest};
use crate::round::{Held, Refusal, Target};
use crate::scripts::release_channel;

/// How long after a key's reported expiry a waiter retries: Redis counts whole
/// milliseconds.
const EXPIRY_SLACK: Duration = Duration::from_millis(1);

/// Acquires the lock in up to `tries` attempts, giving up at `deadline`; stops early when
/// an attempt's failure cannot pass by retrying. The attempt made right after subscribing
/// does not count against `tries`: it only closes the gap the subscription opened.
pub(crate) async fn acquire<P: Pool>(
    target: &Target<P>,
    hub: &Hub,
    tries: u32,
    deadline: Option<Instant>,
) -> Result<Held> {
    if tries == 0 {
        return Err(Error::config("tries must be at least 1"));
    }
    if passed(deadline) {
        return Err(target.deadline_exceeded(None));
    }
    yield_to_waiters(target, deadline).await;
    let mut interest: Option<Interest> = None;
    let mut attempt = 1;
    loop {
        if let Some(interest) = interest.as_mut() {
            interest.mark_seen();
        }
        let refusal = match target.attempt(deadline).await {
            Ok(held) => return Ok(held),
            Err(refusal) => refusal,
        };
        if passed(deadline) {
            return Err(target.deadline_exceeded(Some(refusal.error)));
        }
        if attempt >= tries || !refusal.error.is_retryable() {
            return Err(refusal.error);
        }
        if interest.is_none() && refusal.contended {
            let (new, live) = listen(target, hub, deadline).await;
            interest = new;
            if live {
                continue;
            }
        }
        let delay = fallback(target, attempt, &refusal);
        pause(target, delay, deadline, interest.as_mut(), refusal.error).await?;
        attempt += 1;
    }
}

/// Registers an interest in the lock's release channel and waits, within the per-node
/// timeout and the deadline, until every node's listener settled it; says whether any
/// node listens. No interest when notifications are off or there is no runtime.
async fn listen<P: Pool>(
    target: &Target<P>,
    hub: &Hub,
    deadline: Option<Instant>,
) -> (Option<Interest>, bool) {
    let settings = target.settings();
    if !settings.options.get_notify_release() {
        return (None, false);
    }
    let channel = release_channel(target.name());
    let timeout = settings.node_timeout;
    let Some(mut interest) = hub.register(target.nodes(), &channel, timeout) else {
        return (None, false);
    };
    let bound = Instant::now() + timeout;
    let bound = deadline.map_or(bound, |d| d.min(bound));
    let live = tokio::time::timeout_at(bound, interest.subscribed())
        .await
        .unwrap_or(false);
    (Some(interest), live)
}

/// The delay after failed attempt number `attempt`: the retry delay, capped by when the
/// holder's keys free a quorum (a waiter behind a crashed holder retries as soon as it
/// can win).
fn fallback<P: Pool>(target: &Target<P>, attempt: u32, refusal: &Refusal) -> Duration {
    let delay = target.retry_delay(attempt);
    refusal
        .frees_in
        .map_or(delay, |frees_in| delay.min(frees_in + EXPIRY_SLACK))
}

/// Waits `delay`, or less when woken, and fails at the deadline. Without an interest, a
/// delay that would end past the deadline fails at once (nothing could cut it short).
async fn pause<P: Pool>(
    target: &Target<P>,
    delay: Duration,
    deadline: Option<Instant>,
    interest: Option<&mut Interest>,
    last: Error,
) -> Result<()> {
    let Some(interest) = interest else {
        let wake = Instant::now().checked_add(delay);
        if deadline.is_some_and(|d| wake.is_none_or(|w| w >= d)) {
            return Err(target.deadline_exceeded(Some(last)));
        }
        tokio::time::sleep(delay).await;
        return Ok(());
    };
    let until_deadline = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = interest.woken() => Ok(()),
        () = tokio::time::sleep(delay) => Ok(()),
        () = until_deadline => Err(target.deadline_exceeded(Some(last))),
    }
}

/// When this manager's last release of the lock woke waiters, gives them the first try:
/// without it, a task that unlocks and locks again at once wins every time, before any
/// woken waiter's attempt arrives. Never past the deadline.
async fn yield_to_waiters<P: Pool>(target: &Target<P>, deadline: Option<Instant>) {
    if let Some(until) = target.nodes().handed_off_until(target.name()) {
        let until = deadline.map_or(until, |d| d.min(until));
        tokio::time::sleep_until(until).await;
    }
}

fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}
