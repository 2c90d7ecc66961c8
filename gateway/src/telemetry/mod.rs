//! Logging: tracing to stderr, filtered by config or `RUST_LOG`, as text or JSON lines.
//! Patient data is never logged.
//! Metrics: counters, histograms and gauges served as Prometheus text at `GET /metrics`.
//! Traces (optional): the gateway's spans exported to an OpenTelemetry collector, each
//! provider send in the trace of the request that caused it.

/// How log lines are formatted and where they go.
pub mod logs;
/// The gateway's Prometheus metrics and their text exposition.
pub mod metrics;
/// The OTLP exporter: batches, a bounded queue, losses reported once.
pub mod otlp;
/// The trace context recorded with work that runs later, and the spans that continue it.
pub mod traces;

pub use logs::init;
