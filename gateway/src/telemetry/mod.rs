//! Logging: tracing to stderr, filtered by config or `RUST_LOG`. Patient data is never logged.
//! Metrics: counters, histograms and gauges served as Prometheus text at `GET /metrics`.

/// The gateway's Prometheus metrics and their text exposition.
pub mod metrics;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
