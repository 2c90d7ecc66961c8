//! Typed settings: `config/default.toml`, then the file in `GATEWAY_CONFIG`, then
//! `GATEWAY__SECTION__KEY` environment variables.

use std::net::SocketAddr;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::schedule::{PracticeZone, QuietHours};

/// Secrets masked out of printed settings.
pub mod mask;
use crate::domain::{Channel, ChannelOrder, Rate};

/// The defaults, built into the binary so that it runs from any directory.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// A setting that is missing, mistyped or out of range, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The layers could not be read or merged into the typed settings.
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    /// A value read fine but makes no sense.
    #[error("configuration: `{key}` {reason}")]
    Invalid {
        /// The dotted key, such as `dispatch.concurrency`.
        key: String,
        /// What is wrong with its value.
        reason: String,
    },
}

/// Every setting of the gateway.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP listener.
    pub server: ServerConfig,
    /// Where data is kept.
    pub database: DatabaseConfig,
    /// Turning triggers into outbox messages.
    pub fanout: FanoutConfig,
    /// Sending outbox messages.
    pub dispatch: DispatchConfig,
    /// Rate limits per practice and per patient (a provider's own is in its table).
    pub limits: LimitsConfig,
    /// Taking a failing provider out of rotation.
    pub failover: FailoverConfig,
    /// What administrators may save as message wording.
    pub templates: TemplatesConfig,
    /// Values new practices get unless they say otherwise.
    pub practice_defaults: PracticeDefaults,
    /// When bulk SMS and push wait.
    pub quiet_hours: QuietHoursConfig,
    /// Logging.
    pub telemetry: TelemetryConfig,
    /// Checking providers' callbacks and patients' replies.
    pub receipts: ReceiptsConfig,
    /// Accepting browsers' push subscriptions.
    pub push: PushConfig,
    /// CSV imports of patient lists: batch size, date formats, column names.
    #[serde(default)]
    pub import: crate::intake::import::ImportConfig,
    /// Several instances on one PostgreSQL database: heartbeats and the shares of each rate.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// How long message wording and addresses are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Console sign-in: throttling failures, and how many password checks run at once.
    #[serde(default)]
    pub signin: crate::web::signin_guard::SigninConfig,
    /// The providers messages leave through, in order of preference per channel.
    pub providers: Vec<ProviderConfig>,
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

/// Turning triggers into outbox messages.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FanoutConfig {
    /// Messages per INSERT statement.
    pub batch_size: usize,
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

/// What administrators may save as message wording.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatesConfig {
    /// Most SMS segments a template may render to with the sample values.
    pub max_sms_segments: usize,
    /// Largest part of a template (subject, text, HTML, link), in bytes.
    pub max_part_bytes: usize,
    /// Largest rendered part of a message, in bytes (render budget).
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: usize,
    /// Most loop iterations while rendering one part (render budget).
    #[serde(default = "default_max_loop_iterations")]
    pub max_loop_iterations: u64,
    /// Longest one part may take to render, in milliseconds (render budget).
    #[serde(default = "default_max_render_ms")]
    pub max_render_ms: u64,
    /// Longest one broadcast's wording may take to render in all, in seconds.
    #[serde(default = "default_max_broadcast_render_seconds")]
    pub max_broadcast_render_seconds: u64,
}

fn default_max_broadcast_render_seconds() -> u64 {
    crate::render::RenderBudget::default()
        .max_broadcast_time
        .as_secs()
}

fn default_max_output_bytes() -> usize {
    crate::render::RenderBudget::default().max_output_bytes
}

fn default_max_loop_iterations() -> u64 {
    crate::render::RenderBudget::default().max_loop_iterations
}

fn default_max_render_ms() -> u64 {
    crate::render::RenderBudget::default().max_time.as_millis() as u64
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

/// Logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// tracing EnvFilter directives.
    pub log_filter: String,
}

/// Checking providers' callbacks: each kind's secret comes from the named environment
/// variable; a kind whose variable is unset refuses its callbacks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptsConfig {
    /// The gateway's base URL as providers call it (Twilio signs the full URL).
    pub public_url: String,
    /// Variable holding the Twilio auth token (receipts and inbound SMS).
    pub twilio_auth_token_env: String,
    /// Variable holding the bearer token Notify sends with callbacks.
    pub notify_callback_token_env: String,
    /// Variable holding the HMAC secret of `webhook` callbacks.
    pub webhook_secret_env: String,
    /// Variable holding the secret that signs email unsubscribe links; without it, bulk
    /// email goes out without List-Unsubscribe headers.
    pub unsubscribe_secret_env: String,
}

