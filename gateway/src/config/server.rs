//! `[server]`, `[database]`, `[telemetry]`, `[cluster]` and `[retention]`: running the
//! gateway process and keeping its data.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The HTTP listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Listening address.
    pub bind: SocketAddr,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Addresses of reverse proxies whose `X-Forwarded-For` names the client (per-client
    /// limits count by it). Empty: the connection's own address is the client's.
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// Where data is kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://...` or `postgres://...`.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
}

/// Logging, and exporting spans to an OpenTelemetry collector.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// tracing EnvFilter directives.
    pub log_filter: String,
    /// How each log line is written: for people, or one JSON object per line for a log
    /// collector.
    #[serde(default)]
    pub format: LogFormat,
    /// The collector's OTLP/HTTP traces URL (`http://collector:4318/v1/traces`); empty: no
    /// spans are exported, and no trace context is recorded or read.
    #[serde(default)]
    pub otlp_endpoint: String,
    /// The `service.name` the exported spans carry.
    #[serde(default = "default_service_name")]
    pub otlp_service_name: String,
    /// Longest one export to the collector may take, retries included, in milliseconds.
    #[serde(default = "default_otlp_timeout_ms")]
    pub otlp_timeout_ms: u64,
    /// Share of requests (and of the sends each one causes) whose spans are exported, 0 to 1.
    #[serde(default = "default_sample_ratio")]
    pub otlp_sample_ratio: f64,
    /// Finished spans held in memory for export; more, while the collector is slow or away,
    /// are dropped.
    #[serde(default = "default_otlp_queue_size")]
    pub otlp_queue_size: usize,
}

fn default_service_name() -> String {
    "gateway".into()
}

fn default_otlp_timeout_ms() -> u64 {
    5_000
}

fn default_sample_ratio() -> f64 {
    1.0
}

fn default_otlp_queue_size() -> usize {
    2_048
}

impl TelemetryConfig {
    /// Whether spans are exported (an endpoint is set).
    pub fn exports_traces(&self) -> bool {
        !self.otlp_endpoint.trim().is_empty()
    }

    /// The key and reason of the first setting that makes no sense.
    pub fn check(&self) -> Result<(), (String, String)> {
        let invalid = |key: &str, reason: &str| Err((format!("telemetry.{key}"), reason.into()));
        if !self.exports_traces() {
            return Ok(());
        }
        let endpoint = self.otlp_endpoint.trim();
        match url::Url::parse(endpoint) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => return invalid("otlp_endpoint", "must be an http:// or https:// URL"),
        }
        if self.otlp_service_name.trim().is_empty() {
            return invalid("otlp_service_name", "must not be empty");
        }
        if !(1..=60_000).contains(&self.otlp_timeout_ms) {
            return invalid("otlp_timeout_ms", "must be from 1 to 60000");
        }
        if !(0.0..=1.0).contains(&self.otlp_sample_ratio) {
            return invalid("otlp_sample_ratio", "must be from 0 to 1");
        }
        if !(1..=1_000_000).contains(&self.otlp_queue_size) {
            return invalid("otlp_queue_size", "must be from 1 to 1000000");
        }
        Ok(())
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, coloured only when written to a terminal.
    #[default]
    Text,
    /// One JSON object per line, never coloured.
    Json,
}

/// Several instances on one database: how often each says it is alive, and when the others
/// take it for dead.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Seconds between an instance's heartbeats.
    pub heartbeat_seconds: u64,
    /// Heartbeats an instance may miss before the others take it for dead.
    pub missed_beats: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            heartbeat_seconds: 2,
            missed_beats: 3,
        }
    }
}

/// How long message wording and addresses are kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days after which a final message's wording and address are blanked (its state,
    /// attempts and the audit trail stay).
    pub days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { days: 90 }
    }
}
