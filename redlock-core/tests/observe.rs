//! What the `tracing` and `metrics` features record, read back through a test subscriber
//! and a test recorder: for a lock round with one node down, the spans, events and
//! counters the crate docs list (`# Observability`) appear with the right values, and no
//! lock value ever does.
//!
//! Each test runs on one thread (tokio's current-thread runtime, time paused) and captures
//! what that thread records only, so tests running side by side see only what they did
//! themselves. The subscriber is one global subscriber that hands each thread's spans and
//! events to that thread's capture, not a subscriber per thread (`set_default`): tracing
//! caches whether a callsite is wanted across all threads, and with per-thread subscribers
//! a callsite first reached on a thread without one can be cached as unwanted while another
//! thread's subscriber wants it, so that thread silently misses the event (tracing-core
//! 0.1.36 consults only the registering thread's subscriber while at most one is
//! registered). That lost about 1 run in 20 here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex, Once};
use std::time::Duration;

use common::{KEY, fast, manager, ms};
use metrics::LocalRecorderGuard;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use redlock_core::Options;
use redlock_core::memory::MemoryPool;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One closed span or one event: its name (an event's message), its fields, and for an
/// event the span it happened in.
#[derive(Debug, Clone, Default)]
struct Seen {
    name: String,
    fields: BTreeMap<String, String>,
    parent: Option<String>,
}

impl Seen {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("<absent>", String::as_str)
    }
}

impl Visit for Seen {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.fields
            .insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields
            .insert(field.name().to_owned(), value.to_owned());
    }
}

/// Keeps every span (when it closes, with the fields recorded by then) and every event
/// of the thread it was set for.
#[derive(Clone, Default)]
struct Capture {
    spans: Arc<StdMutex<Vec<Seen>>>,
    events: Arc<StdMutex<Vec<Seen>>>,
}

thread_local! {
    /// This thread's capture, while a test listens.
    static CAPTURE: RefCell<Option<Capture>> = const { RefCell::new(None) };
}

/// This thread's capture, if a test on it listens.
fn capture() -> Option<Capture> {
    CAPTURE.with(|c| c.borrow().clone())
}

/// The layer of the one global subscriber: hands what happens on a thread to that
/// thread's [`Capture`].
struct ToThisThread;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for ToThisThread {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if capture().is_none() {
            return;
        }
        let mut seen = Seen {
            name: attrs.metadata().name().to_owned(),
            ..Seen::default()
        };
        attrs.record(&mut seen);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(seen);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(seen) = span.extensions_mut().get_mut::<Seen>()
        {
            values.record(seen);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(capture) = capture() else { return };
        let mut seen = Seen::default();
        event.record(&mut seen);
        seen.name = seen.fields.remove("message").unwrap_or_default();
        seen.parent = ctx.event_span(event).map(|s| s.name().to_owned());
        capture.events.lock().unwrap().push(seen);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        // Only spans opened while this thread listened carry a `Seen`.
        if let Some(capture) = capture()
            && let Some(span) = ctx.span(&id)
            && let Some(seen) = span.extensions().get::<Seen>()
        {
            capture.spans.lock().unwrap().push(seen.clone());
        }
    }
}

impl Capture {
    fn spans(&self, name: &str) -> Vec<Seen> {
        let spans = self.spans.lock().unwrap();
        spans.iter().filter(|s| s.name == name).cloned().collect()
    }

    fn events(&self, message: &str) -> Vec<Seen> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|e| e.name.contains(message))
            .cloned()
            .collect()
    }

    /// Every recorded text, to look for what must never be there.
    fn everything(&self) -> String {
        let all = [&self.spans, &self.events];
        let all = all.iter().flat_map(|list| list.lock().unwrap().clone());
        all.map(|s| format!("{s:?}")).collect()
    }
}

/// The metrics taken since the last reading, as `name{label=value,...}` to value.
fn read(snapshotter: &Snapshotter) -> BTreeMap<String, DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

fn counter(metrics: &BTreeMap<String, DebugValue>, key: &str) -> u64 {
    match metrics.get(key) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{key}: {other:?} in {:#?}", metrics.keys()),
    }
}

fn histogram(metrics: &BTreeMap<String, DebugValue>, key: &str) -> Vec<f64> {
    match metrics.get(key) {
        Some(DebugValue::Histogram(values)) => values.iter().map(|v| v.0).collect(),
        other => panic!("{key}: {other:?} in {:#?}", metrics.keys()),
    }
}