/// Accepting browsers' push subscriptions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// Hosts whose endpoints may be plain http on any port (tests, a push service on your
    /// own network). They must still be in `allowed_endpoint_hosts`, and an internal
    /// address must be in `allowed_networks`.
    pub allow_insecure_hosts: Vec<String>,
    /// The longest endpoint accepted, in bytes.
    #[serde(default = "default_max_endpoint_bytes")]
    pub max_endpoint_bytes: usize,
    /// Push service hosts endpoints may be on; each matches itself and its subdomains.
    /// Empty means any host name.
    #[serde(default = "default_endpoint_hosts")]
    pub allowed_endpoint_hosts: Vec<String>,
    /// Internal networks (CIDR) push requests may reach all the same; by default none.
    #[serde(default)]
    pub allowed_networks: Vec<String>,
    /// Anonymous follows one client address (an IPv6 /64) may make per minute.
    #[serde(default = "default_follows_per_address_per_minute")]
    pub follows_per_address_per_minute: u32,
    /// Anonymous followers one practice may have.
    #[serde(default = "default_followers_per_practice")]
    pub followers_per_practice: u64,
}

fn default_max_endpoint_bytes() -> usize {
    crate::domain::DEFAULT_MAX_ENDPOINT_BYTES
}

fn default_endpoint_hosts() -> Vec<String> {
    [
        "fcm.googleapis.com",
        "push.services.mozilla.com",
        "push.apple.com",
        "notify.windows.com",
    ]
    .map(String::from)
    .to_vec()
}

fn default_follows_per_address_per_minute() -> u32 {
    30
}

fn default_followers_per_practice() -> u64 {
    100_000
}

impl PushConfig {
    /// Checks the values, naming the key of the first bad one.
    pub fn check(&self) -> Result<(), (String, String)> {
        let invalid = |key: &str, reason: String| Err((format!("push.{key}"), reason));
        if !(64..=1_048_576).contains(&self.max_endpoint_bytes) {
            return invalid("max_endpoint_bytes", "must be from 64 to 1048576".into());
        }
        if let Err(e) = crate::outbound::AddressPolicy::parse(&self.allowed_networks) {
            return invalid("allowed_networks", e.to_string());
        }
        if self
            .allowed_endpoint_hosts
            .iter()
            .chain(&self.allow_insecure_hosts)
            .any(|h| h.trim().trim_start_matches("*.").is_empty())
        {
            return invalid(
                "allowed_endpoint_hosts",
                "and allow_insecure_hosts must not contain empty host names".into(),
            );
        }
        if self.follows_per_address_per_minute == 0 {
            return invalid(
                "follows_per_address_per_minute",
                "must be at least 1".into(),
            );
        }
        Ok(())
    }

    /// The networks push requests may reach besides public addresses (checked at load).
    pub fn address_policy(&self) -> crate::outbound::AddressPolicy {
        crate::outbound::AddressPolicy::parse(&self.allowed_networks).unwrap_or_default()
    }

    /// The rules every push endpoint is held to where a subscription comes in.
    pub fn endpoint_rules<'a>(
        &'a self,
        addresses: &'a crate::outbound::AddressPolicy,
    ) -> crate::domain::EndpointRules<'a> {
        crate::domain::EndpointRules {
            max_bytes: self.max_endpoint_bytes,
            allowed_hosts: &self.allowed_endpoint_hosts,
            insecure_hosts: &self.allow_insecure_hosts,
            addresses,
        }
    }
}

/// One provider: a named instance of a provider kind serving one channel. The kind's own
/// settings sit beside these keys in the same table and are checked by the kind.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ProviderConfig {
    /// Unique name, recorded on every message it sends.
    pub name: String,
    /// Which implementation, such as `log`, `twilio`, `smtp`.
    pub kind: String,
    /// The channel it carries.
    pub channel: Channel,
    /// Its contractual rate, never exceeded; absent means no limit.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// Messages that may go at once after a quiet spell (default: one second's worth).
    #[serde(default)]
    pub burst: Option<u32>,
    /// The kind's settings (e.g. `path` for `log`, `base_url` for HTTP kinds).
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl ProviderConfig {
    /// The kind's settings as its own type; unknown or mistyped keys are refused by name.
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(serde_json::Value::Object(self.settings.clone()))
            .map_err(|e| e.to_string())
    }

    /// Reads a secret from the environment variable named by setting `key` (secrets are
    /// never written in config files), naming both if it is missing.
    pub fn secret_from_env(&self, key: &str, variable: &str) -> Result<String, String> {
        std::env::var(variable)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                format!("`{key}` names the environment variable {variable}, which is not set")
            })
    }
}

