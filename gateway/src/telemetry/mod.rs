//! Logging: tracing to stderr, filtered by config or `RUST_LOG`, as text or JSON lines.
//! Patient data is never logged.
//! Metrics: counters, histograms and gauges served as Prometheus text at `GET /metrics`.

/// How log lines are formatted and where they go.
pub mod logs;
/// The gateway's Prometheus metrics and their text exposition.
pub mod metrics;

pub use logs::init;