/// Three nodes named by address that know the scripts, the third down. Made before
/// anything is captured.
async fn nodes_with_one_down() -> Vec<MemoryPool> {
    let addresses = ["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"];
    let pools: Vec<MemoryPool> = addresses
        .iter()
        .map(|a| MemoryPool::with_address(a))
        .collect();
    let warm_up = manager(&pools, options()).lock("warm-up").await.unwrap();
    warm_up.unlock().await.unwrap();
    pools[2].set_down(true);
    pools
}

/// What this thread records from now on, until the guards are dropped: spans and events
/// into the capture, metrics into a recorder read through the snapshotter.
fn listen() -> (
    Capture,
    Snapshotter,
    (Listening, LocalRecorderGuard<'static>),
) {
    static GLOBAL: Once = Once::new();
    GLOBAL.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(ToThisThread);
        tracing::subscriber::set_global_default(subscriber)
            .expect("nothing else in this test binary sets the global subscriber");
    });
    let capture = Capture::default();
    CAPTURE.with(|c| *c.borrow_mut() = Some(capture.clone()));
    let tracing = Listening;
    // Leaked, so that it outlives the guard that points at it: one small value per test.
    let recorder: &'static DebuggingRecorder = Box::leak(Box::new(DebuggingRecorder::new()));
    let metrics = metrics::set_default_local_recorder(recorder);
    (capture, recorder.snapshotter(), (tracing, metrics))
}

/// Ends this thread's capture when dropped.
struct Listening;

impl Drop for Listening {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}

fn options() -> Options {
    fast().quarantine(Duration::ZERO)
}

#[tokio::test(start_paused = true)]
async fn a_round_with_one_node_down_is_seen_in_spans_events_and_metrics() {
    let pools = nodes_with_one_down().await;
    let (capture, snapshotter, _guards) = listen();
    let redlock = manager(&pools, options());
    let mutex = redlock.mutex(KEY).unwrap();
    let mut guard = mutex.try_lock().await.unwrap();
    let value = guard.value().to_owned();
    tokio::time::advance(ms(100)).await;
    guard.extend().await.unwrap();
    let taken = manager(&pools, options()).mutex(KEY).unwrap();
    assert!(taken.try_lock().await.unwrap_err().is_taken());
    guard.unlock().await.unwrap();

    // The acquire: one attempt, a quorum of two with none to spare, the whole expiry
    // less the drift allowance left (time is paused: the round took no time).
    let acquires = capture.spans("redlock.acquire");
    assert_eq!(acquires.len(), 2, "{acquires:#?}");
    let won = &acquires[0];
    assert_eq!(won.field("lock"), KEY);
    assert_eq!(won.field("call"), "try_lock");
    assert_eq!(won.field("outcome"), "ok");
    assert_eq!(won.field("attempts"), "1");
    assert_eq!(won.field("quorum_margin"), "0");
    assert_eq!(won.field("validity_left_ms"), "988");
    assert_eq!(won.field("wait_ms"), "0");
    assert_eq!(acquires[1].field("outcome"), "taken");

    // Each node's answer to the acquire, inside its span: two grants and the node down.
    let answered = capture.events("node answered");
    let granted: Vec<&Seen> = answered
        .iter()
        .filter(|e| e.field("action") == "acquire" && e.field("outcome") == "yes")
        .collect();
    let addresses: Vec<&str> = granted.iter().map(|e| e.field("address")).collect();
    assert_eq!(addresses.len(), 2, "{answered:#?}");
    assert!(addresses.contains(&"10.0.0.1:6379") && addresses.contains(&"10.0.0.2:6379"));
    assert!(
        granted
            .iter()
            .all(|e| e.parent.as_deref() == Some("redlock.acquire"))
    );
    let failed = capture.events("node failed");
    let down: Vec<&Seen> = failed
        .iter()
        .filter(|e| e.field("address") == "10.0.0.3:6379")
        .collect();
    let actions: Vec<&str> = down.iter().map(|e| e.field("action")).collect();
    // The won acquire, the extend, the refused acquire and its cleanup, the unlock.
    let expected = ["acquire", "extend", "acquire", "release", "release"];
    assert_eq!(actions, expected, "{failed:#?}");
    assert!(down.iter().all(|e| e.field("error_kind") == "connection"));
    assert_eq!(down[0].field("node"), "2");
    assert_eq!(down[0].field("latency_us"), "0");

    let extends = capture.spans("redlock.extend");
    assert_eq!(extends.len(), 1);
    assert_eq!(extends[0].field("outcome"), "ok");
    assert_eq!(extends[0].field("validity_left_ms"), "988");
    let unlocks = capture.spans("redlock.unlock");
    assert_eq!(unlocks.len(), 1);
    assert_eq!(unlocks[0].field("outcome"), "ok");

    // The third failure in a row on the node down replaced its connection.
    let replaced = capture.events("replacing the node's connection");
    assert_eq!(replaced.len(), 1, "{replaced:#?}");
    assert_eq!(replaced[0].field("address"), "10.0.0.3:6379");

    let metrics = read(&snapshotter);
    let ok = "redlock_acquires_total{call=try_lock,outcome=ok}";
    assert_eq!(counter(&metrics, ok), 1);
    let taken = "redlock_acquires_total{call=try_lock,outcome=taken}";
    assert_eq!(counter(&metrics, taken), 1);
    let attempts = "redlock_acquire_attempts{call=try_lock,outcome=ok}";
    assert_eq!(histogram(&metrics, attempts), [1.0]);
    let round = histogram(&metrics, "redlock_acquire_seconds{call=try_lock}");
    assert_eq!(round, [0.0]);
    let waited = "redlock_acquire_wait_seconds{call=try_lock,outcome=taken}";
    assert_eq!(histogram(&metrics, waited).len(), 1);
    assert_eq!(counter(&metrics, "redlock_extends_total{outcome=ok}"), 1);
    assert_eq!(counter(&metrics, "redlock_unlocks_total{outcome=ok}"), 1);
    for action in ["acquire", "extend", "release"] {
        let errors = format!(
            "redlock_node_errors_total{{action={action},kind=connection,node=10.0.0.3:6379}}"
        );
        let expected = if action == "extend" { 1 } else { 2 };
        assert_eq!(counter(&metrics, &errors), expected, "{action}");
    }
    let reconnects = "redlock_node_reconnects_total{node=10.0.0.3:6379}";
    assert_eq!(counter(&metrics, reconnects), 1);
    let calls = histogram(
        &metrics,
        "redlock_node_call_seconds{action=acquire,node=10.0.0.1:6379}",
    );
    assert_eq!(calls, [0.0, 0.0], "the won acquire and the refused one");

    let everything = capture.everything() + &format!("{metrics:?}");
    assert!(!everything.contains(&value), "the lock value was recorded");
}

