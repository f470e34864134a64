//! Acquiring with retries, and waiting well between them: for a release announced on any
//! node, the fallback delay, or the caller's deadline, whichever comes first.
//!
//! The wait loop: attempt; when another owner stood in the way, register an interest in
//! the lock's release channel, wait (bounded) until enough nodes listen on it (see
//! `listen`), and attempt once more at once, since a release between the refusal and the
//! subscription went unheard; then wait for the first of a wake, the fallback delay (the
//! retry delay, capped by when the holder's keys expire, when the nodes said) and the
//! deadline. A wake is a hint only: the loop never depends on one arriving.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::conn::Pool;
use crate::error::{Error, Result};
use crate::listen::{Hub, Interest};
use crate::observe::{self, Acquiring};
use crate::round::{Held, Refusal, Target};
use crate::scripts::release_channel;

/// How long after a key's reported expiry a waiter retries: Redis counts whole
/// milliseconds.
const EXPIRY_SLACK: Duration = Duration::from_millis(1);

/// The shortest round trip the early retry after a split vote is scaled from.
const SPLIT_MIN: Duration = Duration::from_micros(100);
/// The early retry after a split vote comes within this many of the attempt's round trips.
const SPLIT_WINDOW: u32 = 4;

/// How many attempts in a row a stale fencing token may send back at once. One is
/// enough unless other managers take the lock in between; past this the attempt counts
/// and the waiter waits as after any refusal.
const STALE_RETRIES: u32 = 3;

/// Acquires the lock in up to `tries` attempts, giving up at `deadline`; stops early when
/// an attempt's failure cannot pass by retrying.
///
/// `tries` counts the attempts made when a fallback delay ran out (and the first), so
/// that a waiter gives up after as many retry delays as a polling one. Attempts a waiter
/// makes early (right after subscribing, when woken, after a split vote) come on top and
/// do not count: on a busy lock, a waiter is woken by release after release, and counting
/// those would make it give up after `tries` releases instead of `tries` delays. One
/// attempt (`tries` 1, `try_lock`) is made at once, with no wait of any kind; a fenced
/// attempt whose token was stale is made again at once as part of the same try.
///
/// `call` names the API call for what is recorded of it (`lock`, `try_lock`,
/// `lock_until`: see `observe`).
pub(crate) async fn acquire<P: Pool>(
    target: &Target<P>,
    hub: &Hub,
    tries: u32,
    deadline: Option<Instant>,
    call: &'static str,
) -> Result<Held> {
    // Declared before the call, so that a call dropped part-way is dropped before the
    // recording, which then records it as cancelled.
    let attempts = AtomicU32::new(0);
    let recording = Acquiring::start(target.name(), call, &attempts, target.settings().quorum);
    let acquired = acquire_in(target, hub, tries, deadline, &attempts);
    let result = observe::instrument(&recording.span, acquired).await;
    recording.end(&result);
    result
}

/// [`acquire`], counting its attempts in `attempts`.
async fn acquire_in<P: Pool>(
    target: &Target<P>,
    hub: &Hub,
    tries: u32,
    deadline: Option<Instant>,
    attempts: &AtomicU32,
) -> Result<Held> {
    if tries == 0 {
        return Err(Error::config("tries must be at least 1"));
    }
    if passed(deadline) {
        return Err(target.deadline_exceeded(None));
    }
    if tries > 1 {
        yield_to_waiters(target, deadline).await;
    }
    let mut wait = Wait::default();
    let mut counted = 0;
    let mut counts = true;
    let mut stale_in_a_row = 0;
    if tries > 1 && queue_behind(target, hub, deadline, &mut wait).await {
        counts = wait.pause(target, deadline, None).await?;
    }
    loop {
        if let Some(interest) = wait.interest.as_mut() {
            interest.mark_seen();
        }
        let attempt = attempts.fetch_add(1, Ordering::Relaxed) + 1;
        let refusal = match target.attempt(deadline).await {
            Ok(held) => {
                // Wakes that came during the attempt were for the release it won on:
                // passing them on would send the next waiter to a held lock.
                if let Some(interest) = wait.interest.as_mut() {
                    interest.mark_seen();
                }
                return Ok(held);
            }
            Err(refusal) => refusal,
        };
        observe::attempt_refused(attempt, &refusal.error);
        if passed(deadline) {
            return Err(target.deadline_exceeded(Some(refusal.error)));
        }
        // A stale token is this manager's out-of-date view of the fences, not another
        // owner: propose again at once, above every fence the nodes reported.
        stale_in_a_row = if refusal.stale { stale_in_a_row + 1 } else { 0 };
        let retry_stale = refusal.stale && !refusal.contended && refusal.error.is_retryable();
        if retry_stale && stale_in_a_row <= STALE_RETRIES {
            continue;
        }
        counted += u32::from(counts);
        if counted >= tries || !refusal.error.is_retryable() {
            return Err(refusal.error);
        }
        if wait.interest.is_none()
            && refusal.contended
            && listen(target, hub, deadline, &mut wait).await
        {
            counts = false;
            continue;
        }
        wait.plan(target, counted, counts, &refusal);
        counts = wait.pause(target, deadline, Some(refusal.error)).await?;
    }
}

