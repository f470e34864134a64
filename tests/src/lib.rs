//! Conformance suite and `redis-server` fleet harness for redlock-rs drivers.

pub mod connectivity;
mod factory;
pub mod faults;
pub mod fleet;
pub mod history;
pub mod suite;

pub use factory::Factory;
pub use fleet::{Fleet, FleetError, unique_prefix};

/// Every way an error can be printed: its message, its `Debug`, and its whole chain; for
/// checks that something (a password) shows nowhere, or that a cause is named somewhere.
pub(crate) fn printed(err: &dyn std::error::Error) -> String {
    let mut out = format!("{err} {err:?}");
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(&format!(" | {e} {e:?}"));
        next = e.source();
    }
    out
}