#[tokio::test(start_paused = true)]
async fn refusals_lost_leases_background_releases_quarantine_and_wakes_are_recorded() {
    let pools = nodes_with_one_down().await;
    let (capture, snapshotter, _guards) = listen();

    // A lock that cannot reach a quorum: two nodes down, three attempts.
    pools[1].set_down(true);
    let err = manager(&pools, options()).lock(KEY).await.unwrap_err();
    assert!(err.is_no_quorum() && !err.is_taken(), "{err}");
    pools[1].set_down(false);
    let refused = capture.events("attempt refused");
    let numbers: Vec<&str> = refused.iter().map(|e| e.field("attempt")).collect();
    assert_eq!(numbers, ["1", "2", "3"]);
    assert!(refused.iter().all(|e| e.field("reason") == "no_quorum"));
    let span = &capture.spans("redlock.acquire")[0];
    assert_eq!(
        (span.field("attempts"), span.field("outcome")),
        ("3", "no_quorum")
    );

    // A guard dropped while a node is down: its background release fails there.
    let guard = manager(&pools, options()).lock(KEY).await.unwrap();
    drop(guard);
    tokio::time::sleep(ms(100)).await;
    let failed = capture.events("background release failed");
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].field("address"), "10.0.0.3:6379");
    assert_eq!(failed[0].field("lock"), KEY);
    // The metrics so far (a reading takes them: the next one starts from zero).
    let metrics = read(&snapshotter);
    let background =
        "redlock_background_release_failures_total{kind=connection,node=10.0.0.3:6379}";
    assert_eq!(counter(&metrics, background), 1);
    let no_quorum = "redlock_acquires_total{call=lock,outcome=no_quorum}";
    assert_eq!(counter(&metrics, no_quorum), 1, "two nodes down");
    let attempts = "redlock_acquire_attempts{call=lock,outcome=no_quorum}";
    assert_eq!(histogram(&metrics, attempts), [3.0]);

    // A lease whose keys vanish: the renewal finds them gone on every node.
    pools[2].set_down(false);
    let lease = manager(&pools, options())
        .mutex(KEY)
        .unwrap()
        .lease()
        .await
        .unwrap();
    for pool in &pools {
        pool.expire_now(KEY);
    }
    let reason = tokio::time::timeout(Duration::from_secs(5), lease.signal().lost())
        .await
        .expect("the lease is lost");
    assert_eq!(reason.kind(), "gone");
    let lost = capture.events("lease lost");
    assert_eq!(lost.len(), 1, "{lost:#?}");
    assert_eq!(
        (lost[0].field("lock"), lost[0].field("reason")),
        (KEY, "gone")
    );
    let renewals = capture.spans("redlock.renew");
    assert_eq!(renewals.last().unwrap().field("outcome"), "expired");
    lease.unlock().await.unwrap_err();

    // A node restarted just now: its grant does not count.
    pools[2].set_down(true);
    pools[0].restart(true);
    let quarantined = manager(&pools, fast().tries(1))
        .lock(KEY)
        .await
        .unwrap_err();
    assert!(quarantined.is_no_quorum(), "{quarantined}");
    let young = capture.events("restart quarantine");
    assert_eq!(young.len(), 1, "{young:#?}");
    assert_eq!(young[0].field("address"), "10.0.0.1:6379");
    assert_eq!(young[0].field("outcome"), "quarantined");

    // A waiter woken by a release.
    let redlock = manager(&pools, options().tries(100).retry_delay(ms(500), ms(500)));
    let holder = redlock.lock("woken").await.unwrap();
    let waiter = manager(&pools, options().tries(100).retry_delay(ms(500), ms(500)));
    let waiting = tokio::spawn(async move { waiter.lock("woken").await });
    tokio::time::sleep(ms(50)).await;
    holder.unlock().await.unwrap();
    let woken = waiting.await.unwrap().unwrap();

    let metrics = read(&snapshotter);
    assert_eq!(counter(&metrics, no_quorum), 1, "one quarantined, one down");
    assert_eq!(histogram(&metrics, attempts), [1.0]);
    assert_eq!(
        counter(&metrics, "redlock_leases_lost_total{reason=gone}"),
        1
    );
    let quarantine = "redlock_node_quarantined_total{node=10.0.0.1:6379}";
    assert_eq!(counter(&metrics, quarantine), 1);
    let heard = counter(&metrics, "redlock_notifications_total{}");
    assert_eq!(heard, 2, "the release, from the two nodes up");
    woken.unlock().await.unwrap();
}