/// A waiter's state between attempts.
#[derive(Default)]
struct Wait {
    /// The registration on the lock's release channel, once another owner stood in the
    /// way (and notifications are on).
    interest: Option<Interest>,
    /// When the fallback delay runs out: the next counted attempt.
    fallback_at: Option<Instant>,
    /// When to try early after a split vote, if sooner than the fallback.
    early_at: Option<Instant>,
    /// Whether the last refusal was a split vote.
    split: bool,
    /// Listening failed in this call: poll to its end.
    polls: bool,
}

impl Wait {
    /// Plans the wait after a refusal: a new fallback delay after counted attempt number
    /// `counted` (if `counts`), else the running one, cut short by when the holder's keys
    /// expire; and, when waiting for announcements, an early retry after a split vote.
    fn plan<P: Pool>(&mut self, target: &Target<P>, counted: u32, counts: bool, refusal: &Refusal) {
        let now = Instant::now();
        self.fallback_at = match self.fallback_at {
            Some(at) if !counts => {
                let frees = refusal
                    .frees_in
                    .and_then(|f| now.checked_add(f + EXPIRY_SLACK));
                Some(frees.map_or(at, |f| f.min(at)))
            }
            _ => Some(later(now, fallback(target, counted, refusal))),
        };
        self.early_at = None;
        if !refusal.split {
            self.split = false;
        } else if self.interest.is_some() && !std::mem::replace(&mut self.split, true) {
            // Waiters woken together may split the nodes so that none gets a quorum; then
            // nobody holds the lock and no release will be announced. Retry once, at a
            // random time within a few round trips; a second split in a row (a holder
            // with a quorum while some node is free looks the same) waits as usual.
            let window = refusal.took.max(SPLIT_MIN) * SPLIT_WINDOW;
            self.early_at = Some(now + window.mul_f64(rand::random::<f64>()));
        }
    }

    /// Waits for a wake, the early retry, the fallback or the deadline; returns whether
    /// the next attempt counts (the fallback ran out), or the deadline error.
    async fn pause<P: Pool>(
        &mut self,
        target: &Target<P>,
        deadline: Option<Instant>,
        last: Option<Error>,
    ) -> Result<bool> {
        let fallback_at = self.fallback_at.unwrap_or_else(Instant::now);
        let Some(interest) = self.interest.as_mut() else {
            // Polling: a delay that would end past the deadline fails at once, since
            // nothing could cut it short.
            if deadline.is_some_and(|d| fallback_at >= d) {
                return Err(target.deadline_exceeded(last));
            }
            tokio::time::sleep_until(fallback_at).await;
            return Ok(true);
        };
        // In this order when several are ready, so that whether the next attempt counts
        // does not depend on chance.
        tokio::select! {
            biased;
            () = sleep_until_some(deadline) => Err(target.deadline_exceeded(last)),
            () = tokio::time::sleep_until(fallback_at) => Ok(true),
            () = interest.woken() => Ok(false),
            () = sleep_until_some(self.early_at) => Ok(false),
        }
    }
}

/// Sleeps until `at`, or forever when there is none.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `delay` after `now`, or a year on (a time no wait reaches) for a delay too long to add.
fn later(now: Instant, delay: Duration) -> Instant {
    let year = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(delay).unwrap_or(now + year)
}

/// When other waiters of this manager already wait for the lock, joins them at the back
/// of the queue instead of racing them: their woken attempts and ours would split the
/// nodes' votes, and a newcomer would overtake those who came first. Plans the first
/// wait (the first retry delay); returns whether it queued.
async fn queue_behind<P: Pool>(
    target: &Target<P>,
    hub: &Hub,
    deadline: Option<Instant>,
    wait: &mut Wait,
) -> bool {
    if !target.settings().options.get_notify_release() || hub.is_idle() {
        return false;
    }
    if !hub.has_waiters(&release_channel(target.name())) {
        return false;
    }
    if !listen(target, hub, deadline, wait).await {
        return false;
    }
    wait.fallback_at = Some(later(Instant::now(), target.retry_delay(1)));
    true
}

/// Registers an interest in the lock's release channel and waits, within the per-node
/// timeout and the deadline, until enough nodes listen that every quorum of the holder's
/// nodes includes one (N - quorum + 1), or every node's listener settled it. Keeps the
/// interest and returns true when any node listens; otherwise (no subscriber, the server
/// refused the subscription, notifications off, no runtime) the waiter polls, as it did
/// before there were notifications, for the rest of this call.
async fn listen<P: Pool>(
    target: &Target<P>,
    hub: &Hub,
    deadline: Option<Instant>,
    wait: &mut Wait,
) -> bool {
    let settings = target.settings();
    if wait.polls || !settings.options.get_notify_release() {
        return false;
    }
    let channel = release_channel(target.name());
    let timeout = settings.node_timeout;
    let Some(mut interest) = hub.register(target.nodes(), &channel, timeout) else {
        wait.polls = true;
        return false;
    };
    let bound = Instant::now() + timeout;
    let bound = deadline.map_or(bound, |d| d.min(bound));
    let enough = target.node_count() - settings.quorum + 1;
    let subscribed = interest.subscribed(enough);
    if tokio::time::timeout_at(bound, subscribed)
        .await
        .unwrap_or(false)
    {
        wait.interest = Some(interest);
        return true;
    }
    wait.polls = true;
    false
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
