//! The Redlock distributed lock algorithm, generic over a small Redis connection trait.
//!
//! A rebuild of go-redsync/redsync v4 (antirez's Redlock): a lock is held when a quorum of
//! N independent Redis masters hold its key with one random value, and it is trusted only
//! for its *validity*: the expiry, less the time the acquire round took, less a clock-drift
//! allowance. Release and extend are compare-and-act Lua scripts, so only the holder's
//! value can be deleted or refreshed.
//!
//! This crate holds the whole algorithm and depends on no Redis client. Pick the driver
//! crate that matches your client (`redlock-redis-rs`, `redlock-fred`, `redlock-deadpool`);
//! each re-exports this crate, so you need only that one dependency.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use redlock_core::{Options, Redlock, memory::MemoryPool};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> redlock_core::Result<()> {
//! // Any driver's pools go here; the in-memory one stands in for Redis in docs.
//! let nodes = vec![MemoryPool::new(), MemoryPool::new(), MemoryPool::new()];
//! let redlock = Redlock::with_options(nodes, Options::new().expiry(Duration::from_secs(10)))?;
//!
//! let mutex = redlock.mutex("report:daily")?;
//! let mut guard = mutex.lock().await?;
//! assert!(mutex.try_lock().await.unwrap_err().is_taken());
//! guard.extend().await?;
//! guard.unlock().await?;
//! # Ok(()) }
//! ```
//!
//! # Guarantees and limits
//!
//! While [`Guard::remaining`] is above zero, no other client holding the same nodes can
//! hold the lock, provided that clocks drift less than the drift allowance and that every
//! client keeps restart quarantine on ([`Options::quarantine`], the default) with a period
//! at least the longest expiry any of them uses plus its drift: a node that restarts
//! without its data then gets no vote until every key it could have held has expired.
//! A process paused past its validity (GC, swap, SIGSTOP) can still act after its lock
//! expired: take a fenced lock ([`Options::fenced`], [`Guard::token`], see [`fence`]) and
//! have the resource check the token, or check `remaining()` right before each side
//! effect.
//!
//! # Leases
//!
//! For work longer than one expiry, [`Mutex::lease`] (or [`Guard::keep_alive`]) keeps the
//! lock alive with one background task, and its [`LeaseSignal`] tells the work when it is
//! lost, no later than the lease's end; [`Mutex::run`] runs a future under a lease and
//! drops it on loss. A lease is as safe as the lock under it, and a paused process still
//! cannot be told in time: check [`LeaseSignal::check`] before each side effect.
//!
//! # Observability
//!
//! Two features, off by default, report what the locks do; with both off nothing is
//! recorded and nothing is paid (not even a clock read). Lock values and credentials are
//! never recorded: a lock appears by its name, a node by the address its pool reports
//! (which drivers keep free of credentials) or, without one, as `node<index>`. The one-word
//! outcomes are [`Error::kind`] (`taken`, `no_quorum`, `deadline`, ...) or `ok`; node
//! error kinds are [`ConnErrorKind::as_str`].
//!
//! **`tracing`**: spans at `DEBUG` level (so a service that logs at `INFO` pays nothing
//! for them), with their fields recorded when the call ends.
//!
//! | span | fields |
//! |---|---|
//! | `redlock.acquire` | `lock`, `call` (`lock`, `try_lock` or `lock_until`; `lock_or_cancel` is `lock`), `attempts`, `outcome`, `wait_ms` (from the call to its end), and on success `quorum_margin` (nodes that agreed beyond the quorum) and `validity_left_ms` |
//! | `redlock.extend` | `lock`, `outcome`, `validity_left_ms` on success |
//! | `redlock.renew` (a lease's renewal; holds a `redlock.extend`) | `lock`, `attempt` (1 for the first try of a renewal), `outcome`, `validity_left_ms` |
//! | `redlock.unlock` | `lock`, `outcome` |
//!
//! An acquire its caller gave up on once it had started (a [`Mutex::lock_or_cancel`]
//! whose `cancel` won, or a dropped acquire future: a timeout or `select!` around it, an
//! aborted task) ends with outcome `cancelled`, with the attempts made by then, in its
//! span and its metrics; one given up before it was first polled (a `cancel` already
//! complete) made no attempt and records nothing.
//! [`Mutex::adopt`] is not recorded. With [`Options::fail_fast`], `quorum_margin` counts
//! the nodes that had agreed when the outcome was certain, so it is usually 0. Events,
//! inside the span of the call they belong to where there is one:
//!
//! | level | message starts | fields |
//! |---|---|---|
//! | `TRACE` | `redlock: node answered` | `node` (index), `address`, `action` (`acquire`, `extend` or `release`), `outcome` (`yes`, `absent`, `taken`, `stale`), `latency_us` |
//! | `DEBUG` | `redlock: node failed` | those of `node answered` with `outcome` `failed`, and `error_kind`, `error` |
//! | `INFO` | `redlock: node restarted too recently to vote` | those of `node answered` with `outcome` `quarantined`, and `quarantine_left_ms` ([`Options::quarantine`]) |
//! | `DEBUG` | `redlock: attempt refused` | `attempt`, `reason`, `error` |
//! | `WARN` | `redlock: replacing the node's connection` | `node`, `address`, `error` (the last failure; see [`Pool::reconnect`]) |
//! | `WARN` | `redlock: background release failed` | `lock`, `node`, `address`, `error_kind`, `error`: a dropped guard's or cancelled acquire's release did not reach the node, whose key stays until it expires |
//! | `WARN` | `redlock: lease lost` | `lock`, `reason` ([`LostReason::kind`]), `error` when a renewal error caused it |
//! | `DEBUG` | `redlock: lease ended` | `lock`, `reason` `released`: the holder ended it |
//! | `TRACE` | `redlock: release announcement heard` | |
//!
//! **`metrics`**, through the [`metrics`](https://docs.rs/metrics) facade: install any
//! recorder (a Prometheus exporter, say). Lock names are not labels, since a program may
//! lock unboundedly many names; node labels are bounded by the node count. Durations are
//! in seconds.
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `redlock_acquires_total` | counter | `call`, `outcome` | acquire calls by how they ended: `ok` is an acquisition, `cancelled` a call its caller gave up on, the rest are refusals (`taken`, `no_quorum`, `deadline`, `validity_exhausted`, `config`, ...) |
//! | `redlock_acquire_wait_seconds` | histogram | `call`, `outcome` | from an acquire call to its end, retries and waits included |
//! | `redlock_acquire_seconds` | histogram | `call` | the winning attempt's round, the latency of an acquisition |
//! | `redlock_acquire_attempts` | histogram | `call`, `outcome` | attempts per acquire call |
//! | `redlock_extends_total` | counter | `outcome` | [`Guard::extend`] and [`Guard::extend_to`] calls, renewals included |
//! | `redlock_renewals_total` | counter | `outcome` | a lease's renewals |
//! | `redlock_unlocks_total` | counter | `outcome` | [`Guard::unlock`] calls (a lease's too) |
//! | `redlock_leases_lost_total` | counter | `reason` | leases lost, by [`LostReason::kind`] (not `released`) |
//! | `redlock_node_call_seconds` | histogram | `node`, `action` | each node's answered calls |
//! | `redlock_node_errors_total` | counter | `node`, `action`, `kind` | each node's failed calls; `kind` `timeout` for the per-node timeout |
//! | `redlock_node_reconnects_total` | counter | `node` | connections the core asked a node's pool to replace |
//! | `redlock_node_quarantined_total` | counter | `node` | grants not counted because the node restarted too recently |
//! | `redlock_background_release_failures_total` | counter | `node`, `kind` | background releases that did not reach the node |
//! | `redlock_notifications_total` | counter | | release announcements heard by waiters' listeners |
//!
//! What they cost when on is measured in the README (*Observability*).