/// An acquire its caller gave up on (a `lock_or_cancel` whose `cancel` won, a `lock` cut
/// short by a timeout) is recorded as `cancelled`, with the attempts made by then.
#[tokio::test(start_paused = true)]
async fn an_acquire_its_caller_gave_up_on_is_recorded_as_cancelled() {
    let pools = nodes_with_one_down().await;
    let (capture, snapshotter, _guards) = listen();
    let holder = manager(&pools, options()).lock(KEY).await.unwrap();
    let waiting = options().tries(100).retry_delay(ms(100), ms(100));
    let mutex = manager(&pools, waiting).mutex(KEY).unwrap();
    let cancelled = mutex.lock_or_cancel(tokio::time::sleep(ms(250))).await;
    assert!(cancelled.unwrap_err().is_cancelled());
    let cut = tokio::time::timeout(ms(250), mutex.lock()).await;
    assert!(cut.is_err(), "the lock was cut short by the timeout");
    holder.unlock().await.unwrap();

    let acquires = capture.spans("redlock.acquire");
    let outcomes: Vec<&str> = acquires.iter().map(|s| s.field("outcome")).collect();
    assert_eq!(outcomes, ["ok", "cancelled", "cancelled"], "{acquires:#?}");
    let mut attempts = Vec::new();
    for span in &acquires[1..] {
        assert_eq!(span.field("call"), "lock");
        let waited: u64 = span.field("wait_ms").parse().unwrap();
        assert!((250..=251).contains(&waited), "{span:#?}");
        let made: f64 = span.field("attempts").parse().unwrap();
        assert!(made >= 2.0, "refused, then retried after 100 ms: {span:#?}");
        attempts.push(made);
    }

    let metrics = read(&snapshotter);
    let ok = "redlock_acquires_total{call=lock,outcome=ok}";
    assert_eq!(counter(&metrics, ok), 1);
    let gave_up = "redlock_acquires_total{call=lock,outcome=cancelled}";
    assert_eq!(counter(&metrics, gave_up), 2);
    let made = "redlock_acquire_attempts{call=lock,outcome=cancelled}";
    assert_eq!(histogram(&metrics, made), attempts);
}
