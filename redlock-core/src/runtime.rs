//! What the lock needs of the tokio runtime it runs on: timers, since every call it makes
//! is bounded by one.

use std::time::Duration;

use crate::error::{Error, Result};

/// Fails with [`Error::Config`] outside a tokio runtime, or in one built without its time
/// driver (`enable_time`), instead of panicking at the first timer.
pub(crate) fn check() -> Result<()> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::config(
            "no tokio runtime: lock calls must run within one",
        ));
    }
    // tokio has no way to ask whether the time driver is on; making a timer panics when it
    // is off, so the probe catches that panic. The panic hook still prints tokio's message
    // (which says what to do), and a build with `panic = "abort"` aborts here, as it would
    // at the lock's first timer without the probe.
    std::panic::catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO))).map_err(|_| {
        Error::config(
            "the tokio runtime has no time driver: build it with enable_time() or enable_all()",
        )
    })
}