// The modules, from the public API down to the seam; imports run one way only.
//
// - API: `redlock` (the manager), `mutex` (one named lock), `guard` (a held lock), `lease`
//   (a held lock kept alive, its lost signal, and running work under it). `wait` (the
//   retries of an acquire, and waiting for a release between them).
// - Rounds: `round`, one lock's target and the rounds made on it (acquire attempt and
//   retries, extend, unlock, the value, the retry delay), and `round::cleanup`, what a
//   failed or dropped acquire round releases.
// - Mechanics: `fan_out` (one call to every node under one timer), `call` (one script call
//   and how a reply is read), `nodes` (a manager's nodes), `listen` (a manager's waiters
//   and each node's listener for release announcements), `tally` (counting votes),
//   `validity` (pure timing maths), `health` (replacing silent connections),
//   `quarantine` (each node's age, and the votes of nodes that restarted too recently).
//   `fence` (fencing tokens: the fence key, the fence quorum, the resource-side write).
// - Seam: `conn` (`Pool`, `Conn` and their contract), `conn_error` (what a driver
//   reports), `boxed` (type-erased pools),
//   `subscriber` (the optional pub/sub connection for release notifications),
//   `scripts` (the Lua scripts, their modes and argument layout), `url` (URLs in
//   messages without their secrets), `tls` (TLS material, the same for every driver).
// - Support: `options` (the builder), `settings` (options checked for a node count),
//   `error` (with why a lease was lost), `node_error` (one node's failure and how failures
//   read), `runtime` (what the lock needs of tokio), `memory` (the in-memory node for tests
//   and doctests), `observe` (what the `tracing` and `metrics` features record).
mod boxed;
mod call;
mod conn;
mod conn_error;
mod error;
mod fan_out;
pub mod fence;
mod guard;
mod health;
mod lease;
mod listen;
pub mod memory;
mod mutex;
mod node_error;
mod nodes;
mod observe;
mod options;
mod quarantine;
mod redlock;
mod round;
mod runtime;
pub mod scripts;
mod settings;
mod subscriber;
mod tally;
mod tls;
mod url;
pub mod validity;
mod wait;

