//! Typed settings: `config/default.toml`, then the file in `GATEWAY_CONFIG`, then
//! `GATEWAY__SECTION__KEY` environment variables.
//!
//! One file per group of sections; every type is named from here (`config::DispatchConfig`).
//! Settings are plain data: the modules that use a section read it, and this module
//! imports none of them, except that each provider kind checks its own `[[providers]]`
//! table (a kind is one file under `providers/`) and the low modules `domain`, `schedule`
//! and `outbound` parse the values they define.

/// `[approval]`: codes, proposals and staff text commands.
mod approval;
mod delivery;
/// `[fallback]`: deadlines for confirmed delivery, per message key.
mod fallback;
mod import;
/// Secrets masked out of printed settings.
pub mod mask;
mod providers;
mod push;
/// `[schedule]`: status changes planned ahead.
mod schedule;
mod server;
mod signin;
mod sources;
mod templates;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use approval::ApprovalConfig;
pub use delivery::{
    DispatchConfig, FailoverConfig, FanoutConfig, LimitsConfig, PracticeDefaults, QuietHoursConfig,
    PEER_DELAY_CEILING,
};
pub use fallback::FallbackConfig;
pub use import::{header_key, ColumnNames, ImportConfig, DEFAULT_MAX_ROW_BYTES};
pub use providers::{ProviderConfig, ReceiptsConfig};
pub use push::PushConfig;
pub use schedule::ScheduleConfig;
pub use server::{
    ClusterConfig, DatabaseConfig, LogFormat, RetentionConfig, ServerConfig, TelemetryConfig,
};
pub use signin::SigninConfig;
pub use sources::{
    SourceConfig, SourceKind, StatusSourcesConfig, MAX_SOURCE_NAME_CHARS, MIN_INTERVAL_SECONDS,
};
pub use templates::TemplatesConfig;

use crate::domain::ChannelOrder;
use crate::schedule::{PracticeZone, QuietHours};

