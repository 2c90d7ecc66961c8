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

/// Logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// tracing EnvFilter directives.
    pub log_filter: String,
    /// How each log line is written: for people, or one JSON object per line for a log
    /// collector.
    #[serde(default)]
    pub format: LogFormat,
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