impl Config {
    /// The layered figment: defaults, then `GATEWAY_CONFIG`'s file, then the environment.
    pub fn figment() -> Figment {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Ok(path) = std::env::var("GATEWAY_CONFIG") {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment.merge(Env::prefixed("GATEWAY__").split("__"))
    }

    /// Loads and checks the settings from the usual layers.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_figment(Self::figment())
    }

    /// Extracts and checks the settings from any figment (tests add their own layers).
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(Box::new)?;
        config.check()?;
        Ok(config)
    }

    /// Cross-field checks that types alone cannot express.
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                reason,
            })
        };
        if !(self.database.url.starts_with("sqlite:")
            || self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://"))
        {
            return invalid(
                "database.url",
                "must start with sqlite:, postgres:// or postgresql://".into(),
            );
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1".into());
        }
        if !(1..=2184).contains(&self.fanout.batch_size) {
            return invalid("fanout.batch_size", "must be from 1 to 2184".into());
        }
        let d = &self.dispatch;
        if !(1..=4096).contains(&d.concurrency) {
            return invalid("dispatch.concurrency", "must be from 1 to 4096".into());
        }
        if !(1..=10_000).contains(&d.claim_batch) {
            return invalid("dispatch.claim_batch", "must be from 1 to 10000".into());
        }
        if d.lease_seconds == 0 {
            return invalid("dispatch.lease_seconds", "must be at least 1".into());
        }
        if d.poll_interval_ms == 0 {
            return invalid("dispatch.poll_interval_ms", "must be at least 1".into());
        }
        if d.retry_base_ms == 0 || d.retry_cap_ms < d.retry_base_ms {
            return invalid(
                "dispatch.retry_cap_ms",
                "must be at least dispatch.retry_base_ms, which must be at least 1".into(),
            );
        }
        if d.max_attempts == 0 {
            return invalid("dispatch.max_attempts", "must be at least 1".into());
        }
        if d.retry_max_age_seconds == 0 {
            return invalid(
                "dispatch.retry_max_age_seconds",
                "must be at least 1".into(),
            );
        }
        let ceiling = crate::providers::http::PEER_DELAY_CEILING.as_secs();
        if !(1..=ceiling).contains(&d.max_peer_delay_seconds) {
            return invalid(
                "dispatch.max_peer_delay_seconds",
                format!("must be from 1 to {ceiling} (a week)"),
            );
        }
        if self.limits.practice_burst == 0 || self.limits.patient_burst == 0 {
            return invalid(
                "limits",
                "practice_burst and patient_burst must be at least 1".into(),
            );
        }
        if self.templates.max_sms_segments == 0 || self.templates.max_part_bytes == 0 {
            return invalid(
                "templates",
                "max_sms_segments and max_part_bytes must be at least 1".into(),
            );
        }
        if self.templates.max_output_bytes < 1024
            || self.templates.max_loop_iterations == 0
            || !(1..=60_000).contains(&self.templates.max_render_ms)
            || self.templates.max_broadcast_render_seconds == 0
        {
            return invalid(
                "templates",
                "max_output_bytes must be at least 1024, max_loop_iterations and max_broadcast_render_seconds at least 1, and max_render_ms from 1 to 60000".into(),
            );
        }
        if self.failover.failures == 0 {
            return invalid("failover.failures", "must be at least 1".into());
        }
        if !(1..=3600).contains(&self.cluster.heartbeat_seconds) {
            return invalid("cluster.heartbeat_seconds", "must be from 1 to 3600".into());
        }
        if self.cluster.missed_beats < 2 {
            return invalid(
                "cluster.missed_beats",
                "must be at least 2 (an instance stops sending after missing one less)".into(),
            );
        }
        if self.retention.days == 0 {
            return invalid("retention.days", "must be at least 1".into());
        }
        if let Err(e) = PracticeZone::parse(&self.practice_defaults.timezone) {
            return invalid("practice_defaults.timezone", e.to_string());
        }
        if let Err(reason) = QuietHours::parse(&self.quiet_hours.start, &self.quiet_hours.end) {
            return invalid("quiet_hours", reason);
        }
        if let Err(e) = ChannelOrder::new(self.practice_defaults.channel_order.clone()) {
            return invalid("practice_defaults.channel_order", e.reason);
        }
        if let Err((key, reason)) = self.import.check() {
            return invalid(&key, reason);
        }
        if let Err((key, reason)) = self.push.check() {
            return invalid(&key, reason);
        }
        for (i, p) in self.providers.iter().enumerate() {
            let key = format!("providers[{i}]");
            if p.name.trim().is_empty() {
                return invalid(&format!("{key}.name"), "must not be empty".into());
            }
            if p.burst == Some(0) {
                return invalid(&format!("{key}.burst"), "must be at least 1".into());
            }
            if self.providers[..i].iter().any(|q| q.name == p.name) {
                return invalid(
                    &format!("{key}.name"),
                    format!("{:?} is used twice", p.name),
                );
            }
            crate::providers::check_config(p).map_err(|reason| ConfigError::Invalid {
                key: key.clone(),
                reason,
            })?;
        }
        Ok(())
    }

    /// The settings as TOML with secrets masked, for `gateway print-config`.
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database.url = mask_url_password(&shown.database.url);
        for provider in &mut shown.providers {
            for value in provider.settings.values_mut() {
                mask::mask_strings_in(value);
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# could not print: {e}"))
    }

    /// The quiet hours, already checked (`None` when start equals end).
    pub fn quiet_hours(&self) -> Option<QuietHours> {
        QuietHours::parse(&self.quiet_hours.start, &self.quiet_hours.end)
            .ok()
            .filter(|q| q.start != q.end)
    }

    /// The limits on rendering one part of a message.
    pub fn render_budget(&self) -> crate::render::RenderBudget {
        crate::render::RenderBudget {
            max_output_bytes: self.templates.max_output_bytes,
            max_loop_iterations: self.templates.max_loop_iterations,
            max_time: std::time::Duration::from_millis(self.templates.max_render_ms),
            max_broadcast_time: std::time::Duration::from_secs(
                self.templates.max_broadcast_render_seconds,
            ),
        }
    }

    /// The limits on saved templates.
    pub fn template_limits(&self) -> crate::render::validate::Limits {
        crate::render::validate::Limits {
            max_part_bytes: self.templates.max_part_bytes,
            max_sms_segments: self.templates.max_sms_segments,
            budget: self.render_budget(),
        }
    }

    /// The default practice channel order, already checked.
    pub fn default_channel_order(&self) -> ChannelOrder {
        ChannelOrder::new(self.practice_defaults.channel_order.clone()).unwrap_or_default()
    }
}