/// The defaults, built into the binary so that it runs from any directory.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

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
    /// Logging, and exporting spans to an OpenTelemetry collector.
    pub telemetry: TelemetryConfig,
    /// Checking providers' callbacks and patients' replies.
    pub receipts: ReceiptsConfig,
    /// Accepting browsers' push subscriptions.
    pub push: PushConfig,
    /// CSV imports of patient lists: batch size, date formats, column names.
    #[serde(default)]
    pub import: ImportConfig,
    /// Several instances on one PostgreSQL database: heartbeats and the shares of each rate.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// How long message wording and addresses are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Console sign-in: throttling failures, and how many password checks run at once.
    #[serde(default)]
    pub signin: SigninConfig,
    /// Approving proposed status changes: how long codes and proposals last, and how often
    /// a staff number may text.
    #[serde(default)]
    pub approval: ApprovalConfig,
    /// Status changes planned ahead: how often they are looked for, how late one may go.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// The addresses supplier status sources may be fetched from.
    #[serde(default)]
    pub status_sources: StatusSourcesConfig,
    /// Supplier status pages and feeds the leader polls for incidents; none by default.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Deadlines by which messages must be confirmed delivered before another channel
    /// carries them.
    #[serde(default)]
    pub fallback: FallbackConfig,
    /// The providers messages leave through, in order of preference per channel.
    pub providers: Vec<ProviderConfig>,
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
        let a = &self.approval;
        if a.code_seconds == 0 || a.staff_proposal_seconds == 0 || a.source_proposal_seconds == 0 {
            return invalid(
                "approval",
                "code_seconds, staff_proposal_seconds and source_proposal_seconds must be at least 1".into(),
            );
        }
        if a.commands_per_number_per_hour == 0 {
            return invalid(
                "approval.commands_per_number_per_hour",
                "must be at least 1".into(),
            );
        }
        if !(1..=60).contains(&a.answer_timeout_seconds) {
            return invalid(
                "approval.answer_timeout_seconds",
                "must be from 1 to 60".into(),
            );
        }
        let s = &self.schedule;
        if !(1..=60_000).contains(&s.tick_ms) {
            return invalid("schedule.tick_ms", "must be from 1 to 60000".into());
        }
        if s.max_dates == 0 || s.max_days_ahead == 0 || s.max_active_per_practice == 0 {
            return invalid(
                "schedule",
                "max_dates, max_days_ahead and max_active_per_practice must be at least 1".into(),
            );
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
        let ceiling = PEER_DELAY_CEILING.as_secs();
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
        if let Err((key, reason)) = self.telemetry.check() {
            return invalid(&key, reason);
        }
        if let Err((key, reason)) = self.import.check() {
            return invalid(&key, reason);
        }
        if let Err((key, reason)) = self.push.check() {
            return invalid(&key, reason);
        }
        if let Err((key, reason)) = self.fallback.check() {
            return invalid(&key, reason);
        }
        if let Err((key, reason)) = self.status_sources.check() {
            return invalid(&key, reason);
        }
        if let Err((key, reason)) = sources::check_sources(&self.sources, &self.status_sources) {
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
            if let Err(reason) = crate::cost::Price::of_provider(p) {
                return invalid(&format!("{key}.price_pence"), reason);
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
        shown.telemetry.otlp_endpoint = mask::mask_secrets(&shown.telemetry.otlp_endpoint);
        for source in &mut shown.sources {
            source.url = mask::mask_secrets(&source.url);
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# could not print: {e}"))
    }

    /// The quiet hours, already checked (`None` when start equals end).
    pub fn quiet_hours(&self) -> Option<QuietHours> {
        QuietHours::parse(&self.quiet_hours.start, &self.quiet_hours.end)
            .ok()
            .filter(|q| q.start != q.end)
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
    fn trace_export_is_off_by_default_and_checked_by_key() {
        let config = Config::from_figment(Figment::from(Toml::string(DEFAULT_TOML))).unwrap();
        assert!(!config.telemetry.exports_traces());
        let on = || {
            Figment::from(Toml::string(DEFAULT_TOML)).merge(Serialized::default(
                "telemetry.otlp_endpoint",
                "http://collector:4318/v1/traces",
            ))
        };
        assert!(Config::from_figment(on())
            .unwrap()
            .telemetry
            .exports_traces());
        for (key, value) in [
            (
                "telemetry.otlp_endpoint",
                serde_json::json!("collector:4318"),
            ),
            ("telemetry.otlp_sample_ratio", serde_json::json!(1.5)),
            ("telemetry.otlp_timeout_ms", serde_json::json!(0)),
            ("telemetry.otlp_queue_size", serde_json::json!(0)),
            ("telemetry.otlp_service_name", serde_json::json!(" ")),
        ] {
            let figment = on().merge(Serialized::default(key, value));
            let message = Config::from_figment(figment).unwrap_err().to_string();
            assert!(message.contains(&format!("`{key}`")), "{message}");
        }
    }

    #[test]
    fn sources_are_read_from_tables_and_checked_by_key() {
        let tables = r#"
            [status_sources]
            allowed_networks = ["127.0.0.0/8"]
            allow_http = true

            [[sources]]
            name = "emis"
            kind = "statuspage"
            url = "http://127.0.0.1:9/api/v2/summary.json?token=abc"
            components = { "EMIS Web" = "emis-web" }

            [[sources]]
            name = "tpp"
            kind = "feed"
            url = "https://status.tpp.test/history.atom"
            interval_seconds = 300
            link = "https://status.tpp.test/"
            keywords = { "SystmOne" = "systmone" }
        "#;
        let figment = Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(tables));
        let config = Config::from_figment(figment).unwrap();
        assert_eq!(config.sources.len(), 2);
        assert_eq!(config.sources[0].kind, SourceKind::Statuspage);
        assert_eq!(config.sources[0].interval_seconds, 60);
        assert_eq!(config.sources[0].timeout_seconds, 10);
        assert_eq!(config.sources[1].keywords["SystmOne"], "systmone");
        assert!(config.status_sources.allow_http);
        let printed = config.to_masked_toml();
        assert!(!printed.contains("abc"), "{printed}");

        let strict = tables.replace("allow_http = true", "allow_http = false");
        let figment = Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(&strict));
        let message = Config::from_figment(figment).unwrap_err().to_string();
        assert!(message.contains("`sources[0].url`"), "{message}");

        let defaults = Config::from_figment(Figment::from(Toml::string(DEFAULT_TOML))).unwrap();
        assert!(defaults.sources.is_empty());
        assert!(!defaults.status_sources.allow_http);
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
