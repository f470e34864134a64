//! `--observe`: the lock built with its `tracing` and `metrics` features, with a subscriber
//! and a recorder installed, so that what observability costs shows in the tables (built
//! with `--features observe`; without it, the features are off and nothing is recorded).
//!
//! The subscriber is what a service typically runs: `tracing_subscriber::fmt` at `INFO`
//! (`tracing`: the lock's `DEBUG` spans and events are filtered out) or at `DEBUG`
//! (`tracing-debug`: every call's span is made and recorded, and each node failure is an
//! event), writing to a sink. The recorder keeps every metric in atomics in a
//! `metrics_util` registry, as the Prometheus exporter does, without serving them.

#[cfg(feature = "observe")]
use std::sync::Arc;

use crate::Result;

/// Installs, for the whole process, the subscriber if `what` names `tracing` and the
/// recorder if it names `metrics`.
#[cfg(feature = "observe")]
pub(crate) fn install(what: &[String]) -> Result<()> {
    let known = ["tracing", "tracing-debug", "metrics"];
    if let Some(other) = what.iter().find(|w| !known.contains(&w.as_str())) {
        return Err(crate::fail(format!(
            "--observe {other:?}: one of {known:?}"
        )));
    }
    let named = |name: &str| what.iter().any(|w| w == name);
    let level = if named("tracing-debug") {
        Some(tracing::Level::DEBUG)
    } else {
        named("tracing").then_some(tracing::Level::INFO)
    };
    if let Some(level) = level {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(level)
            .finish();
        tracing::subscriber::set_global_default(subscriber)?;
    }
    if named("metrics") {
        metrics::set_global_recorder(Recorder::default())
            .map_err(|e| crate::fail(format!("installing the recorder: {e}")))?;
    }
    Ok(())
}

/// Without the `observe` feature there is nothing to install.
#[cfg(not(feature = "observe"))]
pub(crate) fn install(_: &[String]) -> Result<()> {
    Err(crate::fail(
        "--observe needs the benchmark built with `--features observe`",
    ))
}

/// Every metric in atomics, looked up by key on each use.
#[cfg(feature = "observe")]
struct Recorder(
    metrics_util::registry::Registry<metrics::Key, metrics_util::registry::AtomicStorage>,
);

#[cfg(feature = "observe")]
impl Default for Recorder {
    fn default() -> Self {
        Self(metrics_util::registry::Registry::atomic())
    }
}

#[cfg(feature = "observe")]
impl metrics::Recorder for Recorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        self.0
            .get_or_create_counter(key, |c| metrics::Counter::from_arc(Arc::clone(c)))
    }

    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        self.0
            .get_or_create_gauge(key, |g| metrics::Gauge::from_arc(Arc::clone(g)))
    }

    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        self.0
            .get_or_create_histogram(key, |h| metrics::Histogram::from_arc(Arc::clone(h)))
    }
}
