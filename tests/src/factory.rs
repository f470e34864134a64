//! How the suite and the fault harness get a driver's pools.

/// Builds one node's pool from its URL (`redis://127.0.0.1:PORT/`): any
/// `Fn(&str) -> redlock_core::Result<P>`, such as a driver's `from_url`. It must not fail
/// when the node is down.
pub trait Factory<P>: Fn(&str) -> redlock_core::Result<P> {}

impl<P, F: Fn(&str) -> redlock_core::Result<P>> Factory<P> for F {}