/// Replaces passwords in every form a URL or connection string can carry them (`mask`).
fn mask_url_password(url: &str) -> String {
    mask::mask_secrets(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Serialized;

    #[test]
    fn defaults_load_and_pass_their_own_checks() {
        let config = Config::from_figment(Figment::from(Toml::string(DEFAULT_TOML))).unwrap();
        assert!(config.database.url.starts_with("sqlite:"));
        assert_eq!(config.providers.len(), 3);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let figment = Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Serialized::default("dispatch.concurrency", "lots"));
        let message = Config::from_figment(figment).unwrap_err().to_string();
        assert!(message.contains("dispatch.concurrency"), "{message}");

        let figment = Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Serialized::default("dispatch.concurrency", 0));
        let message = Config::from_figment(figment).unwrap_err().to_string();
        assert!(message.contains("`dispatch.concurrency`"), "{message}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let figment = Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Toml::string("[dispatch]\nconcurency = 4\n"));
        let message = Config::from_figment(figment).unwrap_err().to_string();
        assert!(message.contains("concurency"), "{message}");
    }

    #[test]
    fn push_settings_are_checked_by_key() {
        let config = Config::from_figment(Figment::from(Toml::string(DEFAULT_TOML))).unwrap();
        assert_eq!(config.push.max_endpoint_bytes, 1_024);
        assert!(config.push.allowed_networks.is_empty());
        assert_eq!(config.push.address_policy(), Default::default());
        for (key, value) in [
            ("push.allowed_networks", serde_json::json!(["10.0.0.0/33"])),
            ("push.allowed_endpoint_hosts", serde_json::json!(["*."])),
            ("push.max_endpoint_bytes", serde_json::json!(0)),
            ("push.follows_per_address_per_minute", serde_json::json!(0)),
        ] {
            let figment =
                Figment::from(Toml::string(DEFAULT_TOML)).merge(Serialized::default(key, value));
            let message = Config::from_figment(figment).unwrap_err().to_string();
            assert!(message.contains(&format!("`{key}`")), "{message}");
        }
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_url_password("postgres://gw:secret@db:5432/gw"),
            "postgres://gw:***@db:5432/gw"
        );
        assert_eq!(
            mask_url_password("sqlite://data/gateway.db"),
            "sqlite://data/gateway.db"
        );
    }
}
