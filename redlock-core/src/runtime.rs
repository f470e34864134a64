//! What the lock needs of the tokio runtime it runs on: timers, since every call it makes
//! is bounded by one.

use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::error::{Error, Result};

/// A timer for `duration`: the first one every public lock call makes (its round's), so
/// that a call outside a tokio runtime, or in one built without its time driver
/// (`enable_time`), fails with [`Error::Config`] before anything is sent, instead of
/// panicking.
///
/// tokio has no way to ask whether the time driver is on; making a timer panics when it
/// is off, so this catches that panic. The panic hook still prints tokio's message (which
/// says what to do), and a build with `panic = "abort"` aborts here, as it would at the
/// lock's first timer anyway.
pub(crate) fn sleep(duration: Duration) -> Result<Sleep> {
    in_runtime()?;
    std::panic::catch_unwind(|| tokio::time::sleep(duration)).map_err(|_| no_timers())
}

/// A timer until `deadline`; fails as [`sleep`] does.
pub(crate) fn sleep_until(deadline: Instant) -> Result<Sleep> {
    in_runtime()?;
    std::panic::catch_unwind(|| tokio::time::sleep_until(deadline)).map_err(|_| no_timers())
}

/// Fails outside a tokio runtime without making a timer, so that no panic message is
/// printed for that case; only a runtime without a time driver costs one.
fn in_runtime() -> Result<()> {
    tokio::runtime::Handle::try_current()
        .map(drop)
        .map_err(|_| no_timers())
}

/// Fails with [`Error::Config`] where [`sleep`] would: for paths that make their first
/// timer inside a task of their own (a release in the background).
pub(crate) fn check() -> Result<()> {
    sleep(Duration::ZERO).map(drop)
}

fn no_timers() -> Error {
    if tokio::runtime::Handle::try_current().is_err() {
        return Error::config("no tokio runtime: lock calls must run within one");
    }
    Error::config(
        "the tokio runtime has no time driver: build it with enable_time() or enable_all()",
    )
}
