//! Observability: the lock's spans and events printed by a `tracing` subscriber, and its
//! metrics read back from a recorder, for a few lock calls with one node of three down.
//!
//! ```text
//! cargo run --example observe
//! ```
//!
//! The driver crate's `tracing` and `metrics` features are on for this example (see
//! `examples/Cargo.toml`); in your own crate:
//! `redlock-redis-rs = { version = "0.1", features = ["tracing", "metrics"] }`. Starts three
//! throwaway local `redis-server`s and stops them at the end.

use std::error::Error;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use redlock_conformance::Fleet;
use redlock_redis_rs::{Options, RedisPool, Redlock};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // Spans and events of the lock at DEBUG (its spans are DEBUG: a service that logs at
    // INFO sees only the warnings), printed as they close.
    tracing_subscriber::fmt()
        .with_env_filter("redlock_core=debug")
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .init();
    // Any `metrics` recorder works: a Prometheus exporter in a service, one that keeps
    // everything for reading here.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install()?;

    let mut fleet = Fleet::start(3)?;
    // The servers are new: restart quarantine would give them no vote for the expiry.
    let options = Options::new()
        .expiry(Duration::from_secs(5))
        .quarantine(Duration::ZERO);
    let redlock = Redlock::with_options(RedisPool::from_urls(&fleet.urls())?, options)?;
    fleet.kill(2)?;

    let mutex = redlock.mutex("observe:report")?;
    let mut guard = mutex.lock().await?;
    guard.extend().await?;
    let busy = redlock.try_lock("observe:report").await;
    println!(
        "a second try_lock while held: {}",
        busy.map(|_| "ok").unwrap_or_else(|e| e.kind())
    );
    guard.unlock().await?;

    println!("\nmetrics:");
    let mut lines: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let value = match value {
                DebugValue::Counter(n) => n.to_string(),
                DebugValue::Gauge(g) => g.to_string(),
                DebugValue::Histogram(h) => format!("{} samples", h.len()),
            };
            format!("  {} = {value}", key.key())
        })
        .collect();
    lines.sort();
    println!("{}", lines.join("\n"));
    Ok(())
}
