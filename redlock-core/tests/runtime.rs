//! What the lock needs of its tokio runtime: timers (their absence is an error, not a
//! panic), and a running runtime for background releases (a guard dropped after its
//! runtime is gone sends nothing; its keys expire).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use redlock_core::memory::MemoryPool;
use redlock_core::{Guard, Instant, Options};

fn patient() -> Options {
    Options::new().expiry(ms(60_000))
}

#[test]
fn runtime_without_timers_is_a_config_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pools = pools(3);
    let m = mutex(&pools, patient());
    for err in [
        rt.block_on(m.lock()).unwrap_err(),
        rt.block_on(m.try_lock()).unwrap_err(),
        rt.block_on(m.lock_until(Instant::now() + ms(100)))
            .unwrap_err(),
    ] {
        assert!(err.is_config(), "{err}");
        assert!(err.to_string().contains("enable_time"), "{err}");
    }
    assert_eq!(calls(&pools), [0, 0, 0], "nothing was sent");
}

#[test]
fn lock_calls_outside_a_runtime_are_a_config_error() {
    let pools = pools(3);
    let m = mutex(&pools, patient());
    let err = poll_outside_tokio(m.try_lock()).unwrap_err();
    assert!(
        err.is_config() && err.to_string().contains("no tokio runtime"),
        "{err}"
    );
}

/// Polls `f` to completion on this thread, outside any tokio runtime.
fn poll_outside_tokio<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// A guard that outlives its runtime releases nothing when dropped, and does not panic:
/// its keys stay until they expire.
#[test]
fn guard_dropped_after_its_runtime_sends_nothing() {
    let pools: Vec<MemoryPool> = pools(3);
    let rt = runtime();
    let guard = rt.block_on(mutex(&pools, patient()).try_lock()).unwrap();
    let value = guard.value().to_owned();
    drop(rt);
    let before = calls(&pools);
    drop(guard);
    assert_eq!(calls(&pools), before);
    assert_all_hold(&pools, &value);
}

/// A guard held by a task that the runtime drops as it shuts down: nothing is sent, and
/// nothing panics.
#[test]
fn guard_dropped_while_its_runtime_shuts_down_sends_nothing() {
    let pools: Vec<MemoryPool> = pools(3);
    let rt = runtime();
    let m = mutex(&pools, patient());
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    rt.spawn(async move {
        let guard: Guard<MemoryPool> = m.try_lock().await.unwrap();
        tx.send(guard.value().to_owned()).unwrap();
        std::future::pending::<()>().await;
    });
    // Let the task acquire, then shut the runtime down under it.
    let value = rt.block_on(rx).unwrap();
    let before = calls(&pools);
    drop(rt);
    assert_eq!(calls(&pools), before);
    assert_all_hold(&pools, &value);
}
