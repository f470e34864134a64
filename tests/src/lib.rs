//! Conformance suite and `redis-server` fleet harness for redlock-rs drivers.

pub mod connectivity;
mod factory;
pub mod faults;
pub mod fleet;
pub mod history;
pub mod suite;

pub use factory::Factory;
pub use fleet::{Fleet, FleetError, unique_prefix};