pub use boxed::{BoxConn, BoxPool, PoolExt};
pub use conn::{Conn, ConnError, ConnErrorKind, Pool, Replies, Reply, ScriptRef, run_script};
pub use error::{Action, Error, LostReason, Result};
pub use guard::Guard;
pub use lease::{KeepAliveError, Lease, LeaseSignal, LeaseState};
pub use mutex::Mutex;
pub use node_error::NodeError;
pub use options::{
    DEFAULT_DRIFT_FACTOR, DEFAULT_EXPIRY, DEFAULT_MAX_RETRY_DELAY, DEFAULT_MIN_RETRY_DELAY,
    DEFAULT_RENEW_FACTOR, DEFAULT_TIMEOUT_FACTOR, DEFAULT_TRIES, MAX_EXPIRY, MAX_NODES, MAX_TRIES,
    Options,
};
pub use redlock::Redlock;
pub use scripts::Script;
pub use subscriber::{BoxSubscriber, Notice, Subscriber};
pub use tls::{Tls, is_tls_url};
pub use tokio::time::Instant;
pub use url::redact_url;

/// Compile-time checks that the public futures and handles can cross threads.
#[allow(dead_code)]
fn assert_send() {
    fn is_send<T: Send>(_: &T) {}
    fn is_sync<T: Send + Sync>() {}
    fn futures<P: Pool>(r: &Redlock<P>, m: &Mutex<P>, g: &mut Guard<P>) {
        is_send(&r.lock("x"));
        is_send(&r.try_lock("x"));
        is_send(&m.lock());
        is_send(&m.try_lock());
        is_send(&m.lock_until(Instant::now()));
        is_send(&m.lock_or_cancel(std::future::pending::<()>()));
        is_send(&m.adopt());
        is_send(&g.extend());
        is_send(&m.lease());
        is_send(&m.run(|_| async {}));
    }
    fn lease(l: Lease, s: &LeaseSignal) {
        is_send(&l.extend());
        is_send(&s.lost());
        is_send(&l.unlock());
    }
    fn unlock<P: Pool>(g: Guard<P>) {
        is_send(&g.unlock());
    }
    is_sync::<Redlock<BoxPool>>();
    is_sync::<Mutex<BoxPool>>();
    is_sync::<Guard<BoxPool>>();
    is_sync::<Error>();
    is_sync::<Lease>();
    is_sync::<LeaseSignal>();
    let _ = futures::<BoxPool>;
    let _ = unlock::<BoxPool>;
    let _ = lease;
}
