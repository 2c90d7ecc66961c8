//! `[fanout]`, `[dispatch]`, `[limits]`, `[failover]`, `[quiet_hours]` and
//! `[practice_defaults]`: how messages are planned and sent.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{Channel, Rate};

/// Turning triggers into outbox messages.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FanoutConfig {
    /// Messages per INSERT statement.
    pub batch_size: usize,
    /// Longest a status change's answer waits for its fan-out, in milliseconds. A list
    /// planned by then is answered with its counts; a longer one is answered with what is
    /// planned so far (`fanout_complete: false`) while planning goes on.
    #[serde(default = "default_answer_within_ms")]
    pub answer_within_ms: u64,
}

fn default_answer_within_ms() -> u64 {
    100
}

impl FanoutConfig {
    /// [`FanoutConfig::answer_within_ms`] as a duration.
    pub fn answer_within(&self) -> Duration {
        Duration::from_millis(self.answer_within_ms)
    }
}

/// Sending outbox messages.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchConfig {
    /// Whether this process runs dispatch workers.
    pub enabled: bool,
    /// Messages in flight at once.
    pub concurrency: usize,
    /// Messages claimed per query.
    pub claim_batch: usize,
    /// Lease length in seconds.
    pub lease_seconds: u64,
    /// Idle poll interval in milliseconds.
    pub poll_interval_ms: u64,
    /// First retry delay in milliseconds.
    pub retry_base_ms: u64,
    /// Longest retry delay in milliseconds.
    pub retry_cap_ms: u64,
    /// Tries before a message fails.
    pub max_attempts: u32,
    /// Seconds after it was planned when a message stops being retried and fails.
    pub retry_max_age_seconds: u64,
    /// The longest wait a peer may impose (Retry-After and the like), in seconds.
    #[serde(default = "default_max_peer_delay_seconds")]
    pub max_peer_delay_seconds: u64,
}

/// The longest wait any peer can ask for, whatever the configured cap
/// (`dispatch.max_peer_delay_seconds`, at most this): a week.
pub const PEER_DELAY_CEILING: Duration = Duration::from_secs(7 * 86_400);

fn default_max_peer_delay_seconds() -> u64 {
    3600
}

/// Rate limits per practice and per patient, as `N/s`, `N/min`, `N/h` or `N/day`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most broadcast messages one practice sends; absent means no limit of its own.
    #[serde(default)]
    pub practice: Option<Rate>,
    /// How many of those may go at once after a quiet spell.
    pub practice_burst: u32,
    /// Most non-urgent messages one patient receives; more are suppressed. Absent: no cap.
    #[serde(default)]
    pub patient_bulk: Option<Rate>,
    /// How many of those may come together.
    pub patient_burst: u32,
}

/// When a failing provider is taken out of rotation and when it is tried again.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverConfig {
    /// Failures in a row (5xx, timeouts, refused connections) that open the circuit.
    pub failures: u32,
    /// Seconds out of rotation before one probe message is let through.
    pub cool_down_seconds: u64,
}

/// Values new practices get unless they say otherwise.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PracticeDefaults {
    /// IANA timezone name.
    pub timezone: String,
    /// Channels tried in order for patients without a preference.
    pub channel_order: Vec<Channel>,
}

/// The nightly window (practice time) when broadcasts by SMS and push wait; email and
/// one-patient messages are not held.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursConfig {
    /// `HH:MM` the window opens.
    pub start: String,
    /// `HH:MM` it closes.
    pub end: String,
}
